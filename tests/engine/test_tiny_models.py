"""vLLM on CPU loads each tiny model from its safetensors and reads images with it.

One engine per family (the `engine` fixture in conftest.py), each asked once
for a text page and a noise image in one batch; small images (no tiles) and
three output tokens keep it to seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dsocr.tiny_models import IMAGE_TOKEN

PROMPT = f"{IMAGE_TOKEN}\nFree OCR."
TOP_LOGPROBS = 5
# One 1024 px global view (16x16 cells), plus a row end per row for OCR, plus the view separator.
IMAGE_TOKENS = {"ocr": 16 * 17 + 1, "ocr2": 16 * 16 + 1}


def text_page() -> Image.Image:
    page = Image.new("RGB", (512, 384), "white")
    draw = ImageDraw.Draw(page)
    for row in range(8):
        draw.text((24, 24 + 40 * row), f"Line {row}: the quick brown fox, 12345", fill="black")
    return page


def noise_image() -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, size=(384, 512, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@dataclass
class Reading:
    """What the engine returned for one image."""

    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str
    first_top_logprobs: list[float]  # best first


@pytest.fixture(scope="module")
def readings(engine) -> tuple[str, int, dict[str, Reading]]:
    """The family, its vocabulary size and a greedy reading of each image."""
    from vllm import SamplingParams

    family, llm = engine
    images = {"text page": text_page(), "noise": noise_image()}
    # ignore_eos: random weights may well pick EOS first.
    params = SamplingParams(temperature=0.0, max_tokens=3, ignore_eos=True, logprobs=TOP_LOGPROBS)
    prompts = [{"prompt": PROMPT, "multi_modal_data": {"image": image}} for image in images.values()]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    result = {}
    for name, output in zip(images, outputs, strict=True):
        completion = output.outputs[0]
        first_step = sorted((entry.logprob for entry in completion.logprobs[0].values()), reverse=True)
        result[name] = Reading(output.prompt_token_ids, completion.token_ids, completion.text, first_step)
    vocab_size = llm.llm_engine.model_config.get_vocab_size()
    return family, vocab_size, result


def test_generates_text_from_an_image(readings, engine):
    family, _, by_image = readings
    tokenizer = engine[1].get_tokenizer()
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    for reading in by_image.values():
        assert reading.prompt_token_ids[0] == tokenizer.bos_token_id
        assert reading.prompt_token_ids.count(image_token_id) == IMAGE_TOKENS[family]
        # The engine's tokenizer is the byte-level one (spaces and newline kept).
        text_ids = [t for t in reading.prompt_token_ids[1:] if t != image_token_id]
        assert tokenizer.decode(text_ids) == PROMPT.removeprefix(IMAGE_TOKEN)
        assert len(reading.token_ids) == 3
        assert reading.text == tokenizer.decode(reading.token_ids, skip_special_tokens=True)


def test_logprobs_are_not_flat(readings):
    _, vocab_size, by_image = readings
    uniform = -math.log(vocab_size)  # what dummy weights give for every token
    for reading in by_image.values():
        assert len(reading.first_top_logprobs) >= TOP_LOGPROBS
        assert reading.first_top_logprobs[0] > uniform + 0.1


def test_different_images_give_different_logprobs(readings):
    _, _, by_image = readings
    page, noise = by_image["text page"].first_top_logprobs, by_image["noise"].first_top_logprobs
    difference = max(abs(a - b) for a, b in zip(page, noise, strict=True))
    assert difference > 1e-3, f"the image does not reach the logits: {page} vs {noise}"
