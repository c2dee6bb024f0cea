"""PIL's bicubic resize of an RGB image, bit for bit, in vectorised passes.

The views must equal the reference's `Image.resize(size, BICUBIC)` exactly,
and those resizes are most of preprocessing's time. PIL resizes in two
passes of fixed-point arithmetic: a horizontal pass into a uint8
intermediate, then a vertical one, each output the sum of its taps' pixels
times 22-bit integer weights, plus a half, shifted and clipped. Integer sums
are exact in any order, so the same weights and taps, summed eight outputs
at a time instead of one, give the same bytes:

- the weights and tap positions are PIL's `precompute_coeffs` and
  `normalize_coeffs_8bpc`, in the same float64 operations (numpy, no fused
  multiply-adds), padded so that every output reads the same number of taps
  (the padding weighs 0);
- the horizontal pass reads strips of rows transposed, so that one tap of one
  output column is a contiguous multiply-add over the strip's rows; the
  vertical pass is contiguous along a row as it is (`resample_kernels`).

Where PIL would run the passes the other way round (an image squeezed
vertically far more than horizontally, from Pillow 13), where only one pass
is needed, where a side is shorter than the filter, or where the image's
pixels are not one contiguous buffer, PIL itself resizes. The tests compare
both paths with PIL on random sizes, scales and pixels.
"""

from __future__ import annotations

import ctypes
import functools
import math
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
from PIL import Image

_BICUBIC = Image.Resampling.BICUBIC
PRECISION_BITS = 22  # of PIL's fixed-point weights: 32 - 8 - 2
# Fewer rows than this are not worth a second thread.
_MIN_SPLIT_ROWS = 128

# PIL allocates an image in blocks of 16 MiB by default, so a photo's rows are
# not one buffer and cannot be read in place. One block up to 256 MiB covers
# the default pixel limit (64 Mpx x 4 bytes); PIL only allocates what an image
# needs, so smaller images cost nothing more.
Image.core.set_block_size(max(Image.core.get_block_size(), 256 << 20))


@functools.lru_cache(maxsize=64)  # scans and photos come in a few sizes; read-only results
def bicubic_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """PIL's bicubic taps for resizing in_size pixels to out_size: (first, weights).

    first: int32 [out_size], the first input pixel each output reads.
    weights: int32 [out_size, taps], PIL's fixed-point weights; every output
    reads `taps` pixels from its first, the ones past PIL's own taps weighing
    0. `first` is moved back where PIL's window would run past the end,
    which needs in_size >= taps.
    """
    scale, filterscale, support, taps = _window(in_size, out_size)
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    # C's (int) truncates toward zero, as astype does.
    first = np.maximum((center - support + 0.5).astype(np.int64), 0)
    count = np.minimum((center + support + 0.5).astype(np.int64), in_size) - first
    inv_filterscale = 1.0 / filterscale
    raw = np.zeros((out_size, taps))
    total = np.zeros(out_size)
    for tap in range(taps):  # PIL sums the weights in tap order
        x = np.abs(((first + tap).astype(np.float64) - center + 0.5) * inv_filterscale)
        inner = (1.5 * x - 2.5) * x * x + 1
        outer = (((x - 5) * x + 8) * x - 4) * -0.5
        weight = np.where(x < 1.0, inner, np.where(x < 2.0, outer, 0.0))
        weight = np.where(tap < count, weight, 0.0)
        raw[:, tap] = weight
        total = total + weight
    raw = np.where(total[:, None] != 0.0, raw / np.where(total == 0.0, 1.0, total)[:, None], raw)
    fixed = np.where(raw < 0, -0.5 + raw * (1 << PRECISION_BITS), 0.5 + raw * (1 << PRECISION_BITS))
    fixed = fixed.astype(np.int32)
    # Shift windows that run past the end back inside, their weights with them.
    moved = np.minimum(first, in_size - taps)
    shift = first - moved
    weights = np.zeros((out_size, taps), np.int32)
    rows, cols = np.nonzero(np.arange(taps)[None, :] < count[:, None])
    weights[rows, cols + shift[rows]] = fixed[rows, cols]
    first = moved.astype(np.int32)
    first.flags.writeable = weights.flags.writeable = False
    return first, weights


def pil_resizes_horizontally_first(size: tuple[int, int], out_size: tuple[int, int]) -> bool:
    """Whether PIL runs the horizontal pass first, as Pillow 13 decides it
    (earlier versions always do, and never squeeze this way in the reference)."""
    (width, height), (out_width, out_height) = size, out_size
    return not (height - out_height > 0 and height - out_height > (width - out_width) * 2)


@dataclass(frozen=True, eq=False)  # an array field has no single truth value to compare by
class Resize:
    """One `image.resize(size, BICUBIC)` and where its pixels go.

    grid: uint8 [grid_rows, grid_columns, 3, cell_height, cell_width] (any
    strides) covering the resized image cell by cell: [1, 1, 3, h, w] is the
    whole image planar; a tile grid takes the tiles in place.
    """

    size: tuple[int, int]
    grid: np.ndarray


def resize_all(image: Image.Image, resizes: Sequence[Resize], workers: Executor | None = None) -> None:
    """Make each resize of an RGB image, exactly as PIL would, into its grid.

    The resizes share the reading of the image: its rows are transposed once
    for all of them. workers: where half of each pass's rows are computed
    while the calling thread does the other half (same pixels either way).
    """
    fast = [_fast_path_applies(image.size, resize.size) for resize in resizes]
    pixels = _rgbx_pixels(image) if any(fast) else None
    plans = []
    for resize, is_fast in zip(resizes, fast, strict=True):
        if is_fast and pixels is not None:
            plans.append(_Plan(image.size, resize))
        else:
            _copy_resized(image.resize(resize.size, _BICUBIC), resize.grid)
    if not plans:
        return
    from . import resample_kernels as kernels  # numba: see the kernels' docstring

    passes = tuple((plan.top, plan.first_columns, plan.column_weights, plan.intermediate) for plan in plans)
    begin, end = min(plan.top for plan in plans), max(plan.bottom for plan in plans)
    _split(workers, begin, end, lambda start, stop: kernels.horizontal_passes(pixels, passes, start, stop))
    for plan in plans:
        _split(workers, 0, plan.first_rows.shape[0], functools.partial(_vertical_pass, kernels, plan))


def _vertical_pass(kernels, plan: _Plan, start: int, stop: int) -> None:
    kernels.vertical_pass(plan.intermediate, plan.first_rows, plan.row_weights, plan.grid, start, stop)


class _Plan:
    """The weights and the intermediate rows of one fast resize."""

    def __init__(self, size: tuple[int, int], resize: Resize) -> None:
        (width, height), (out_width, out_height) = size, resize.size
        first_rows, self.row_weights = bicubic_weights(height, out_height)
        self.first_columns, self.column_weights = bicubic_weights(width, out_width)
        # The horizontal pass covers only the rows the vertical pass reads.
        self.top = int(first_rows[0])
        self.bottom = int(first_rows[-1]) + self.row_weights.shape[1]
        self.first_rows = first_rows - self.top
        self.intermediate = np.empty((self.bottom - self.top, out_width), np.uint32)
        self.grid = resize.grid


def _split(workers: Executor | None, begin: int, end: int, work: Callable[[int, int], None]) -> None:
    """work(begin, end), in two halves when there are workers: one there, one here."""
    if workers is None or end - begin < _MIN_SPLIT_ROWS:
        work(begin, end)
        return
    middle = (begin + end) // 2
    pending = workers.submit(work, middle, end)
    work(begin, middle)
    pending.result()


def _fast_path_applies(size: tuple[int, int], out_size: tuple[int, int]) -> bool:
    (width, height), (out_width, out_height) = size, out_size
    return (
        width != out_width  # else PIL makes one pass only
        and height != out_height
        and pil_resizes_horizontally_first(size, out_size)
        and width >= _window(width, out_width)[3]
        and height >= _window(height, out_height)[3]
    )


def _window(in_size: int, out_size: int) -> tuple[float, float, float, int]:
    """PIL's (scale, filterscale, support, taps) for one axis."""
    scale = float(np.float32(in_size)) / out_size  # PIL passes the box as float32
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale  # the bicubic filter's support is 2
    return scale, filterscale, support, math.ceil(support) * 2 + 1


def _copy_resized(resized: Image.Image, grid: np.ndarray) -> None:
    """Copy a resized RGB image into grid, one plane at a time.

    PIL's split copies each band out in C; each plane then copies on in
    contiguous runs, about twice as fast as transposing the interleaved
    [H, W, 3] array numpy would make.
    """
    rows, columns, _, cell_height, cell_width = grid.shape
    for channel, band in enumerate(resized.split()):
        plane = np.asarray(band).reshape(rows, cell_height, columns, cell_width)
        grid[:, :, channel] = plane.transpose(0, 2, 1, 3)


# --- reading PIL's pixels in place ----------------------------------------------------


class _ArrowArray(ctypes.Structure):
    """The Arrow C data interface's ArrowArray (a stable ABI)."""


_ArrowArray._fields_ = [
    ("length", ctypes.c_int64),
    ("null_count", ctypes.c_int64),
    ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))),
    ("dictionary", ctypes.c_void_p),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _rgbx_pixels(image: Image.Image) -> np.ndarray | None:
    """An RGB image's pixels in place, uint32 [H, W] (R in the low byte), or None.

    PIL keeps RGB as 4 bytes a pixel and exports them without a copy through
    the Arrow C data interface when they are one buffer; np.asarray would
    repack them to 3 bytes, some 30 ms for a 12 Mpx photo. The array holds
    the export, which holds PIL's pixels, for as long as it lives.
    """
    if image.mode != "RGB" or sys.byteorder != "little":
        return None
    try:
        exported = image.__arrow_c_array__()
    except (AttributeError, ValueError):  # Pillow < 11.2; rows in several blocks
        return None
    array = _ArrowArray.from_address(_capsule_pointer(exported[1], b"arrow_array"))
    if array.n_children != 1:
        return None
    bytes_ = array.children[0].contents  # a fixed-size list of 4 uint8 per pixel
    if bytes_.length != image.width * image.height * 4 or bytes_.offset != 0:
        return None
    buffer = (ctypes.c_uint32 * (image.width * image.height)).from_address(bytes_.buffers[1])
    buffer._export = exported  # type: ignore[attr-defined]  # kept alive with the buffer, released with it
    return np.frombuffer(memoryview(buffer), np.uint32).reshape(image.height, image.width)
