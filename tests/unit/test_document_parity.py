"""A rendered PDF page reaches the model as vLLM's own processor would make it.

The page is rendered by DocumentRenderer (PNG bytes); our preprocessing of
those bytes is compared, tensor for tensor, with vLLM's DeepseekOCRProcessor
on the same page decoded with PIL (DeepSeek's loader), in gundam mode.
"""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import torch
from fpdf import FPDF
from PIL import Image, ImageOps
from vllm.transformers_utils.processors import deepseek_ocr as processor_module  # the reference

from dsocr.documents.render import DocumentRenderer
from dsocr.preprocessing import preprocess_request, prompt_token_ids, resolution_mode
from dsocr.preprocessing.normalize import normalize
from dsocr.tiny_models import build_tokenizer, load_tokenizer

PROMPT = "<image>\n<|grounding|>Convert the document to markdown."
A4_POINTS = (595.28, 841.89)


def text_page_pdf() -> bytes:
    """An A4 page of vector text: a heading and paragraphs, as OCR sees every day."""
    pdf = FPDF(unit="pt", format=A4_POINTS)
    pdf.add_page()
    pdf.set_font("helvetica", style="B", size=20)
    pdf.multi_cell(w=0, text="Quarterly report", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", size=11)
    for number in range(1, 13):
        text = f"{number}. The quick brown fox jumps over the lazy dog; 0123456789. " * 3
        pdf.multi_cell(w=0, text=text, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


async def render_page(data: bytes, dpi: int) -> bytes:
    async with DocumentRenderer(workers=1) as renderer, await renderer.open(data, "application/pdf") as document:
        page = await renderer.render(document, 0, dpi)
    assert (page.width, page.height) == (1191, 1684)  # A4 at 144 DPI
    return page.image


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(build_tokenizer(tmp_path_factory.mktemp("tokenizer")))


def test_a_rendered_text_page_preprocesses_as_vllm_does(tokenizer):
    image = asyncio.run(render_page(text_page_pdf(), 144))
    mode = resolution_mode("ocr", "gundam")
    [ours] = preprocess_request(PROMPT, [image], mode)

    reference_image = ImageOps.exif_transpose(Image.open(io.BytesIO(image))).convert("RGB")
    processor = processor_module.DeepseekOCRProcessor(
        tokenizer, image_size=mode.tile_size, base_size=mode.base_size, strategy="v1", max_crops=mode.max_crops
    )
    input_ids, pixel_values, images_crop, _, spatial_crop, token_counts, _ = processor.tokenize_with_images(
        PROMPT, [reference_image], cropping=True
    )

    assert ours.image_size == reference_image.size
    assert ours.tiles.shape[0] > 0  # a page this size is tiled: the comparison covers tiles
    assert torch.equal(normalize(torch.from_numpy(ours.global_view[np.newaxis])), pixel_values)
    assert torch.equal(normalize(torch.from_numpy(ours.tiles)), images_crop)
    assert [list(ours.spatial_crop)] == spatial_crop.tolist()
    assert [ours.num_image_tokens] == token_counts
    ids = prompt_token_ids(
        PROMPT,
        [ours.num_image_tokens],
        lambda text: tokenizer.encode(text, add_special_tokens=False),
        processor.image_token_id,
        processor.bos_id,
    )
    assert ids == input_ids[0].tolist()
