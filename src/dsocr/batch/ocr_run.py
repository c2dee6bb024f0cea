"""`dsocr ocr`: a corpus of documents through `/v1/ocr`, written to OUT_DIR.

Three things run at once:

- the survey reads each document, hashes it, skips it when OUT_DIR already holds its outputs for
  that hash (outputs.py), counts its pages (documents.py) and hands it to the scheduler; the
  totals the progress shows grow as it goes;
- the dispatcher takes turns from the scheduler (scheduler.py) and sends each as a request (a PDF's
  carrying only its own pages, documents.py);
- the requests: each answer is kept with its document; when a document's last page is in, its
  outputs are written (figures, layout pictures, markdown, then the record). A document whose
  request fails for good (after the client's retries) is recorded in errors.jsonl, its other
  requests are cancelled, and the run goes on.

Cancelled (Ctrl-C, SIGTERM), the run cancels its requests, which closes their connections, and
the service stops their pages in the engine; a document whose outputs were being written is
finished, any other is left unwritten, to be done by the next run.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dsocr.batch import layout
from dsocr.batch.client import ApiClient, ApiError
from dsocr.batch.documents import DocumentJob, RequestOptions, survey
from dsocr.batch.inputs import InputDocument
from dsocr.batch.outputs import DocumentOutputs, ErrorLog, atomic_write, partial_path, remove_partials
from dsocr.batch.progress import Progress
from dsocr.batch.renderer import client_renderer
from dsocr.batch.scheduler import Scheduler, Turn
from dsocr.documents.errors import DocumentError
from dsocr.documents.limits import DocumentLimits
from dsocr.documents.render import DocumentRenderer, RenderFailed

LAYOUTS = ("png", "pdf")
# The client counts pages and renders layout pictures; what a document may be is the service's to
# decide, so the client's own limits only keep it from hanging on a hostile file.
CLIENT_LIMITS = DocumentLimits(
    max_bytes=1 << 40, max_pages=1_000_000, max_page_pixels=1 << 34, min_dpi=1, max_dpi=10_000
)


@dataclass(frozen=True)
class OcrSettings:
    out_dir: Path
    options: RequestOptions = field(default_factory=RequestOptions)
    concurrency: int = 64  # pages in flight: the service's DSOCR_MAX_PAGES_IN_FLIGHT default
    pages_per_request: int = 4
    documents_in_flight: int | None = None  # default: `concurrency`
    layout: str | None = None  # "png", "pdf" or None
    render_workers: int = 2


class OcrRun:
    def __init__(
        self, documents: list[InputDocument], client: ApiClient, settings: OcrSettings, progress: Progress
    ) -> None:
        self.documents = documents
        self.client = client
        self.settings = settings
        self.progress = progress
        self.tally = progress.tally
        self.scheduler = Scheduler(
            settings.concurrency, settings.pages_per_request, settings.documents_in_flight or settings.concurrency
        )
        self._requests: dict[DocumentJob, set[asyncio.Task[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._writes: set[asyncio.Future[None]] = set()
        self._errors: ErrorLog | None = None

    async def run(self) -> None:
        """Until every document is done or failed, or the run is cancelled (then tally.interrupted)."""
        out_dir = self.settings.out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_partials(out_dir)
        self._errors = ErrorLog(out_dir)
        self.tally.items = len(self.documents)
        async with client_renderer(self.settings.render_workers, CLIENT_LIMITS) as renderer:
            surveying = asyncio.create_task(self._survey(renderer))
            try:
                await self._dispatch(renderer)
                await surveying
                await self._drain()
            except asyncio.CancelledError:
                self.tally.interrupted = True
                await self._stop([surveying, *self._tasks])
                _uncancel()
        self.progress.changed()

    async def _drain(self) -> None:
        """Until the last request is over. A request cancelled because its document failed is no error; any
        other exception is a bug, and is raised."""
        while self._tasks:
            done, _ = await asyncio.wait(set(self._tasks))
            for task in done:
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    raise error

    # --- the survey -----------------------------------------------------------------------------

    async def _survey(self, renderer: DocumentRenderer) -> None:
        for document in self.documents:
            try:
                data = await asyncio.to_thread(document.path.read_bytes)
            except OSError as exc:
                self._record_failure(document, None, {"code": "unreadable", "message": str(exc)})
                continue
            sha256 = hashlib.sha256(data).hexdigest()
            if await asyncio.to_thread(DocumentOutputs(self.settings.out_dir, document.name).is_done, sha256):
                self.tally.skipped += 1
                self.progress.changed()
                continue
            # The bytes are not kept: the survey runs far ahead, and the corpus may not fit in memory.
            options = self.settings.options
            job = DocumentJob(document, await survey(data, sha256, renderer, options), options)
            self.tally.units += job.expected_pages
            self.progress.changed()
            await self.scheduler.arrive(job)
        await self.scheduler.no_more_documents()

    # --- dispatching and requests ---------------------------------------------------------------

    async def _dispatch(self, renderer: DocumentRenderer) -> None:
        while (turn := await self.scheduler.next_turn()) is not None:
            if turn.job.data is None and not await self._load(turn.job, renderer):
                await self.scheduler.answered(turn)
                continue
            task = asyncio.create_task(self._send(turn, renderer))
            self._tasks.add(task)
            self._requests.setdefault(turn.job, set()).add(task)
            task.add_done_callback(self._forget(turn.job))

    def _forget(self, job: DocumentJob) -> Any:
        def forget(task: asyncio.Task[None]) -> None:
            self._tasks.discard(task)
            self._requests.get(job, set()).discard(task)

        return forget

    async def _load(self, job: DocumentJob, renderer: DocumentRenderer) -> bool:
        """The document's bytes, for its requests; the same bytes the survey hashed, or it fails."""
        try:
            data = await asyncio.to_thread(job.document.path.read_bytes)
        except OSError as exc:
            await self._fail(job, {"code": "unreadable", "message": str(exc)})
            return False
        if hashlib.sha256(data).hexdigest() != job.survey.sha256:
            await self._fail(job, {"code": "changed", "message": "the file changed during the run; run again"})
            return False
        job.data = data
        await job.open(renderer)
        return True

    async def _send(self, turn: Turn, renderer: DocumentRenderer) -> None:
        job = turn.job
        try:
            if job.failure is not None:
                return  # a request of the same document failed while this one waited for its turn
            answer = await self._answer(job, turn.pages, renderer)
        except ApiError as error:
            await self._fail(job, error.record(), error)
            return
        finally:
            await self.scheduler.answered(turn)
        if job.failure is not None:
            return  # answered after another request of the document failed: its pages are not counted
        job.answered(answer, turn.pages)
        self.tally.units_done += turn.slots
        self.tally.add_usage(answer["usage"])
        self.progress.changed()
        if job.complete:
            await self._finish(job, renderer)

    async def _answer(self, job: DocumentJob, pages: list[int] | None, renderer: DocumentRenderer) -> dict[str, Any]:
        part = await job.part(pages, renderer)
        response = await self.client.post("/v1/ocr", job.request(pages, part))
        if response.status_code != 200:
            error = ApiError.from_response(response)
            raise error if part is None else part.error_in_document(error)
        asked = pages if part is None else list(range(len(part.pages)))  # a part's pages are 0..n-1 to the service
        if not is_ocr_response(response.body, asked):
            # A proxy's page, another service: merging it would write a wrong document.
            raise ApiError(f"the answer is not the pages asked for: {str(response.body)[:300]}", status_code=200,
                           code="unexpected_response")  # fmt: skip
        return response.body if part is None else part.in_document(response.body)

    # --- a document's end -----------------------------------------------------------------------

    async def _finish(self, job: DocumentJob, renderer: DocumentRenderer) -> None:
        outputs = DocumentOutputs(self.settings.out_dir, job.document.name)
        record = job.merged()
        record["source"] = {"path": str(job.document.path), "sha256": job.survey.sha256, "bytes": job.survey.size}
        figures = _take_figures(record)
        try:
            await asyncio.to_thread(outputs.begin)
            pictures = await self._layouts(job, record, outputs, renderer) if self.settings.layout else set()
            # Shielded: a document whose every page is in is written whole even if the run is stopped now.
            writing = asyncio.ensure_future(asyncio.to_thread(outputs.finish, record, figures, pictures))
            self._writes.add(writing)
            await asyncio.shield(writing)
        except (OSError, DocumentError, RenderFailed, KeyError, TypeError, ValueError) as exc:
            # The document fails, not the run: a full disk, a page that does not render, a malformed block.
            await self._fail(job, {"code": "output_failed", "message": f"writing its outputs: {exc!r}"})
            return
        job.release()
        self.tally.items_done += 1
        await self.scheduler.finished(job)
        self.progress.changed()

    async def _layouts(
        self, job: DocumentJob, record: dict[str, Any], outputs: DocumentOutputs, renderer: DocumentRenderer
    ) -> set[Path]:
        """Each page drawn, rendered as the service rendered it (the response's DPI): PNGs, or one PDF."""
        assert job.data is not None
        target = partial_path(outputs.layouts_pdf) if self.settings.layout == "pdf" else None
        written: set[Path] = set()
        try:
            async with await renderer.open(job.data) as opened:
                for page in record["pages"]:
                    dpi = page["dimensions"]["dpi"]
                    rendered = (await renderer.render(opened, page["index"], dpi)).image
                    blocks = page.get("blocks") or []
                    if target is not None:
                        await asyncio.to_thread(_append_pdf_page, target, rendered, blocks, dpi)
                    else:
                        path = outputs.page_picture(page["index"])
                        await asyncio.to_thread(_write_png_page, path, rendered, blocks)
                        written.add(path)
            if target is not None:
                await asyncio.to_thread(target.replace, outputs.layouts_pdf)
                written.add(outputs.layouts_pdf)
        finally:
            if target is not None:
                target.unlink(missing_ok=True)  # a PDF left half-made (once in place, there is nothing to remove)
        return written

    async def _fail(self, job: DocumentJob, reason: dict[str, Any], error: ApiError | None = None) -> None:
        if job.failure is not None:
            return  # one record per document: its other requests were cancelled by the first failure
        job.failure = error or ApiError(str(reason.get("message")), code=reason.get("code"))
        current = asyncio.current_task()
        for task in self._requests.get(job, set()):
            if task is not current:
                task.cancel()
        # The pages counted are those of documents written: a failed document's are taken back out.
        self.tally.units -= job.expected_pages
        self.tally.units_done -= job.pages_answered
        job.release()
        self._record_failure(job.document, job.survey.sha256, reason)
        await self.scheduler.finished(job)

    def _record_failure(self, document: InputDocument, sha256: str | None, reason: dict[str, Any]) -> None:
        assert self._errors is not None
        self._errors.append({"path": str(document.path), "name": str(document.name), "sha256": sha256, **reason})
        self.tally.failed += 1
        self.progress.changed()

    async def _stop(self, tasks: list[asyncio.Task[None]]) -> None:
        """Cancel what runs (its connections close: the service stops those pages); let started writes end."""
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)


def is_ocr_response(body: Any, pages: list[int] | None) -> bool:
    """A /v1/ocr response with the pages asked for (any pages, for a whole document), each page as merged and
    written needs it."""
    if not isinstance(body, dict) or not isinstance(body.get("usage"), dict) or not isinstance(body.get("pages"), list):
        return False
    found = body["pages"]
    if not all(isinstance(page, dict) and {"index", "markdown", "dimensions"} <= page.keys() for page in found):
        return False
    return pages is None or sorted(page["index"] for page in found) == sorted(pages)


def _uncancel() -> None:
    """The cancellation was the run's way to stop, and is handled: the caller goes on to its summary."""
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


def _take_figures(record: dict[str, Any]) -> dict[str, bytes]:
    """The figures' JPEG bytes by id, out of the record (they become files, the record keeps their boxes)."""
    figures: dict[str, bytes] = {}
    for page in record["pages"]:
        for image in page.get("images") or []:
            encoded = image.get("image_base64")
            if encoded:
                figures[image["id"]] = base64.b64decode(encoded.partition(",")[2] or encoded)
            image["image_base64"] = None
    return figures


def _write_png_page(path: Path, rendered: bytes, blocks: list[dict[str, Any]]) -> None:
    atomic_write(path, layout.png_bytes(layout.draw_blocks(layout.page_image(rendered), blocks)))


def _append_pdf_page(target: Path, rendered: bytes, blocks: list[dict[str, Any]], dpi: int) -> None:
    layout.append_pdf_page(target, layout.draw_blocks(layout.page_image(rendered), blocks), dpi)
