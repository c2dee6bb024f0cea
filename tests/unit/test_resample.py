"""The resize passes against PIL's own bicubic resize: the same bytes for any size, scale and pixels."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from dsocr.preprocessing import decode_image, image_views, resolution_mode
from dsocr.preprocessing.resample import Resize, pil_resizes_horizontally_first, resize_all

WORKERS = ThreadPoolExecutor(max_workers=1)


def random_image(width: int, height: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def pil_planes(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(image.resize(size, Image.Resampling.BICUBIC)).transpose(2, 0, 1)


def resized(image: Image.Image, size: tuple[int, int], parallel: bool = False) -> np.ndarray:
    out = np.empty((3, size[1], size[0]), np.uint8)
    resize_all(image, [Resize(size, out[None, None])], WORKERS if parallel else None)
    return out


# Up- and downscaling, strips, sizes shorter than the filter, and shrinking
# by large factors (many taps per output).
sides = st.one_of(st.integers(1, 8), st.integers(1, 300), st.integers(300, 1500))


@settings(max_examples=250, deadline=None)
@given(width=sides, height=sides, out_width=sides, out_height=sides, seed=st.integers(0, 2**32 - 1),
       parallel=st.booleans())  # fmt: skip
def test_resize_equals_pil(width, height, out_width, out_height, seed, parallel):
    image = random_image(width, height, seed)
    size = (out_width, out_height)
    assert np.array_equal(resized(image, size, parallel), pil_planes(image, size))


@settings(max_examples=15, deadline=None)
@given(
    width=st.integers(900, 3200),
    height=st.integers(900, 4200),
    out_width=st.sampled_from([512, 640, 724, 1024, 1280, 1920]),
    out_height=st.sampled_from([512, 640, 1024, 1280, 1920, 2560]),
    seed=st.integers(0, 2**32 - 1),
)
def test_document_sized_resizes_equal_pil(width, height, out_width, out_height, seed):
    image = random_image(width, height, seed)
    size = (out_width, out_height)
    assert np.array_equal(resized(image, size, parallel=True), pil_planes(image, size))


def test_several_resizes_share_the_image_and_fill_grids_in_place():
    """A padded window and a tile grid, made in one call, equal PIL's resize then crop."""
    image = random_image(1700, 2300, seed=7)
    view = np.full((3, 1024, 1024), 5, np.uint8)
    tiles = np.empty((6, 3, 640, 640), np.uint8)
    resize_all(
        image,
        [Resize((757, 1024), view[None, None, :, :, 133:890]), Resize((1280, 1920), tiles.reshape(3, 2, 3, 640, 640))],
        WORKERS,
    )
    assert np.array_equal(view[:, :, 133:890], pil_planes(image, (757, 1024)))
    assert (view[:, :, :133] == 5).all() and (view[:, :, 890:] == 5).all()
    grid = pil_planes(image, (1280, 1920))
    for index, tile in enumerate(tiles):
        row, column = divmod(index, 2)
        assert np.array_equal(tile, grid[:, row * 640 : (row + 1) * 640, column * 640 : (column + 1) * 640])


@settings(max_examples=150, deadline=None)
@given(width=sides, height=sides, out_width=sides, out_height=sides, seed=st.integers(0, 2**32 - 1))
def test_the_pass_order_is_the_one_pil_uses(width, height, out_width, out_height, seed):
    """PIL's result is its two passes in the order `pil_resizes_horizontally_first` names."""
    assume(width != out_width and height != out_height)
    image = random_image(width, height, seed)
    if pil_resizes_horizontally_first((width, height), (out_width, out_height)):
        two_steps = image.resize((out_width, height)).resize((out_width, out_height))
    else:
        two_steps = image.resize((width, out_height)).resize((out_width, out_height))
    assert np.array_equal(np.asarray(two_steps), np.asarray(image.resize((out_width, out_height))))


@pytest.mark.parametrize(
    ("size", "out_size"),
    [((300, 3000), (100, 200)), ((40, 900), (200, 300)), ((1000, 3000), (900, 1024))],
)
def test_images_pil_squeezes_vertically_first_are_still_exact(size, out_size):
    assert not pil_resizes_horizontally_first(size, out_size)
    image = random_image(*size, seed=3)
    assert np.array_equal(resized(image, out_size), pil_planes(image, out_size))


def test_decoded_documents_take_the_fast_passes(monkeypatch, jpeg_photo):
    """A decoded 12 Mpx photo is read in place, and PIL's resize is never called."""
    image = decode_image(jpeg_photo)
    mode = resolution_mode("ocr", "gundam")
    expected = (pil_planes(image, (768, 1024)), pil_planes(image, (1280, 1920)))

    def no_pil_resize(*args, **kwargs):
        raise AssertionError("fell back to PIL's resize")

    monkeypatch.setattr(Image.Image, "resize", no_pil_resize)
    views = image_views(image, mode)
    assert views.spatial_crop == (2, 3)
    assert np.array_equal(views.global_view[:, :, 128:896], expected[0])
    assert np.array_equal(views.tiles[5], expected[1][:, 1280:1920, 640:1280])


@pytest.fixture(scope="module")
def jpeg_photo() -> bytes:
    """A 3000 x 4000 JPEG: gradients with some noise (a noise-only one is over the byte limit)."""
    rows, columns = np.mgrid[0:4000, 0:3000]
    noise = np.random.default_rng(11).integers(0, 32, (4000, 3000), dtype=np.uint16)
    pixels = np.stack([rows * 255 // 4000, columns * 255 // 3000, (rows + columns + noise) % 256], axis=2)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
