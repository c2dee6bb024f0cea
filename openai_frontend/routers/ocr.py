"""POST /v1/ocr: Mistral OCR's API over DeepSeek-OCR, a document's pages in, each page's markdown and layout out."""

from __future__ import annotations

import contextlib

from fastapi import APIRouter, Request

from dsocr.documents.pages import select_pages
from dsocr.preprocessing.prompt import IMAGE_PLACEHOLDER
from openai_frontend.disconnect import unless_disconnected
from openai_frontend.documents import document_pages
from openai_frontend.errors import BadRequest
from openai_frontend.ocr import ocr_response
from openai_frontend.ocr_schemas import DocumentURLChunk, ImageURLChunk, OCRRequest, OCRResponse
from openai_frontend.openapi import GENERATION_ERRORS
from openai_frontend.routers.models import require_served
from openai_frontend.sources import Source

router = APIRouter()


@router.post("/v1/ocr", response_model=OCRResponse, responses=GENERATION_ERRORS)
async def ocr(body: OCRRequest, request: Request):
    state = request.app.state
    family = state.settings.family
    model = body.model or family.served_name
    require_served(model, family)
    body.refuse_unsupported()
    if IMAGE_PLACEHOLDER in body.prompt:
        raise BadRequest(f"prompt must not contain {IMAGE_PLACEHOLDER}", param="prompt", code="invalid_prompt")
    service = state.documents
    service.renderer.limits.check_dpi(body.dpi)
    with contextlib.closing(await service.open(document_source(body))) as document:
        indices = select_pages(body.pages, document.page_count)
        pages = document_pages(service.renderer, document, indices, body.dpi)
        parameters = body.parameters(state.settings.ocr_max_tokens)
        results = service.runner.results(pages, f"{IMAGE_PLACEHOLDER}\n{body.prompt}", parameters)
        return await unless_disconnected(request, ocr_response(body, model, document, results, service.renderer))


def document_source(body: OCRRequest) -> Source:
    document = body.document
    if isinstance(document, DocumentURLChunk):
        return Source.checked(document.document_url, "document.document_url", "document")
    if isinstance(document, ImageURLChunk):
        return Source.checked(document.url, "document.image_url")  # an image: the image limits
    raise AssertionError("uploaded files are refused before this")
