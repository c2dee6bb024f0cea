"""Our views path through the engine: exactly vLLM's own in Gundam, and every other mode too.

Per family, one engine (the `engine` fixture in conftest.py) and three kinds of check:
- Gundam parity: one page large enough for tiles, as a PIL image through
  vLLM's own processor and as our uint8 views (`image_data`): the same prompt
  ids, greedy tokens and top-5 logprobs at every step. A different image
  gives different logprobs, so the comparison can fail.
- Every other mode the family offers, in one `generate` call with a PIL
  image (vLLM's Gundam) beside them, so requests of different modes and of
  both paths are in flight together: prompt ids as our preprocessing
  predicts them, and tokens out.
- Malformed image data: a ValueError for that request, and the engine goes on.
The modes' images are small (the views are B x B whatever the image size) and
outputs are a few tokens: the vision encoders dominate on a small CPU.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from PIL import Image, ImageDraw

from dsocr.preprocessing import (
    PreprocessedImage,
    decode_image,
    preprocess_image,
    resolution_mode,
)
from dsocr.tiny_models import IMAGE_TOKEN
from dsocr.vllm_plugin import image_data
from dsocr.vllm_plugin.geometry import family_modes
from tests.helpers import expected_prompt_ids

PROMPT = f"{IMAGE_TOKEN}\nFree OCR."
PARITY_TOKENS = 6
TOP_LOGPROBS = 5
MODE_TOKENS = 2
PAGE_SIZE = (1000, 1000)  # 2 x 2 tiles in Gundam for both families
SMALL_SIZE = (320, 240)  # no tiles in any mode


def png_page(size: tuple[int, int], heading: str) -> bytes:
    """A page of text lines and a coloured block, PNG-encoded (lossless, so both paths see the same pixels)."""
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    draw.rectangle((size[0] // 8, size[1] // 10, size[0] // 2, size[1] // 6), fill=(40, 90, 200))
    for row in range(size[1] // 60):
        line = f"{heading} {row}: the quick brown fox, 12345"
        draw.text((size[0] // 10, size[1] // 5 + 50 * row), line, fill="black")
    buffer = io.BytesIO()
    page.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Reading:
    """What the engine returned for one request."""

    prompt_token_ids: list[int]
    token_ids: list[int]
    logprobs: list[dict[int, float]]  # per step: top token id -> logprob


def read(llm, images: list, max_tokens: int) -> list[Reading]:
    """Greedy readings of a batch of requests, one image each (PIL or image data)."""
    from vllm import SamplingParams

    # ignore_eos: random weights may well pick EOS first.
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True, logprobs=TOP_LOGPROBS)
    prompts = [{"prompt": PROMPT, "multi_modal_data": {"image": image}} for image in images]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    return [
        Reading(
            output.prompt_token_ids,
            list(output.outputs[0].token_ids),
            [{token: entry.logprob for token, entry in step.items()} for step in output.outputs[0].logprobs],
        )
        for output in outputs
    ]


@pytest.fixture(scope="module")
def gundam_readings(engine) -> dict[str, Reading]:
    """The page through vLLM's path and through ours, one request at a time."""
    family, llm = engine
    gundam = resolution_mode(family, "gundam")
    page = png_page(PAGE_SIZE, "Line")
    assert preprocess_image(page, gundam).spatial_crop == (2, 2)
    return {
        "vllm": read(llm, [decode_image(page)], PARITY_TOKENS)[0],
        "ours": read(llm, [image_data(preprocess_image(page, gundam))], PARITY_TOKENS)[0],
    }


@dataclass
class ModeReading:
    request: object  # the image data, or the PIL image for vLLM's own Gundam
    image: PreprocessedImage  # what our preprocessing predicts
    reading: Reading


@pytest.fixture(scope="module")
def mode_readings(engine) -> dict[str, ModeReading]:
    """A small image in each non-Gundam mode as image data, and as a PIL
    image (vLLM's Gundam), all in one `generate` call."""
    family, llm = engine
    small = png_page(SMALL_SIZE, "Mode")
    modes = [mode for mode in family_modes(family) if mode.name != "gundam"]
    requests = {mode.name: (image_data(preprocess_image(small, mode)), preprocess_image(small, mode)) for mode in modes}
    requests["vllm gundam"] = (decode_image(small), preprocess_image(small, resolution_mode(family, "gundam")))
    readings = read(llm, [request for request, _ in requests.values()], MODE_TOKENS)
    return {
        name: ModeReading(request, image, reading)
        for (name, (request, image)), reading in zip(requests.items(), readings, strict=True)
    }


def test_gundam_views_equal_vllm_processing(gundam_readings):
    ours, theirs = gundam_readings["ours"], gundam_readings["vllm"]
    assert ours.prompt_token_ids == theirs.prompt_token_ids
    assert ours.token_ids == theirs.token_ids
    assert len(ours.logprobs) == PARITY_TOKENS
    assert ours.logprobs == theirs.logprobs


def test_a_different_image_gives_different_logprobs(gundam_readings, mode_readings):
    """Both in Gundam, through vLLM's path: the model sees the image, so the parity above can fail."""
    page, other = gundam_readings["vllm"].logprobs[0], mode_readings["vllm gundam"].reading.logprobs[0]
    top_page, top_other = sorted(page.values(), reverse=True), sorted(other.values(), reverse=True)
    assert max(abs(a - b) for a, b in zip(top_page, top_other, strict=True)) > 1e-3


def test_other_modes_in_one_batch(engine, mode_readings):
    _, llm = engine
    for name, mode in mode_readings.items():
        assert mode.reading.prompt_token_ids == expected_prompt_ids(
            llm.get_tokenizer(), PROMPT, mode.image.num_image_tokens
        ), name
        assert len(mode.reading.token_ids) == MODE_TOKENS, name


def test_malformed_image_data_fails_only_its_request(engine, mode_readings):
    _, llm = engine
    smallest = next(iter(mode_readings.values()))
    data = smallest.request
    with pytest.raises(ValueError, match=r"pixel_values must be torch\.uint8, got torch\.float32"):
        read(llm, [{**data, "pixel_values": data["pixel_values"].float()}], 1)
    one_tile = data["images_crop"].new_zeros((1, *data["images_crop"].shape[1:]))
    with pytest.raises(ValueError, match=r"images_crop holds 1 tiles but images_spatial_crop \[\[1, 1\]\] needs 0"):
        read(llm, [{**data, "images_crop": one_tile}], 1)
    # The same request again (its prefix is cached, so this costs one step).
    [reading] = read(llm, [data], 1)
    assert len(reading.token_ids) == 1
