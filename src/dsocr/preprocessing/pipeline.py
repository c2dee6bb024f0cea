"""One request's images, from encoded bytes to the uint8 views the model encodes."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .decode import DecodeLimits, decode_image
from .modes import ResolutionMode, resolution_mode
from .prompt import check_placeholders
from .resample import resize_all
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


# Where half the rows of each resize pass are computed while the calling
# thread does the other half. The passes release the GIL, so they run on two
# cores at once when a second core is free; under full load they only take
# turns, costing no extra work. Shared by all callers.
DEFAULT_LIMITS = DecodeLimits()
_RESIZE_WORKERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dsocr-resize")


def image_views(image: Image.Image, mode: ResolutionMode, *, parallel: bool = True) -> PreprocessedImage:
    """The views of an already decoded RGB image (see `decode_image`).

    parallel: share each resize pass with a worker thread (same pixels either
    way; False keeps all work on this thread).
    """
    width, height = image.size
    crop = spatial_crop(width, height, mode)
    view, view_resize = global_view(image.size, mode)
    resizes = [view_resize] if view_resize else []
    if has_tiles(crop):
        tiles, tile_resize = tile_views(crop, mode.tile_size)
        resizes.append(tile_resize)
    else:
        tiles = no_tiles(mode.tile_size)
    resize_all(image, resizes, _RESIZE_WORKERS if parallel else None)
    return PreprocessedImage(
        global_view=view,
        tiles=tiles,
        spatial_crop=crop,
        num_image_tokens=image_token_count(mode, crop),
        image_size=(width, height),
    )


def warm_up() -> None:
    """Compile the resize passes before the first request needs them.

    They are compiled on first use (seconds), then cached on disk; this makes
    every kind of pass once on a small image: a padded global view with
    tiles, and a stretched one.
    """
    page = Image.new("RGB", (1300, 1000), "white")
    for mode in (resolution_mode("ocr", "gundam"), resolution_mode("ocr", "small")):
        image_views(page, mode)


def preprocess_image(
    data: bytes, mode: ResolutionMode, limits: DecodeLimits = DEFAULT_LIMITS, *, parallel: bool = True
) -> PreprocessedImage:
    """Decode one encoded image and make its views. Raises ImageError for a bad image.

    parallel: as in `image_views`.
    """
    return image_views(decode_image(data, limits), mode, parallel=parallel)


def preprocess_request(
    prompt: str,
    images: Sequence[bytes],
    mode: ResolutionMode,
    limits: DecodeLimits = DEFAULT_LIMITS,
    *,
    parallel: bool = True,
) -> list[PreprocessedImage]:
    """All images of one request, in prompt order.

    The placeholders are checked first, so a mismatched prompt costs no
    decoding. Raises PromptError or ImageError (both PreprocessError).
    parallel: as in `image_views`.
    """
    check_placeholders(prompt, len(images))
    return [preprocess_image(data, mode, limits, parallel=parallel) for data in images]
