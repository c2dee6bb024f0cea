"""Opening documents and rendering their pages, in worker processes.

A document is a PDF, an image (one page) or a multi-page TIFF (a page per
frame). PDFium is not thread-safe, and a hostile PDF can crash or exhaust
the process that parses it, so every PDF operation, inspection included,
runs in a small pool of spawned worker processes; the caller's event loop
only awaits them. Pages are rendered one at a time, when asked for; a PDF's
pages can also be copied into a PDF of their own (`pdf_part`).

    renderer = DocumentRenderer(workers=2)
    async with await renderer.open(data, "application/pdf") as document:
        for index in select_pages(pages, document.page_count):
            page = await renderer.render(document, index, dpi=144)
            ...  # page.image: PNG bytes for the OCR model

Pages reach the model losslessly: a PDF page or TIFF frame as a PNG, a
one-page image document as its own bytes, unchanged. PDF pages are rendered
as DeepSeek's own script does: zoom = dpi / 72, no alpha, white background.

Workers see a document through a temporary file written once per document,
and keep the last few documents open, so rendering 500 pages of one PDF
parses it once per worker, not 500 times.
"""

from __future__ import annotations

import asyncio
import io
import math
import multiprocessing
import os
import signal
import struct
import tempfile
import uuid
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image, ImageOps, TiffImagePlugin

from dsocr.preprocessing.decode import SUPPORTED_FORMATS, image_format

from .errors import DocumentError
from .limits import DocumentLimits

DocumentKind = Literal["pdf", "tiff", "image"]

_T = TypeVar("_T")

_PDF_MAGIC = b"%PDF-"
# PDF readers, PDFium included, accept bytes before the header within the first KiB.
_PDF_HEADER_WINDOW = 1024
_PDF_MEDIA_TYPE = "application/pdf"

_POINTS_PER_INCH = 72
_WHITE = (255, 255, 255, 255)
# Fast, lossless: the model sees every pixel as rendered; size matters little
# for a PNG that only travels to the preprocessing.
_PNG_COMPRESS_LEVEL = 1
_EXIF_ORIENTATION = 0x0112
# The EXIF orientations PIL's ImageOps.exif_transpose (the image decoder's) acts
# on; the last four turn the image a quarter, swapping width and height.
_ORIENTATIONS = range(2, 9)
_QUARTER_TURNS = range(5, 9)
_TIFF_IMAGE_WIDTH, _TIFF_IMAGE_LENGTH = 256, 257


@dataclass(frozen=True)
class PageInfo:
    """A page's size, known before it is rendered.

    unit "pt": a PDF page, in points (1/72 inch), as PDFium reports it (its
    /Rotate applied; floats, exactly PDFium's). unit "px": a raster page (an
    image or a TIFF frame), in pixels, its EXIF orientation applied; its
    pixels do not depend on the DPI.
    """

    width: float
    height: float
    unit: Literal["pt", "px"]


@dataclass(frozen=True)
class RenderedPage:
    """One page as the OCR model gets it.

    image: PNG, or for a one-page image document its original bytes.
    width, height: the pixels of `image` as the model sees them (EXIF
    orientation applied). dpi: the DPI asked for; a raster page is never
    resampled, so for it the pixels do not depend on it.
    """

    index: int
    image: bytes
    width: int
    height: int
    dpi: int


class RenderFailed(RuntimeError):
    """A worker process died (crash, out-of-memory kill) while working on a
    document. A server error: the document is not proven to be at fault."""

    def __init__(self, message: str, page: int | None = None) -> None:
        super().__init__(message)
        self.page = page


def page_pixels(page: PageInfo, dpi: int) -> tuple[int, int]:
    """(width, height) in pixels of `page` rendered at `dpi`, exactly as
    pypdfium2's PdfPage.render computes it: ceil(size * scale) per side."""
    if page.unit == "px":
        return int(page.width), int(page.height)
    scale = _scale(dpi)
    return math.ceil(page.width * scale), math.ceil(page.height * scale)


def _scale(dpi: int) -> float:
    # One expression for the size prediction and for the render itself, so
    # that both round the same float.
    return dpi / _POINTS_PER_INCH


# --- the caller's side --------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """What a worker needs to reopen a document: its file, a token unique to
    this opening (the worker's cache key), and its format ("PDF" or PIL's name)."""

    path: str
    token: str
    format: str


class OpenedDocument:
    """An inspected document, ready to render. Close it (or use `async with`)
    to delete its temporary file; a forgotten one is deleted when collected."""

    def __init__(
        self, kind: DocumentKind, pages: tuple[PageInfo, ...], size_bytes: int, source: _Source, original: bytes | None
    ) -> None:
        self.kind = kind
        self.pages = pages
        self.size_bytes = size_bytes
        self.path = Path(source.path)
        self._source = source
        self._original = original  # a one-page image's bytes, passed on unchanged
        self._remove_file = weakref.finalize(self, _remove_file, source.path)

    @property
    def page_count(self) -> int:
        return len(self.pages)

    @property
    def closed(self) -> bool:
        return not self._remove_file.alive

    def page(self, index: int) -> PageInfo:
        if self.closed:
            raise ValueError("the document is closed")
        if not 0 <= index < self.page_count:
            raise IndexError(f"page index {index} is out of range for a document of {self.page_count} page(s)")
        return self.pages[index]

    def close(self) -> None:
        self._remove_file()

    async def __aenter__(self) -> OpenedDocument:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<OpenedDocument {self.kind}, {self.page_count} page(s), {self.size_bytes} bytes, {self.path}>"


class DocumentRenderer:
    """Opens documents and renders their pages in `workers` spawned processes.

    Usable from any event loop (no loop-bound state); every method awaits a
    worker or a thread, never blocks the loop. If a worker dies, the pool is
    replaced and the calls it was serving raise RenderFailed.

    worker_initializer: called in each worker process as it starts, after
    the renderer's own set-up (a module-level function: it is pickled by
    name), e.g. to tie the workers' lives to the caller's.
    """

    def __init__(
        self,
        workers: int,
        limits: DocumentLimits | None = None,
        *,
        temp_dir: str | os.PathLike[str] | None = None,
        worker_initializer: Callable[[], None] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        self.workers = workers
        self.limits = limits or DocumentLimits()
        self._temp_dir = Path(temp_dir if temp_dir is not None else tempfile.gettempdir())
        self._worker_initializer = worker_initializer
        self._pool = self._new_pool()
        self._closed = False

    async def open(self, data: bytes, media_type: str | None = None) -> OpenedDocument:
        """Inspect a document: its kind (by content), page count and page sizes.

        media_type: what the client called it. Only "application/pdf" is
        held to: data that is no PDF is then refused; an image type on a PDF
        is not (the content decides). Raises DocumentError: "document_too_large",
        "empty_document", "unsupported_document", "invalid_document",
        "encrypted_document", "too_many_pages".
        """
        _check_byte_size(data, self.limits)
        document_format = _document_format(data)
        _check_media_type(media_type, document_format)
        if document_format is None:
            raise DocumentError(
                "unsupported_document",
                "unsupported document format: send a PDF, or an image (JPEG, PNG, WebP, BMP, GIF or TIFF)",
            )
        token = uuid.uuid4().hex
        path = self._temp_dir / f"dsocr-document-{token}"
        source = _Source(str(path), token, document_format)
        await _write_new_file(path, data)
        try:
            kind, pages = await self._run("inspecting the document", None, _inspect, source, self.limits)
        except BaseException:
            _remove_file(str(path))
            raise
        return OpenedDocument(kind, pages, len(data), source, data if kind == "image" else None)

    async def render(self, document: OpenedDocument, index: int, dpi: int) -> RenderedPage:
        """Page `index` (0-based) at `dpi`. The pixel limit is checked from the
        page's size first. Raises DocumentError: "invalid_dpi", "page_too_large",
        "invalid_document" (a page that cannot be read); RenderFailed."""
        self.limits.check_dpi(dpi)
        page = document.page(index)
        width, height = page_pixels(page, dpi)
        _check_page_pixels(index, page, dpi, self.limits)
        if document._original is not None:
            return RenderedPage(index, document._original, width, height, dpi)
        render_page = _render_pdf_page if document.kind == "pdf" else _render_tiff_frame
        image, width, height = await self._run(
            f"rendering page index {index}", index, render_page, document._source, index, dpi
        )
        return RenderedPage(index, image, width, height, dpi)

    async def pdf_part(self, document: OpenedDocument, indices: list[int]) -> bytes | None:
        """A new PDF of pages `indices` (0-based) of a PDF document, in that
        order: a few pages of a large PDF, to send without the rest.

        None where it would not render them as the document does: a PDF
        with a form (its fields are drawn from the document's form, which
        PDFium does not copy with the pages), or pages PDFium fails to copy.
        Optional content (layers) that the document hides by default shows
        in the new PDF: PDFium neither copies the document's layer settings
        nor exposes them. Raises RenderFailed."""
        if document.kind != "pdf":
            raise ValueError(f"only a PDF's pages can be copied, not a {document.kind}'s")
        if not indices:
            raise ValueError("no pages to copy")  # PDFium would copy every page
        for index in indices:
            document.page(index)  # closed, or out of range: raises here, not in a worker
        return await self._run("copying pages into a new PDF", None, _pdf_part, document._source, indices)

    async def crop(self, image: bytes, boxes: list[tuple[int, int, int, int]], quality: int = 90) -> list[bytes]:
        """JPEG crops of `image` (a rendered page, or a one-page image's own
        bytes), one per box (x1, y1, x2, y2): pixels of the image as the model
        sees it (EXIF orientation applied), x2 and y2 exclusive, clamped to
        the image. Raises ValueError for a box that is empty once clamped."""
        if not 1 <= quality <= 100:
            raise ValueError(f"JPEG quality must be from 1 to 100, not {quality}")
        boxes = [_box(box) for box in boxes]
        if not boxes:
            return []
        return await self._run("cropping figures", None, _crop, image, boxes, quality, self.limits.max_page_pixels)

    async def close(self) -> None:
        """Stop the workers; pending calls are cancelled, running ones finish."""
        self._closed = True
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)

    async def __aenter__(self) -> DocumentRenderer:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    def _new_pool(self) -> ProcessPoolExecutor:
        # Spawned, not forked: the caller is a threaded server process.
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self._worker_initializer,),
        )

    async def _run(self, task: str, page: int | None, function: Callable[..., _T], *args: Any) -> _T:
        """function(*args) in a worker; a dead worker becomes RenderFailed, after
        the broken pool is replaced so that the next call finds a working one."""
        if self._closed:
            raise RuntimeError("the document renderer is closed")
        pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, function, *args)
        except BrokenProcessPool as exc:
            if self._pool is pool and not self._closed:
                self._pool = self._new_pool()
            pool.shutdown(wait=False, cancel_futures=True)
            raise RenderFailed(f"{task} failed: a document worker process died ({exc})", page) from exc


def _check_byte_size(data: bytes, limits: DocumentLimits) -> None:
    if len(data) > limits.max_bytes:
        raise DocumentError(
            "document_too_large", f"document is {len(data)} bytes, over the limit of {limits.max_bytes} bytes"
        )
    if len(data) == 0:
        raise DocumentError("empty_document", "document is empty (0 bytes)")


def _document_format(data: bytes) -> str | None:
    """The format the magic bytes say: "PDF", PIL's name of an image format, or
    None. An image signature must open the data; a PDF header may come later."""
    found = image_format(data)
    if found is None and _PDF_MAGIC in data[:_PDF_HEADER_WINDOW]:
        return "PDF"
    return found


def _check_media_type(media_type: str | None, document_format: str | None) -> None:
    declared = (media_type or "").split(";")[0].strip().lower()
    if declared == _PDF_MEDIA_TYPE and document_format != "PDF":
        found = (
            f"it is a {document_format} image" if document_format else f"it does not start with {_PDF_MAGIC.decode()}"
        )
        raise DocumentError("invalid_document", f"the document was sent as {_PDF_MEDIA_TYPE} but is not a PDF: {found}")


def _check_page_pixels(index: int, page: PageInfo, dpi: int, limits: DocumentLimits) -> None:
    width, height = page_pixels(page, dpi)
    if width < 1 or height < 1:
        raise DocumentError(
            "invalid_document", f"page index {index} has no area ({page.width}x{page.height} {page.unit})"
        )
    if width * height <= limits.max_page_pixels:
        return
    size = f"{width}x{height} = {width * height} pixels"
    if page.unit == "px":
        advice = "a raster page is not resampled, so no DPI makes it smaller"
    else:
        fitting = _largest_fitting_dpi(page, dpi, limits)
        size += f" at {dpi} DPI"
        advice = f"it fits at {fitting} DPI" if fitting else f"it does not fit even at {limits.min_dpi} DPI"
    raise DocumentError(
        "page_too_large",
        f"page index {index} is {size}, over the limit of {limits.max_page_pixels} pixels per page; {advice}",
    )


def _largest_fitting_dpi(page: PageInfo, dpi: int, limits: DocumentLimits) -> int | None:
    for lower in range(dpi - 1, limits.min_dpi - 1, -1):
        width, height = page_pixels(page, lower)
        if width * height <= limits.max_page_pixels:
            return lower
    return None


def _box(box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in box) or x2 <= x1 or y2 <= y1:
        raise ValueError(f"a crop box is four integers x1 < x2, y1 < y2, not {box!r}")
    return x1, y1, x2, y2


async def _write_new_file(path: Path, data: bytes) -> None:
    """Write data to a new file in a thread. If the caller is cancelled, the
    file is removed once the thread is done with it, not while it writes."""
    writing = asyncio.ensure_future(asyncio.to_thread(_write_file, str(path), data))
    try:
        await asyncio.shield(writing)
    except BaseException:
        writing.add_done_callback(lambda _: _remove_file(str(path)))
        raise


def _write_file(path: str, data: bytes) -> None:
    # Private to this user, and never over an existing file.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def _remove_file(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# --- the worker's side ----------------------------------------------------------
# Module-level functions (pickled by name), run in the spawned processes, one
# call at a time per process: PDFium is never entered by two threads.

# Open documents by (path, token), least recently used first.
_OPEN: OrderedDict[tuple[str, str], Any] = OrderedDict()
_OPEN_DOCUMENTS = 4


def _init_worker(initializer: Callable[[], None] | None) -> None:
    """Set up a worker process, then run the caller's initializer."""
    # The parent handles Ctrl-C and shuts the pool down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Page sizes are checked against our own limit before any pixel is
    # decoded; PIL's bomb check would refuse big pages in open() itself.
    Image.MAX_IMAGE_PIXELS = None
    if initializer is not None:
        initializer()


def _inspect(source: _Source, limits: DocumentLimits) -> tuple[DocumentKind, tuple[PageInfo, ...]]:
    """The kind and page sizes of a document. Raises DocumentError."""
    if source.format == "PDF":
        return "pdf", _inspect_pdf(source, limits)
    return _inspect_image(source, limits)


def _inspect_pdf(source: _Source, limits: DocumentLimits) -> tuple[PageInfo, ...]:
    pdf = _cached(source)
    page_count = len(pdf)
    if page_count > limits.max_pages:
        _forget(source)
        raise _too_many_pages(str(page_count), limits)
    # Sizes without loading the pages (which would parse their content).
    return tuple(PageInfo(*_pdf_page_size(pdf, index), "pt") for index in range(page_count))


def _pdf_page_size(pdf: Any, index: int) -> tuple[float, float]:
    try:
        width, height = pdf.get_page_size(index)
    except pdfium.PdfiumError as exc:
        raise DocumentError("invalid_document", f"page index {index} of the PDF cannot be read: {exc}") from None
    return width, height


def _open_pdf(path: str) -> Any:
    """Open a PDF with PDFium, mapping its failures to DocumentError.

    Loaded through the raw API: pypdfium2's PdfDocument treats a PDF of zero
    pages as a failed load and reports whatever error PDFium's global
    FPDF_GetLastError() still holds from an earlier call (and leaks the handle).
    """
    handle = pdfium_c.FPDF_LoadDocument((path + "\x00").encode(), None)
    if not handle:
        raise _pdf_load_error(pdfium_c.FPDF_GetLastError())
    pdf = pdfium.PdfDocument(handle)
    try:
        # Draws filled-in form fields; must come before the first page is loaded.
        pdf.init_forms()
    except pdfium.PdfiumError:
        pass  # the pages still render, without the fields' values
    if len(pdf) == 0:
        pdf.close()
        raise DocumentError("empty_document", "the PDF has no pages")
    return pdf


def _pdf_load_error(error: int) -> Exception:
    if error in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
        return DocumentError("encrypted_document", "the PDF is encrypted (password-protected); send it decrypted")
    if error == pdfium_c.FPDF_ERR_FILE:
        return FileNotFoundError("the document's temporary file cannot be read")  # ours, not the client's
    reason = _PDFIUM_ERRORS.get(error, f"error {error}")
    return DocumentError("invalid_document", f"the PDF is truncated or corrupt (PDFium: {reason})")


_PDFIUM_ERRORS = {
    pdfium_c.FPDF_ERR_UNKNOWN: "unknown error",
    pdfium_c.FPDF_ERR_FORMAT: "not a PDF, or a corrupted one",
    pdfium_c.FPDF_ERR_PAGE: "page not found or content error",
}


def _inspect_image(source: _Source, limits: DocumentLimits) -> tuple[DocumentKind, tuple[PageInfo, ...]]:
    """Frames are counted and measured from their headers; no pixel is decoded."""
    try:
        with Image.open(source.path, formats=(source.format,)) as image:
            pages = (
                _frame_sizes(image, source.path, limits)
                if image.format == "TIFF"
                else [_raster_page(image, source.path)]
            )
    except DocumentError:
        raise
    except Exception as exc:
        raise _corrupt_image(source.format, exc) from None
    return ("tiff" if len(pages) > 1 else "image"), tuple(pages)


def _frame_sizes(image: Image.Image, path: str, limits: DocumentLimits) -> list[PageInfo]:
    """Each frame's size, stopping one past the page limit (a TIFF can chain IFDs for ever)."""
    pages: list[PageInfo] = []
    for frame in range(limits.max_pages + 1):
        try:
            image.seek(frame)
        except EOFError:
            return pages
        pages.append(_raster_page(image, path))
    raise _too_many_pages(f"more than {limits.max_pages}", limits)


def _raster_page(image: Image.Image, path: str) -> PageInfo:
    """The frame's size once decoded and turned upright by its EXIF orientation."""
    width, height = _stored_size(image)
    if _orientation(image, path) in _QUARTER_TURNS:
        width, height = height, width
    return PageInfo(width, height, "px")


def _stored_size(image: Image.Image) -> tuple[int, int]:
    """The frame's size as stored, before any orientation: Pillow 13 reports
    a TIFF's size already turned by its orientation tag (and turns the pixels
    when loading them); other formats, and older Pillows, as stored."""
    if isinstance(image, TiffImagePlugin.TiffImageFile):
        return image.tag_v2[_TIFF_IMAGE_WIDTH], image.tag_v2[_TIFF_IMAGE_LENGTH]
    return image.size


def _orientation(image: Image.Image, path: str) -> int:
    """The EXIF orientation PIL's ImageOps.exif_transpose would apply (1 when
    none or unreadable, as the image decoder treats malformed EXIF)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # corrupt EXIF warnings
            if image.format == "PNG" and "exif" not in image.info and not _png_metadata_after_pixels(path):
                # PNG's getexif() decodes the whole image to find metadata
                # after the pixels; there is none, so read what open() found.
                exif = Image.Image.getexif(image)
            else:
                exif = image.getexif()
            orientation = exif.get(_EXIF_ORIENTATION, 1)
    except Exception:
        return 1
    return orientation if orientation in _ORIENTATIONS else 1


_PNG_METADATA_CHUNKS = (b"eXIf", b"iTXt", b"tEXt", b"zTXt")  # EXIF, or XMP / raw EXIF profiles in text


def _png_metadata_after_pixels(path: str) -> bool:
    """Whether a PNG has a metadata chunk after its first IDAT, by walking
    the chunk headers (PIL reads those only when decoding the pixels)."""
    with open(path, "rb") as file:
        file.seek(8)
        seen_pixels = False
        while len(header := file.read(8)) == 8:
            length, kind = struct.unpack(">I4s", header)
            if kind == b"IEND":
                return False
            seen_pixels = seen_pixels or kind == b"IDAT"
            if seen_pixels and kind in _PNG_METADATA_CHUNKS:
                return True
            file.seek(length + 4, os.SEEK_CUR)  # data and CRC
    return False


def _render_pdf_page(source: _Source, index: int, dpi: int) -> tuple[bytes, int, int]:
    """Page `index` rendered at `dpi`: (PNG bytes, width, height), RGB on white."""
    pdf = _cached(source)
    try:
        page = pdf.get_page(index)
    except pdfium.PdfiumError as exc:
        raise DocumentError("invalid_document", f"page index {index} of the PDF cannot be read: {exc}") from None
    try:
        # An opaque fill colour and no maybe_alpha: a 3-channel bitmap, white
        # where the page draws nothing (transparent pages do not turn black).
        bitmap = page.render(scale=_scale(dpi), fill_color=_WHITE, may_draw_forms=True)
        image = bitmap.to_pil()
        bitmap.close()
    finally:
        page.close()
    return _png(image), image.width, image.height


def _pdf_part(source: _Source, indices: list[int]) -> bytes | None:
    """Pages `indices` of a PDF imported into a new one, saved; None where
    the new PDF would not render them as the document does."""
    pdf = _cached(source)
    if pdf.get_formtype() != pdfium_c.FORMTYPE_NONE:
        return None  # fields drawn from the document's form (AcroForm or XFA), which is not copied
    part = pdfium.PdfDocument.new()
    try:
        part.import_pages(pdf, indices)
        buffer = io.BytesIO()
        part.save(buffer)
    except pdfium.PdfiumError:
        return None
    finally:
        part.close()
    return buffer.getvalue()


def _render_tiff_frame(source: _Source, index: int, dpi: int) -> tuple[bytes, int, int]:
    """Frame `index`, EXIF orientation applied, in RGB: (PNG bytes, width, height).
    dpi: unused, a frame is not resampled (the signature is _render_pdf_page's)."""
    image = _cached(source).image
    try:
        image.seek(index)
        image.load()
        # Pillow 13 turns a TIFF frame upright as it loads it (and drops the
        # tag, so this is then a no-op); older Pillows do not.
        rgb = _upright(image).convert("RGB")
    except Exception as exc:
        _forget(source)  # its frame pointer may be anywhere now
        raise DocumentError("invalid_document", f"page index {index} (a TIFF frame) cannot be decoded: {exc}") from None
    return _png(rgb), rgb.width, rgb.height


def _crop(image: bytes, boxes: list[tuple[int, int, int, int]], quality: int, max_pixels: int) -> list[bytes]:
    """JPEG crops of an image, upright as the model saw it."""
    with Image.open(io.BytesIO(image), formats=SUPPORTED_FORMATS) as opened:
        if opened.width * opened.height > max_pixels:
            raise ValueError(f"image to crop is {opened.width}x{opened.height}, over {max_pixels} pixels")
        picture = _upright(opened).convert("RGB")
    return [_jpeg(picture.crop(_clamp(box, picture.size)), quality) for box in boxes]


def _upright(image: Image.Image) -> Image.Image:
    """The image turned by its EXIF orientation, as the image decoder does:
    malformed EXIF leaves the pixels as stored."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ImageOps.exif_transpose(image)
    except Exception:
        return image


def _clamp(box: tuple[int, int, int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    width, height = size
    x1, y1, x2, y2 = max(box[0], 0), max(box[1], 0), min(box[2], width), min(box[3], height)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"crop box {box} lies outside the {width}x{height} image")
    return x1, y1, x2, y2


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _cached(source: _Source) -> Any:
    """The open PdfDocument or _Tiff of a document, opened at most once
    while it stays among the last few this worker used."""
    _forget_deleted()
    key = (source.path, source.token)
    document = _OPEN.pop(key, None)
    if document is None:
        document = _open(source)
    _OPEN[key] = document
    while len(_OPEN) > _OPEN_DOCUMENTS:
        _, oldest = _OPEN.popitem(last=False)
        oldest.close()
    return document


def _open(source: _Source) -> Any:
    if source.format == "PDF":
        return _open_pdf(source.path)
    return _Tiff(source.path)


class _Tiff:
    """A TIFF opened from a file object, not from its path: given a path,
    Pillow 13 memory-maps an uncompressed frame, and a frame after the first
    then loses its EXIF orientation as it loads (pixels as stored, tag gone)."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 (closed by close())
        try:
            self.image = Image.open(self._file, formats=("TIFF",))
        except BaseException:
            self._file.close()
            raise

    def close(self) -> None:
        self.image.close()
        self._file.close()


def _forget(source: _Source) -> None:
    document = _OPEN.pop((source.path, source.token), None)
    if document is not None:
        document.close()


def _forget_deleted() -> None:
    """Close the documents whose file is gone (closed by the caller), so that
    their disk space is freed without waiting to fall out of the cache."""
    for key in [key for key in _OPEN if not os.path.exists(key[0])]:
        _OPEN.pop(key).close()


def _too_many_pages(count: str, limits: DocumentLimits) -> DocumentError:
    return DocumentError(
        "too_many_pages", f"the document has {count} pages, over the limit of {limits.max_pages} pages"
    )


def _corrupt_image(image_format: str, exc: Exception) -> DocumentError:
    """Whatever PIL raises on hostile input is the document's fault."""
    return DocumentError("invalid_document", f"the {image_format} image is truncated or corrupt: {exc}")
