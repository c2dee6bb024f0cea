"""The global view and the tiles of a decoded image, as planar uint8 arrays.

Pixels equal DeepSeek's / vLLM's processor exactly: the same bicubic resizes
of the same image (PIL's, bit for bit: `resample`), written straight into the
uint8 views instead of PIL pastes and crops, and no float conversion
(normalisation happens where the model runs). Each output is resized once,
straight from the decoded image.
"""

from __future__ import annotations

import numpy as np

from .modes import ResolutionMode
from .resample import Resize

# The grey the reference pads with: int(mean * 255) for the mean 0.5.
PAD_GREY = 127


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


def global_view(image_size: tuple[int, int], mode: ResolutionMode) -> tuple[np.ndarray, Resize | None]:
    """The global view of an image of image_size, uint8 [3, B, B], and the resize
    that fills it (None when nothing of the image shows).

    Tiny/Small: the image resized to B x B. Otherwise: fitted inside B x B,
    centred, the rest grey (`ImageOps.pad` with the reference's colour).
    """
    side = mode.base_size
    out = np.empty((3, side, side), dtype=np.uint8)
    if mode.stretch:
        return out, Resize((side, side), out[None, None])
    width, height = fitted_size(*image_size, side)
    out.fill(PAD_GREY)
    if not (width and height):
        return out, None
    # ImageOps.pad centres along the padded axis with round(), half to even.
    left, top = round((side - width) * 0.5), round((side - height) * 0.5)
    return out, Resize((width, height), out[None, None, :, top : top + height, left : left + width])


def tile_views(crop: tuple[int, int], tile_size: int) -> tuple[np.ndarray, Resize]:
    """The tiles of a crop grid, uint8 [columns * rows, 3, T, T] row by row, and
    the resize that fills them: the image resized to the grid's size in one
    go, straight into the tiles."""
    columns, rows = crop
    tiles = np.empty((rows * columns, 3, tile_size, tile_size), dtype=np.uint8)
    grid = tiles.reshape(rows, columns, 3, tile_size, tile_size)
    return tiles, Resize((columns * tile_size, rows * tile_size), grid)


def no_tiles(tile_size: int) -> np.ndarray:
    """The empty tile batch, uint8 [0, 3, T, T]."""
    return np.empty((0, 3, tile_size, tile_size), dtype=np.uint8)
