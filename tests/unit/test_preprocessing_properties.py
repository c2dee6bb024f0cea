"""Tile maths over any image size: bounds, shapes and token counts agree with the spatial crop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from vllm.transformers_utils.processors import deepseek_ocr as processor_module  # the reference

from dsocr.preprocessing import image_token_count, image_views, resolution_mode, spatial_crop
from dsocr.preprocessing.tiles import candidate_grids, choose_grid
from dsocr.preprocessing.views import PAD_GREY, fitted_size

FAMILY_MODES = [
    ("ocr", "tiny"),
    ("ocr", "small"),
    ("ocr", "base"),
    ("ocr", "large"),
    ("ocr", "gundam"),
    ("ocr2", "base"),
    ("ocr2", "gundam"),
]
FITTED_MODES = [(family, name) for family, name in FAMILY_MODES if name not in ("tiny", "small")]
MAX_CROPS_LIMIT = {"ocr": 9, "ocr2": 6}

sides = st.integers(min_value=1, max_value=12_000)
# Skewed towards the sizes where tiling decisions change (around 1-3 tiles).
small_sides = st.one_of(st.integers(1, 64), st.integers(600, 800), st.integers(1, 2600))


@st.composite
def modes(draw):
    family, name = draw(st.sampled_from(FAMILY_MODES))
    max_crops = draw(st.integers(2, MAX_CROPS_LIMIT[family])) if name == "gundam" else None
    return resolution_mode(family, name, max_crops)


@given(width=sides, height=sides, mode=modes())
def test_tile_count_is_zero_or_within_bounds(width, height, mode):
    columns, rows = spatial_crop(width, height, mode)
    fits_one_tile = width <= mode.tile_size and height <= mode.tile_size
    if not mode.cropping or fits_one_tile:
        assert (columns, rows) == (1, 1)
    else:
        assert mode.min_crops <= columns * rows <= mode.max_crops


@given(width=sides, height=sides, max_crops=st.integers(2, 9), tile_size=st.sampled_from([640, 768]))
def test_grid_is_one_of_the_closest_in_aspect_ratio(width, height, max_crops, tile_size):
    columns, rows = choose_grid(width, height, tile_size, 2, max_crops)
    distances = [abs(width / height - c / r) for c, r in candidate_grids(2, max_crops)]
    assert abs(width / height - columns / rows) == min(distances)


@given(width=sides, height=sides, max_crops=st.integers(2, 9), tile_size=st.sampled_from([640, 768]))
def test_grid_equals_vllm_count_tiles(width, height, max_crops, tile_size):
    expected = processor_module.count_tiles(width, height, min_num=2, max_num=max_crops, image_size=tile_size)
    assert choose_grid(width, height, tile_size, 2, max_crops) == tuple(expected)


@given(width=sides, height=sides, mode=modes())
def test_token_count_follows_the_spatial_crop(width, height, mode):
    columns, rows = crop = spatial_crop(width, height, mode)
    tiles = 0 if crop == (1, 1) else columns * rows
    global_tokens = {
        # v1: a newline token after each row of the q x q global view, then a separator.
        ("ocr", 512): 8 * 9 + 1,
        ("ocr", 640): 10 * 11 + 1,
        ("ocr", 1024): 16 * 17 + 1,
        ("ocr", 1280): 20 * 21 + 1,
        # v2: no newline tokens.
        ("ocr2", 1024): 16 * 16 + 1,
    }[(mode.family, mode.base_size)]
    if mode.family == "ocr":
        tile_tokens = (10 * columns + 1) * 10 * rows if tiles else 0
    else:
        tile_tokens = 12 * 12 * tiles
    assert image_token_count(mode, crop) == global_tokens + tile_tokens


@settings(max_examples=40, deadline=None)
@given(width=small_sides, height=small_sides, mode=modes())
def test_views_have_the_shapes_the_spatial_crop_says(width, height, mode):
    image = Image.fromarray(np.full((height, width, 3), 200, dtype=np.uint8))
    views = image_views(image, mode)
    columns, rows = views.spatial_crop
    tiles = 0 if views.spatial_crop == (1, 1) else columns * rows
    base, tile = mode.base_size, mode.tile_size
    assert views.global_view.shape == (3, base, base) and views.global_view.dtype == np.uint8
    assert views.tiles.shape == (tiles, 3, tile, tile) and views.tiles.dtype == np.uint8
    assert views.num_image_tokens == image_token_count(mode, views.spatial_crop)
    assert views.image_size == (width, height)


@settings(max_examples=25, deadline=None)
@given(width=small_sides, height=small_sides, mode=modes(), seed=st.integers(0, 2**32 - 1))
def test_views_made_on_one_thread_equal_the_threaded_ones(width, height, mode, seed):
    """The parity tests run the default (resize passes shared with a worker thread); this pins the other path to it."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    threaded, single = image_views(image, mode), image_views(image, mode, parallel=False)
    assert np.array_equal(threaded.global_view, single.global_view)
    assert np.array_equal(threaded.tiles, single.tiles)
    assert (threaded.spatial_crop, threaded.num_image_tokens) == (single.spatial_crop, single.num_image_tokens)


@settings(max_examples=40, deadline=None)
@given(width=small_sides, height=small_sides, family_mode=st.sampled_from(FITTED_MODES))
def test_fitted_global_view_is_centred_and_padded_with_grey(width, height, family_mode):
    """A flat image fitted into the global view: grey bands on the padded axis only."""
    mode = resolution_mode(*family_mode)
    image = Image.fromarray(np.full((height, width, 3), 200, dtype=np.uint8))
    view = image_views(image, mode).global_view
    content_width, content_height = fitted_size(width, height, mode.base_size)
    left = round((mode.base_size - content_width) / 2)
    top = round((mode.base_size - content_height) / 2)
    content = np.zeros(view.shape[1:], dtype=bool)
    content[top : top + content_height, left : left + content_width] = True
    assert (view[:, ~content] == PAD_GREY).all()
    assert (view[:, content] == 200).all()  # resampling a flat image keeps it flat
    assert max(content_width, content_height) == mode.base_size


@pytest.mark.parametrize(
    ("family", "mode", "max_crops", "message"),
    [
        ("ocr3", "gundam", None, "unknown model family"),
        ("ocr2", "tiny", None, "not available for family 'ocr2'"),
        ("ocr2", "large", None, "not available for family 'ocr2'"),
        ("ocr", "huge", None, "not available for family 'ocr'"),
        ("ocr", "gundam", 10, "between 2 and 9"),
        ("ocr2", "gundam", 7, "between 2 and 6"),
        ("ocr", "gundam", 1, "between 2 and 9"),
        ("ocr", "base", 4, "gundam mode only"),
    ],
)
def test_resolution_mode_refuses_what_the_models_do_not_support(family, mode, max_crops, message):
    with pytest.raises(ValueError, match=message):
        resolution_mode(family, mode, max_crops)


@pytest.mark.parametrize(
    ("family", "mode", "base", "tile", "stretch"),
    [
        ("ocr", "tiny", 512, 512, True),
        ("ocr", "small", 640, 640, True),
        ("ocr", "base", 1024, 1024, False),
        ("ocr", "large", 1280, 1280, False),
        ("ocr", "gundam", 1024, 640, False),
        ("ocr2", "base", 1024, 1024, False),
        ("ocr2", "gundam", 1024, 768, False),
    ],
)
def test_mode_sizes_are_deepseeks(family, mode, base, tile, stretch):
    resolved = resolution_mode(family, mode)
    assert (resolved.base_size, resolved.tile_size, resolved.stretch) == (base, tile, stretch)
    assert resolved.cropping == (mode == "gundam")
    assert resolved.max_crops == 6
