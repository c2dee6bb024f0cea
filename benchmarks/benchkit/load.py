"""Closed-loop load and the figures every system is compared on.

A level is `concurrency` workers, each sending its next request as soon as
its last one finished, until `requests` have been sent. Throughput is
requests (images) and generated tokens over the level's wall time; latency
percentiles are over its requests. Time to first token is the time to the
first response that carries text, the same rule for every system (a role
chunk or an empty delta is not a token).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from benchmarks.benchkit.images import Sample


@dataclass(frozen=True)
class RequestResult:
    ttft_s: float
    e2e_s: float
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class LevelResult:
    concurrency: int
    requests: int
    wall_s: float
    images_per_s: float
    output_tokens_per_s: float
    ttft_p50_s: float
    ttft_p95_s: float
    e2e_p50_s: float
    e2e_p95_s: float
    prompt_tokens: list[int]  # distinct values seen: one, when every system does the same work
    completion_tokens: list[int]
    # Every request's (ttft_s, e2e_s, prompt_tokens, completion_tokens): what levels measured in
    # several passes are pooled from.
    samples: list[tuple[float, float, int, int]]

    def to_dict(self) -> dict:
        return asdict(self)


def pooled(levels: Sequence[dict]) -> dict:
    """One level from the same level measured in several passes: all their requests over all their time."""
    results = [RequestResult(*sample) for level in levels for sample in level["samples"]]
    level = summarise(levels[0]["concurrency"], results, sum(level["wall_s"] for level in levels)).to_dict()
    return {**level, "images_per_s_by_pass": [one["images_per_s"] for one in levels]}


Send = Callable[[Sample], Awaitable[RequestResult]]


class Stopwatch:
    """One request's clock: started at send, marks the first text and the end."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first_text: float | None = None

    def saw(self, text: str | None) -> None:
        if text and self.first_text is None:
            self.first_text = time.perf_counter()

    def result(self, prompt_tokens: int, completion_tokens: int) -> RequestResult:
        ended = time.perf_counter()
        first = self.first_text if self.first_text is not None else ended
        return RequestResult(first - self.started, ended - self.started, prompt_tokens, completion_tokens)


def summarise(concurrency: int, results: Sequence[RequestResult], wall_s: float) -> LevelResult:
    ttft = np.array([r.ttft_s for r in results])
    e2e = np.array([r.e2e_s for r in results])
    return LevelResult(
        concurrency=concurrency,
        requests=len(results),
        wall_s=wall_s,
        images_per_s=len(results) / wall_s,
        output_tokens_per_s=sum(r.completion_tokens for r in results) / wall_s,
        ttft_p50_s=float(np.percentile(ttft, 50)),
        ttft_p95_s=float(np.percentile(ttft, 95)),
        e2e_p50_s=float(np.percentile(e2e, 50)),
        e2e_p95_s=float(np.percentile(e2e, 95)),
        prompt_tokens=sorted({r.prompt_tokens for r in results}),
        completion_tokens=sorted({r.completion_tokens for r in results}),
        samples=[(r.ttft_s, r.e2e_s, r.prompt_tokens, r.completion_tokens) for r in results],
    )


async def run_level(send: Send, images: Sequence[Sample], concurrency: int, requests: int) -> LevelResult:
    """Send `requests` requests, `concurrency` at a time, cycling through `images`."""
    indices = iter(range(requests))  # shared by the workers: one event loop, no locking needed

    async def worker() -> list[RequestResult]:
        return [await send(images[index % len(images)]) for index in indices]

    started = time.perf_counter()
    per_worker = await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall_s = time.perf_counter() - started
    return summarise(concurrency, [r for results in per_worker for r in results], wall_s)


def requests_for(concurrency: int, per_worker: int, minimum: int) -> int:
    """Enough requests that every worker sends `per_worker`, and p95 has samples."""
    return max(concurrency * per_worker, minimum)
