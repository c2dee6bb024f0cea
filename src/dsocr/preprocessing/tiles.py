"""Tile grid selection (the spatial crop) and the token count it implies."""

from __future__ import annotations

from functools import cache

from .modes import ResolutionMode

NO_TILES = (1, 1)


@cache
def candidate_grids(min_crops: int, max_crops: int) -> tuple[tuple[int, int], ...]:
    """Every (columns, rows) grid with between min_crops and max_crops tiles,
    fewest tiles first.

    Grids with equal tile counts keep the iteration order of the set the
    reference builds them in: the tie-break below depends on that order when
    two such grids are equally close (e.g. 1x2 and 2x1 for a 5:4 image).
    """
    grids = set(
        (columns, rows)
        for n in range(min_crops, max_crops + 1)
        for columns in range(1, n + 1)
        for rows in range(1, n + 1)
        if min_crops <= columns * rows <= max_crops
    )
    return tuple(sorted(grids, key=lambda grid: grid[0] * grid[1]))


def choose_grid(width: int, height: int, tile_size: int, min_crops: int, max_crops: int) -> tuple[int, int]:
    """The (columns, rows) grid whose aspect ratio is closest to width/height.

    Between equally close grids the later (larger) one wins only if the image
    has more than half the pixels that grid's tiles hold, so small images are
    not blown up into many tiles.
    """
    aspect = width / height
    area = width * height
    best, best_distance = (1, 1), float("inf")
    for columns, rows in candidate_grids(min_crops, max_crops):
        distance = abs(aspect - columns / rows)
        if distance < best_distance:
            best, best_distance = (columns, rows), distance
        elif distance == best_distance and area > 0.5 * tile_size * tile_size * columns * rows:
            best = (columns, rows)
    return best


def spatial_crop(width: int, height: int, mode: ResolutionMode) -> tuple[int, int]:
    """The tile grid (columns, rows) for an image of this size, (1, 1) meaning no tiles.

    Only Gundam tiles, and only images wider or taller than one tile.
    """
    if not mode.cropping or (width <= mode.tile_size and height <= mode.tile_size):
        return NO_TILES
    return choose_grid(width, height, mode.tile_size, mode.min_crops, mode.max_crops)


def has_tiles(crop: tuple[int, int]) -> bool:
    """Whether a spatial crop stands for tiles (any grid but 1x1)."""
    return crop != NO_TILES


def image_token_count(mode: ResolutionMode, crop: tuple[int, int]) -> int:
    """How many `<image>` tokens one image with this spatial crop expands to.

    v1 (DeepSeek-OCR): the global view's q x q queries with a newline token
    after each row, one view separator, then the tiles' queries as one
    (columns * t) x (rows * t) mosaic, again with a newline token per row.
    v2 (DeepSeek-OCR-2): the same without newline tokens.
    """
    q, t = mode.global_queries, mode.tile_queries
    columns, rows = crop
    newline = 1 if mode.token_layout == "v1" else 0
    count = q * (q + newline) + 1
    if has_tiles(crop):
        count += (t * columns + newline) * (t * rows)
    return count
