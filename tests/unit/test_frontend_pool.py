"""Several Triton servers as one engine: routing to the least busy ready one, and closing through."""

from __future__ import annotations

import asyncio

import pytest

from dsocr.triton.client import Delta
from openai_frontend.errors import Unavailable
from openai_frontend.pool import TritonPool


class Server:
    """A Triton server double: ready or not, streams until told to finish, records closes."""

    def __init__(self, name: str, ready: bool = True, fails: bool = False, fails_after_first: bool = False):
        self.name = name
        self.is_ready = ready
        self.fails = fails
        self.fails_after_first = fails_after_first
        self.finish = asyncio.Event()
        self.closed_streams = 0
        self.probes = 0

    async def ready(self) -> bool:
        self.probes += 1
        return self.is_ready

    async def generate(self, image, prompt, parameters):
        try:
            if self.fails:
                raise Unavailable(f"{self.name} is down")
            yield Delta(self.name, None, 1, 1)
            if self.fails_after_first:
                raise Unavailable(f"{self.name} went down")
            await self.finish.wait()
            yield Delta("", "stop", 1, 2)
        finally:
            self.closed_streams += 1

    async def close(self) -> None:
        pass


async def first_of(pool: TritonPool):
    stream = pool.generate(b"img", "<image>\nFree OCR.", {})
    return stream, await anext(stream)


def test_requests_spread_over_ready_servers_by_requests_in_flight():
    async def scenario():
        a, b, down = Server("a"), Server("b"), Server("down", ready=False)
        pool = TritonPool([a, down, b])
        assert await pool.ready()
        streams = [await first_of(pool) for _ in range(4)]
        assert [delta.text for _, delta in streams] == ["a", "b", "a", "b"]
        for stream, _ in streams:
            await stream.aclose()
        assert a.closed_streams == b.closed_streams == 2 and down.closed_streams == 0

    asyncio.run(scenario())


def test_closing_the_pools_stream_closes_the_servers_stream():
    async def scenario():
        server = Server("a")
        pool = TritonPool([server])
        stream, _ = await first_of(pool)
        await stream.aclose()  # what a client leaving mid-stream does
        assert server.closed_streams == 1

    asyncio.run(scenario())


def test_with_no_server_ready_a_request_still_tries_every_server_then_fails():
    async def scenario():
        dead = Server("dead", ready=False, fails=True)
        pool = TritonPool([dead])
        assert not await pool.ready()
        with pytest.raises(Unavailable, match="dead is down"):
            await first_of(pool)

        pool = TritonPool([Server("a", ready=False, fails=True), Server("b", ready=False, fails=True)])
        with pytest.raises(Unavailable, match="is down"):
            await first_of(pool)

    asyncio.run(scenario())


def test_a_request_an_unavailable_server_refuses_moves_to_the_next_and_that_server_is_marked_down():
    async def scenario():
        flaky, good = Server("flaky", fails=True), Server("good")
        pool = TritonPool([flaky, good])
        await pool.ready()
        stream, delta = await first_of(pool)
        assert delta.text == "good" and flaky.closed_streams == 1
        await stream.aclose()
        # Marked down: the next requests go to the other server, even when it is busier.
        streams = [await first_of(pool) for _ in range(2)]
        assert [delta.text for _, delta in streams] == ["good", "good"]
        assert flaky.closed_streams == 1

    asyncio.run(scenario())


def test_a_server_failing_after_output_was_streamed_fails_the_request():
    async def scenario():
        dying, good = Server("dying", fails_after_first=True), Server("good")
        pool = TritonPool([dying, good])
        await pool.ready()
        stream, delta = await first_of(pool)
        assert delta.text == "dying"
        with pytest.raises(Unavailable, match="dying went down"):
            await anext(stream)
        assert good.closed_streams == 0  # not retried: the client has part of the answer

    asyncio.run(scenario())


def test_readiness_is_probed_in_the_background_only_with_servers_to_choose_between(monkeypatch):
    monkeypatch.setattr("openai_frontend.pool.PROBE_INTERVAL_S", 0.01)

    async def probes(servers: list[Server]) -> list[int]:
        pool = TritonPool(servers)
        await pool.start()
        await asyncio.sleep(0.2)
        await pool.close()
        return [server.probes for server in servers]

    assert asyncio.run(probes([Server("only")])) == [1]  # at the start only
    assert all(count > 5 for count in asyncio.run(probes([Server("a"), Server("b")])))
