"""The two passes of `resample`, compiled by numba into vectorised loops.

Imported on first use only: numba brings LLVM into the process, which the
processes that import this package for its light parts (the frontend, vLLM's
engine and workers) do not need; vLLM's start-up scan of every module's
namespace also fails on llvmlite's objects.

Pixels are uint32 RGBX (R in the low byte), the layout PIL keeps RGB in;
the intermediate between the passes is the same, each byte clipped as PIL's
uint8 intermediate is. Every sum is PIL's: a half, plus each tap's pixel
times its fixed-point weight, shifted and clipped to a byte.
"""

import numpy as np
from numba import njit

from .resample import PRECISION_BITS

HALF = 1 << (PRECISION_BITS - 1)
# Rows per transposed strip: its columns stay in the L1/L2 caches for all the
# taps that read them.
STRIP_ROWS = 64
# Output columns computed before they are stored, so rows of the intermediate
# are written in runs instead of one pixel down a column at a time.
COLUMN_BLOCK = 32


def _compiled(function):
    """Compiled to machine code on first use, without the GIL; the code is
    cached on disk where numba finds a writable place, else per process."""
    try:
        return njit(nogil=True, cache=True)(function)
    except RuntimeError:  # no writable cache directory
        return njit(nogil=True)(function)


@_compiled
def _add_weighted_pixels(red, green, blue, pixels, weight, count):
    """red/green/blue[r] += that channel of the RGBX pixels[r] * weight, for r < count.

    Vectorised, as long as the loop starts at 0: callers pass views.
    """
    for r in range(count):
        pixel = pixels[r]
        red[r] += np.int32(pixel & 0xFF) * weight
        green[r] += np.int32((pixel >> 8) & 0xFF) * weight
        blue[r] += np.int32((pixel >> 16) & 0xFF) * weight


@_compiled
def _packed(red, green, blue, out, count):
    """out[r] = the three sums of r as one RGBX pixel, each clipped to a byte (vectorised)."""
    for r in range(count):
        out[r] = (
            np.uint32(min(max(red[r] >> PRECISION_BITS, 0), 255))
            | np.uint32(min(max(green[r] >> PRECISION_BITS, 0), 255)) << 8
            | np.uint32(min(max(blue[r] >> PRECISION_BITS, 0), 255)) << 16
        )


@_compiled
def horizontal_passes(pixels, passes, begin, end):
    """PIL's horizontal pass of each of passes over the uint32 RGBX rows
    pixels[begin:end], one strip of rows at a time.

    passes: (top, first, weights, out) each, out[y - top, x] the pass's
    uint32 RGBX output for the source row y, for the rows it covers.
    """
    width = pixels.shape[1]
    strip = np.empty((width, STRIP_ROWS), np.uint32)  # strip[x, r] = pixels[y0 + r, x]
    sums = np.empty((3, STRIP_ROWS), np.int32)
    block = np.empty((COLUMN_BLOCK, STRIP_ROWS), np.uint32)  # block[j, r] = out[.. r, xb + j]
    for y0 in range(begin, end, STRIP_ROWS):
        count = min(STRIP_ROWS, end - y0)
        for x0 in range(0, width, 16):  # 16 columns at a time keeps the writes in cache
            x1 = min(width, x0 + 16)
            for r in range(count):
                source = pixels[y0 + r]
                for x in range(x0, x1):
                    strip[x, r] = source[x]
        for top, first, weights, out in passes:
            # This pass's rows within the strip: start <= r < start + rows.
            start = max(top - y0, 0)
            rows = min(top + out.shape[0] - y0, count) - start
            if rows <= 0:
                continue
            red, green, blue = sums[0, start:], sums[1, start:], sums[2, start:]
            for xb in range(0, first.shape[0], COLUMN_BLOCK):
                xe = min(first.shape[0], xb + COLUMN_BLOCK)
                for xx in range(xb, xe):
                    sums[:, start:] = HALF
                    for tap in range(weights.shape[1]):
                        column = strip[first[xx] + tap, start:]
                        _add_weighted_pixels(red, green, blue, column, weights[xx, tap], rows)
                    _packed(red, green, blue, block[xx - xb, start:], rows)
                for r in range(start, start + rows):
                    row = out[y0 + r - top]
                    for j in range(xe - xb):
                        row[xb + j] = block[j, r]


@_compiled
def vertical_pass(rows, first, weights, grid, start, stop):
    """PIL's vertical pass over uint32 RGBX rows [n, width] into the uint8 planes
    of grid [grid_rows, grid_columns, 3, cell_height, cell_width], for the
    output rows start <= yy < stop."""
    width = rows.shape[1]
    cell_height = grid.shape[3]
    cell_width = grid.shape[4]
    sums = np.empty((3, width), np.int32)
    for yy in range(start, stop):
        sums[:] = HALF
        for tap in range(weights.shape[1]):
            _add_weighted_pixels(sums[0], sums[1], sums[2], rows[first[yy] + tap], weights[yy, tap], width)
        grid_row = yy // cell_height
        cell_row = yy - grid_row * cell_height
        for c in range(3):
            for grid_column in range(grid.shape[1]):
                out = grid[grid_row, grid_column, c, cell_row]
                begin = grid_column * cell_width
                for x in range(cell_width):
                    out[x] = min(max(sums[c, begin + x] >> PRECISION_BITS, 0), 255)
