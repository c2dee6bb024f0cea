"""Which document sends pages next.

Pages in flight are bounded (`concurrency`: what the service is sized for; more would only wait in
its queue while holding a connection each). Documents in flight take turns: each turn sends the
next few pages (`pages_per_request`) of one document, then the document goes to the back of the
line. A document that arrives while a 500-page one is running joins the line at once (up to
`documents_in_flight` at a time), so its first request waits for one turn of each document
ahead of it, not for the 500 pages. A request is never larger than the slots free at the moment
of its turn, so the slots stay full.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from dsocr.batch.documents import DocumentJob


@dataclass(frozen=True)
class Turn:
    job: DocumentJob
    pages: list[int] | None  # None: the whole document, one request
    slots: int  # pages this request holds in flight until it is answered


class Scheduler:
    def __init__(self, concurrency: int, pages_per_request: int, documents_in_flight: int) -> None:
        if min(concurrency, pages_per_request, documents_in_flight) < 1:
            raise ValueError("concurrency, pages per request and documents in flight must be at least 1")
        self.free = concurrency
        self.pages_per_request = pages_per_request
        self.documents_in_flight = documents_in_flight
        self._arrived: deque[DocumentJob] = deque()  # surveyed, waiting for a place in line
        self._line: deque[DocumentJob] = deque()  # in flight with pages still to send
        self._in_flight = 0  # documents admitted and not finished
        self._no_more = False
        self._changed = asyncio.Condition()

    async def arrive(self, job: DocumentJob) -> None:
        async with self._changed:
            self._arrived.append(job)
            self._changed.notify_all()

    async def no_more_documents(self) -> None:
        async with self._changed:
            self._no_more = True
            self._changed.notify_all()

    async def next_turn(self) -> Turn | None:
        """The next request to send, once a slot is free; None when every page has been handed out."""
        async with self._changed:
            await self._changed.wait_for(self._can_go_on)
            self._admit()
            if not self._line:
                return None
            job = self._line.popleft()
            pages = job.take(min(self.pages_per_request, self.free))
            slots = job.expected_pages if pages is None else len(pages)
            self.free -= slots
            if job.has_pending:
                self._line.append(job)
            return Turn(job, pages, slots)

    async def answered(self, turn: Turn) -> None:
        """A request is over (answered, failed or cancelled): its slots are free again."""
        async with self._changed:
            self.free += turn.slots
            self._changed.notify_all()

    async def finished(self, job: DocumentJob) -> None:
        """A document is done or failed: its pages not yet sent are dropped, its place is free."""
        async with self._changed:
            job.drop_pending()
            if job in self._line:
                self._line.remove(job)
            self._in_flight -= 1
            self._changed.notify_all()

    def _can_go_on(self) -> bool:
        if self.free <= 0:
            return False
        admissible = bool(self._arrived) and self._in_flight < self.documents_in_flight
        everything_handed_out = self._no_more and not self._arrived and not self._line
        return bool(self._line) or admissible or everything_handed_out

    def _admit(self) -> None:
        """At most one document per turn: the line alternates between newcomers and those in it."""
        if self._arrived and self._in_flight < self.documents_in_flight:
            self._line.appendleft(self._arrived.popleft())
            self._in_flight += 1
