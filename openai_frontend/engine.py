"""The engine behind the API: the Triton ensemble, over tritonclient's asyncio gRPC.

One gRPC stream per request. The ensemble takes the raw image bytes (never
base64), the prompt and a JSON of settings, all as UINT8 tensors, and streams
responses carrying a text delta, the finish reason (on the last one) and the
token counts.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

ENSEMBLE = "deepseek_ocr"


@dataclass(frozen=True)
class Delta:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


def _uint8(name: str, data: bytes) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, [len(data)], "UINT8")
    tensor.set_data_from_numpy(np.frombuffer(data, dtype=np.uint8))
    return tensor


class TritonEngine:
    def __init__(self, url: str):
        self._client = grpcclient.InferenceServerClient(url)

    async def ready(self) -> bool:
        try:
            return await self._client.is_server_ready() and await self._client.is_model_ready(ENSEMBLE)
        except InferenceServerException:
            return False

    async def generate(self, image: bytes, prompt: str, settings: dict) -> AsyncIterator[Delta]:
        inputs = [
            _uint8("IMAGE", image),
            _uint8("PROMPT", prompt.encode("utf-8")),
            _uint8("PARAMETERS", json.dumps(settings).encode("utf-8")),
        ]

        async def requests():
            yield {"model_name": ENSEMBLE, "inputs": inputs}

        async for result, error in self._client.stream_infer(requests()):
            if error is not None:
                raise error
            finish = result.as_numpy("FINISH_REASON").tobytes().decode()
            yield Delta(
                text=result.as_numpy("TEXT").tobytes().decode("utf-8"),
                finish_reason=finish or None,
                prompt_tokens=int(result.as_numpy("PROMPT_TOKENS")[0]),
                completion_tokens=int(result.as_numpy("COMPLETION_TOKENS")[0]),
            )
            if finish:
                return

    async def close(self) -> None:
        await self._client.close()
