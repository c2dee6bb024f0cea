"""Images and documents to pages, and page results to Mistral OCR's response.

`DocumentService` loads a request's sources (data URLs, or URLs under the
image URL policy), opens them with the renderer (worker processes) and makes
their pages, within the page limit; `ocr_response` turns the pages' results,
in order, into `/v1/ocr`'s response: DeepSeek's grounding tags parsed into
typed blocks and figures (dsocr.documents.layout), figures cropped from the
rendered page when asked for.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from dsocr.documents.errors import DocumentError
from dsocr.documents.layout import Box, PageLayout, parse_page
from dsocr.documents.render import DocumentRenderer, OpenedDocument
from dsocr.triton.client import Delta
from openai_frontend.documents import Page, PageResult, PageRunner, document_pages
from openai_frontend.ocr_schemas import (
    OCRBlock,
    OCRImageObject,
    OCRPageDimensions,
    OCRPageObject,
    OCRRequest,
    OCRResponse,
    OCRUsageInfo,
)
from openai_frontend.schemas import Usage
from openai_frontend.sources import Source, SourceLoader


@dataclass
class DocumentService:
    sources: SourceLoader
    renderer: DocumentRenderer
    runner: PageRunner

    async def open(self, source: Source) -> OpenedDocument:
        loaded = await self.sources.load(source)
        try:
            return await self.renderer.open(loaded.data, loaded.media_type)
        except DocumentError as exc:
            exc.param = exc.param or source.param  # the field the document came in
            raise

    async def pages(self, sources: list[Source], dpi: int) -> tuple[list[Page], list[OpenedDocument]]:
        """Every page of every source, in order, and the documents to close once they are done."""
        self.renderer.limits.check_dpi(dpi)
        pages: list[Page] = []
        documents: list[OpenedDocument] = []
        try:
            for source in sources:
                document = await self.open(source)
                documents.append(document)
                pages += document_pages(self.renderer, document, list(range(document.page_count)), dpi)
                if len(pages) > self.renderer.limits.max_pages:
                    raise DocumentError(
                        "too_many_pages",
                        f"the request has more than {self.renderer.limits.max_pages} pages, over the limit",
                        source.param,
                    )
        except BaseException:
            close_all(documents)
            raise
        return pages, documents

    async def chat_deltas(
        self, pages: list[Page], documents: list[OpenedDocument], prompt: str, parameters: dict
    ) -> AsyncGenerator[Delta, None]:
        """The pages as one completion's deltas (PageRunner.deltas); the documents closed at its end."""
        try:
            async with contextlib.aclosing(self.runner.deltas(pages, prompt, parameters)) as deltas:
                async for delta in deltas:
                    yield delta
        finally:
            close_all(documents)


def close_all(documents: list[OpenedDocument]) -> None:
    for document in documents:
        document.close()


async def ocr_response(
    body: OCRRequest,
    model: str,
    document: OpenedDocument,
    results: AsyncIterator[PageResult],
    renderer: DocumentRenderer,
) -> OCRResponse:
    pages: list[OCRPageObject] = []
    figures = 0
    async for result in results:
        remaining = None if body.image_limit is None else body.image_limit - figures
        layout = parse_page(
            result.text,
            result.page.width,
            result.page.height,
            first_figure=figures,
            figure_limit=remaining,
            figure_min_size=body.image_min_size or 0,
        )
        figures += len(layout.figures)
        crops: list[str | None] = [None] * len(layout.figures)
        if body.include_image_base64:
            crops = [*await _crops(renderer, result, layout)]
        pages.append(_page(body, result, layout, crops))
    usage = Usage.counted(sum(p.usage.prompt_tokens for p in pages), sum(p.usage.completion_tokens for p in pages))
    return OCRResponse(
        pages=pages,
        model=model,
        usage_info=OCRUsageInfo(pages_processed=len(pages), doc_size_bytes=document.size_bytes),
        usage=usage,
    )


async def _crops(renderer: DocumentRenderer, result: PageResult, layout: PageLayout) -> list[str]:
    if not layout.figures:
        return []
    jpegs = await renderer.crop(result.page.image, [_corners(figure.box) for figure in layout.figures])
    return [f"data:image/jpeg;base64,{base64.b64encode(jpeg).decode()}" for jpeg in jpegs]


def _page(body: OCRRequest, result: PageResult, layout: PageLayout, crops: list[str | None]) -> OCRPageObject:
    images = [
        OCRImageObject(id=figure.id, **_corner_fields(figure.box), image_base64=crop)
        for figure, crop in zip(layout.figures, crops, strict=True)
    ]
    blocks = None
    if body.include_blocks:
        blocks = [
            OCRBlock(type=block.type, **_corner_fields(block.box), content=block.content, image_id=block.image_id)
            for block in layout.blocks
        ]
    page = result.page
    return OCRPageObject(
        index=page.index,
        markdown=layout.markdown,
        images=images,
        dimensions=OCRPageDimensions(dpi=page.dpi, height=page.height, width=page.width),
        blocks=blocks,
        finish_reason=result.finish_reason,
        usage=Usage.counted(result.prompt_tokens, result.completion_tokens),
    )


def _corners(box: Box) -> tuple[int, int, int, int]:
    return box.x1, box.y1, box.x2, box.y2


def _corner_fields(box: Box) -> dict[str, int]:
    return {"top_left_x": box.x1, "top_left_y": box.y1, "bottom_right_x": box.x2, "bottom_right_y": box.y2}
