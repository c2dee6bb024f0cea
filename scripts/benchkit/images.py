"""The document-like images every benchmark sends, made in memory.

Deterministic (seeded), so two runs and two systems see the same bytes.
Three sets, chosen by what a benchmark wants to stress:

- `small`: documents no larger than 640 px (receipts, labels, a note). In
  Gundam mode these are one 1024 px global view and no tiles: the cheapest
  real work for the vision encoder, so a CPU run finishes in minutes.
- `page`: A4 pages at 150 DPI, JPEG and PNG: a global view plus tiles, the
  usual OCR request on a GPU.
- `large`: A4 at 200 DPI and 12 Mpx phone photos of a page: decoding and
  tiling dominate, the preprocessing-heavy load.
"""

from __future__ import annotations

import base64
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_preprocess import A4_INCHES, encoded, phone_photo, text_page  # noqa: E402

IMAGE_SETS = ("small", "page", "large")
MIME = {"PNG": "image/png", "JPEG": "image/jpeg"}


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes
    fmt: str

    @cached_property
    def data_url(self) -> str:
        """Encoded once, outside any timing: every HTTP client sends the same string."""
        return f"data:{MIME[self.fmt]};base64,{base64.b64encode(self.data).decode()}"


def _encode(image, fmt: str) -> bytes:
    return encoded(image, fmt, quality=90) if fmt == "JPEG" else encoded(image, fmt)


def _small(index: int) -> Sample:
    sizes = [(400, 640), (640, 400), (512, 512), (480, 640)]
    width, height = sizes[index % len(sizes)]
    fmt = "PNG" if index % 2 == 0 else "JPEG"
    page = text_page(width, height, seed=index)
    return Sample(f"small {width}x{height} {fmt}", _encode(page, fmt), fmt)


def _page(index: int, dpi: int = 150) -> Sample:
    size = (round(A4_INCHES[0] * dpi), round(A4_INCHES[1] * dpi))
    fmt = "JPEG" if index % 2 == 0 else "PNG"
    page = text_page(*size, seed=1000 + index)
    return Sample(f"A4 {dpi} DPI {fmt}", _encode(page, fmt), fmt)


def _large(index: int) -> Sample:
    if index % 2 == 0:
        return _page(index, dpi=200)
    photo = phone_photo(3000, 4000, seed=2000 + index)
    return Sample("phone photo 3000x4000 JPEG", encoded(photo, "JPEG", quality=92), "JPEG")


_MAKERS = {"small": _small, "page": _page, "large": _large}


def make_images(kind: str, count: int) -> list[Sample]:
    """`count` distinct images of one set (a run cycles through them)."""
    if kind not in _MAKERS:
        raise ValueError(f"image set must be one of {', '.join(IMAGE_SETS)}, not {kind!r}")
    return [_MAKERS[kind](index) for index in range(count)]
