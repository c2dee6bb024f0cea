"""A PDF's requests carry only their own pages: each a PDF of just those pages, cut out by the renderer's
workers, read whole by the service, its answer and errors numbered back as in the document; other documents
are sent whole with their pages named. The service is scripted (httpx's MockTransport): it reads what it is
sent with PDFium or PIL and answers each page with its size, so that the outputs show which page is which."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path, PurePosixPath

import httpx
import pypdfium2 as pdfium
from PIL import Image

from dsocr.batch.client import ApiClient, ApiError
from dsocr.batch.documents import DocumentJob, Part, RequestOptions, Survey, data_url, merge_answers
from dsocr.batch.inputs import InputDocument, discover
from dsocr.batch.ocr_run import OcrRun, OcrSettings
from dsocr.batch.progress import Progress, Tally
from tests.sample_documents import raster_pdf, tiff

# Points (72 DPI raster pages): each page told apart by its size.
PAGE_SIZES = [(300, 200), (200, 300), (250, 250), (220, 180), (180, 220)]


def five_page_pdf() -> bytes:
    return raster_pdf([((40 * n, 120, 200), size) for n, size in enumerate(PAGE_SIZES)])


class ScriptedService:
    """/v1/ocr: each page asked for (all of the document when no `pages`) answered with its size as its markdown;
    a page of the size `refused` is refused as the service refuses a page, naming it ("page N: ...")."""

    def __init__(self, refused: tuple[int, int] | None = None) -> None:
        self.refused = refused
        self.bodies: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        sizes = page_sizes(sent_document(body))
        indices = body.get("pages", range(len(sizes)))
        for index in indices:
            if sizes[index] == self.refused:
                error = {"message": f"page {index}: the image is too large", "type": "invalid_request_error",
                         "param": None, "code": "image_too_large"}  # fmt: skip
                return httpx.Response(400, json={"error": error})
        pages = [
            {"index": index, "markdown": "{}x{}".format(*sizes[index]), "images": [], "blocks": [],
             "dimensions": {"dpi": 72, "width": sizes[index][0], "height": sizes[index][1]}}
            for index in indices
        ]  # fmt: skip
        usage = {"prompt_tokens": len(pages), "completion_tokens": len(pages)}
        return httpx.Response(200, json={"pages": pages, "model": "deepseek-ocr", "usage": usage})


def sent_document(body: dict) -> bytes:
    return base64.b64decode(body["document"]["document_url"].partition(",")[2])


def page_sizes(data: bytes) -> list[tuple[int, int]]:
    if data.startswith(b"%PDF"):
        pdf = pdfium.PdfDocument(data)
        try:
            return [tuple(round(side) for side in pdf.get_page_size(index)) for index in range(len(pdf))]
        finally:
            pdf.close()
    with Image.open(io.BytesIO(data)) as image:
        sizes = []
        for frame in range(image.n_frames):
            image.seek(frame)
            sizes.append(image.size)
        return sizes


def ocr(corpus: Path, out: Path, service: ScriptedService, pages_per_request: int) -> None:
    settings = OcrSettings(out, pages_per_request=pages_per_request, render_workers=1)
    progress = Progress(Tally("documents", "pages"), "none", prefix="dsocr ocr")

    async def run() -> None:
        async with ApiClient("http://service", transport=httpx.MockTransport(service)) as client:
            await OcrRun(discover([str(corpus)]), client, settings, progress).run()

    asyncio.run(run())


# --- a run ------------------------------------------------------------------------------------


def test_a_pdfs_requests_carry_only_their_pages_and_merge_as_one_request_would(tmp_path):
    whole = five_page_pdf()
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "five.pdf").write_bytes(whole)
    by_page, at_once = ScriptedService(), ScriptedService()
    ocr(tmp_path / "corpus", tmp_path / "by-page", by_page, pages_per_request=1)
    ocr(tmp_path / "corpus", tmp_path / "at-once", at_once, pages_per_request=10)

    # Five requests, each a one-page PDF (the service reads all of it), smaller than the document.
    assert len(by_page.bodies) == 5 and not any("pages" in body for body in by_page.bodies)
    parts = [sent_document(body) for body in by_page.bodies]
    assert sorted(size for part in parts for size in page_sizes(part)) == sorted(PAGE_SIZES)
    assert all(len(part) < len(whole) for part in parts)
    # Every page in one request: the document itself, as before.
    [body] = at_once.bodies
    assert (sent_document(body), body["pages"]) == (whole, [0, 1, 2, 3, 4])

    markdown = [(out / "five.md").read_text() for out in (tmp_path / "by-page", tmp_path / "at-once")]
    assert markdown[0] == markdown[1]
    assert markdown[0].split("\n<--- Page Split --->\n") == ["{}x{}".format(*size) for size in PAGE_SIZES]
    record = json.loads((tmp_path / "by-page" / "five.json").read_text())
    assert [page["index"] for page in record["pages"]] == [0, 1, 2, 3, 4]


def test_a_page_a_part_is_refused_for_is_named_by_its_number_in_the_document(tmp_path):
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "five.pdf").write_bytes(five_page_pdf())
    ocr(tmp_path / "corpus", tmp_path / "out", ScriptedService(refused=PAGE_SIZES[3]), pages_per_request=2)
    # Pages 2 and 3 went as a part of two pages, and the service refused its page 1.
    [error] = [json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()]
    assert (error["status_code"], error["code"]) == (400, "image_too_large")
    assert error["message"] == "page 3: the image is too large"


def test_a_tiffs_requests_carry_the_whole_file_naming_their_pages(tmp_path):
    frames = [Image.new("RGB", size, "white") for size in PAGE_SIZES[:3]]
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "scan.tiff").write_bytes(tiff(frames))
    service = ScriptedService()
    ocr(tmp_path / "corpus", tmp_path / "out", service, pages_per_request=1)
    assert sorted(body["pages"] for body in service.bodies) == [[0], [1], [2]]
    assert {sent_document(body) for body in service.bodies} == {(tmp_path / "corpus" / "scan.tiff").read_bytes()}
    assert (tmp_path / "out" / "scan.md").read_text().count("\n<--- Page Split --->\n") == 2


# --- requests, answers and errors of a part ---------------------------------------------------------


def job(page_count: int) -> DocumentJob:
    document = InputDocument(Path("a.pdf"), PurePosixPath("a.pdf"), "a.pdf")
    pages = tuple(range(page_count))
    job = DocumentJob(document, Survey("0" * 64, 10, "pdf", page_count, pages), RequestOptions(pages="0-4"))
    job.data = b"%PDF-the whole document"
    return job


def test_a_request_carries_its_part_and_asks_for_all_of_it_else_the_document_and_its_pages():
    part = Part([3, 4], b"%PDF-pages 3 and 4")
    with_part = job(5).request([3, 4], part)
    assert with_part["document"]["document_url"] == data_url(part.pdf) and "pages" not in with_part
    without = job(5).request([3, 4])
    assert without["document"]["document_url"] == data_url(b"%PDF-the whole document")
    assert without["pages"] == [3, 4]


def page(index: int, markdown: str, figures: int = 0) -> dict:
    images = [{"id": f"img-{n}.jpeg"} for n in range(figures)]
    return {"index": index, "markdown": markdown + "".join(f"![{i['id']}]({i['id']})" for i in images),
            "images": images, "blocks": []}  # fmt: skip


def answer(*pages: dict) -> dict:
    return {"pages": list(pages), "model": "deepseek-ocr", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}


def test_answers_to_parts_are_numbered_back_and_merge_as_the_answer_for_the_whole_document():
    # Pages 3-4 and 0-2 of a document, each part's pages numbered from 0 (and its figures from img-0).
    parts = [Part([3, 4], b""), Part([0, 1, 2], b"")]
    answers = [answer(page(0, "d", figures=1), page(1, "e")), answer(page(0, "a"), page(1, "b", 2), page(2, "c"))]
    merged = merge_answers([part.in_document(a) for part, a in zip(parts, answers, strict=True)], 10)
    whole = answer(page(0, "a"), page(1, "b", 2), page(2, "c"), page(3, "d", figures=1), page(4, "e"))
    assert merged["pages"] == merge_answers([whole], 10)["pages"]
    assert merged["pages"][3]["markdown"] == "d![img-2.jpeg](img-2.jpeg)"


def test_an_error_naming_a_page_of_a_part_names_the_page_of_the_document():
    part = Part([5, 7, 9], b"")

    def in_document(message: str) -> str:
        error = part.error_in_document(ApiError(message, status_code=400, code="invalid_document"))
        assert (error.status_code, error.code) == (400, "invalid_document")
        return error.message

    assert in_document("page 2: the image is too large") == "page 9: the image is too large"
    assert in_document("page index 1 is 9000x9000 = 81000000 pixels") == "page index 7 is 9000x9000 = 81000000 pixels"
    assert in_document("rendering page index 0 failed: a worker died") == "rendering page index 5 failed: a worker died"
    assert in_document("page 3: not a page of the part") == "page 3: not a page of the part"
    assert in_document("no answer after 5 tries") == "no answer after 5 tries"
