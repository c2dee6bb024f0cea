"""Pictures of the pages with their layout drawn: what a person opens to see whether the layout is right.

Each page is rendered by the renderer the service uses, at the request's DPI, so the picture has the
page's `dimensions` and the blocks' boxes (page pixels) land where the model put them. As DeepSeek's
scripts draw them: each block's box outlined and lightly filled in a colour of its type, titles
with a thicker line, the type written above the box. `--layout pdf` binds a document's pages into
one PDF, as DeepSeek's `_layouts.pdf`, each page at the size of the original.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, ImageOps

# One colour per Mistral block type (documents.layout.BLOCK_TYPES' values), fixed so that a type
# looks the same on every page and in every run.
TYPE_COLOURS: dict[str, tuple[int, int, int]] = {
    "title": (220, 20, 60),
    "text": (30, 144, 255),
    "image": (34, 139, 34),
    "caption": (255, 140, 0),
    "table": (148, 0, 211),
    "equation": (0, 139, 139),
    "header": (128, 128, 128),
    "footer": (128, 128, 128),
    "list": (70, 130, 180),
    "code": (139, 69, 19),
    "references": (199, 21, 133),
    "aside_text": (85, 107, 47),
    "signature": (0, 0, 128),
}
_OTHER_COLOUR = (255, 0, 255)
_FILL_ALPHA = 24


def page_image(rendered: bytes) -> Image.Image:
    """A rendered page (PNG, or a one-page image's own bytes) upright in RGB, as the model saw it."""
    with Image.open(io.BytesIO(rendered)) as opened:
        return ImageOps.exif_transpose(opened).convert("RGB")


def draw_blocks(page: Image.Image, blocks: list[dict[str, Any]]) -> Image.Image:
    """A copy of `page` with each block's box and type drawn."""
    picture = page.convert("RGBA")
    overlay = Image.new("RGBA", picture.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    side = max(picture.size)
    font = _font(max(12, side // 70))
    for block in blocks:
        colour = TYPE_COLOURS.get(block.get("type", ""), _OTHER_COLOUR)
        box = (block["top_left_x"], block["top_left_y"], block["bottom_right_x"], block["bottom_right_y"])
        width = max(2, side // (250 if block.get("type") == "title" else 500))
        draw.rectangle(box, fill=(*colour, _FILL_ALPHA), outline=(*colour, 255), width=width)
        _label(draw, box, str(block.get("type", "")), colour, font)
    return Image.alpha_composite(picture, overlay).convert("RGB")


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def append_pdf_page(path: Path, picture: Image.Image, dpi: int) -> None:
    """`picture` as the last page of the PDF at `path` (created by the first page), `dpi` pixels an inch: the
    original page's size in points. A page at a time, so that no document's pages are all held in memory."""
    picture.save(path, "PDF", resolution=float(dpi), append=path.exists())


def _label(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    text: str,
    colour: tuple[int, int, int],
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
) -> None:
    """The type on a filled tab above the box's corner, or inside it at the top of the page."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    width, height = right - left + 6, bottom - top + 4
    x, y = box[0], box[1] - height if box[1] >= height else box[1]
    draw.rectangle((x, y, x + width, y + height), fill=(*colour, 255))
    draw.text((x + 3 - left, y + 2 - top), text, fill=(255, 255, 255, 255), font=font)


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, ImportError, TypeError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()
