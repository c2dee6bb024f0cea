"""Which document sends pages next: pages in flight bounded, documents taking turns so that a short document
never waits for a long one, requests sized to the free slots."""

from __future__ import annotations

import asyncio
from pathlib import Path, PurePosixPath

import pytest

from dsocr.batch.documents import DocumentJob, RequestOptions, Survey
from dsocr.batch.inputs import InputDocument
from dsocr.batch.scheduler import Scheduler


def job(name: str, pages: int | None) -> DocumentJob:
    document = InputDocument(Path(f"{name}.pdf"), PurePosixPath(f"{name}.pdf"), f"{name}.pdf")
    selected = None if pages is None else tuple(range(pages))
    return DocumentJob(document, Survey("0" * 64, 10, "pdf" if pages else None, pages, selected), RequestOptions())


def turns_of(scheduler: Scheduler, count: int):
    async def take():
        return [await asyncio.wait_for(scheduler.next_turn(), 1) for _ in range(count)]

    return take()


def test_a_one_page_document_goes_before_the_rest_of_a_long_one():
    async def scenario():
        scheduler = Scheduler(concurrency=100, pages_per_request=4, documents_in_flight=8)
        long, short = job("long", 500), job("short", 1)
        await scheduler.arrive(long)
        first = await scheduler.next_turn()
        await scheduler.arrive(short)
        second, third = await turns_of(scheduler, 2)
        return first, second, third, long, short

    first, second, third, long, short = asyncio.run(scenario())
    assert (first.job, first.pages) == (long, [0, 1, 2, 3])
    assert (second.job, second.pages, second.slots) == (short, [0], 1)
    assert (third.job, third.pages) == (long, [4, 5, 6, 7])


def test_documents_in_flight_take_turns():
    async def scenario():
        scheduler = Scheduler(concurrency=100, pages_per_request=2, documents_in_flight=2)
        a, b, c = job("a", 6), job("b", 6), job("c", 2)
        for each in (a, b, c):
            await scheduler.arrive(each)
        turns = await turns_of(scheduler, 6)
        return [turn.job.document.key[0] for turn in turns]

    # a and b are admitted one after the other and then alternate; c waits for a place (2 in flight).
    assert asyncio.run(scenario()) == ["a", "b", "a", "b", "a", "b"]


def test_pages_in_flight_never_pass_the_concurrency_and_requests_shrink_to_the_free_slots():
    async def scenario():
        scheduler = Scheduler(concurrency=5, pages_per_request=4, documents_in_flight=8)
        await scheduler.arrive(job("a", 20))
        first, second = await turns_of(scheduler, 2)
        assert (len(first.pages), len(second.pages), scheduler.free) == (4, 1, 0)
        with pytest.raises(TimeoutError):  # no slot: the next turn waits
            await asyncio.wait_for(scheduler.next_turn(), 0.1)
        await scheduler.answered(first)
        third = await asyncio.wait_for(scheduler.next_turn(), 1)
        return third

    assert asyncio.run(scenario()).pages == [5, 6, 7, 8]


def test_a_document_the_client_cannot_open_is_one_whole_request():
    async def scenario():
        scheduler = Scheduler(concurrency=4, pages_per_request=2, documents_in_flight=4)
        unknown = job("encrypted", None)
        await scheduler.arrive(unknown)
        await scheduler.no_more_documents()
        turn = await scheduler.next_turn()
        return turn, await asyncio.wait_for(scheduler.next_turn(), 1)

    turn, after = asyncio.run(scenario())
    assert (turn.pages, turn.slots) == (None, 1)
    assert after is None  # every page handed out


def test_a_finished_document_frees_its_place_and_drops_its_pages():
    async def scenario():
        scheduler = Scheduler(concurrency=10, pages_per_request=2, documents_in_flight=1)
        failing, waiting = job("failing", 8), job("waiting", 2)
        await scheduler.arrive(failing)
        await scheduler.arrive(waiting)
        first = await scheduler.next_turn()
        await scheduler.finished(failing)  # it failed: its other 6 pages are never sent
        await scheduler.no_more_documents()
        second = await asyncio.wait_for(scheduler.next_turn(), 1)
        await scheduler.finished(waiting)
        return first, second, await asyncio.wait_for(scheduler.next_turn(), 1)

    first, second, last = asyncio.run(scenario())
    assert (first.job.document.key, second.job.document.key, second.pages) == ("failing.pdf", "waiting.pdf", [0, 1])
    assert last is None
