"""DeepSeek-OCR-2 through the same stack: a second service on the tiny OCR-2 model.

One engine start (about a minute here) for what differs from OCR: the model
names the API answers to, OCR-2's views (768 px tiles, its own token layout)
through the preprocess model into the engine, and the modes it does not offer.
"""

from __future__ import annotations

import base64

import openai
import pytest

from dsocr import paths
from dsocr.preprocessing import preprocess_image, resolution_mode
from dsocr.tiny_models import load_tokenizer
from tests.helpers import expected_prompt_ids, page_png, start_service

# Wider than a tile: Gundam mode makes tiles of it, not only the global view.
PAGE = page_png(size=(1400, 900))


@pytest.fixture(scope="module")
def ocr2(tmp_path_factory):
    with start_service(tmp_path_factory.mktemp("ocr2") / "service.log", family="ocr2") as service:
        yield service.client(timeout=300)


def messages(image: bytes) -> list[dict]:
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    return [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Free OCR."}],
        }
    ]


def test_ocr2_answers_to_its_own_names(ocr2):
    assert [model.id for model in ocr2.models.list()] == ["deepseek-ocr-2", "deepseek-ai/DeepSeek-OCR-2"]
    with pytest.raises(openai.NotFoundError):
        ocr2.chat.completions.create(model="deepseek-ocr", messages=messages(PAGE), max_tokens=1)


def test_ocr2_streams_with_its_own_views_and_token_layout(ocr2):
    chunks = list(
        ocr2.chat.completions.create(
            model="deepseek-ocr-2",
            messages=messages(PAGE),
            max_tokens=3,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    views = preprocess_image(PAGE, resolution_mode("ocr2", "gundam"))
    assert views.tiles.shape[0] > 0 and views.tiles.shape[-1] == 768  # OCR-2's tiles
    expected = expected_prompt_ids(
        load_tokenizer(paths.tiny_model_dir("ocr2")), "<image>\nFree OCR.", views.num_image_tokens
    )
    assert chunks[-1].usage.prompt_tokens == len(expected)
    assert chunks[-1].usage.completion_tokens == 3
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_ocr2_refuses_the_modes_it_does_not_offer(ocr2):
    with pytest.raises(openai.BadRequestError, match="tiny"):
        ocr2.chat.completions.create(
            model="deepseek-ocr-2", messages=messages(PAGE), max_tokens=1, extra_body={"resolution_mode": "tiny"}
        )
