"""Documents through the engine: every page its own ensemble request, pages in flight bounded, results in order.

A request's pages run concurrently through the engine (the pool of Triton
servers: each page goes to the least busy one), at most `per_request` pages
of one request and `total` pages of all requests at once; a page waits for
capacity, it is never refused. A page is rendered only once it has its slots,
so a 1000-page PDF holds a handful of rendered pages at a time. Results come
back in page order: a page's deltas stream as they come once every page
before it is done, while later pages already run.

Closing the stream early (the client left, or a page failed) cancels every
page still waiting or running: each running page's engine stream is closed,
which stops its generation in vLLM (openai_frontend.engine).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from dsocr.documents.layout import PAGE_SPLIT
from dsocr.documents.render import DocumentRenderer, OpenedDocument, RenderedPage, RenderFailed
from dsocr.errors import RequestError
from dsocr.triton.client import Delta
from openai_frontend.engine import Engine
from openai_frontend.errors import OpenAIError, client_error, render_failed


@dataclass(frozen=True)
class Page:
    """One page to OCR: its index in its document, and how to get its image when its turn comes."""

    index: int
    image: Callable[[], Awaitable[RenderedPage]]


@dataclass(frozen=True)
class PageResult:
    page: RenderedPage
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class PageSlots:
    """The engine requests pages may hold: `total` at once over all requests, `per_request` for one."""

    def __init__(self, total: int, per_request: int) -> None:
        self.total = asyncio.Semaphore(total)
        self.per_request = per_request


_END = object()


class _Run:
    """One request's pages in flight: a page's failure stops them all at once, not when its turn comes."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task] = []
        self.error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
            self.cancel()

    def cancel(self) -> None:
        for task in self.tasks:
            task.cancel()


class PageRunner:
    """Runs requests' pages through one engine, bounded by one set of slots."""

    def __init__(self, engine: Engine, slots: PageSlots) -> None:
        self._engine, self._slots = engine, slots

    async def stream(
        self, pages: list[Page], prompt: str, parameters: dict
    ) -> AsyncGenerator[Delta | PageResult, None]:
        """Every page's deltas, then its result, page after page in order."""
        request_slots = asyncio.Semaphore(self._slots.per_request)
        run = _Run()
        queues: list[asyncio.Queue] = [asyncio.Queue() for _ in pages]
        run.tasks = [
            asyncio.ensure_future(self._page(page, prompt, parameters, request_slots, queue, run))
            for page, queue in zip(pages, queues, strict=True)
        ]
        try:
            for task, queue in zip(run.tasks, queues, strict=True):
                while (item := await queue.get()) is not _END:
                    yield item
                if run.error is not None:
                    raise run.error
                yield await task
        finally:
            run.cancel()
            # Each cancelled page closes its engine stream (stopping its generation) as it unwinds.
            await asyncio.gather(*run.tasks, return_exceptions=True)

    async def results(self, pages: list[Page], prompt: str, parameters: dict) -> AsyncGenerator[PageResult, None]:
        """Every page's result, in order."""
        async with contextlib.aclosing(self.stream(pages, prompt, parameters)) as items:
            async for item in items:
                if isinstance(item, PageResult):
                    yield item

    async def deltas(self, pages: list[Page], prompt: str, parameters: dict) -> AsyncGenerator[Delta, None]:
        """The pages as one completion: their text in order, joined by DeepSeek's page split marker, the
        token counts running over all pages, one finish reason at the end ("length" if any page was cut)."""
        prompt_tokens = completion_tokens = 0
        cut = False
        async with contextlib.aclosing(self.stream(pages, prompt, parameters)) as items:
            position = 0
            async for item in items:
                if isinstance(item, PageResult):
                    prompt_tokens += item.prompt_tokens
                    completion_tokens += item.completion_tokens
                    cut = cut or item.finish_reason == "length"
                    position += 1
                    if position < len(pages):
                        yield Delta(PAGE_SPLIT, None, prompt_tokens, completion_tokens)
                elif item.text:
                    yield Delta(item.text, None, prompt_tokens + item.prompt_tokens,
                                completion_tokens + item.completion_tokens)  # fmt: skip
        yield Delta("", "length" if cut else "stop", prompt_tokens, completion_tokens)

    async def _page(
        self,
        page: Page,
        prompt: str,
        parameters: dict,
        request_slots: asyncio.Semaphore,
        queue: asyncio.Queue,
        run: _Run,
    ) -> PageResult:
        try:
            # The request's own slot first: a large document's waiting pages
            # must not hold the shared slots other requests' pages could use.
            async with request_slots, self._slots.total:
                return await self._generate(await page.image(), prompt, parameters, queue)
        except OpenAIError as exc:
            run.fail(exc.prefixed(f"page {page.index}: "))
            raise
        except RequestError as exc:  # a page the renderer refuses; it names the page
            run.fail(client_error(exc))
            raise
        except RenderFailed as exc:
            run.fail(render_failed(exc))
            raise
        except Exception as exc:  # a fault of ours: still no reason to let the other pages run
            run.fail(exc)
            raise
        finally:
            queue.put_nowait(_END)

    async def _generate(self, page: RenderedPage, prompt: str, parameters: dict, queue: asyncio.Queue) -> PageResult:
        text: list[str] = []
        last: Delta | None = None
        async with contextlib.aclosing(self._engine.generate(page.image, prompt, parameters)) as deltas:
            async for delta in deltas:
                text.append(delta.text)
                queue.put_nowait(delta)
                last = delta
        if last is None or last.finish_reason is None:
            raise OpenAIError("the model server ended the page without a finish reason", code="model_error")
        return PageResult(page, "".join(text), last.finish_reason, last.prompt_tokens, last.completion_tokens)


def document_pages(renderer: DocumentRenderer, document: OpenedDocument, indices: list[int], dpi: int) -> list[Page]:
    """The selected pages of an opened document, each rendered when its turn comes."""

    def image(index: int) -> Callable[[], Awaitable[RenderedPage]]:
        return lambda: renderer.render(document, index, dpi)

    return [Page(index, image(index)) for index in indices]
