"""The view geometry of already-processed images, in plain integers.

A request's views name their resolution mode by their sizes alone: the side B
of the global view and the side T of a tile (T = B in modes without tiles).
Within one family every mode has its own (B, T) pair, so the pair identifies
the mode, and with the spatial crop it fixes the `<image>` token count.
"""

from __future__ import annotations

from functools import cache

from dsocr import families
from dsocr.families import MIN_CROPS
from dsocr.preprocessing.modes import TILED, ResolutionMode, resolution_mode
from dsocr.preprocessing.tiles import NO_TILES, candidate_grids, image_token_count


@cache
def family_modes(family_key: str) -> tuple[ResolutionMode, ...]:
    """Every mode of a family, Gundam bounded by the family's tile limit (the
    most any request may ask for), so a view geometry is judged by what the
    model accepts, not by one request's max_crops."""
    served = families.family(family_key)
    return tuple(
        resolution_mode(family_key, name, served.max_crops_limit if name == TILED else None) for name in served.modes
    )


def mode_of_views(family: str, base_size: int, tile_size: int) -> ResolutionMode:
    """The family's resolution mode whose global view is base_size and tiles tile_size.

    Raises ValueError naming the (B, T) pairs the family accepts.
    """
    for mode in family_modes(family):
        if (mode.base_size, mode.tile_size) == (base_size, tile_size):
            return mode
    accepted = ", ".join(f"{m.name} ({m.base_size}, {m.tile_size})" for m in family_modes(family))
    raise ValueError(
        f"a {base_size} px global view with {tile_size} px tiles is no resolution mode of "
        f"family {family!r}; expected (global view, tile) sizes of: {accepted}"
    )


def tile_count(mode: ResolutionMode, crop: tuple[int, int]) -> int:
    """How many tiles an image with this spatial crop (columns, rows) carries in this mode.

    (1, 1) means no tiles. Otherwise the grid must be one the mode can cut:
    Gundam only, between MIN_CROPS and the mode's max_crops tiles.
    Raises ValueError otherwise.
    """
    if crop == NO_TILES:
        return 0
    columns, rows = crop
    if not mode.cropping:
        raise ValueError(f"spatial crop {crop} has tiles, but the {mode.name!r} mode has none; expected (1, 1)")
    if columns < 1 or rows < 1 or not MIN_CROPS <= columns * rows <= mode.max_crops:
        raise ValueError(
            f"spatial crop {crop} is no tile grid of the {mode.name!r} mode: expected (1, 1) or "
            f"(columns, rows) with {MIN_CROPS} to {mode.max_crops} tiles"
        )
    return columns * rows


def views_token_count(family: str, base_size: int, tile_size: int, crop: tuple[int, int]) -> int:
    """How many `<image>` tokens one image's views expand to (ValueError if they fit no mode)."""
    mode = mode_of_views(family, base_size, tile_size)
    tile_count(mode, crop)
    return image_token_count(mode, crop)


def max_image_tokens(family: str) -> int:
    """The most `<image>` tokens one image of the family can expand to, over
    every mode and tile grid (Gundam's tallest grid at the tile limit)."""
    return max(
        image_token_count(mode, grid)
        for mode in family_modes(family)
        for grid in ((NO_TILES,) + (candidate_grids(mode.min_crops, mode.max_crops) if mode.cropping else ()))
    )
