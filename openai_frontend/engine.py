"""The engine behind the API: Triton's `deepseek_ocr` ensemble over tritonclient's asyncio gRPC.

The contract every engine keeps (the routers and the SSE framing rely on it):
`generate()` is an async iterator of `Delta`s, one per model response (or
one for several that came before the reader asked for the next): a text
delta and the running token counts, the finish reason on the last one only,
and nothing after it. Usage and finish reason are the model's, never derived
here. Failures are raised as OpenAIError (the model refusing the request is a
400, an unreachable Triton a 503), whether before the first delta or after.
Closing the iterator early (`aclose()`, or the task reading it cancelled)
stops the generation: a CANCEL request to the vLLM model names the request's
id (Triton passes a stream's cancellation on to no running ensemble step),
then the stream is read to its end, a moment later, in the background. The
gRPC stream itself is cancelled only if that end does not come: Triton 2.51
now and then keeps an ensemble request whose stream was cancelled while its
responses were under way, and with it the ensemble, until its shutdown
gives up waiting.

One gRPC stream per request; what travels on it is `dsocr.triton.client`'s.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncGenerator
from typing import Protocol

import grpc
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from dsocr.triton import client
from dsocr.triton.client import Delta
from dsocr.triton.contract import ENSEMBLE
from dsocr.triton.errors import ENGINE_DEAD, parse_refusal
from openai_frontend.errors import BadRequest, OpenAIError, Unavailable

CANCEL_TIMEOUT_S = 5.0
END_OF_STREAM_TIMEOUT_S = 5.0
# A cancelled request's stream ends once its generation is aborted, or at
# once when it reaches the vLLM model (dsocr.inflight); a request still
# queued for preprocessing longer than this has its gRPC stream cancelled.
CANCELLED_END_TIMEOUT_S = 30.0

log = logging.getLogger(__name__)
# A server that takes longer to say it is ready is not.
READY_TIMEOUT_S = 2.0


class Engine(Protocol):
    async def ready(self) -> bool: ...

    def generate(self, image: bytes, prompt: str, parameters: dict) -> AsyncGenerator[Delta, None]: ...

    async def close(self) -> None: ...


# Triton prefixes a composing model's error with where it happened; its own
# errors, about the request before any model ran, come without it.
_ENSEMBLE_PREFIX = f"in ensemble '{ENSEMBLE}', "
# Triton's own refusals of a request it cannot serve now: the ensemble is
# not loaded (starting, reloading), or the server is shutting down and its
# schedulers take nothing new. Another server, or a later try, may serve it.
_NOT_SERVED = "Request for unknown model"
_STOPPING = "Server is stopping"
# The Python backend's words for a model process that crashed or hangs ("Stub process 'preprocess_0_2' is
# not healthy."): the server cannot serve the request, whatever the request was.
_STUB_DOWN = re.compile(r"Stub process .*is not healthy|Failed to process the request")


def model_error(message: str) -> OpenAIError:
    """An error the ensemble streamed back -> the API's error: the client's only when the model refused the
    request as such (dsocr.triton.errors); any other is the server's."""
    if message.startswith(_NOT_SERVED):
        return Unavailable(f"the model is not loaded: {message}")
    if _STOPPING in message:
        return Unavailable(f"the model server is stopping: {message}")
    message = message.removeprefix(_ENSEMBLE_PREFIX)
    refused = parse_refusal(message)
    if refused is not None:
        code, reason = refused
        return BadRequest(reason, code=code)
    if _STUB_DOWN.search(message) or ENGINE_DEAD in message:
        return Unavailable(f"a model process of the server failed: {message}")
    return OpenAIError(message, code="model_error")


def transport_error(exc: grpc.aio.AioRpcError | InferenceServerException) -> OpenAIError:
    """The gRPC call itself failed: Triton down or unreachable is a 503."""
    if isinstance(exc, grpc.aio.AioRpcError):
        status, details = exc.code(), exc.details()
    else:
        status, details = exc.status(), exc.message()
    if str(status) == str(grpc.StatusCode.UNAVAILABLE):
        return Unavailable(f"the model server is unavailable: {details}")
    return OpenAIError(f"the model server failed: {details}", code="model_error")


_END = object()


class _Responses:
    """One request's gRPC stream, read to its end by a task of its own.

    The API's reader can be cancelled at any await (a client that goes away);
    cancelled inside a gRPC read, grpc would cancel the stream with it, which
    is what must not happen while the request runs in Triton (see above).
    Responses waiting when the reader asks are handed over together, so a
    reader that falls behind the engine catches up in one step.
    """

    def __init__(self, call):
        self._call = call
        self._queue: asyncio.Queue = asyncio.Queue()
        self._held = None  # what ended the last hand-over: the next one starts with it
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for item in self._call:
                self._queue.put_nowait(item)
        except (grpc.aio.AioRpcError, InferenceServerException) as exc:
            self._queue.put_nowait(exc)
        finally:
            self._queue.put_nowait(_END)

    async def results(self) -> list[grpcclient.InferResult]:
        """The responses that have come, at least one; [] at the end of the stream.

        Raises the API's error for a streamed error or a broken stream.
        """
        results: list[grpcclient.InferResult] = []
        item, self._held = self._held or await self._queue.get(), None
        while True:
            if item is _END or isinstance(item, Exception) or item[1] is not None:
                if results or item is _END:  # hand over what came before it first
                    self._held = item
                    return results
                if isinstance(item, Exception):
                    raise transport_error(item) from item
                raise model_error(item[1].message())
            results.append(item[0])
            if self._queue.empty():
                return results
            item = self._queue.get_nowait()

    @property
    def ended(self) -> bool:
        return self._task.done()

    async def end(self, timeout_s: float) -> None:
        """Let Triton close the stream; cancel it if it has not within `timeout_s`."""
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._task)
        except TimeoutError:
            log.warning("Triton kept a request's stream open for %.0f s; cancelling it", timeout_s)
            self._call.cancel()


class TritonEngine:
    def __init__(self, url: str):
        self._client = grpcclient.InferenceServerClient(url)
        self._background: set[asyncio.Task] = set()  # referenced until done

    async def ready(self) -> bool:
        try:
            return await self._client.is_server_ready(
                client_timeout=READY_TIMEOUT_S
            ) and await self._client.is_model_ready(ENSEMBLE, client_timeout=READY_TIMEOUT_S)
        except Exception as exc:  # unreachable, timed out, refused: not ready, whatever the way
            log.debug("readiness probe failed: %r", exc)
            return False

    async def generate(self, image: bytes, prompt: str, parameters: dict) -> AsyncGenerator[Delta, None]:
        request_id = uuid.uuid4().hex
        request = client.ensemble_request(image, prompt, parameters, request_id)
        responses = _Responses(self._client.stream_infer(client.one_request(request)))
        running = True  # in Triton, as far as this side knows
        try:
            while results := await responses.results():
                delta = client.delta(results)
                if delta.finish_reason:
                    running = False
                    # Closed by Triton within a millisecond; before the last
                    # delta goes out, so that nothing of it is left once the
                    # client has its answer.
                    await responses.end(END_OF_STREAM_TIMEOUT_S)
                    yield delta
                    return
                yield delta
            raise OpenAIError("the model server ended the response without a finish reason", code="model_error")
        except OpenAIError:
            running = False  # a streamed error ends the request; a broken stream has nothing more
            raise
        finally:
            # Not awaited: this may run while the reader is being cancelled.
            if running:  # the reader went away (client disconnected, response closed)
                self._in_background(self._stop(responses, request_id))
            elif not responses.ended:  # after a streamed error
                self._in_background(responses.end(END_OF_STREAM_TIMEOUT_S))

    def _in_background(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _stop(self, responses: _Responses, request_id: str) -> None:
        """Stop the generation of `request_id`, then let its stream end (best effort, bounded)."""

        try:
            async with asyncio.timeout(CANCEL_TIMEOUT_S):
                await client.cancel(self._client, request_id)
        except Exception as exc:  # the client is gone already; nobody to tell
            log.warning("could not cancel request %s in Triton: %r", request_id, exc)
        await responses.end(CANCELLED_END_TIMEOUT_S)

    async def close(self) -> None:
        if self._background:  # the CANCELs of clients that just left go out first
            await asyncio.wait(self._background, timeout=CANCEL_TIMEOUT_S)
        await self._client.close()
