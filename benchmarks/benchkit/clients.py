"""The clients that drive the systems, and what Triton says about a run.

`OpenAIChat` is the one HTTP client for both OpenAI-compatible servers (our
frontend and `vllm serve`): the same request body, streaming parser and
clock, so only the server differs. Each server gets its own extension
fields (`extra_body`) to ask for the same work: a fixed number of tokens
(ignore_eos), DeepSeek's n-gram rule, special tokens kept.

`InProcessEngineClient` drives (d), vLLM's AsyncLLM in a process of its own
(benchkit.asyncllm): one POST of the image per request, timed in that process.

`TritonEnsemble` is a direct gRPC client of the ensemble, one stream per
request, as the frontend itself talks to Triton: the frontend's added cost is
the difference between the two.
"""

from __future__ import annotations

import json
import re
import uuid

import httpx
import tritonclient.grpc.aio as grpcclient
from tritonclient.utils import InferenceServerException

from benchmarks.benchkit.asyncllm import GENERATE_PATH
from benchmarks.benchkit.images import Sample
from benchmarks.benchkit.load import RequestResult, Stopwatch
from dsocr.triton import client as ensemble

HTTP_TIMEOUT_S = 1800.0  # a CPU level of many tiled pages takes minutes


class ServerError(RuntimeError):
    pass


class InProcessEngineClient:
    """Sends one request per call to (d)'s process; the request is timed there, where the engine runs."""

    def __init__(self, base_url: str, concurrency: int = 64) -> None:
        self._url = base_url.rstrip("/") + GENERATE_PATH
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, limits=limits)

    async def __call__(self, image: Sample) -> RequestResult:
        response = await self._http.post(self._url, content=image.data)
        if response.status_code != 200:
            raise ServerError(f"{self._url}: {response.status_code} {response.text[:500]}")
        return RequestResult(**response.json())

    async def close(self) -> None:
        await self._http.aclose()


class OpenAIChat:
    """Streams one chat completion per call (image + instruction) and times it."""

    def __init__(
        self, base_url: str, model: str, instruction: str, max_tokens: int, extra_body: dict, concurrency: int = 64
    ) -> None:
        self._url = base_url.rstrip("/") + "/v1/chat/completions"
        self._model, self._instruction, self._max_tokens = model, instruction, max_tokens
        self._extra_body = extra_body
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT_S, limits=limits)

    def body(self, image: Sample) -> dict:
        content = [
            {"type": "image_url", "image_url": {"url": image.data_url}},
            {"type": "text", "text": self._instruction},
        ]
        return {
            "model": self._model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": self._max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self._extra_body,
        }

    async def __call__(self, image: Sample) -> RequestResult:
        clock, usage = Stopwatch(), None
        async with self._http.stream("POST", self._url, json=self.body(image)) as response:
            if response.status_code != 200:
                raise ServerError(f"{self._url}: {response.status_code} {(await response.aread()).decode()[:500]}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[len("data: ") :])
                if "error" in chunk:
                    raise ServerError(f"{self._url}: {chunk['error']}")
                for choice in chunk.get("choices") or ():
                    clock.saw((choice.get("delta") or {}).get("content"))
                usage = chunk.get("usage") or usage
        if usage is None:
            raise ServerError(f"{self._url}: the stream carried no usage")
        return clock.result(usage["prompt_tokens"], usage["completion_tokens"])

    async def close(self) -> None:
        await self._http.aclose()


class TritonEnsemble:
    """One streamed ensemble request per call over gRPC, timed like `OpenAIChat`."""

    def __init__(self, url: str, prompt: str, parameters: dict) -> None:
        self._client = grpcclient.InferenceServerClient(url)
        self._prompt, self._parameters = prompt, parameters

    async def __call__(self, image: Sample) -> RequestResult:
        request = ensemble.ensemble_request(image.data, self._prompt, self._parameters, uuid.uuid4().hex)
        clock, measured = Stopwatch(), None
        try:
            async for result in ensemble.stream(self._client, request):
                delta = ensemble.delta([result])
                clock.saw(delta.text)
                if delta.finish_reason:
                    measured = clock.result(delta.prompt_tokens, delta.completion_tokens)
        except InferenceServerException as exc:
            raise ServerError(f"ensemble: {exc}") from exc
        if measured is None:
            raise ServerError("ensemble: the stream ended without a finish reason")
        return measured

    async def close(self) -> None:
        await self._client.close()


# --- what Triton measured ------------------------------------------------------------

STAT_KINDS = ("queue", "compute_input", "compute_infer", "compute_output")


def triton_stats(http_url: str) -> dict[str, dict[str, tuple[int, int]]]:
    """Per model: (count, total ns) of each stage of Triton's statistics extension."""
    body = httpx.get(f"{http_url.rstrip('/')}/v2/models/stats", timeout=10).raise_for_status().json()
    stats = {}
    for model in body["model_stats"]:
        inference = model["inference_stats"]
        stats[model["name"]] = {
            kind: (int(inference[kind]["count"]), int(inference[kind]["ns"])) for kind in (*STAT_KINDS, "success")
        }
    return stats


_SAMPLE = re.compile(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$")


def prometheus_values(metrics_url: str, names: tuple[str, ...]) -> dict[str, float]:
    """The sum over labels of each named sample on Triton's metrics endpoint (0 when absent)."""
    text = httpx.get(f"{metrics_url.rstrip('/')}/metrics", timeout=10).raise_for_status().text
    values = dict.fromkeys(names, 0.0)
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1) in values:
            values[match.group(1)] += float(match.group(3))
    return values
