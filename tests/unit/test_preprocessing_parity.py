"""Our uint8 views, normalised, equal vLLM's own DeepseekOCRProcessor exactly.

The reference is the real `vllm.transformers_utils.processors.deepseek_ocr.
DeepseekOCRProcessor`, built per family and mode with the tiny models'
tokenizer, and compared tensor for tensor (torch.equal) and id for id.
"""

from __future__ import annotations

import io
from functools import cache

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from vllm.transformers_utils.processors import deepseek_ocr as processor_module  # the reference

from dsocr.preprocessing import (
    PromptError,
    image_views,
    preprocess_image,
    preprocess_request,
    prompt_token_ids,
    resolution_mode,
)
from dsocr.preprocessing.normalize import normalize
from dsocr.tiny_models import build_tokenizer, load_tokenizer

PROMPT = "<image>\n<|grounding|>Convert the document to markdown."
STRATEGY = {"ocr": "v1", "ocr2": "v2"}
# Larger than any test image: see reference_for() on Base and Large.
BEYOND_ANY_IMAGE = 1 << 20

# (width, height): degenerate, around one tile, exact tile multiples, strips,
# A4 pages at 150/200 DPI both ways, phone photos, one huge image.
TINY = [(1, 1), (7, 5), (5, 7)]
AROUND_A_TILE = [(640, 640), (641, 640), (640, 641), (768, 768), (769, 700), (1024, 1024)]
TILE_MULTIPLES = [(1280, 1920), (1920, 1280), (1536, 2304), (2560, 640)]
STRIPS = [(1, 2000), (2000, 1), (3, 1500), (1500, 3), (300, 4000)]
PAGES = [(1240, 1754), (1654, 2339), (2339, 1654), (3024, 4032), (1280, 1024)]
HUGE = [(4000, 6000)]
GUNDAM_SIZES = TINY + AROUND_A_TILE + TILE_MULTIPLES + STRIPS + PAGES + HUGE
NO_CROP_SIZES = [(1, 1), (7, 5), (640, 641), (1024, 1024), (1, 2000), (1500, 3), (1654, 2339), (2339, 1654)]

FAMILY_MODES = [("ocr", "tiny"), ("ocr", "small"), ("ocr", "base"), ("ocr", "large"), ("ocr2", "base")]


@pytest.fixture(scope="session")
def tokenizer(tmp_path_factory):
    return load_tokenizer(build_tokenizer(tmp_path_factory.mktemp("tokenizer")))


@pytest.fixture(scope="session")
def reference_for(tokenizer):
    """(family, mode, max_crops) -> (vLLM processor, the `cropping` argument to call it with).

    Gundam and Tiny/Small are configured as their modes say. DeepSeek's Base and
    Large fit the image into the global view keeping its aspect ratio; vLLM's
    processor takes that exact path (ImageOps.pad, no tiles, a global view
    only) for an image no larger than its image_size with cropping on, so the
    reference for those is built with an image_size beyond any test image.
    """

    @cache
    def build(family: str, mode_name: str, max_crops: int | None):
        mode = resolution_mode(family, mode_name, max_crops)
        if mode.cropping:
            image_size, cropping = mode.tile_size, True
        elif mode.stretch:
            image_size, cropping = mode.base_size, False
        else:
            image_size, cropping = BEYOND_ANY_IMAGE, True
        processor = processor_module.DeepseekOCRProcessor(
            tokenizer,
            image_size=image_size,
            base_size=mode.base_size,
            strategy=STRATEGY[family],
            max_crops=mode.max_crops,
        )
        return processor, cropping

    return build


@cache
def noise_image(width: int, height: int) -> Image.Image:
    """Full-range random pixels: every resampling rounding shows."""
    rng = np.random.default_rng(width * 100_003 + height)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def encode_text(tokenizer):
    return lambda text: tokenizer.encode(text, add_special_tokens=False)


def assert_same_as_reference(images, prompt, family, mode_name, max_crops, reference_for, tokenizer, ours):
    """Every output of the reference processor equals ours for these images."""
    processor, cropping = reference_for(family, mode_name, max_crops)
    input_ids, pixel_values, images_crop, _, spatial_crop, token_counts, _ = processor.tokenize_with_images(
        prompt, images, cropping=cropping
    )
    assert torch.equal(normalize(torch.from_numpy(np.stack([o.global_view for o in ours]))), pixel_values)
    our_tiles = torch.from_numpy(np.concatenate([o.tiles for o in ours]))
    if images_crop.shape[0] == 0:
        assert our_tiles.shape[0] == 0
    else:
        assert torch.equal(normalize(our_tiles), images_crop)
    assert [list(o.spatial_crop) for o in ours] == spatial_crop.tolist()
    assert [o.num_image_tokens for o in ours] == token_counts
    ids = prompt_token_ids(
        prompt,
        [o.num_image_tokens for o in ours],
        encode_text(tokenizer),
        processor.image_token_id,
        processor.bos_id,
    )
    assert ids == input_ids[0].tolist()


@pytest.mark.parametrize("family", ["ocr", "ocr2"])
@pytest.mark.parametrize("size", GUNDAM_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_gundam_matches_vllm(family, size, reference_for, tokenizer):
    image = noise_image(*size)
    ours = image_views(image, resolution_mode(family, "gundam"))
    assert_same_as_reference([image], PROMPT, family, "gundam", None, reference_for, tokenizer, [ours])


@pytest.mark.parametrize("family_mode", FAMILY_MODES, ids=lambda fm: f"{fm[0]}-{fm[1]}")
@pytest.mark.parametrize("size", NO_CROP_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_modes_without_tiles_match_vllm(family_mode, size, reference_for, tokenizer):
    family, mode_name = family_mode
    image = noise_image(*size)
    ours = image_views(image, resolution_mode(family, mode_name))
    assert ours.tiles.shape[0] == 0
    assert_same_as_reference([image], PROMPT, family, mode_name, None, reference_for, tokenizer, [ours])


# 1280x1024 (5:4) is equally far from 1x2 and 2x1: with 2 or 3 tiles at most
# the choice falls to the tie-break and the candidates' order.
@pytest.mark.parametrize(
    ("family", "max_crops", "size"),
    [
        ("ocr", 2, (1280, 1024)),
        ("ocr", 3, (1280, 1024)),
        ("ocr", 3, (1024, 1280)),
        ("ocr", 9, (1654, 2339)),
        ("ocr", 9, (6000, 900)),
        ("ocr2", 2, (1536, 1229)),
        ("ocr2", 4, (3024, 4032)),
    ],
    ids=str,
)
def test_gundam_max_crops_matches_vllm(family, max_crops, size, reference_for, tokenizer):
    image = noise_image(*size)
    ours = image_views(image, resolution_mode(family, "gundam", max_crops))
    assert_same_as_reference([image], PROMPT, family, "gundam", max_crops, reference_for, tokenizer, [ours])


def test_several_images_in_one_prompt_match_vllm(reference_for, tokenizer):
    prompt = "Page one: <image>\nPage two: <image>\nTranscribe both."
    images = [noise_image(1654, 2339), noise_image(500, 300)]
    payloads = [_png(image) for image in images]
    ours = preprocess_request(prompt, payloads, resolution_mode("ocr", "gundam"))
    assert_same_as_reference(images, prompt, "ocr", "gundam", None, reference_for, tokenizer, ours)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def _rotated_jpeg() -> bytes:
    """A landscape JPEG whose EXIF says: display rotated 90 degrees clockwise."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    noise_image(2000, 1200).save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def _transparent_png() -> bytes:
    rgba = noise_image(900, 700).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    return _png(rgba)


@pytest.mark.parametrize("family", ["ocr", "ocr2"])
@pytest.mark.parametrize("make_payload", [_rotated_jpeg, _transparent_png], ids=lambda f: f.__name__.strip("_"))
def test_bytes_in_match_vllm_on_the_reference_loader(family, make_payload, reference_for, tokenizer):
    """Decode included: DeepSeek's loader (open, exif_transpose, convert RGB) feeds vLLM."""
    payload = make_payload()
    reference_image = ImageOps.exif_transpose(Image.open(io.BytesIO(payload))).convert("RGB")
    ours = preprocess_image(payload, resolution_mode(family, "gundam"))
    assert ours.image_size == reference_image.size
    assert_same_as_reference([reference_image], PROMPT, family, "gundam", None, reference_for, tokenizer, [ours])


def test_prompt_with_wrong_placeholder_count_is_refused_before_decoding():
    with pytest.raises(PromptError, match=r"2 <image> placeholder\(s\) but 1 image") as error:
        preprocess_request("<image> and <image>", [b"not even an image"], resolution_mode("ocr", "gundam"))
    assert error.value.code == "placeholder_mismatch"
    assert isinstance(error.value, ValueError)


def test_normalize_is_bit_identical_to_torchvision_on_every_value():
    from torchvision import transforms

    reference = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)])
    every_value = np.arange(256, dtype=np.uint8).reshape(16, 16)
    pixels = np.stack([every_value, every_value.T, every_value[::-1]], axis=-1)  # HWC, each value in each channel
    expected = reference(Image.fromarray(pixels))
    ours = normalize(torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))))
    assert ours.dtype == torch.float32
    assert torch.equal(ours, expected)
    assert torch.equal(ours.view(torch.int32), expected.view(torch.int32))  # the very bits, -0.0 included


def test_normalize_refuses_what_is_not_uint8_channels_first():
    with pytest.raises(TypeError, match="uint8"):
        normalize(torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3, H, W\]"):
        normalize(torch.zeros(2, 2, 3, dtype=torch.uint8))
