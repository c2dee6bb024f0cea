"""Documents the tests build: raster PDFs with Pillow, vector text PDFs with fpdf2, encrypted and
blank PDFs with pypdf, multi-page TIFFs."""

from __future__ import annotations

import io

import numpy as np
from fpdf import FPDF
from PIL import Image
from pypdf import PdfReader, PdfWriter

# (colour, (width, height)) of each raster page; 72 DPI, so points = pixels.
RASTER_PAGES = [((220, 30, 30), (300, 200)), ((30, 200, 40), (200, 300)), ((40, 60, 210), (250, 250))]
# Points: A4 portrait, A4 landscape, an odd size; a fourth page is the first one with /Rotate 90.
TEXT_PAGE_SIZES = [(595.28, 841.89), (841.89, 595.28), (300.5, 400.25)]
TEXT_PAGE_POINTS = [*TEXT_PAGE_SIZES, (841.89, 595.28)]


# --- documents ------------------------------------------------------------------


def raster_pdf(pages=RASTER_PAGES) -> bytes:
    images = [Image.new("RGB", size, colour) for colour, size in pages]
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", save_all=True, append_images=images[1:], resolution=72)
    return buffer.getvalue()


def text_pdf() -> bytes:
    pdf = FPDF(unit="pt", format=TEXT_PAGE_SIZES[0])
    pdf.set_font("helvetica", size=28)
    for number, size in enumerate(TEXT_PAGE_SIZES, start=1):
        pdf.add_page(format=size)
        pdf.multi_cell(w=0, text=f"Page {number}. The quick brown fox jumps over the lazy dog, 0123456789.")
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(bytes(pdf.output()))))
    writer.add_page(PdfReader(io.BytesIO(bytes(pdf.output()))).pages[0])
    writer.pages[3].rotate(90)
    return written(writer)


def empty_pdf() -> bytes:
    """A PDF with no pages at all."""
    return written(PdfWriter())


def blank_pdf(*sizes: tuple[float, float]) -> bytes:
    writer = PdfWriter()
    for width, height in sizes:
        writer.add_blank_page(width=width, height=height)
    return written(writer)


def encrypted_pdf(user_password: str, algorithm: str = "RC4-128") -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(raster_pdf())))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm=algorithm)
    return written(writer)


def written(writer: PdfWriter) -> bytes:
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def tiff(frames: list[Image.Image]) -> bytes:
    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def noise_pdf(size: int) -> bytes:
    """One page of full-range noise, size x size points: slow to render and to compress."""
    rng = np.random.default_rng(size)
    image = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "PDF", resolution=72, quality=95)
    return buffer.getvalue()
