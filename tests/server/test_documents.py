"""Documents through the real stack: Mistral's `/v1/ocr` with the official `mistralai` SDK, documents and
several images in chat completions with the `openai` SDK, the refusals, and a document's cancellation.

Every page is a real ensemble request (rendered by PDFium in the frontend's workers, preprocessed,
encoded by the tiny model): pages are kept few and small, in the tiny resolution mode where the API
allows it, with a few output tokens each (the session's service caps /v1/ocr pages it is not told about
at DSOCR_OCR_MAX_TOKENS, tests/helpers.py).
"""

from __future__ import annotations

import base64
import json
import math
import socket
import time

import httpx
import openai
import pytest
from mistralai.client import Mistral
from mistralai.client.errors import SDKError

from dsocr import paths
from dsocr.documents.layout import PAGE_SPLIT
from dsocr.preprocessing import image_token_count, resolution_mode
from dsocr.preprocessing.tiles import NO_TILES
from dsocr.tiny_models import load_tokenizer
from tests.helpers import FRONTEND_ENV, expected_prompt_ids, page_png, serving_image, wait_until
from tests.sample_documents import blank_pdf, empty_pdf, encrypted_pdf, noise_pdf, raster_pdf, text_pdf

MODEL = "deepseek-ocr"
OCR_MAX_TOKENS = int(FRONTEND_ENV["DSOCR_OCR_MAX_TOKENS"])
# Three raster pages of different sizes (points = pixels at 72 DPI), so that each page is known by its size.
PAGES = [((200, 200, 200), (180, 120)), ((210, 210, 210), (120, 180)), ((220, 220, 220), (150, 150))]


def data_url(data: bytes, media_type: str = "application/pdf") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def pdf_document(data: bytes) -> dict:
    return {"type": "document_url", "document_url": data_url(data)}


def pixels(points: float, dpi: int) -> int:
    return math.ceil(points * (dpi / 72))  # PDFium's rounding


@pytest.fixture(scope="module")
def mistral(service) -> Mistral:
    return Mistral(api_key="unused", server_url=service.base_url)


def ocr(service, body: dict, timeout: float = 300) -> httpx.Response:
    return httpx.post(f"{service.base_url}/v1/ocr", json={"model": MODEL, **body}, timeout=timeout)


# --- /v1/ocr through Mistral's SDK ---------------------------------------------------


def test_the_mistral_sdk_ocrs_every_page_in_order_at_144_dpi(mistral):
    document = raster_pdf(PAGES)
    response = mistral.ocr.process(model=MODEL, document=pdf_document(document))
    assert [page.index for page in response.pages] == [0, 1, 2]
    for page, (_, (width, height)) in zip(response.pages, PAGES, strict=True):
        assert (page.dimensions.dpi, page.dimensions.width, page.dimensions.height) == (
            144,
            pixels(width, 144),
            pixels(height, 144),
        )
        assert isinstance(page.markdown, str)
    assert response.model == MODEL
    assert response.usage_info.pages_processed == 3
    assert response.usage_info.doc_size_bytes == len(document)


def test_the_mistral_sdk_selects_pages_and_asks_for_figures(mistral):
    response = mistral.ocr.process(
        model=MODEL,
        document=pdf_document(raster_pdf(PAGES)),
        pages="2,0",
        include_image_base64=True,
        image_limit=1,
        image_min_size=10,
    )
    assert [page.index for page in response.pages] == [0, 2]  # document order, as Mistral's
    assert [page.dimensions.width for page in response.pages] == [pixels(180, 144), pixels(150, 144)]
    # The tiny model writes no figure tags; with the real model figures come with boxes and crops
    # (tests/gpu); the images' shape is checked on parsed pages in tests/unit/test_ocr_response.py.
    assert all(len(page.images) <= 1 for page in response.pages)


def test_an_image_is_a_one_page_document(mistral):
    image = page_png(size=(300, 200))
    response = mistral.ocr.process(
        model=MODEL, document={"type": "image_url", "image_url": data_url(image, "image/png")}
    )
    [page] = response.pages
    assert (page.index, page.dimensions.width, page.dimensions.height) == (0, 300, 200)


def test_the_sdk_sees_a_refused_document_as_a_400_naming_it(mistral):
    with pytest.raises(SDKError) as error:
        mistral.ocr.process(model=MODEL, document=pdf_document(encrypted_pdf(user_password="secret")))
    assert error.value.status_code == 400
    assert "encrypted" in error.value.body


def test_a_document_url_is_fetched_under_the_url_policy(mistral):
    # The session's service fetches URLs from 127.0.0.1 (tests/helpers.py FRONTEND_ENV).
    with serving_image(page_png(), {"/scans/report.pdf": (raster_pdf(PAGES), "application/pdf")}) as address:
        response = mistral.ocr.process(
            model=MODEL,
            document={"type": "document_url", "document_url": f"http://{address}/scans/report.pdf"},
            pages=[1],
        )
    assert [(page.index, page.dimensions.width) for page in response.pages] == [(1, pixels(120, 144))]


# --- /v1/ocr's extensions, over HTTP ------------------------------------------------


def test_extensions_dpi_prompt_mode_and_max_tokens_with_honest_usage(service):
    body = {
        "document": pdf_document(text_pdf()),
        "pages": [1],
        "dpi": 72,
        "prompt": "Free OCR.",
        "resolution_mode": "tiny",
        "max_tokens": 3,
    }
    response = ocr(service, body)
    assert response.status_code == 200, response.text
    [page] = response.json()["pages"]
    assert (page["index"], page["dimensions"]) == (1, {"dpi": 72, "width": pixels(841.89, 72), "height": 596})
    assert page["finish_reason"] in ("length", "stop")
    assert page["usage"]["completion_tokens"] <= 3
    # tiny mode: a 512 px global view and no tiles, whatever the page's size
    image_tokens = image_token_count(resolution_mode("ocr", "tiny"), NO_TILES)
    tokenizer = load_tokenizer(paths.tiny_model_dir("ocr"))
    assert page["usage"]["prompt_tokens"] == len(expected_prompt_ids(tokenizer, "<image>\nFree OCR.", image_tokens))
    total = response.json()["usage"]
    assert total["total_tokens"] == page["usage"]["prompt_tokens"] + page["usage"]["completion_tokens"]


def test_a_page_cut_short_says_length(service):
    body = {"document": pdf_document(raster_pdf(PAGES[:1])), "resolution_mode": "tiny", "max_tokens": 2}
    [page] = ocr(service, body).json()["pages"]
    # Two tokens cannot finish a page of the random model's text unless it stops at once.
    assert page["finish_reason"] == "length" or page["usage"]["completion_tokens"] < 2


def test_blocks_are_typed_with_corners_or_left_out(service):
    body = {"document": pdf_document(raster_pdf(PAGES[:1])), "resolution_mode": "tiny", "include_blocks": False}
    [page] = ocr(service, body).json()["pages"]
    assert page["blocks"] is None
    assert set(page) >= {"index", "markdown", "images", "dimensions", "blocks", "finish_reason", "usage"}


# --- refusals: each a clear 4xx in OpenAI's shape, and the service keeps serving --------


REFUSED = [
    ("encrypted", {"document": pdf_document(encrypted_pdf(user_password="secret"))}, "encrypted_document"),
    ("truncated", {"document": pdf_document(raster_pdf()[:300])}, "invalid_document"),
    ("text as pdf", {"document": pdf_document(b"hello, I am not a PDF")}, "invalid_document"),
    ("no pages", {"document": pdf_document(empty_pdf())}, "empty_document"),
    ("pages reversed range", {"document": pdf_document(raster_pdf()), "pages": "3-1"}, "invalid_pages"),
    ("pages not a number", {"document": pdf_document(raster_pdf()), "pages": "x"}, "invalid_pages"),
    ("pages negative", {"document": pdf_document(raster_pdf()), "pages": [-1]}, "invalid_pages"),
    ("pages repeated", {"document": pdf_document(raster_pdf()), "pages": [0, 0]}, "invalid_pages"),
    ("pages out of range", {"document": pdf_document(raster_pdf()), "pages": [3]}, "invalid_pages"),
    ("dpi", {"document": pdf_document(raster_pdf()), "dpi": 1200}, "invalid_dpi"),
    # 14400 pt square, PDF's largest page: 829 Mpx at 144 DPI
    ("page too large", {"document": pdf_document(blank_pdf((14400, 14400)))}, "page_too_large"),
    ("file id", {"document": {"type": "file", "file_id": "file-1"}}, "unsupported_parameter"),
    ("file url", {"document": {"type": "document_url", "document_url": "file:///etc/passwd"}}, "invalid_document_url"),
    ("table format", {"document": pdf_document(raster_pdf()), "table_format": "html"}, "unsupported_parameter"),
    ("header", {"document": pdf_document(raster_pdf()), "extract_header": True}, "unsupported_parameter"),
    ("unknown field", {"document": pdf_document(raster_pdf()), "colour": "blue"}, "unsupported_parameter"),
    ("unknown type", {"document": {"type": "video_url", "video_url": "x"}}, "invalid_value"),
    ("over the bytes", {"document": pdf_document(b"%PDF-1.7\n" + bytes(2_000_001))}, "document_too_large"),
]


@pytest.mark.parametrize("case, body, code", REFUSED, ids=[case for case, _, _ in REFUSED])
def test_bad_documents_are_400_naming_the_problem(service, case, body, code):
    response = ocr(service, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["type"]) == (code, "invalid_request_error"), error
    assert error["message"]


def test_a_page_the_model_refuses_is_named(service):
    # Its lossless render is megabytes of noise, over the test service's 2 MB image limit.
    response = ocr(service, {"document": pdf_document(noise_pdf(700)), "resolution_mode": "tiny"})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"].startswith("page 0: "), response.text


def test_the_service_keeps_serving_after_the_refusals(service):
    assert ocr(service, {"document": pdf_document(raster_pdf(PAGES[:1])), "resolution_mode": "tiny"}).status_code == 200


# --- documents and several images in chat completions -----------------------------------


def chat_content(*parts: dict, text: str = "Free OCR.") -> list[dict]:
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


def file_part(data: bytes) -> dict:
    return {"type": "file", "file": {"file_data": data_url(data), "filename": "pages.pdf"}}


def image_part(data: bytes) -> dict:
    return {"type": "image_url", "image_url": {"url": data_url(data, "image/png")}}


def test_chat_answers_every_page_and_image_in_order_with_usage_summed(service):
    client = service.client()
    messages = chat_content(file_part(raster_pdf(PAGES[:2])), image_part(page_png(size=(200, 100))))
    extra = {"resolution_mode": "tiny", "ignore_eos": True}
    completion = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=3, extra_body=extra)
    assert completion.choices[0].message.content.count(PAGE_SPLIT) == 2  # three pages
    assert completion.usage.completion_tokens == 3 * 3
    assert completion.choices[0].finish_reason == "length"
    # The same pages streamed: the same text, chunk by chunk in page order, and the same usage.
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=messages,
            max_tokens=3,
            extra_body=extra,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert streamed == completion.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == 9
    assert chunks[-1].usage.prompt_tokens == completion.usage.prompt_tokens


def test_chat_refuses_a_file_by_id_and_an_encrypted_file(service):
    client = service.client()
    with pytest.raises(openai.BadRequestError) as by_id:
        client.chat.completions.create(
            model=MODEL, messages=chat_content({"type": "file", "file": {"file_id": "file-1"}})
        )
    assert by_id.value.body["param"] == "messages[0].content[0].file.file_id"
    with pytest.raises(openai.BadRequestError) as encrypted:
        client.chat.completions.create(model=MODEL, messages=chat_content(file_part(encrypted_pdf("secret"))))
    assert (encrypted.value.body["code"], encrypted.value.body["param"]) == (
        "encrypted_document",
        "messages[0].content[0].file.file_data",
    )


# --- a client that leaves stops every page in the engine ---------------------------------


def test_a_client_that_leaves_cancels_every_page_in_the_engine(service):
    """Six pages that would each generate 2000 tokens; the client gives up after the first page is under
    way, and the engine's running and waiting gauges fall to 0 with far fewer tokens generated."""
    before = service.metric("vllm:generation_tokens_total")
    body = {
        "model": MODEL,
        "document": pdf_document(raster_pdf([PAGES[0]] * 6)),
        "resolution_mode": "tiny",
        "max_tokens": 2000,
    }
    with socket.create_connection(("127.0.0.1", service.port)) as connection:
        connection.sendall(http_post("/v1/ocr", body))
        assert wait_until(lambda: service.metric("vllm:num_requests_running") > 0, 120), "no page reached the engine"
    assert wait_until(
        lambda: service.metric("vllm:num_requests_running") == 0 and service.metric("vllm:num_requests_waiting") == 0,
        60,
    ), "pages kept running after the client left"
    generated = service.metric("vllm:generation_tokens_total") - before
    time.sleep(1)
    assert service.metric("vllm:generation_tokens_total") - before == generated  # nothing more
    assert generated < 6 * 2000 / 4


def http_post(path: str, body: dict) -> bytes:
    """A whole HTTP request, written by hand so that the test decides when the connection closes."""
    payload = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}"
    return head.encode() + b"\r\n\r\n" + payload
