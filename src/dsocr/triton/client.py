"""The one client of the `deepseek_ocr` ensemble over Triton's gRPC (tritonclient).

What a request is on the wire, written once for the frontend, the tests, the
benchmarks and the batch command:

- an ensemble request: IMAGE (the encoded image file, raw bytes, never
  base64), PROMPT (UTF-8, one `<image>`) and PARAMETERS (UTF-8 JSON of
  `dsocr.parameters`), all UINT8 tensors, on a gRPC stream of its own;
- its responses: one per engine output (every `stream_interval` tokens), each a `Delta` (the text since the last
  one, the running token counts, the finish reason on the last one only);
- a CANCEL: a request to the vLLM model naming the ensemble request's id,
  which stops its generation (Triton passes a stream's cancellation on to no
  ensemble step that is already running).

`stream()` reads one request's responses to the stream's end, as every client
must: a stream given up after its last response keeps the ensemble referenced
in Triton (Triton 2.51) until its shutdown gives up waiting.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aio_grpcclient
from tritonclient.utils import InferenceServerException

from dsocr.triton.contract import ENSEMBLE, VLLM_MODEL


@dataclass(frozen=True)
class Delta:
    """What one or more consecutive responses of a request say."""

    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


def uint8_input(name: str, data: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [len(data)], "UINT8")
    tensor.set_data_from_numpy(np.frombuffer(data, dtype=np.uint8))
    return tensor


def request_inputs(image: bytes, prompt: str, parameters: dict[str, Any]) -> list[grpcclient.InferInput]:
    return [
        uint8_input("IMAGE", image),
        uint8_input("PROMPT", prompt.encode("utf-8")),
        uint8_input("PARAMETERS", json.dumps(parameters).encode("utf-8")),
    ]


def ensemble_request(image: bytes, prompt: str, parameters: dict[str, Any], request_id: str) -> dict[str, Any]:
    """One ensemble request, as `stream_infer`'s request iterator yields it."""
    return {"model_name": ENSEMBLE, "inputs": request_inputs(image, prompt, parameters), "request_id": request_id}


def cancel_request(request_id: str) -> dict[str, Any]:
    """The CANCEL of an ensemble request; the vLLM model answers it once, when the generation is stopped."""
    return {"model_name": VLLM_MODEL, "inputs": [uint8_input("CANCEL", request_id.encode("utf-8"))]}


def text_of(result: grpcclient.InferResult, name: str) -> str:
    return result.as_numpy(name).tobytes().decode("utf-8")


def delta(results: Sequence[grpcclient.InferResult]) -> Delta:
    """One delta of consecutive responses: their text, the last one's counts and finish reason."""
    last = results[-1]
    return Delta(
        text="".join(text_of(result, "TEXT") for result in results),
        finish_reason=text_of(last, "FINISH_REASON") or None,
        prompt_tokens=int(last.as_numpy("PROMPT_TOKENS")[0]),
        completion_tokens=int(last.as_numpy("COMPLETION_TOKENS")[0]),
    )


async def one_request(request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
    """`stream_infer`'s request iterator for one request: one request, one gRPC stream."""
    yield request


async def stream(
    client: aio_grpcclient.InferenceServerClient, request: dict[str, Any]
) -> AsyncIterator[grpcclient.InferResult]:
    """Every response of one request; a streamed error raises InferenceServerException at the stream's end.

    The stream is read to its end, an error's too: a gRPC stream cancelled
    while Triton 2.51 is still finishing its ensemble request now and then
    leaves that request behind, and with it the ensemble, loaded until the
    server's shutdown gives up waiting for it.
    """
    failure = None
    async for result, error in client.stream_infer(one_request(request)):
        if error is not None:
            failure = failure or error
        elif failure is None:
            yield result
    if failure is not None:
        raise failure


async def cancel(client: aio_grpcclient.InferenceServerClient, request_id: str) -> None:
    """Stop the generation of `request_id`; returns once the vLLM model has answered."""
    async for _ in stream(client, cancel_request(request_id)):
        pass


async def collect(url: str, request: dict[str, Any]) -> list[grpcclient.InferResult]:
    """Every response of one request on a client of its own (for scripts and tests)."""
    client = aio_grpcclient.InferenceServerClient(url)
    try:
        return [result async for result in stream(client, request)]
    finally:
        await client.close()


__all__ = [
    "Delta",
    "InferenceServerException",
    "cancel",
    "cancel_request",
    "collect",
    "delta",
    "ensemble_request",
    "one_request",
    "request_inputs",
    "stream",
    "text_of",
    "uint8_input",
]
