"""Several Triton servers behind one frontend (one per GPU pod), as one engine.

Each request goes to the ready server with the fewest requests in flight.
gRPC keeps one connection per address, so spreading requests here, rather
than behind a load-balanced address, is what uses every server. Readiness is
probed in the background, so a request never waits on a probe; a server whose
request found it unavailable counts as not ready until a probe says otherwise.
With no server known ready a request still tries the least busy one: its
error (503) then says what is wrong, and a probe's stale answer never refuses
a request a server could serve.

A request that a server answers "unavailable" before any output (it stopped,
is stopping, or its engine died) moves to the next server: OCR has no side
effects, and nothing has reached the client yet. Once output has been
streamed, the error goes to the client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from dsocr.triton.client import Delta
from openai_frontend.engine import Engine, TritonEngine
from openai_frontend.errors import Unavailable

PROBE_INTERVAL_S = 2.0


class TritonPool:
    def __init__(self, servers: list[Engine]):
        self._servers = servers
        self._in_flight = [0] * len(servers)
        self._ready = [False] * len(servers)
        self._prober: asyncio.Task | None = None

    @classmethod
    async def connect(cls, urls: list[str]) -> TritonPool:
        pool = cls([TritonEngine(url) for url in urls])
        await pool.start()
        return pool

    async def start(self) -> None:
        """Probe readiness now and, with servers to choose between, every PROBE_INTERVAL_S. One server gets
        every request, ready or not (its error says what is wrong), and /health/ready probes it afresh: a
        background probe would only cost CPU while the service is idle."""
        await self._probe()
        if len(self._servers) > 1:
            self._prober = asyncio.create_task(self._probe_forever())

    async def ready(self) -> bool:
        await self._probe()
        return any(self._ready)

    async def generate(self, image: bytes, prompt: str, parameters: dict) -> AsyncGenerator[Delta, None]:
        tried: set[int] = set()
        while True:
            index = self._pick(tried)
            tried.add(index)
            streamed = False
            self._in_flight[index] += 1
            try:
                # aclosing: closing this stream must close the server's, which cancels the Triton request.
                async with contextlib.aclosing(self._servers[index].generate(image, prompt, parameters)) as deltas:
                    async for delta in deltas:
                        streamed = True
                        yield delta
                return
            except Unavailable:
                self._ready[index] = False
                if streamed or len(tried) == len(self._servers):
                    raise
            finally:
                self._in_flight[index] -= 1

    def _pick(self, tried: set[int]) -> int:
        untried = [i for i in range(len(self._servers)) if i not in tried]
        candidates = [i for i in untried if self._ready[i]] or untried
        return min(candidates, key=lambda i: self._in_flight[i])

    async def _probe(self) -> None:
        self._ready = list(await asyncio.gather(*(server.ready() for server in self._servers)))

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL_S)
            await self._probe()

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        await asyncio.gather(*(server.close() for server in self._servers))
