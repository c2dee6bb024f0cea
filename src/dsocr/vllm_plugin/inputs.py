"""Already-processed image data: what the engine takes in place of a PIL image.

The dict contract, under `multi_modal_data={"image": data}`, for N images
(one `<image>` each in the prompt, in order) all in one resolution mode:

    "pixel_values"         uint8 [N, 3, B, B]  the global views
    "images_crop"          uint8 [n, 3, T, T]  the tiles of all N images, image
                                                after image, each image's row by row
    "images_spatial_crop"  int64 [N, 2]        (columns, rows) of each image's tile
                                                grid; (1, 1) for an image without tiles

CPU torch tensors, RGB planes, unnormalised pixels exactly as
`dsocr.preprocessing` makes them. B is the mode's global view side and T its
tile side (T = B in modes without tiles); (B, T) must be a mode of the served
family: "ocr" tiny (512, 512), small (640, 640), base (1024, 1024),
large (1280, 1280), gundam (1024, 640); "ocr2" base (1024, 1024),
gundam (1024, 768). An image with tiles has columns * rows of them, between 2
and the family's limit (9 for "ocr", 6 for "ocr2"), Gundam only; n is the sum.
Nothing else may be in the dict. The engine must run with
`enable_mm_embeds=True` (see `dsocr.vllm_plugin.ENGINE_ARGS`).

The pixels stay uint8 until the model normalises them on its own device, so
vLLM's processes pass a quarter of the bytes float32 would take.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from dsocr.errors import RequestError
from dsocr.preprocessing import PreprocessedImage, ResolutionMode

from .geometry import mode_of_views, tile_count

# The model's own keyword names for the three tensors.
GLOBAL_VIEWS = "pixel_values"
TILES = "images_crop"
SPATIAL_CROPS = "images_spatial_crop"
KEYS = (GLOBAL_VIEWS, TILES, SPATIAL_CROPS)


class ImageDataError(RequestError, ValueError):
    """Image data that breaks the dict contract: the request's fault, never the engine's."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_views", message)


def image_data(image: PreprocessedImage) -> dict[str, torch.Tensor]:
    """The dict for one preprocessed image (N = 1), sharing its memory."""
    return views_data(image.global_view, image.tiles, image.spatial_crop)


def views_data(
    global_view: np.ndarray | torch.Tensor,
    tiles: np.ndarray | torch.Tensor,
    spatial_crop: tuple[int, int] | np.ndarray | torch.Tensor,
) -> dict[str, torch.Tensor]:
    """The dict for one image from its views: global view [3, B, B], tiles
    [n, 3, T, T] (both uint8) and spatial crop (columns, rows).

    Arrays are wrapped, not copied. Nothing is checked here: the engine's
    processor checks every request (`check_image_data`).
    """
    return {
        GLOBAL_VIEWS: torch.as_tensor(global_view).unsqueeze(0),
        TILES: torch.as_tensor(tiles),
        SPATIAL_CROPS: torch.as_tensor(spatial_crop, dtype=torch.int64).reshape(1, 2),
    }


def check_image_data(family: str, data: object) -> ResolutionMode:
    """The resolution mode of image data that keeps the dict contract for `family`.

    Raises ImageDataError naming the first breach: missing or unknown keys,
    a value that is no CPU tensor, a wrong dtype or shape, sizes that are no
    mode of the family, a spatial crop the mode cannot cut, or a tile count
    that differs from the spatial crops'.
    """
    if not isinstance(data, Mapping):
        raise ImageDataError(f"image data must be a dict of tensors, got {type(data).__name__}")
    _check_keys(data)
    for key in KEYS:
        _check_tensor(key, data[key])
    global_views, tiles, crops = (data[key] for key in KEYS)
    _check_dtype(GLOBAL_VIEWS, global_views, torch.uint8)
    _check_dtype(TILES, tiles, torch.uint8)
    _check_dtype(SPATIAL_CROPS, crops, torch.int64)
    _check_square_views(GLOBAL_VIEWS, global_views)
    _check_square_views(TILES, tiles)
    images = global_views.shape[0]
    if images == 0:
        raise ImageDataError(f"{GLOBAL_VIEWS} holds no image")
    if tuple(crops.shape) != (images, 2):
        raise ImageDataError(f"{SPATIAL_CROPS} must be [{images}, 2] for {images} image(s), got {list(crops.shape)}")
    try:
        mode = mode_of_views(family, global_views.shape[-1], tiles.shape[-1])
        expected_tiles = sum(tile_count(mode, (int(c), int(r))) for c, r in crops.tolist())
    except ValueError as exc:
        raise ImageDataError(str(exc)) from exc
    if tiles.shape[0] != expected_tiles:
        raise ImageDataError(
            f"{TILES} holds {tiles.shape[0]} tiles but {SPATIAL_CROPS} {crops.tolist()} needs {expected_tiles}"
        )
    return mode


def _check_keys(data: Mapping) -> None:
    missing = [key for key in KEYS if key not in data]
    unknown = sorted(str(key) for key in data if key not in KEYS)
    if missing or unknown:
        raise ImageDataError(f"image data must hold exactly {list(KEYS)}; missing {missing}, unknown {unknown}")


def _check_tensor(key: str, value: object) -> None:
    if not isinstance(value, torch.Tensor):
        raise ImageDataError(f"{key} must be a torch.Tensor, got {type(value).__name__}")
    if value.device.type != "cpu":
        raise ImageDataError(f"{key} must be on the CPU, got {value.device}")


def _check_dtype(key: str, value: torch.Tensor, dtype: torch.dtype) -> None:
    if value.dtype != dtype:
        raise ImageDataError(f"{key} must be {dtype}, got {value.dtype}")


def _check_square_views(key: str, views: torch.Tensor) -> None:
    """[count, 3, side, side]: RGB planes of square views."""
    if views.dim() != 4 or views.shape[1] != 3 or views.shape[2] != views.shape[3]:
        raise ImageDataError(f"{key} must be [count, 3, side, side], got {list(views.shape)}")
