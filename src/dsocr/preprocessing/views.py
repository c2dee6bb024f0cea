"""The global view and the tiles of a decoded image, as planar uint8 arrays.

Pixels equal DeepSeek's / vLLM's processor exactly: the same PIL bicubic
resizes of the same image, then placement done on uint8 arrays instead of PIL
pastes and crops, and no float conversion (normalisation happens where the
model runs). Each output is resized once, straight from the decoded image.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .modes import ResolutionMode

# The grey the reference pads with: int(mean * 255) for the mean 0.5.
PAD_GREY = 127
_BICUBIC = Image.Resampling.BICUBIC


def fitted_size(width: int, height: int, side: int) -> tuple[int, int]:
    """The size of an image fitted inside side x side with its aspect ratio kept.

    Same float arithmetic and rounding as `PIL.ImageOps.contain`, which the
    reference's `ImageOps.pad` uses; a side may round to 0 for extreme strips.
    """
    ratio = width / height
    if ratio > 1:
        return side, round(height / width * side)
    if ratio < 1:
        return round(width / height * side), side
    return side, side


def _planes(image: Image.Image) -> list[np.ndarray]:
    """The R, G and B planes of an RGB image, each uint8 [H, W].

    PIL's split copies each band out in C; each plane then copies on in
    contiguous runs, about twice as fast as transposing the interleaved
    [H, W, 3] array numpy would make.
    """
    return [np.asarray(band) for band in image.split()]


def _write_planar(out: np.ndarray, image: Image.Image) -> None:
    """Copy an RGB image into a [3, H, W] uint8 array (a view is fine)."""
    for channel, plane in zip(out, _planes(image)):
        channel[...] = plane


def global_view(image: Image.Image, mode: ResolutionMode) -> np.ndarray:
    """The global view of an RGB image as uint8 [3, B, B].

    Tiny/Small: the image resized to B x B. Otherwise: fitted inside B x B,
    centred, the rest grey (`ImageOps.pad` with the reference's colour).
    """
    side = mode.base_size
    out = np.empty((3, side, side), dtype=np.uint8)
    if mode.stretch:
        _write_planar(out, image.resize((side, side), _BICUBIC))
        return out
    width, height = fitted_size(*image.size, side)
    out.fill(PAD_GREY)
    if width and height:
        # ImageOps.pad centres along the padded axis with round(), half to even.
        left, top = round((side - width) * 0.5), round((side - height) * 0.5)
        _write_planar(out[:, top : top + height, left : left + width], image.resize((width, height), _BICUBIC))
    return out


def tile_views(image: Image.Image, crop: tuple[int, int], tile_size: int) -> np.ndarray:
    """The tiles of an RGB image as uint8 [columns * rows, 3, T, T], row by row.

    The image is resized to the grid's size in one go, then cut.
    """
    columns, rows = crop
    resized = image.resize((columns * tile_size, rows * tile_size), _BICUBIC)
    tiles = np.empty((rows * columns, 3, tile_size, tile_size), dtype=np.uint8)
    grid = tiles.reshape(rows, columns, 3, tile_size, tile_size)
    for channel, plane in enumerate(_planes(resized)):
        grid[:, :, channel] = plane.reshape(rows, tile_size, columns, tile_size).transpose(0, 2, 1, 3)
    return tiles


def no_tiles(tile_size: int) -> np.ndarray:
    """The empty tile batch, uint8 [0, 3, T, T]."""
    return np.empty((0, 3, tile_size, tile_size), dtype=np.uint8)
