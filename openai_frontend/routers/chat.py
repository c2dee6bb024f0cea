"""POST /v1/chat/completions, streaming (SSE) and not.

SSE framing: one `data: <chat.completion.chunk JSON>` event per Triton
response (the first carries the assistant role), the finish reason on the last
content chunk, with `stream_options.include_usage` one more chunk with empty
choices and the usage, then `data: [DONE]`. An error after the stream started
is a `data: {"error": ...}` event followed by `data: [DONE]`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from tritonclient.utils import InferenceServerException

from openai_frontend.engine import Delta
from openai_frontend.errors import BadRequest, NotFound, OpenAIError, Overloaded
from openai_frontend.messages import to_ocr_request
from openai_frontend.routers.models import model_names
from openai_frontend.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    ResponseMessage,
    Usage,
)
from openai_frontend.schemas import Delta as DeltaMessage

router = APIRouter()


def triton_error(exc: InferenceServerException) -> OpenAIError:
    """Triton's status -> the API's error: bad input stays a client error."""
    status = str(exc.status() or "")
    message = exc.message() or str(exc)
    if "INVALID_ARGUMENT" in status:
        return BadRequest(message, code="invalid_request")
    if "UNAVAILABLE" in status:
        return Overloaded(f"the model server is unavailable: {message}", code="unavailable")
    return OpenAIError(message)


def usage_of(delta: Delta) -> Usage:
    return Usage(prompt_tokens=delta.prompt_tokens, completion_tokens=delta.completion_tokens,
                 total_tokens=delta.prompt_tokens + delta.completion_tokens)


async def deltas(request: Request, body: ChatCompletionRequest) -> AsyncIterator[Delta]:
    ocr = to_ocr_request(body)
    if ocr.image.data is None:
        raise BadRequest("image URLs are disabled on this server; send the image as a base64 data URL",
                         param="messages", code="image_url_disabled")
    try:
        async for delta in request.app.state.engine.generate(ocr.image.data, ocr.prompt, body.parameters()):
            yield delta
    except InferenceServerException as exc:
        raise triton_error(exc) from exc


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request):
    if body.model not in model_names(request.app.state.settings.family):
        raise NotFound(f"model {body.model!r} does not exist; see /v1/models", param="model", code="model_not_found")
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    stream = deltas(request, body)
    if body.stream:
        # The first delta is awaited here so that an error before any output
        # is an HTTP error, not an event in a 200 stream.
        first = await anext(stream)
        return StreamingResponse(
            sse_events(completion_id, created, body, first, stream),
            media_type="text/event-stream",
        )
    text, last = [], None
    async for delta in stream:
        text.append(delta.text)
        last = delta
    return ChatCompletion(
        id=completion_id, created=created, model=body.model,
        choices=[Choice(message=ResponseMessage(content="".join(text)), finish_reason=last.finish_reason)],
        usage=usage_of(last),
    )


async def sse_events(completion_id, created, body, first: Delta, rest: AsyncIterator[Delta]):
    def event(payload) -> str:
        return f"data: {payload if isinstance(payload, str) else json.dumps(payload)}\n\n"

    def chunk(choices, usage=None) -> str:
        return event(ChatCompletionChunk(id=completion_id, created=created, model=body.model,
                                         choices=choices, usage=usage).model_dump(exclude_none=True))

    last = first
    try:
        yield chunk([ChunkChoice(delta=DeltaMessage(role="assistant", content=first.text),
                                 finish_reason=first.finish_reason)])
        async for delta in rest:
            last = delta
            yield chunk([ChunkChoice(delta=DeltaMessage(content=delta.text), finish_reason=delta.finish_reason)])
        if body.stream_options and body.stream_options.include_usage:
            yield chunk([], usage=usage_of(last))
    except OpenAIError as exc:
        yield event(exc.body())
    except Exception as exc:  # the stream is open: report in-band, never drop it
        yield event(OpenAIError(f"internal error: {exc}").body())
    yield event("[DONE]")
