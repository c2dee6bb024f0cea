"""POST /v1/chat/completions, streaming (SSE, framing in openai_frontend.completions) and not.

One image is one ensemble request. Several images, or documents (`file`
parts), are OCR'd page by page (openai_frontend.documents) and answered as one
completion: the pages' text in order, joined by DeepSeek's page split marker.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from dsocr.documents.limits import DEFAULT_DPI
from openai_frontend.completions import Completion, EventStreamResponse, sse_events
from openai_frontend.disconnect import unless_disconnected
from openai_frontend.messages import to_ocr_request
from openai_frontend.openapi import GENERATION_ERRORS, STREAMED_COMPLETION
from openai_frontend.routers.models import require_served
from openai_frontend.schemas import ChatCompletion, ChatCompletionRequest

router = APIRouter()


@router.post(
    "/v1/chat/completions", response_model=ChatCompletion, responses={200: STREAMED_COMPLETION, **GENERATION_ERRORS}
)
async def chat_completions(body: ChatCompletionRequest, request: Request):
    state = request.app.state
    require_served(body.model, state.settings.family)
    ocr = to_ocr_request(body)
    if ocr.single_image:
        image = await state.documents.sources.load(ocr.sources[0])
        deltas = state.engine.generate(image.data, ocr.prompt, body.parameters())
    else:
        pages, documents = await state.documents.pages(ocr.sources, DEFAULT_DPI)
        deltas = state.documents.chat_deltas(pages, documents, ocr.prompt, body.parameters())
    completion = Completion(model=body.model)
    if not body.stream:
        return await unless_disconnected(request, completion.collect(deltas))
    # The first delta is awaited before the response starts, so that a request
    # the model refuses is an HTTP error, not an error event in a 200 stream.
    first = await unless_disconnected(request, anext(deltas))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return EventStreamResponse(sse_events(completion, first, deltas, include_usage))
