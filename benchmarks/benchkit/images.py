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
import io
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IMAGE_SETS = ("small", "page", "large")
MIME = {"PNG": "image/png", "JPEG": "image/jpeg"}
A4_INCHES = (8.27, 11.69)


def text_page(width: int, height: int, seed: int) -> Image.Image:
    """A white page of dark text-like lines, a heading and a table rule."""
    rng = np.random.default_rng(seed)
    page = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(page)
    line_height = max(12, height // 70)
    font = ImageFont.load_default(size=int(line_height * 0.7))
    heading = ImageFont.load_default(size=int(line_height * 1.4))
    margin = width // 12
    draw.text((margin, margin), "Quarterly report: results and outlook", fill=(20, 20, 60), font=heading)
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "2024", "EUR", "12.5%"]
    y = margin + 3 * line_height
    while y < height - margin:
        line = " ".join(rng.choice(words, size=rng.integers(8, 14)))
        draw.text((margin, y), line, fill=(10, 10, 10), font=font)
        y += line_height
        if rng.random() < 0.05:
            draw.line((margin, y, width - margin, y), fill=(90, 90, 90), width=2)
            y += line_height // 2
    return page


def phone_photo(width: int, height: int, seed: int) -> Image.Image:
    """A page photographed on a desk: uneven light, sensor noise."""
    rng = np.random.default_rng(seed)
    desk = np.linspace(90, 150, width, dtype=np.float32)[None, :, None] * np.array([1.0, 0.85, 0.7], np.float32)
    pixels = np.broadcast_to(desk, (height, width, 3)).copy()
    page = np.asarray(text_page(width * 3 // 4, height * 3 // 4, seed), dtype=np.float32)
    top, left = height // 8, width // 8
    pixels[top : top + page.shape[0], left : left + page.shape[1]] = page * 0.9
    pixels *= np.linspace(1.1, 0.8, height, dtype=np.float32)[:, None, None]
    pixels += rng.normal(0, 6, pixels.shape).astype(np.float32)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


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
