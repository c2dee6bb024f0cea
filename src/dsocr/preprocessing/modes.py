"""Resolution modes: how DeepSeek-OCR and DeepSeek-OCR-2 turn an image into views.

Every mode yields one *global view* (the whole image, B x B pixels). Gundam
also cuts images larger than one tile into a grid of *tiles* (T x T each), the
*spatial crop* being the grid's (width, height) in tiles. Which modes a family
offers, its tile size T and its tile limit are in `dsocr.families`.

    mode     B     T (ocr / ocr2)   tiles   global view
    tiny     512   -                no      stretched to B x B
    small    640   -                no      stretched to B x B
    base     1024  -                no      fitted, padded to B x B
    large    1280  -                no      fitted, padded to B x B
    gundam   1024  640 / 768        2..max  fitted, padded to B x B

Base and Large keep the aspect ratio as DeepSeek's own processors do (they
stretch only when image_size <= 640 / 768); vLLM's processor stretches in every
mode without tiles, but vLLM only ever runs Gundam, where the two agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dsocr import families
from dsocr.errors import RequestError
from dsocr.families import DEFAULT_MAX_CROPS, MIN_CROPS, MODES, ModeName, TokenLayout

BASE_SIZE: dict[ModeName, int] = {"tiny": 512, "small": 640, "base": 1024, "large": 1280, "gundam": 1024}
STRETCHED: tuple[ModeName, ...] = ("tiny", "small")
TILED: ModeName = "gundam"
assert set(BASE_SIZE) == set(MODES), "every mode needs its global view size"

# Both encoders cut a view into 16-pixel patches and merge 4 x 4 of them
# into one query (one token) per side.
_PATCH_SIZE = 16
_DOWNSAMPLE = 4


class ModeError(RequestError, ValueError):
    """A resolution mode or tile limit the served family does not offer: the request's fault."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__("invalid_parameter", message, param)


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


def resolution_mode(family_key: str, mode: str, max_crops: int | None = None) -> ResolutionMode:
    """The ResolutionMode for a family ("ocr", "ocr2") and a mode name.

    max_crops bounds the tile count in Gundam (default 6; at most the family's
    limit: 9 for "ocr", 6 for "ocr2"); it must be left out for the other modes.
    Raises ModeError (a RequestError) naming the mode the family does not
    offer, or the max_crops out of range; ValueError for an unknown family.
    """
    served = families.family(family_key)
    if mode not in served.modes:
        raise ModeError(
            f"resolution mode {mode!r} is not available for family {family_key!r}; expected one of {served.modes}",
            "resolution_mode",
        )
    cropping = mode == TILED
    if max_crops is not None and not cropping:
        raise ModeError(f"max_crops applies to the gundam mode only, not {mode!r}", "max_crops")
    max_crops = DEFAULT_MAX_CROPS if max_crops is None else max_crops
    if not MIN_CROPS <= max_crops <= served.max_crops_limit:
        raise ModeError(
            f"max_crops must be between {MIN_CROPS} and {served.max_crops_limit} for {family_key!r}, got {max_crops}",
            "max_crops",
        )
    base_size = BASE_SIZE[mode]
    return ResolutionMode(
        family=family_key,
        name=mode,
        base_size=base_size,
        tile_size=served.tile_size if cropping else base_size,
        cropping=cropping,
        stretch=mode in STRETCHED,
        min_crops=MIN_CROPS,
        max_crops=max_crops,
        token_layout=served.token_layout,
    )
