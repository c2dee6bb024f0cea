"""The image data contract of the vLLM plugin: checks and token maths, no vLLM needed.

Every breach of the contract must be a ValueError (ImageDataError) naming it,
raised before anything reaches the engine.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dsocr.preprocessing import image_views, resolution_mode
from dsocr.preprocessing.tiles import candidate_grids, image_token_count
from dsocr.vllm_plugin import ImageDataError, check_image_data, image_data, views_data
from dsocr.vllm_plugin.geometry import family_modes, max_image_tokens, mode_of_views, views_token_count

FAMILY_MODES = [("ocr", "tiny"), ("ocr", "small"), ("ocr", "base"), ("ocr", "large"), ("ocr", "gundam")]
FAMILY_MODES += [("ocr2", "base"), ("ocr2", "gundam")]


def views(family: str, mode: str, crop: tuple[int, int] = (1, 1)) -> dict[str, torch.Tensor]:
    """Zero-pixel image data of one image in a mode, with the tiles its crop needs."""
    geometry = resolution_mode(family, mode)
    tiles = crop[0] * crop[1] if crop != (1, 1) else 0
    return views_data(
        np.zeros((3, geometry.base_size, geometry.base_size), np.uint8),
        np.zeros((tiles, 3, geometry.tile_size, geometry.tile_size), np.uint8),
        crop,
    )


@pytest.mark.parametrize("family, mode", FAMILY_MODES)
def test_views_of_every_mode_are_accepted(family, mode):
    assert check_image_data(family, views(family, mode)).name == mode


@pytest.mark.parametrize("family, crop", [("ocr", (3, 3)), ("ocr", (1, 9)), ("ocr2", (2, 3)), ("ocr2", (6, 1))])
def test_gundam_accepts_up_to_the_family_tile_limit(family, crop):
    assert check_image_data(family, views(family, "gundam", crop)).name == "gundam"


def test_image_data_of_preprocessed_images_is_accepted():
    from PIL import Image

    page = Image.new("RGB", (1000, 1400), "white")
    for family, mode in FAMILY_MODES:
        image = image_views(page, resolution_mode(family, mode))
        data = image_data(image)
        assert check_image_data(family, data).name == mode
        assert data["pixel_values"].shape == (1, *image.global_view.shape)
        assert data["images_crop"].shape == image.tiles.shape
        assert data["images_spatial_crop"].tolist() == [list(image.spatial_crop)]
        assert np.shares_memory(data["pixel_values"].numpy(), image.global_view)  # wrapped, not copied


def test_several_images_of_one_mode_are_accepted():
    tiled, plain = views("ocr", "gundam", (2, 3)), views("ocr", "gundam")
    data = {key: torch.cat([tiled[key], plain[key], tiled[key]]) for key in tiled}
    assert check_image_data("ocr", data).name == "gundam"


def replaced(data: dict, **changes) -> dict:
    return {**data, **changes}


GOOD = views("ocr", "gundam", (2, 1))
BREACHES = {
    "not a dict": ([GOOD["pixel_values"]], "must be a dict of tensors, got list"),
    "missing key": ({"pixel_values": GOOD["pixel_values"]}, r"missing \['images_crop', 'images_spatial_crop'\]"),
    "unknown key": (replaced(GOOD, image_embeds=GOOD["pixel_values"]), r"unknown \['image_embeds'\]"),
    "numpy array": (replaced(GOOD, pixel_values=GOOD["pixel_values"].numpy()), "must be a torch.Tensor, got ndarray"),
    "not on the CPU": (
        replaced(GOOD, pixel_values=torch.empty((1, 3, 1024, 1024), dtype=torch.uint8, device="meta")),
        "pixel_values must be on the CPU, got meta",
    ),
    "float global view": (
        replaced(GOOD, pixel_values=GOOD["pixel_values"].float()),
        "pixel_values must be torch.uint8, got torch.float32",
    ),
    "float tiles": (replaced(GOOD, images_crop=GOOD["images_crop"].half()), "images_crop must be torch.uint8"),
    "int32 crop": (
        replaced(GOOD, images_spatial_crop=GOOD["images_spatial_crop"].int()),
        "images_spatial_crop must be torch.int64, got torch.int32",
    ),
    "no batch dimension": (replaced(GOOD, pixel_values=GOOD["pixel_values"][0]), r"\[count, 3, side, side\]"),
    "not square": (replaced(GOOD, pixel_values=GOOD["pixel_values"][..., :512]), r"got \[1, 3, 1024, 512\]"),
    "grey tiles": (replaced(GOOD, images_crop=GOOD["images_crop"][:, :1]), r"images_crop must be \[count, 3"),
    "no image": (
        {key: value[:0] for key, value in GOOD.items()},
        "pixel_values holds no image",
    ),
    "crop per image": (
        replaced(GOOD, images_spatial_crop=GOOD["images_spatial_crop"][0]),
        r"images_spatial_crop must be \[1, 2\] for 1 image\(s\), got \[2\]",
    ),
    "unknown view size": (
        replaced(GOOD, pixel_values=torch.zeros((1, 3, 800, 800), dtype=torch.uint8)),
        "a 800 px global view with 640 px tiles is no resolution mode of family 'ocr'",
    ),
    "too few tiles": (
        replaced(GOOD, images_crop=GOOD["images_crop"][:1]),
        r"images_crop holds 1 tiles but images_spatial_crop \[\[2, 1\]\] needs 2",
    ),
    "tiles without a grid": (
        replaced(GOOD, images_spatial_crop=torch.tensor([[1, 1]])),
        r"images_crop holds 2 tiles but images_spatial_crop \[\[1, 1\]\] needs 0",
    ),
    "too many tiles": (views("ocr", "gundam", (5, 2)), r"spatial crop \(5, 2\) is no tile grid .* 2 to 9 tiles"),
    "empty grid side": (
        replaced(GOOD, images_spatial_crop=torch.tensor([[0, 2]])),
        r"spatial crop \(0, 2\) is no tile grid",
    ),
}


@pytest.mark.parametrize("data, message", BREACHES.values(), ids=BREACHES.keys())
def test_a_breach_of_the_contract_is_a_value_error(data, message):
    with pytest.raises(ImageDataError, match=message):
        check_image_data("ocr", data)
    assert issubclass(ImageDataError, ValueError)


def test_each_family_has_its_own_modes_and_tile_limit():
    with pytest.raises(ImageDataError, match=r"spatial crop \(3, 3\) is no tile grid .* 2 to 6 tiles"):
        check_image_data("ocr2", views("ocr2", "gundam", (3, 3)))
    with pytest.raises(ImageDataError, match="512 px global view with 512 px tiles is no resolution mode of family"):
        check_image_data("ocr2", views("ocr", "tiny"))
    with pytest.raises(ImageDataError, match=r"spatial crop \(2, 1\) has tiles, but the 'base' mode has none"):
        check_image_data("ocr", replaced(views("ocr", "base"), images_spatial_crop=torch.tensor([[2, 1]])))


@pytest.mark.parametrize("family, mode", FAMILY_MODES)
def test_views_identify_their_mode(family, mode):
    geometry = resolution_mode(family, mode)
    assert mode_of_views(family, geometry.base_size, geometry.tile_size).name == mode


@pytest.mark.parametrize("family", ["ocr", "ocr2"])
def test_token_counts_are_the_preprocessing_counts(family):
    for mode in family_modes(family):
        grids = [(1, 1), *candidate_grids(mode.min_crops, mode.max_crops)] if mode.cropping else [(1, 1)]
        for grid in grids:
            expected = image_token_count(mode, grid)
            assert views_token_count(family, mode.base_size, mode.tile_size, grid) == expected


def test_token_counts_by_hand():
    # v1: q (q + 1) global tokens + separator, then (columns t + 1)(rows t) tile tokens.
    assert views_token_count("ocr", 512, 512, (1, 1)) == 8 * 9 + 1
    assert views_token_count("ocr", 1280, 1280, (1, 1)) == 20 * 21 + 1
    assert views_token_count("ocr", 1024, 640, (2, 3)) == 16 * 17 + 1 + (2 * 10 + 1) * (3 * 10)
    # v2: no newline tokens.
    assert views_token_count("ocr2", 1024, 768, (2, 3)) == 16 * 16 + 1 + (2 * 12) * (3 * 12)


def test_the_most_tokens_of_one_image():
    # OCR: a 1 x 9 Gundam grid, 273 + (10 + 1) * 90. OCR-2: any 6-tile grid, 257 + 6 * 144.
    assert max_image_tokens("ocr") == 1263
    assert max_image_tokens("ocr2") == 1121
