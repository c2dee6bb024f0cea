"""One document of a run: its pages sent as requests of a few pages, the answers merged into one response.

A document's pages are counted here, with the renderer the service uses (PDFium and PIL in worker
processes, so a hostile file cannot take the run down), and split into `/v1/ocr` requests of a few
pages each. A PDF's request carries a PDF of only its own pages, cut out by the renderer's workers
(`Part`): a 500-page PDF goes up about once in all, not once per request, and one over the service's
byte limit still goes through when its parts are under it. An image or a TIFF is sent whole, naming
its pages (`pages: [...]`): an image is one request, and a multi-page TIFF is a few scanned pages, a
small upload (cutting one out would mean re-encoding its frames).
The requests of many documents run at once; their answers come back in any order and are merged into
the response one request for the whole document would have given: pages in document order, figures
numbered across the document (`img-0.jpeg`, ... as Mistral names them), usage summed. A document the
client cannot open is sent whole, once, so that the service's own refusal (an encrypted or corrupt
file) is what the run records.
"""

from __future__ import annotations

import base64
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dsocr.batch.client import ApiError
from dsocr.batch.inputs import InputDocument
from dsocr.documents.errors import DocumentError
from dsocr.documents.pages import select_pages
from dsocr.documents.render import DocumentKind, DocumentRenderer, OpenedDocument, RenderFailed

_FIGURE_LINK = re.compile(r"!\[(img-\d+\.jpeg)\]\((img-\d+\.jpeg)\)")
# How the service names a page in an error: "page 2: ..." (a page the model refused), "page index 2 ..." (one
# the renderer refused).
_PAGE_NAMED = re.compile(r"\b(page (?:index )?)(\d+)\b")


@dataclass(frozen=True)
class RequestOptions:
    """The `/v1/ocr` fields a run sets on every request; None leaves the service's default."""

    model: str | None = None
    prompt: str | None = None
    resolution_mode: str | None = None
    max_crops: int | None = None
    dpi: int | None = None
    max_tokens: int | None = None
    pages: str | None = None  # a selection applied to every document ("0-7"); None: every page

    def fields(self) -> dict[str, Any]:
        settings = {
            "prompt": self.prompt,
            "resolution_mode": self.resolution_mode,
            "max_crops": self.max_crops,
            "dpi": self.dpi,
            "max_tokens": self.max_tokens,
        }
        # The model is required by the schema, and null means the one served.
        return {"model": self.model} | {key: value for key, value in settings.items() if value is not None}


@dataclass(frozen=True)
class Survey:
    """What a document is, from its bytes: its hash, and its pages when the client can open it."""

    sha256: str
    size: int
    kind: DocumentKind | None  # None: the client could not open it
    page_count: int | None
    selected: tuple[int, ...] | None  # the pages to OCR; None: send it whole, the service decides


async def survey(data: bytes, sha256: str, renderer: DocumentRenderer, options: RequestOptions) -> Survey:
    try:
        async with await renderer.open(data) as opened:
            page_count = opened.page_count
            kind = opened.kind
    except (DocumentError, RenderFailed):
        return Survey(sha256, len(data), None, None, None)
    try:
        selected: tuple[int, ...] | None = tuple(select_pages(options.pages, page_count))
    except DocumentError:
        selected = None  # a selection this document does not have: the service's 400 says so
    return Survey(sha256, len(data), kind, page_count, selected)


@dataclass(frozen=True)
class Part:
    """A request's pages cut out of a PDF as a PDF of their own. The service numbers them from 0: its answer
    and its errors are numbered back as in the document."""

    pages: list[int]  # the document's page numbers, in the part's order
    pdf: bytes

    def in_document(self, answer: dict[str, Any]) -> dict[str, Any]:
        """The answer (pages 0..n-1 of the part, checked), its pages numbered as in the document (in place)."""
        for page in answer["pages"]:
            page["index"] = self.pages[page["index"]]
        return answer

    def error_in_document(self, error: ApiError) -> ApiError:
        def renamed(match: re.Match[str]) -> str:
            index = int(match[2])
            return f"{match[1]}{self.pages[index]}" if index < len(self.pages) else match[0]

        return ApiError(_PAGE_NAMED.sub(renamed, error.message), status_code=error.status_code, code=error.code)


@dataclass(eq=False)
class DocumentJob:
    """A document in flight: the pages not yet sent, the answers so far, or why it failed."""

    document: InputDocument
    survey: Survey
    options: RequestOptions
    data: bytes | None = None  # read when the document's turn comes, dropped when it is done
    opened: OpenedDocument | None = None  # a PDF open in the renderer's workers while it is sent, to cut parts from
    pending: deque[int] = field(init=False)
    whole: bool = field(init=False)  # still to be sent as one request, pages as the options say
    answers: list[dict[str, Any]] = field(default_factory=list)
    pages_answered: int = 0
    failure: ApiError | None = None

    def __post_init__(self) -> None:
        self.pending = deque(self.survey.selected or ())
        self.whole = self.survey.selected is None

    @property
    def expected_pages(self) -> int:
        """Pages this document should produce; a whole-document request counts as one."""
        return 1 if self.survey.selected is None else len(self.survey.selected)

    @property
    def has_pending(self) -> bool:
        return self.whole or bool(self.pending)

    def take(self, most: int) -> list[int] | None:
        """The next request's pages (at most `most`), or None for the whole document."""
        if self.whole:
            self.whole = False
            return None
        return [self.pending.popleft() for _ in range(min(most, len(self.pending)))]

    def drop_pending(self) -> None:
        self.pending.clear()
        self.whole = False

    async def open(self, renderer: DocumentRenderer) -> None:
        """A PDF with pages to send is opened in the renderer's workers, to cut its requests' parts from; one that
        no longer opens is sent whole."""
        if self.data is None or self.survey.kind != "pdf" or not self.survey.selected:
            return
        try:
            self.opened = await renderer.open(self.data)
        except (DocumentError, RenderFailed):
            pass

    async def part(self, pages: list[int] | None, renderer: DocumentRenderer) -> Part | None:
        """The PDF of just `pages` for their request; None: the request carries the whole document."""
        if pages is None or self.opened is None or pages == list(range(self.opened.page_count)):
            return None  # nothing to cut out, or nothing to cut it from
        try:
            pdf = await renderer.pdf_part(self.opened, pages)
        except RenderFailed:
            return None  # a worker died on it: the service's reading of the whole file decides
        return None if pdf is None else Part(pages, pdf)

    def request(self, pages: list[int] | None, part: Part | None = None) -> dict[str, Any]:
        """The request for `pages` (None: the whole document, pages as the options say), carrying `part` when
        there is one (all of whose pages the service reads), else the whole document."""
        if self.data is None:
            raise RuntimeError(f"{self.document.path}: its bytes were not loaded")
        body = self.options.fields()
        body["document"] = {"type": "document_url", "document_url": data_url(self.data if part is None else part.pdf)}
        # The figures' crops come back once, with the pages; the run writes them as files.
        body["include_image_base64"] = True
        selection = pages if pages is not None else self.options.pages
        if part is None and selection is not None:
            body["pages"] = selection
        return body

    def answered(self, answer: dict[str, Any], pages: list[int] | None) -> None:
        self.answers.append(answer)
        self.pages_answered += len(pages) if pages is not None else self.expected_pages

    @property
    def complete(self) -> bool:
        return self.failure is None and not self.has_pending and self.pages_answered >= self.expected_pages

    def merged(self) -> dict[str, Any]:
        return merge_answers(self.answers, self.survey.size)

    def release(self) -> None:
        """Drop the document's bytes and close its PDF (its temporary file goes): it is done or failed."""
        self.data = None
        if self.opened is not None:
            self.opened.close()
            self.opened = None


def data_url(data: bytes) -> str:
    """No media type from the file's name: the service decides by the content, and a corpus's `scan.pdf`
    that is really a JPEG is OCR'd rather than refused as "not a PDF"."""
    return f"data:application/octet-stream;base64,{base64.b64encode(data).decode()}"


def merge_answers(answers: list[dict[str, Any]], size_bytes: int) -> dict[str, Any]:
    """The `/v1/ocr` response for the whole document, from the responses for parts of it."""
    pages = sorted((page for answer in answers for page in answer["pages"]), key=lambda page: page["index"])
    figures = 0
    for page in pages:
        figures = _renumber_figures(page, figures)
    prompt = sum(answer["usage"]["prompt_tokens"] for answer in answers)
    completion = sum(answer["usage"]["completion_tokens"] for answer in answers)
    return {
        "pages": pages,
        "model": answers[0]["model"] if answers else None,
        "usage_info": {"pages_processed": len(pages), "doc_size_bytes": size_bytes},
        "document_annotation": None,
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
    }


def _renumber_figures(page: dict[str, Any], first: int) -> int:
    """Each request numbers its figures from img-0: number them across the document instead (in place).
    Returns the next figure's number."""
    renamed = {image["id"]: f"img-{first + n}.jpeg" for n, image in enumerate(page.get("images") or [])}
    if not renamed:
        return first
    for image in page["images"]:
        image["id"] = renamed[image["id"]]
    page["markdown"] = relink(page["markdown"], lambda old: renamed.get(old, old))
    for block in page.get("blocks") or []:
        if block.get("image_id") in renamed:
            block["image_id"] = renamed[block["image_id"]]
            block["content"] = relink(block["content"], lambda old: renamed.get(old, old))
    return first + len(renamed)


def relink(markdown: str, target: Callable[[str], str]) -> str:
    """Figure links `![img-N.jpeg](img-N.jpeg)` with each id replaced by target(id), in text and link."""
    return _FIGURE_LINK.sub(lambda match: f"![{target(match[1])}]({target(match[2])})", markdown)


def link_into(markdown: str, folder: str) -> str:
    """Figure links pointing into `folder` (`![img-0.jpeg](x/img-0.jpeg)`), where a markdown file's figures lie."""
    return _FIGURE_LINK.sub(lambda match: f"![{match[1]}]({folder}/{match[2]})", markdown)
