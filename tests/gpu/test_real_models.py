"""The GPU tier: the real DeepSeek-OCR and DeepSeek-OCR-2 weights through the whole stack.

Runs where the serve command would pick the GPU (nvidia-smi lists one, or
DSOCR_DEVICE=gpu) and the weights can be fetched from the Hugging Face hub or
are in its cache. Elsewhere it is skipped: the tiny random-weight models of
the other tiers stand in for the real ones there, and can show everything but
that the text read is right.
"""

from __future__ import annotations

import base64
import io

import httpx
import pytest
from PIL import Image, ImageDraw, ImageFont

from dsocr.families import family_of
from dsocr.serve import detect_device
from tests.helpers import start_service

pytestmark = pytest.mark.skipif(detect_device() != "gpu", reason="the real models need a GPU")

LINES = ("Invoice 4217", "Total: 17.50 EUR", "Due 2026-12-31")


def page() -> bytes:
    """A clean page of three lines at a readable size."""
    image = Image.new("RGB", (1240, 700), "white")
    draw = ImageDraw.Draw(image)
    for row, line in enumerate(LINES):
        draw.text((80, 80 + row * 180), line, fill="black", font=ImageFont.load_default(size=72))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def messages(text: str | None) -> list[dict]:
    url = "data:image/png;base64," + base64.b64encode(page()).decode()
    content = [{"type": "image_url", "image_url": {"url": url}}]
    return [{"role": "user", "content": content + ([{"type": "text", "text": text}] if text else [])}]


@pytest.fixture(scope="module", params=["deepseek-ai/DeepSeek-OCR", "deepseek-ai/DeepSeek-OCR-2"])
def served_by(request, tmp_path_factory):
    """(API model name, the service) of the stack serving one real model on the GPU."""
    with start_service(tmp_path_factory.mktemp("gpu") / "service.log", model=request.param, device="gpu") as service:
        yield family_of(request.param).served_name, service


@pytest.fixture(scope="module")
def served(served_by):
    """(API model name, OpenAI client)."""
    name, service = served_by
    return name, service.client(timeout=600)


def test_free_ocr_reads_the_page(served):
    name, client = served
    completion = client.chat.completions.create(model=name, messages=messages("Free OCR."), max_tokens=256)
    text = completion.choices[0].message.content
    for line in ("Invoice 4217", "17.50", "2026-12-31"):
        assert line in text, text
    assert completion.choices[0].finish_reason == "stop"


def test_the_document_prompt_tags_each_block_with_its_box(served):
    name, client = served
    text = (
        client.chat.completions.create(model=name, messages=messages(None), max_tokens=512).choices[0].message.content
    )
    assert "<|ref|>" in text and "<|det|>[[" in text and "Invoice 4217" in text, text


def test_streamed_text_is_the_non_streamed_text(served):
    name, client = served
    whole = client.chat.completions.create(model=name, messages=messages("Free OCR."), max_tokens=128)
    chunks = client.chat.completions.create(model=name, messages=messages("Free OCR."), max_tokens=128, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content


def test_a_pdf_through_v1_ocr_gives_each_page_its_text_and_typed_blocks(served_by):
    name, service = served_by
    pdf = io.BytesIO()
    Image.open(io.BytesIO(page())).save(pdf, "PDF", save_all=True, append_images=[Image.open(io.BytesIO(page()))])
    document = "data:application/pdf;base64," + base64.b64encode(pdf.getvalue()).decode()
    response = httpx.post(
        f"{service.base_url}/v1/ocr",
        json={"model": name, "document": {"type": "document_url", "document_url": document}, "max_tokens": 512},
        timeout=600,
    )
    assert response.status_code == 200, response.text
    results = response.json()["pages"]
    assert [result["index"] for result in results] == [0, 1]
    for result in results:
        assert "Invoice 4217" in result["markdown"] and "<|ref|>" not in result["markdown"], result["markdown"]
        width, height = result["dimensions"]["width"], result["dimensions"]["height"]
        assert result["blocks"], result  # the grounding prompt tags every block with its box
        for block in result["blocks"]:
            assert 0 <= block["top_left_x"] <= block["bottom_right_x"] <= width
            assert 0 <= block["top_left_y"] <= block["bottom_right_y"] <= height
        assert any("Invoice 4217" in block["content"] for block in result["blocks"])
        assert result["finish_reason"] == "stop"
