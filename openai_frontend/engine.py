"""The engine behind the API: Triton's `deepseek_ocr` ensemble over tritonclient's asyncio gRPC.

The contract every engine keeps (the routers and the SSE framing rely on it):
`generate()` is an async iterator of `Delta`s, one per model response: a text
delta and the running token counts, the finish reason on the last one only,
and nothing after it. Usage and finish reason are the model's, never derived
here. Failures are raised as OpenAIError (the model refusing the request is a
400, an unreachable Triton a 503), whether before the first delta or after.
Closing the iterator early (`aclose()`, or the task reading it cancelled)
cancels the gRPC stream and sends the vLLM model a CANCEL request naming the
request's id: Triton passes a stream's cancellation on only to ensemble steps
not yet started, so the running generation is stopped by name.

One gRPC stream per request. The ensemble takes the raw image bytes (never
base64), the prompt and a JSON of dsocr.settings, all as UINT8 tensors.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import grpc
import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from dsocr.model_errors import ENGINE_DEAD, SERVER_FAULT
from openai_frontend.errors import BadRequest, OpenAIError, Unavailable

ENSEMBLE = "deepseek_ocr"
# Takes CANCEL requests naming a request id (model_repository/vllm_model).
VLLM_MODEL = "vllm_model"
CANCEL_TIMEOUT_S = 5.0
END_OF_STREAM_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)
# A server that takes longer to say it is ready is not.
READY_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Delta:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


class Engine(Protocol):
    async def ready(self) -> bool: ...

    def generate(self, image: bytes, prompt: str, parameters: dict) -> AsyncIterator[Delta]: ...

    async def close(self) -> None: ...


# Triton prefixes a composing model's error with where it happened; its own
# errors, about the request before any model ran, come without it.
_ENSEMBLE_PREFIX = f"in ensemble '{ENSEMBLE}', "
# Triton's own refusals of a request it cannot serve now: the ensemble is
# not loaded (starting, reloading), or the server is shutting down and its
# schedulers take nothing new. Another server, or a later try, may serve it.
_NOT_SERVED = "Request for unknown model"
_STOPPING = "Server is stopping"


def model_error(message: str) -> OpenAIError:
    """An error the ensemble streamed back -> the API's error."""
    if message.startswith(_NOT_SERVED):
        return Unavailable(f"the model is not loaded: {message}")
    if _STOPPING in message:
        return Unavailable(f"the model server is stopping: {message}")
    message = message.removeprefix(_ENSEMBLE_PREFIX)
    # Everything the models refuse without these phrases is the request's fault.
    if ENGINE_DEAD in message:
        return Unavailable(message)
    if SERVER_FAULT in message:
        return OpenAIError(message, code="model_error")
    return BadRequest(message, code="invalid_request")


def transport_error(exc: grpc.aio.AioRpcError | InferenceServerException) -> OpenAIError:
    """The gRPC call itself failed: Triton down or unreachable is a 503."""
    if isinstance(exc, grpc.aio.AioRpcError):
        status, details = exc.code(), exc.details()
    else:
        status, details = exc.status(), exc.message()
    if str(status) == str(grpc.StatusCode.UNAVAILABLE):
        return Unavailable(f"the model server is unavailable: {details}")
    return OpenAIError(f"the model server failed: {details}", code="model_error")


def _uint8(name: str, data: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [len(data)], "UINT8")
    tensor.set_data_from_numpy(np.frombuffer(data, dtype=np.uint8))
    return tensor


def _delta(result: grpcclient.InferResult) -> Delta:
    finish = result.as_numpy("FINISH_REASON").tobytes().decode()
    return Delta(
        text=result.as_numpy("TEXT").tobytes().decode("utf-8"),
        finish_reason=finish or None,
        prompt_tokens=int(result.as_numpy("PROMPT_TOKENS")[0]),
        completion_tokens=int(result.as_numpy("COMPLETION_TOKENS")[0]),
    )


async def _end_of(call) -> None:
    """Wait for Triton to close a stream whose request is complete (well under a millisecond).

    A stream cancelled after its last response but before Triton closed it
    leaves the ensemble referenced: Triton then cannot unload it, and its
    shutdown waits out the whole exit timeout.
    """
    try:
        async with asyncio.timeout(END_OF_STREAM_TIMEOUT_S):
            async for _ in call:
                pass
    except TimeoutError:
        log.warning("Triton kept a completed request's stream open for %.0f s", END_OF_STREAM_TIMEOUT_S)


class TritonEngine:
    def __init__(self, url: str):
        self._client = grpcclient.InferenceServerClient(url)
        self._cancelling: set[asyncio.Task] = set()  # referenced until done

    async def ready(self) -> bool:
        try:
            return (await self._client.is_server_ready(client_timeout=READY_TIMEOUT_S)
                    and await self._client.is_model_ready(ENSEMBLE, client_timeout=READY_TIMEOUT_S))
        except InferenceServerException:
            return False

    async def generate(self, image: bytes, prompt: str, parameters: dict) -> AsyncIterator[Delta]:
        inputs = [
            _uint8("IMAGE", image),
            _uint8("PROMPT", prompt.encode("utf-8")),
            _uint8("PARAMETERS", json.dumps(parameters).encode("utf-8")),
        ]

        request_id = uuid.uuid4().hex

        async def one_request():
            yield {"model_name": ENSEMBLE, "inputs": inputs, "request_id": request_id}

        call = self._client.stream_infer(one_request())
        finished = False
        try:
            async for result, error in call:
                if error is not None:
                    finished = True  # the request is over in Triton
                    raise model_error(error.message())
                delta = _delta(result)
                if delta.finish_reason:
                    finished = True
                    await _end_of(call)
                    yield delta
                    return
                yield delta
            raise OpenAIError("the model server ended the response without a finish reason", code="model_error")
        except (grpc.aio.AioRpcError, InferenceServerException) as exc:
            raise transport_error(exc) from exc
        finally:
            # The reader went away (client disconnected, response closed):
            # cancelling the stream is how Triton learns the request is no
            # longer wanted. Left to garbage collection, it would happen at
            # some later time or never. A no-op once the call is done.
            call.cancel()
            if not finished:
                # Not awaited: this runs while the reader is being cancelled.
                task = asyncio.ensure_future(self._cancel(request_id))
                self._cancelling.add(task)
                task.add_done_callback(self._cancelling.discard)

    async def _cancel(self, request_id: str) -> None:
        """Stop the generation of `request_id` in vLLM (best effort, bounded)."""

        async def one_request():
            yield {"model_name": VLLM_MODEL, "inputs": [_uint8("CANCEL", request_id.encode())]}

        try:
            async with asyncio.timeout(CANCEL_TIMEOUT_S):
                async for _ in self._client.stream_infer(one_request()):
                    return  # the model answers once, when it has aborted the generation
        except Exception as exc:  # the client is gone already; nobody to tell
            log.warning("could not cancel request %s in Triton: %r", request_id, exc)

    async def close(self) -> None:
        await self._client.close()
