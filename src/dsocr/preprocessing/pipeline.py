"""One request's images, from encoded bytes to the uint8 views the model encodes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .decode import DecodeLimits, decode_image
from .modes import ResolutionMode
from .prompt import check_placeholders
from .tiles import has_tiles, image_token_count, spatial_crop
from .views import global_view, no_tiles, tile_views


@dataclass(frozen=True)
class PreprocessedImage:
    """One image ready for the vision encoder, in uint8.

    global_view: [3, B, B], B = the mode's base_size.
    tiles: [n_tiles, 3, T, T], T = the mode's tile_size; n_tiles is 0 or
        columns * rows of the spatial crop.
    spatial_crop: (columns, rows) of the tile grid, (1, 1) when no tiles.
    num_image_tokens: how many `<image>` tokens this image expands to.
    image_size: (width, height) of the decoded image after EXIF orientation.
    """

    global_view: np.ndarray
    tiles: np.ndarray
    spatial_crop: tuple[int, int]
    num_image_tokens: int
    image_size: tuple[int, int]


def image_views(image: Image.Image, mode: ResolutionMode) -> PreprocessedImage:
    """The views of an already decoded RGB image (see `decode_image`)."""
    width, height = image.size
    crop = spatial_crop(width, height, mode)
    tiles = tile_views(image, crop, mode.tile_size) if has_tiles(crop) else no_tiles(mode.tile_size)
    return PreprocessedImage(
        global_view=global_view(image, mode),
        tiles=tiles,
        spatial_crop=crop,
        num_image_tokens=image_token_count(mode, crop),
        image_size=(width, height),
    )


def preprocess_image(data: bytes, mode: ResolutionMode, limits: DecodeLimits = DecodeLimits()) -> PreprocessedImage:
    """Decode one encoded image and make its views. Raises ImageError for a bad image."""
    return image_views(decode_image(data, limits), mode)


def preprocess_request(
    prompt: str,
    images: Sequence[bytes],
    mode: ResolutionMode,
    limits: DecodeLimits = DecodeLimits(),
) -> list[PreprocessedImage]:
    """All images of one request, in prompt order.

    The placeholders are checked first, so a mismatched prompt costs no
    decoding. Raises PromptError or ImageError (both PreprocessError).
    """
    check_placeholders(prompt, len(images))
    return [preprocess_image(data, mode, limits) for data in images]
