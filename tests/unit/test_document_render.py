"""Opening documents and rendering their pages in worker processes: kinds, page
counts, pixel sizes exactly as PDFium renders them, white RGB pages in order,
TIFF frames, images passed on unchanged, figure crops, every document error,
the pixel limit before rendering, a responsive event loop, a worker crash,
and temporary files removed; a PDF's pages copied into a PDF of their own.

All documents are built here: raster PDFs with Pillow, vector text PDFs with
fpdf2, encrypted, empty and form PDFs with pypdf.
"""

from __future__ import annotations

import asyncio
import io
import math
import multiprocessing
import os
import pickle
import signal
import struct
import time
import zlib

import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageOps
from pypdf import PdfReader, PdfWriter
from pypdf.generic import ArrayObject, DictionaryObject, NameObject, NumberObject, StreamObject, TextStringObject

from dsocr.documents import render as render_module
from dsocr.documents.errors import DocumentError
from dsocr.documents.render import (
    DocumentLimits,
    DocumentRenderer,
    PageInfo,
    RenderedPage,
    RenderFailed,
    page_pixels,
)
from dsocr.errors import RequestError
from tests.sample_documents import (
    RASTER_PAGES,
    TEXT_PAGE_POINTS,
    blank_pdf,
    empty_pdf,
    encrypted_pdf,
    noise_pdf,
    raster_pdf,
    text_pdf,
    tiff,
    written,
)

TIFF_FRAMES = [
    Image.new("RGB", (40, 30), (200, 20, 20)),
    Image.new("L", (30, 50), 128),
    Image.new("RGB", (60, 20), (20, 20, 200)),
]


def two_colour_image(size=(200, 100)) -> Image.Image:
    """Left half red, right half blue: shows which way an image was turned."""
    image = Image.new("RGB", size, (230, 0, 0))
    image.paste((0, 0, 230), (size[0] // 2, 0, size[0], size[1]))
    return image


def orientation_exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def rotated_jpeg() -> bytes:
    """Stored 200x100, shown 100x200 (EXIF orientation 6: turn 90° clockwise)."""
    buffer = io.BytesIO()
    two_colour_image().save(buffer, "JPEG", quality=95, exif=orientation_exif(6))
    return buffer.getvalue()


def rotated_png(*, metadata_after_pixels: bool) -> bytes:
    buffer = io.BytesIO()
    if not metadata_after_pixels:
        two_colour_image().save(buffer, "PNG", exif=orientation_exif(6))  # Pillow writes eXIf before IDAT
        return buffer.getvalue()
    two_colour_image().save(buffer, "PNG")
    png = buffer.getvalue()
    exif = orientation_exif(6).tobytes()
    exif = exif.removeprefix(b"Exif\x00\x00")
    chunk = struct.pack(">I", len(exif)) + b"eXIf" + exif + struct.pack(">I", zlib.crc32(b"eXIf" + exif))
    end = png.rindex(b"IEND") - 4  # before IEND's length field
    return png[:end] + chunk + png[end:]


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def reference_size(data: bytes) -> tuple[int, int]:
    """The size DeepSeek's loader (and our image decoder) gives an image: EXIF orientation applied."""
    return ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size


def near(pixel, colour, tolerance=8) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))


# --- the renderer ----------------------------------------------------------------


@pytest.fixture(scope="module")
def temp_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("documents")


@pytest.fixture(scope="module")
def renderer(temp_dir):
    renderer = DocumentRenderer(workers=2, temp_dir=temp_dir)
    yield renderer
    asyncio.run(renderer.close())


@pytest.fixture
def strict(renderer, monkeypatch):
    """The module's renderer under other limits (no new workers to start)."""

    def set_limits(**limits) -> DocumentRenderer:
        monkeypatch.setattr(renderer, "limits", DocumentLimits(**limits))
        return renderer

    return set_limits


def run(coroutine):
    return asyncio.run(coroutine)


async def open_and_render(renderer, data, dpi=72, media_type=None, indices=None):
    async with await renderer.open(data, media_type) as document:
        indices = range(document.page_count) if indices is None else indices
        pages = await asyncio.gather(*(renderer.render(document, index, dpi) for index in indices))
        return document, pages


def open_error(renderer, data, media_type=None) -> DocumentError:
    with pytest.raises(DocumentError) as error:
        run(renderer.open(data, media_type))
    assert isinstance(error.value, RequestError)
    return error.value


# --- PDFs -------------------------------------------------------------------------


def test_text_pdf_pages_and_sizes(renderer):
    async def inspect():
        async with await renderer.open(text_pdf(), "application/pdf") as document:
            return document

    document = run(inspect())
    assert document.kind == "pdf"
    assert document.page_count == 4
    for page, (width, height) in zip(document.pages, TEXT_PAGE_POINTS, strict=True):
        assert page.unit == "pt"
        assert (page.width, page.height) == pytest.approx((width, height), abs=1e-3)


@pytest.mark.parametrize("dpi", [72, 144, 200])
def test_rendered_size_is_page_pixels_and_pdfium_rounding(renderer, dpi):
    document, pages = run(open_and_render(renderer, text_pdf(), dpi))
    for page, info, (width_pt, height_pt) in zip(pages, document.pages, TEXT_PAGE_POINTS, strict=True):
        # pypdfium2: math.ceil(page.get_width() * scale), scale = dpi / 72 (see below for where
        # that float product differs from the exact dpi / 72 ratio)
        expected = (math.ceil(width_pt * (dpi / 72)), math.ceil(height_pt * (dpi / 72)))
        assert page_pixels(info, dpi) == expected
        assert (page.width, page.height) == expected
        assert decoded(page.image).size == expected
        assert page.dpi == dpi


def test_page_pixels_equals_what_pypdfium2_renders_at_every_dpi():
    """In-process, on pages sized to make rounding matter, at every DPI allowed."""
    pdf = pdfium.PdfDocument(blank_pdf((100.3, 57.7), (11.11, 0.5), (72.001, 71.999), (612, 792)))
    for index in range(len(pdf)):
        page = pdf[index]
        info = PageInfo(*pdf.get_page_size(index), "pt")
        for dpi in range(50, 301, 1 if index < 3 else 25):
            bitmap = page.render(scale=dpi / 72)
            assert page_pixels(info, dpi) == (bitmap.width, bitmap.height), (index, dpi)
    # US Letter at 300 DPI: 792 * (300 / 72) = 3300.0000000000005 in floats, so
    # pypdfium2 (and we, to match it) make 3301 rows, not 3300.
    letter = PageInfo(*pdf.get_page_size(3), "pt")
    assert page_pixels(letter, 300) == (2550, 3301)
    assert page_pixels(letter, 150) == (1275, 1651)
    assert page_pixels(letter, 200) == (1700, 2200)


def test_pages_are_rgb_on_white(renderer):
    _, [blank] = run(open_and_render(renderer, blank_pdf((200, 100)), 144))
    image = decoded(blank.image)
    assert image.format == "PNG"
    assert image.mode == "RGB"
    assert image.getextrema() == ((255, 255),) * 3  # nothing drawn: white, not transparent black
    _, [text] = run(open_and_render(renderer, text_pdf(), 72, indices=[0]))
    image = decoded(text.image)
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == (255, 255, 255)
    assert image.convert("L").getextrema()[0] < 100  # the text is there


def test_raster_pages_render_in_order(renderer):
    _, pages = run(open_and_render(renderer, raster_pdf(), 72, indices=[2, 0, 1]))
    assert [page.index for page in pages] == [2, 0, 1]
    for page in pages:
        colour, size = RASTER_PAGES[page.index]
        image = decoded(page.image)
        assert image.size == size == (page.width, page.height)
        assert near(image.getpixel((size[0] // 2, size[1] // 2)), colour)


def test_a_pdf_is_recognised_by_content_whatever_it_is_called(renderer):
    for media_type in ("image/png", "application/octet-stream", "APPLICATION/PDF; charset=binary", None):
        document, _ = run(open_and_render(renderer, raster_pdf(), media_type=media_type, indices=[]))
        assert document.kind == "pdf"
    document, _ = run(open_and_render(renderer, b"junk before the header\n" + raster_pdf(), indices=[]))
    assert document.page_count == 3


def test_a_pdf_encrypted_for_its_owner_only_opens(renderer):
    document, [page] = run(open_and_render(renderer, encrypted_pdf(user_password=""), indices=[0]))
    assert document.page_count == 3
    assert near(decoded(page.image).getpixel((150, 100)), RASTER_PAGES[0][0])


# --- a PDF's pages in a PDF of their own -----------------------------------------------


def five_page_pdf() -> bytes:
    """Vector text on pages of four sizes, the fourth turned by /Rotate, then a raster page: fonts and
    images to copy, each page told apart by its size."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf())))
    writer.append(PdfReader(io.BytesIO(raster_pdf(RASTER_PAGES[:1]))))
    return written(writer)


def form_pdf() -> bytes:
    """Two pages, each with a filled text field whose appearance is a blue box (drawn from the form)."""
    writer = PdfWriter()
    appearance = StreamObject()
    appearance.set_data(b"0 0 1 rg 0 0 80 30 re f")
    appearance.update({NameObject("/Type"): NameObject("/XObject"), NameObject("/Subtype"): NameObject("/Form"),
                       NameObject("/BBox"): ArrayObject(map(NumberObject, (0, 0, 80, 30)))})  # fmt: skip
    fields = ArrayObject()
    for number in range(2):
        page = writer.add_blank_page(200, 200)
        field = DictionaryObject({
            NameObject("/Type"): NameObject("/Annot"), NameObject("/Subtype"): NameObject("/Widget"),
            NameObject("/FT"): NameObject("/Tx"), NameObject("/T"): TextStringObject(f"field{number}"),
            NameObject("/V"): TextStringObject("filled"), NameObject("/F"): NumberObject(4),
            NameObject("/Rect"): ArrayObject(map(NumberObject, (20, 20, 100, 50))),
            NameObject("/AP"): DictionaryObject({NameObject("/N"): writer._add_object(appearance)}),
        })  # fmt: skip
        reference = writer._add_object(field)
        page[NameObject("/Annots")] = ArrayObject([reference])
        fields.append(reference)
    writer._root_object[NameObject("/AcroForm")] = DictionaryObject({NameObject("/Fields"): fields})
    return written(writer)


def test_a_pdf_part_holds_the_pages_asked_for_in_order_each_rendering_as_in_the_document(renderer):
    indices = [4, 3, 0]

    async def part_and_pages():
        async with await renderer.open(five_page_pdf()) as document:
            part = await renderer.pdf_part(document, indices)
            assert part is not None
            async with await renderer.open(part) as cut:
                originals = [await renderer.render(document, index, 144) for index in indices]
                copies = [await renderer.render(cut, index, 144) for index in range(cut.page_count)]
                return document, cut, originals, copies

    document, cut, originals, copies = run(part_and_pages())
    assert document.page_count == 5
    assert cut.kind == "pdf" and cut.pages == tuple(document.pages[index] for index in indices)
    for original, copy in zip(originals, copies, strict=True):
        assert decoded(copy.image).tobytes() == decoded(original.image).tobytes()  # pixel for pixel


def test_a_pdf_part_is_smaller_than_the_document_and_the_parts_about_its_size(renderer):
    noise = PdfWriter()
    for size in (300, 310, 320, 330, 340):
        noise.append(PdfReader(io.BytesIO(noise_pdf(size))))
    whole = written(noise)

    async def parts():
        async with await renderer.open(whole) as document:
            return [await renderer.pdf_part(document, [index]) for index in range(5)]

    sizes = [len(part) for part in run(parts())]
    assert max(sizes) < len(whole) / 4
    assert sum(sizes) < len(whole) * 1.1


def test_a_pdf_with_a_form_is_not_cut_its_fields_would_be_left_behind(renderer):
    async def part():
        async with await renderer.open(form_pdf()) as document:
            return await renderer.pdf_part(document, [1])

    assert run(part()) is None

    # Why: PDFium copies a page with its field's widget, not the document's form that draws it.
    def field_colour(pdf: pdfium.PdfDocument, index: int) -> tuple[int, int, int]:
        pdf.init_forms()
        return pdf[index].render(fill_color=(255, 255, 255, 255), may_draw_forms=True).to_pil().getpixel((50, 160))

    source = pdfium.PdfDocument(form_pdf())
    alone = pdfium.PdfDocument.new()
    alone.import_pages(source, [1])
    assert (field_colour(source, 1), field_colour(alone, 0)) == ((0, 0, 255), (255, 255, 255))


def test_only_some_pages_of_a_pdf_make_a_part(renderer):
    async def attempt(data, indices):
        async with await renderer.open(data) as document:
            return await renderer.pdf_part(document, indices)

    with pytest.raises(ValueError, match="only a PDF's pages"):
        run(attempt(tiff(TIFF_FRAMES), [0]))
    with pytest.raises(ValueError, match="no pages"):
        run(attempt(raster_pdf(), []))  # PDFium would copy them all
    with pytest.raises(IndexError):
        run(attempt(raster_pdf(), [3]))


# --- TIFFs and images ---------------------------------------------------------------


def test_tiff_frames_are_pages_in_order(renderer):
    document, pages = run(open_and_render(renderer, tiff(TIFF_FRAMES), dpi=200))
    assert document.kind == "tiff"
    assert document.page_count == 3
    assert [(p.width, p.height, p.unit) for p in document.pages] == [(*f.size, "px") for f in TIFF_FRAMES]
    for page, frame in zip(pages, TIFF_FRAMES, strict=True):
        image = decoded(page.image)
        assert image.format == "PNG"
        assert image.mode == "RGB"
        assert image.size == frame.size == (page.width, page.height)
        assert image.getpixel((0, 0)) == frame.convert("RGB").getpixel((0, 0))


def oriented_tiff(frames: list[Image.Image], orientation: int, compression: str = "raw") -> bytes:
    buffer = io.BytesIO()
    frames[0].save(
        buffer, "TIFF", save_all=True, append_images=frames[1:], tiffinfo={0x0112: orientation}, compression=compression
    )
    return buffer.getvalue()


def reference_frames(data: bytes) -> list[Image.Image]:
    """Each frame as DeepSeek's loader would decode it: EXIF orientation applied, RGB."""
    image = Image.open(io.BytesIO(data))
    frames = []
    for index in range(image.n_frames):
        image.seek(index)
        image.load()
        frames.append(ImageOps.exif_transpose(image).convert("RGB"))
    return frames


@pytest.mark.parametrize("compression", ["raw", "tiff_lzw"])
@pytest.mark.parametrize("orientation", [6, 3, 8])
def test_tiff_frames_are_turned_upright(renderer, orientation, compression):
    """Uncompressed frames too, which Pillow 13 memory-maps when it opens a path (and then
    leaves later frames as stored): the worker must not open TIFFs by path."""
    frames = [two_colour_image((40, 20)), two_colour_image((64, 30)).convert("L"), two_colour_image((50, 10))]
    data = oriented_tiff(frames, orientation, compression)
    references = reference_frames(data)
    document, pages = run(open_and_render(renderer, data))
    assert [(p.width, p.height) for p in document.pages] == [r.size for r in references]
    for page, reference in zip(pages, references, strict=True):
        assert (page.width, page.height) == reference.size
        assert decoded(page.image).tobytes() == reference.tobytes()  # lossless, and the same way up


def test_a_single_frame_oriented_tiff_is_measured_upright(renderer):
    data = oriented_tiff([two_colour_image()], 6)
    document, [page] = run(open_and_render(renderer, data))
    assert document.kind == "image"
    assert page.image == data
    assert (page.width, page.height) == reference_size(data) == (100, 200)


def test_a_single_frame_tiff_is_an_image(renderer):
    data = tiff(TIFF_FRAMES[:1])
    document, [page] = run(open_and_render(renderer, data))
    assert document.kind == "image"
    assert page.image == data


@pytest.mark.parametrize(
    "make",
    [rotated_jpeg, lambda: rotated_png(metadata_after_pixels=False), lambda: rotated_png(metadata_after_pixels=True)],
    ids=["jpeg", "png-exif-before-pixels", "png-exif-after-pixels"],
)
def test_an_image_is_one_page_passed_on_unchanged(renderer, make):
    data = make()
    assert reference_size(data) == (100, 200)  # stored 200x100, turned by its EXIF orientation
    document, [page] = run(open_and_render(renderer, data, dpi=144, media_type="image/webp"))
    assert document.kind == "image"
    assert document.page_count == 1
    assert document.pages[0] == PageInfo(100, 200, "px")
    assert page.image is data or page.image == data
    assert (page.width, page.height) == (100, 200)


def test_an_image_without_orientation_keeps_its_size(renderer):
    data = png(two_colour_image((70, 30)))
    _, [page] = run(open_and_render(renderer, data))
    assert (page.width, page.height) == (70, 30)


# --- crops ----------------------------------------------------------------------------


def test_crops_have_the_boxes_sizes_and_pixels(renderer):
    async def crop():
        async with await renderer.open(raster_pdf()) as document:
            page = await renderer.render(document, 0, 144)  # 600x400, red
            return await renderer.crop(page.image, [(0, 0, 600, 400), (10, 20, 110, 70), (550, 350, 900, 900)])

    crops = run(crop())
    images = [decoded(crop) for crop in crops]
    assert all(image.format == "JPEG" and image.mode == "RGB" for image in images)
    assert [image.size for image in images] == [(600, 400), (100, 50), (50, 50)]  # the last one clamped
    assert near(images[1].getpixel((50, 25)), RASTER_PAGES[0][0])


def test_crops_of_an_image_are_upright(renderer):
    data = rotated_jpeg()
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    boxes = [(0, 0, 100, 100), (0, 100, 100, 200), (20, 150, 80, 190)]
    crops = [decoded(crop) for crop in run(renderer.crop(data, boxes))]
    for crop, box in zip(crops, boxes, strict=True):
        assert crop.size == (box[2] - box[0], box[3] - box[1])
        assert near(
            crop.getpixel((crop.width // 2, crop.height // 2)),
            upright.crop(box).getpixel((crop.width // 2, crop.height // 2)),
            12,
        )
    assert near(crops[0].getpixel((50, 50)), (230, 0, 0), 12)  # turned clockwise: red on top
    assert near(crops[1].getpixel((50, 50)), (0, 0, 230), 12)


@pytest.mark.parametrize("box", [(10, 10, 10, 20), (5, 5, 2, 8), (0, 0, 1.5, 2), (300, 300, 400, 400)], ids=str)
def test_a_box_without_pixels_is_refused(renderer, box):
    with pytest.raises(ValueError, match="box"):
        run(renderer.crop(png(Image.new("RGB", (100, 100))), [box]))


# --- errors -------------------------------------------------------------------------


def test_document_errors_survive_the_trip_from_a_worker():
    error = pickle.loads(pickle.dumps(DocumentError("invalid_dpi", "dpi must be...", "dpi")))
    assert (error.code, error.message, error.param) == ("invalid_dpi", "dpi must be...", "dpi")
    assert str(error) == "dpi must be..."


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_an_encrypted_pdf_is_refused(renderer, algorithm):
    try:
        data = encrypted_pdf(user_password="secret", algorithm=algorithm)
    except ImportError:  # AES needs pypdf's optional crypto dependency
        pytest.skip(f"pypdf cannot write {algorithm} here")
    error = open_error(renderer, data, "application/pdf")
    assert error.code == "encrypted_document"
    assert "encrypted" in error.message


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.9])
def test_a_truncated_pdf_is_invalid(renderer, fraction):
    data = text_pdf()
    error = open_error(renderer, data[: int(len(data) * fraction)])
    assert error.code == "invalid_document"
    assert "truncated or corrupt" in error.message


def test_a_pdf_without_pages_is_empty(renderer):
    # pypdfium2's own loader would report this as a failed load with whatever
    # error PDFium last recorded: open an encrypted one first to show it is not.
    open_error(renderer, encrypted_pdf(user_password="secret"))
    error = open_error(renderer, empty_pdf(), "application/pdf")
    assert error.code == "empty_document"
    assert "no pages" in error.message


def test_pdfium_reports_a_pdf_without_pages_as_a_failed_load_with_a_stale_error(tmp_path):
    """Why PDFs are loaded through PDFium's raw API: pypdfium2's PdfDocument raises
    for zero pages with FPDF_GetLastError() of an earlier, unrelated load."""
    encrypted, empty = tmp_path / "encrypted.pdf", tmp_path / "empty.pdf"
    encrypted.write_bytes(encrypted_pdf(user_password="secret"))
    empty.write_bytes(empty_pdf())
    with pytest.raises(pdfium.PdfiumError):
        pdfium.PdfDocument(encrypted)
    with pytest.raises(pdfium.PdfiumError, match="Incorrect password") as stale:
        pdfium.PdfDocument(empty)
    assert stale.value.err_code == pdfium.raw.FPDF_ERR_PASSWORD
    # Ours, in the same process, after the same encrypted load:
    for path, code in ((encrypted, "encrypted_document"), (empty, "empty_document")):
        with pytest.raises(DocumentError) as error:
            render_module._open_pdf(str(path))
        assert error.value.code == code


def test_empty_data_is_an_empty_document(renderer):
    assert open_error(renderer, b"").code == "empty_document"


@pytest.mark.parametrize(
    ("data", "found"),
    [(b"hello", "does not start with %PDF-"), (png(Image.new("RGB", (4, 4))), "it is a PNG image")],
    ids=["text", "png"],
)
def test_what_is_sent_as_a_pdf_must_be_one(renderer, data, found):
    error = open_error(renderer, data, "application/pdf")
    assert error.code == "invalid_document"
    assert "not a PDF" in error.message
    assert found in error.message


@pytest.mark.parametrize(
    "data", [b"hello", b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"\x00" * 64, b"RIFF\x00\x00\x00\x00WAVE"]
)
def test_an_unknown_format_is_unsupported(renderer, data):
    error = open_error(renderer, data, "image/png")
    assert error.code == "unsupported_document"
    assert "PDF" in error.message


@pytest.mark.parametrize(
    "data",
    [b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, b"\xff\xd8\xff\xe0garbage", b"II*\x00\xff\xff\xff\xff"],
    ids=["png", "jpeg", "tiff"],
)
def test_a_corrupt_image_is_invalid(renderer, data):
    error = open_error(renderer, data)
    assert error.code == "invalid_document"
    assert "truncated or corrupt" in error.message


def test_the_byte_limit_is_checked_before_anything_else(strict):
    renderer = strict(max_bytes=1000)
    error = open_error(renderer, b"garbage that would be unsupported" * 100, "application/pdf")
    assert error.code == "document_too_large"
    assert "3300 bytes, over the limit of 1000 bytes" in error.message
    # A document at the limit is parsed.
    assert open_error(renderer, b"x" * 1000).code == "unsupported_document"


def test_too_many_pdf_pages(strict):
    error = open_error(strict(max_pages=3), text_pdf())
    assert error.code == "too_many_pages"
    assert "4 pages, over the limit of 3 pages" in error.message


def test_too_many_tiff_frames(strict):
    error = open_error(strict(max_pages=2), tiff(TIFF_FRAMES))
    assert error.code == "too_many_pages"
    assert "more than 2 pages" in error.message


def test_a_page_over_the_pixel_limit_names_its_size_and_a_dpi_that_fits(strict):
    renderer = strict(max_page_pixels=100_000)

    async def render(dpi):
        async with await renderer.open(raster_pdf()) as document:
            return await renderer.render(document, 1, dpi)  # 200x300 pt

    with pytest.raises(DocumentError) as error:
        run(render(144))
    assert error.value.code == "page_too_large"
    message = error.value.message
    assert "page index 1 is 400x600 = 240000 pixels at 144 DPI, over the limit of 100000 pixels" in message
    fitting = int(message.rsplit("fits at ", 1)[1].split(" DPI")[0])
    assert math.prod(page_pixels(PageInfo(200, 300, "pt"), fitting)) <= 100_000
    assert math.prod(page_pixels(PageInfo(200, 300, "pt"), fitting + 1)) > 100_000
    page = run(render(fitting))
    assert page.width * page.height <= 100_000


def test_the_pixel_limit_is_checked_before_rendering(renderer, monkeypatch):
    """A 200x200-inch page: 60000x60000 pixels at 300 DPI, 10 GB, if it were rendered."""

    async def render():
        async with await renderer.open(blank_pdf((14400, 14400))) as document:
            monkeypatch.setattr(renderer, "_run", _no_worker_call)
            return await renderer.render(document, 0, 300)

    with pytest.raises(DocumentError) as error:
        run(render())
    assert error.value.code == "page_too_large"
    # 14400 * (300 / 72) is 60000.000000000007 in floats: PDFium would make 60001 pixels.
    assert "60001x60001 = 3600120001 pixels at 300 DPI" in error.value.message
    assert "does not fit even at 50 DPI" in error.value.message


async def _no_worker_call(*args, **kwargs):
    raise AssertionError("a worker was asked to render a page over the limit")


def test_a_raster_page_over_the_pixel_limit(strict):
    renderer = strict(max_page_pixels=1000)

    async def render():
        async with await renderer.open(tiff(TIFF_FRAMES)) as document:
            return await renderer.render(document, 1, 144)  # 30x50

    with pytest.raises(DocumentError, match="page index 1 is 30x50 = 1500 pixels, over the limit of 1000") as error:
        run(render())
    assert error.value.code == "page_too_large"
    assert "no DPI" in error.value.message


@pytest.mark.parametrize("dpi", [49, 301, 0, -72, True, 144.0, "144", None], ids=repr)
def test_a_dpi_out_of_range_is_refused(renderer, dpi):
    async def render():
        async with await renderer.open(raster_pdf()) as document:
            return await renderer.render(document, 0, dpi)

    with pytest.raises(DocumentError, match="dpi must be an integer from 50 to 300") as error:
        run(render())
    assert (error.value.code, error.value.param) == ("invalid_dpi", "dpi")


def test_pages_outside_the_document_and_closed_documents_are_programming_errors(renderer):
    async def misuse():
        document = await renderer.open(raster_pdf())
        with pytest.raises(IndexError):
            await renderer.render(document, 3, 72)
        document.close()
        with pytest.raises(ValueError, match="closed"):
            await renderer.render(document, 0, 72)

    run(misuse())


# --- workers, the event loop, temporary files -------------------------------------------


def test_the_event_loop_runs_while_a_page_renders(renderer):
    async def render_while_ticking():
        ticks = 0
        done = asyncio.Event()

        async def tick():
            nonlocal ticks
            while not done.is_set():
                await asyncio.sleep(0.005)
                ticks += 1

        async with await renderer.open(noise_pdf(400)) as document:
            ticker = asyncio.create_task(tick())
            started = time.perf_counter()
            page = await renderer.render(document, 0, 200)
            elapsed = time.perf_counter() - started
            done.set()
            await ticker
        return page, ticks, elapsed

    page, ticks, elapsed = run(render_while_ticking())
    assert (page.width, page.height) == (1112, 1112)
    assert elapsed > 0.05  # heavy enough to show something
    assert ticks >= 5


def test_a_dead_worker_fails_its_page_and_the_next_render_works(temp_dir):
    async def crash_then_render():
        before = set(multiprocessing.active_children())
        renderer = DocumentRenderer(workers=1, temp_dir=temp_dir)
        async with renderer, await renderer.open(noise_pdf(900)) as document:  # the worker is up
            rendering = asyncio.create_task(renderer.render(document, 0, 300))  # a second or more
            await asyncio.sleep(0.3)
            for worker in set(multiprocessing.active_children()) - before:
                os.kill(worker.pid, signal.SIGKILL)
            with pytest.raises(RenderFailed, match="rendering page index 0 failed: a document worker process died"):
                await rendering
            assert rendering.exception().page == 0
            assert not isinstance(rendering.exception(), RequestError)  # a server error
            return await renderer.render(document, 0, 72)

    page = run(crash_then_render())
    assert isinstance(page, RenderedPage)
    assert (page.width, page.height) == (900, 900)


def test_temporary_files_are_removed(renderer, temp_dir):
    async def open_render_close():
        async with await renderer.open(text_pdf()) as document:
            assert document.path.parent == temp_dir
            assert document.path.exists()
            await renderer.render(document, 0, 72)
        assert document.closed
        assert not document.path.exists()
        for bad in (text_pdf()[:500], encrypted_pdf("secret"), b"\x89PNG\r\n\x1a\n"):
            with pytest.raises(DocumentError):
                await renderer.open(bad)
        forgotten = await renderer.open(raster_pdf())
        path = forgotten.path
        del forgotten
        return path

    forgotten = run(open_render_close())
    assert not forgotten.exists()  # deleted when collected
    assert list(temp_dir.iterdir()) == []


def test_a_cancelled_open_leaves_no_file(renderer, temp_dir):
    async def cancel():
        opening = asyncio.create_task(renderer.open(noise_pdf(300)))
        await asyncio.sleep(0)
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        await asyncio.sleep(0.2)  # the writing thread finishes, then the file goes

    run(cancel())
    assert list(temp_dir.iterdir()) == []
