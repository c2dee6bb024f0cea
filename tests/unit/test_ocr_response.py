"""`/v1/ocr`'s response from pages' results: DeepSeek's grounded output parsed into Mistral's typed blocks,
figures cropped from the rendered page by the real renderer, the image limits applied across the document.

The tiny test model writes no layout tags (its weights are random), so the parsing and cropping are shown
here on DeepSeek-shaped output for real rendered pages; the path through the engine is tests/server.
"""

from __future__ import annotations

import asyncio
import base64
import io

from PIL import Image

from dsocr.documents.render import DocumentRenderer, RenderedPage
from openai_frontend.documents import PageResult
from openai_frontend.ocr import ocr_response
from openai_frontend.ocr_schemas import OCRRequest
from tests.sample_documents import raster_pdf

# A 999 x 666 px page (the 0-999 scale maps to pixels one to one across), grey, with a red figure
# at x 100..300, y 200..400.
WIDTH, HEIGHT = 999, 666
OUTPUT = (
    "<|ref|>title<|/ref|><|det|>[[100, 30, 600, 90]]<|/det|>\n# Annual report\n\n"
    "<|ref|>image<|/ref|><|det|>[[100, 300, 300, 600]]<|/det|>\n\n"
    "<|ref|>image_caption<|/ref|><|det|>[[100, 610, 300, 640]]<|/det|>\nFigure 1: red.\n\n"
    "<|ref|>text<|/ref|><|det|>[[400, 300, 900, 600]]<|/det|>\nRevenue rose \\coloneqq 3%.\n"
)


def y(v: int) -> int:
    """DeepSeek's scale to pixels, int(v / 999 * H) (across, 999 px: the identity)."""
    return int(v / 999 * HEIGHT)


def page_image() -> bytes:
    image = Image.new("RGB", (WIDTH, HEIGHT), (128, 128, 128))
    image.paste((230, 0, 0), (100, 200, 300, 400))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def result(index: int, text: str = OUTPUT) -> PageResult:
    return PageResult(RenderedPage(index, page_image(), WIDTH, HEIGHT, 144), text, "stop", 300, 120)


async def iterate(results):
    for item in results:
        yield item


def respond(body: dict, results: list[PageResult]):
    request = OCRRequest.model_validate({"model": "deepseek-ocr", "document": {"type": "document_url",
                                         "document_url": "data:application/pdf;base64,"}, **body})  # fmt: skip

    async def run():
        async with DocumentRenderer(workers=1) as renderer, await renderer.open(raster_pdf()) as document:
            return await ocr_response(request, "deepseek-ocr", document, iterate(results), renderer)

    return asyncio.run(run())


def test_blocks_are_typed_in_reading_order_with_boxes_in_page_pixels():
    [page] = respond({}, [result(0)]).pages
    assert [(b.type, b.top_left_x, b.top_left_y, b.bottom_right_x, b.bottom_right_y) for b in page.blocks] == [
        ("title", 100, y(30), 600, y(90)),
        ("image", 100, y(300), 300, y(600)),
        ("caption", 100, y(610), 300, y(640)),
        ("text", 400, y(300), 900, y(600)),
    ]
    assert page.blocks[1].image_id == "img-0.jpeg"
    assert page.markdown == "# Annual report\n\n![img-0.jpeg](img-0.jpeg)\n\nFigure 1: red.\n\nRevenue rose := 3%."
    assert (page.dimensions.width, page.dimensions.height, page.dimensions.dpi) == (WIDTH, HEIGHT, 144)
    assert (page.finish_reason, page.usage.total_tokens) == ("stop", 420)


def test_figures_are_cropped_from_the_page_when_asked():
    [page] = respond({"include_image_base64": True}, [result(0)]).pages
    [figure] = page.images
    assert (figure.id, figure.top_left_x, figure.top_left_y, figure.bottom_right_x, figure.bottom_right_y) == (
        "img-0.jpeg",
        100,
        y(300),
        300,
        y(600),
    )
    header, encoded = figure.image_base64.split(",", 1)
    assert header == "data:image/jpeg;base64"
    crop = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert crop.size == (200, 200)
    red, green, blue = crop.convert("RGB").getpixel((100, 100))
    assert red > 200 and green < 40 and blue < 40  # the red figure, not the grey page


def test_figures_are_boxes_only_unless_asked_and_blocks_can_be_left_out():
    [page] = respond({"include_blocks": False}, [result(0)]).pages
    assert page.images[0].image_base64 is None and page.images[0].bottom_right_x == 300
    assert page.blocks is None


def test_the_image_limit_and_minimum_size_hold_across_the_document():
    limited = respond({"image_limit": 1}, [result(0), result(1)]).pages
    assert [len(page.images) for page in limited] == [1, 0]
    assert "img-0.jpeg" in limited[0].markdown and "![" not in limited[1].markdown
    tiny = respond({"image_min_size": 201}, [result(0)]).pages[0]
    assert tiny.images == [] and all(block.type != "image" for block in tiny.blocks)


def test_figure_ids_run_across_pages_and_usage_adds_up():
    response = respond({}, [result(0), result(3)])
    assert [page.images[0].id for page in response.pages] == ["img-0.jpeg", "img-1.jpeg"]
    assert [page.index for page in response.pages] == [0, 3]
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (600, 240)
    assert response.usage_info.pages_processed == 2


def test_a_page_cut_mid_tag_keeps_its_text():
    cut = OUTPUT[: OUTPUT.index("[[400, 300") + 6]  # ends inside the last box
    [page] = respond({}, [result(0, cut)]).pages
    assert "Figure 1: red." in page.markdown and "<|" not in page.markdown
    assert [block.type for block in page.blocks] == ["title", "image", "caption"]
