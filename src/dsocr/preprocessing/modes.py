"""Resolution modes: how DeepSeek-OCR and DeepSeek-OCR-2 turn an image into views.

Every mode yields one *global view* (the whole image, B x B pixels). Gundam
also cuts images larger than one tile into a grid of *tiles* (T x T each), the
*spatial crop* being the grid's (width, height) in tiles.

The sizes are DeepSeek's (`config.py` of both repositories) and vLLM's
(`DeepseekOCRProcessor` as built by `deepseek_ocr.py` / `deepseek_ocr2.py`):

    mode     B     T (ocr / ocr2)   tiles   global view
    tiny     512   -                no      stretched to B x B
    small    640   -                no      stretched to B x B
    base     1024  -                no      fitted, padded to B x B
    large    1280  -                no      fitted, padded to B x B
    gundam   1024  640 / 768        2..max  fitted, padded to B x B

Base and Large keep the aspect ratio as DeepSeek's own processors do (they
stretch only when image_size <= 640 / 768); vLLM's processor stretches in every
mode without tiles, but vLLM only ever runs Gundam, where the two agree.

DeepSeek-OCR-2's encoder has learned queries only for 768- and 1024-pixel
views (144 and 256 queries), so that family offers Base and Gundam only, with
at most 6 tiles (its config's stated maximum); DeepSeek-OCR allows up to 9.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

TokenLayout = Literal["v1", "v2"]

FAMILIES = ("ocr", "ocr2")
MODES = ("tiny", "small", "base", "large", "gundam")

MIN_CROPS = 2
DEFAULT_MAX_CROPS = 6
_MAX_CROPS_LIMIT = {"ocr": 9, "ocr2": 6}
_TILE_SIZE = {"ocr": 640, "ocr2": 768}
_TOKEN_LAYOUT: dict[str, TokenLayout] = {"ocr": "v1", "ocr2": "v2"}
_FAMILY_MODES = {"ocr": MODES, "ocr2": ("base", "gundam")}
_BASE_SIZE = {"tiny": 512, "small": 640, "base": 1024, "large": 1280, "gundam": 1024}
_STRETCHED = ("tiny", "small")

# Both encoders cut a view into 16-pixel patches and merge 4 x 4 of them
# into one query (one token) per side.
_PATCH_SIZE = 16
_DOWNSAMPLE = 4


@dataclass(frozen=True)
class ResolutionMode:
    """The view geometry of one resolution mode for one model family.

    base_size: side B of the global view.
    tile_size: side T of a tile; equals base_size in modes without tiles
        (DeepSeek's `image_size`).
    cropping: Gundam: images wider or taller than T also get tiles.
    stretch: the global view is the image resized to B x B ignoring its
        aspect ratio (Tiny, Small); otherwise it is fitted inside B x B and
        padded with grey.
    min_crops, max_crops: bounds on the number of tiles of a tiled image.
    token_layout: "v1" (DeepSeek-OCR: a newline token ends every row of
        view tokens) or "v2" (DeepSeek-OCR-2: no newline tokens).
    """

    family: str
    name: str
    base_size: int
    tile_size: int
    cropping: bool
    stretch: bool
    min_crops: int
    max_crops: int
    token_layout: TokenLayout

    @property
    def global_queries(self) -> int:
        """Tokens per side of the global view."""
        return view_queries(self.base_size)

    @property
    def tile_queries(self) -> int:
        """Tokens per side of one tile."""
        return view_queries(self.tile_size)


def view_queries(side: int) -> int:
    """Tokens per side that the encoder makes of a square view of `side` pixels."""
    return math.ceil((side // _PATCH_SIZE) / _DOWNSAMPLE)


def resolution_mode(family: str, mode: str, max_crops: int | None = None) -> ResolutionMode:
    """The ResolutionMode for a family ("ocr", "ocr2") and a mode name.

    max_crops bounds the tile count in Gundam (default 6; at most 9 for
    "ocr", 6 for "ocr2"); it must be left out for the other modes.
    Raises ValueError naming the unknown family, the mode the family does not
    offer, or the max_crops out of range.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {FAMILIES}")
    if mode not in _FAMILY_MODES[family]:
        raise ValueError(
            f"resolution mode {mode!r} is not available for family {family!r}; "
            f"expected one of {_FAMILY_MODES[family]}"
        )
    cropping = mode == "gundam"
    if max_crops is not None and not cropping:
        raise ValueError(f"max_crops applies to the gundam mode only, not {mode!r}")
    max_crops = DEFAULT_MAX_CROPS if max_crops is None else max_crops
    limit = _MAX_CROPS_LIMIT[family]
    if not MIN_CROPS <= max_crops <= limit:
        raise ValueError(f"max_crops must be between {MIN_CROPS} and {limit} for {family!r}, got {max_crops}")
    base_size = _BASE_SIZE[mode]
    return ResolutionMode(
        family=family,
        name=mode,
        base_size=base_size,
        tile_size=_TILE_SIZE[family] if cropping else base_size,
        cropping=cropping,
        stretch=mode in _STRETCHED,
        min_crops=MIN_CROPS,
        max_crops=max_crops,
        token_layout=_TOKEN_LAYOUT[family],
    )
