"""POST /v1/chat/completions, streaming (SSE, framing in openai_frontend.completions) and not."""

from __future__ import annotations

from fastapi import APIRouter, Request

from openai_frontend.completions import Completion, EventStreamResponse, sse_events
from openai_frontend.disconnect import unless_disconnected
from openai_frontend.messages import to_ocr_request
from openai_frontend.routers.models import require_served
from openai_frontend.schemas import ChatCompletion, ChatCompletionRequest

router = APIRouter()


@router.post("/v1/chat/completions", response_model=ChatCompletion)
async def chat_completions(body: ChatCompletionRequest, request: Request):
    state = request.app.state
    require_served(body.model, state.settings.family)
    ocr = to_ocr_request(body)
    image = await state.images.load(ocr.image)
    deltas = state.engine.generate(image, ocr.prompt, body.parameters())
    completion = Completion(model=body.model)
    if not body.stream:
        return await unless_disconnected(request, completion.collect(deltas))
    # The first delta is awaited before the response starts, so that a request
    # the model refuses is an HTTP error, not an error event in a 200 stream.
    first = await unless_disconnected(request, anext(deltas))
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return EventStreamResponse(sse_events(completion, first, deltas, include_usage))
