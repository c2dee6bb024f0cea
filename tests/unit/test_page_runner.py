"""The page fan-out's scheduling: order, the in-flight bounds, failures and cancellation.

An engine double plays each page (the scheduling is what is under test; pages through the real
stack are in tests/server/test_documents.py).
"""

from __future__ import annotations

import asyncio

import pytest

from dsocr.documents.layout import PAGE_SPLIT
from dsocr.documents.render import RenderedPage
from dsocr.triton.client import Delta
from openai_frontend.documents import Page, PageResult, PageRunner, PageSlots
from openai_frontend.errors import BadRequest

PROMPT_TOKENS = 100


class PagedEngine:
    """Answers a page (its image bytes: b"page-N") with `tokens[N]` deltas, `delay_s[N]` apart."""

    def __init__(self, tokens: list[int], delay_s: list[float], fail: int | None = None) -> None:
        self.tokens, self.delay_s, self.fail = tokens, delay_s, fail
        self.in_flight = self.most_in_flight = 0
        self.closed: list[int] = []
        self.finished: list[int] = []

    async def generate(self, image: bytes, prompt: str, parameters: dict):
        n = int(image.decode().removeprefix("page-"))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            for step in range(self.tokens[n]):
                await asyncio.sleep(self.delay_s[n])
                if n == self.fail:
                    raise BadRequest("IMAGE is not a decodable image", code="invalid_request")
                last = step == self.tokens[n] - 1
                yield Delta(f"p{n}t{step} ", "length" if last else None, PROMPT_TOKENS + n, step + 1)
            self.finished.append(n)
        finally:
            self.in_flight -= 1
            if n not in self.finished:
                self.closed.append(n)


def pages(count: int) -> list[Page]:
    async def image(n: int) -> RenderedPage:
        return RenderedPage(n, f"page-{n}".encode(), 10, 10, 144)

    return [Page(n, lambda n=n: image(n)) for n in range(count)]


async def results(runner: PageRunner, count: int) -> list[PageResult]:
    return [result async for result in runner.results(pages(count), "<image>\nFree OCR.", {})]


def test_results_come_in_page_order_whatever_order_pages_finish_in():
    engine = PagedEngine(tokens=[3, 3, 3, 3], delay_s=[0.04, 0.01, 0.03, 0.0])
    got = asyncio.run(results(PageRunner(engine, PageSlots(total=8, per_request=8)), 4))
    assert [result.page.index for result in got] == [0, 1, 2, 3]
    assert engine.finished != [0, 1, 2, 3]  # they did finish out of order
    assert [result.text for result in got] == [f"p{n}t0 p{n}t1 p{n}t2 " for n in range(4)]
    assert [(r.prompt_tokens, r.completion_tokens, r.finish_reason) for r in got] == [
        (PROMPT_TOKENS + n, 3, "length") for n in range(4)
    ]


def test_pages_in_flight_are_bounded_per_request_and_in_total():
    engine = PagedEngine(tokens=[2] * 12, delay_s=[0.01] * 12)
    runner = PageRunner(engine, PageSlots(total=3, per_request=2))
    asyncio.run(results(runner, 6))
    assert engine.most_in_flight == 2  # one request: its own bound

    async def two_requests():
        return await asyncio.gather(results(runner, 6), results(runner, 6))

    engine.most_in_flight = 0
    first, second = asyncio.run(two_requests())
    assert engine.most_in_flight == 3  # together: the shared bound
    assert len(first) == len(second) == 6  # waiting pages wait; none is refused


def test_a_failing_page_is_named_and_stops_the_pages_still_running():
    engine = PagedEngine(tokens=[2, 50, 50, 50], delay_s=[0.01, 0.01, 0.05, 0.01], fail=2)
    with pytest.raises(BadRequest, match=r"^page 2: IMAGE is not a decodable image") as error:
        asyncio.run(results(PageRunner(engine, PageSlots(total=8, per_request=8)), 4))
    assert error.value.code == "invalid_request"
    assert sorted(engine.closed) == [1, 2, 3]  # page 0 had finished; the others were stopped


def test_closing_the_stream_early_stops_every_page():
    engine = PagedEngine(tokens=[50] * 6, delay_s=[0.01] * 6)
    runner = PageRunner(engine, PageSlots(total=8, per_request=3))

    async def first_delta_then_leave():
        stream = runner.stream(pages(6), "<image>\nFree OCR.", {})
        first = await anext(stream)
        await stream.aclose()
        return first

    assert isinstance(asyncio.run(first_delta_then_leave()), Delta)
    assert sorted(engine.closed) == [0, 1, 2]  # the three running; the three waiting never started
    assert engine.finished == []


def test_deltas_are_the_pages_as_one_completion():
    engine = PagedEngine(tokens=[2, 1, 2], delay_s=[0.02, 0.0, 0.01])
    runner = PageRunner(engine, PageSlots(total=8, per_request=8))

    async def collect():
        return [delta async for delta in runner.deltas(pages(3), "<image>\nFree OCR.", {})]

    deltas = asyncio.run(collect())
    assert "".join(d.text for d in deltas) == PAGE_SPLIT.join(["p0t0 p0t1 ", "p1t0 ", "p2t0 p2t1 "])
    assert [d.finish_reason for d in deltas[:-1]] == [None] * (len(deltas) - 1)
    assert deltas[-1].finish_reason == "length"
    assert (deltas[-1].prompt_tokens, deltas[-1].completion_tokens) == (3 * PROMPT_TOKENS + 0 + 1 + 2, 5)
    running = [d.completion_tokens for d in deltas]
    assert running == sorted(running)  # the counts only grow, over all pages
