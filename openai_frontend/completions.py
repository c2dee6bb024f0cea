"""The engine's deltas -> a chat completion: one JSON response, or server-sent events.

SSE framing (text/event-stream), one `data:` event per line pair:

    data: {chat.completion.chunk}   one per engine delta; the first carries the
                                    assistant role, the last the finish reason
    data: {chat.completion.chunk}   with stream_options.include_usage only:
                                    empty choices and the usage
    data: [DONE]

An error after the stream started cannot change the 200 already sent: it is
one `data: {"error": {...}}` event (OpenAI's error shape), then `data: [DONE]`.
Usage and finish reason are the engine's, as the model reported them.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from dsocr.triton.client import Delta
from openai_frontend.errors import OpenAIError
from openai_frontend.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChoiceDelta,
    ChunkChoice,
    ResponseMessage,
    Usage,
)

log = logging.getLogger(__name__)


def usage_of(delta: Delta) -> Usage:
    return Usage.counted(delta.prompt_tokens, delta.completion_tokens)


@dataclass(frozen=True)
class Completion:
    """What every response or chunk of one completion repeats."""

    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    async def collect(self, deltas: AsyncIterator[Delta]) -> ChatCompletion:
        text, last = [], None
        async for delta in deltas:
            text.append(delta.text)
            last = delta
        if last is None:  # engines end with a finish reason or raise; never silently
            raise OpenAIError("the model server sent no response", code="model_error")
        return ChatCompletion(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[Choice(message=ResponseMessage(content="".join(text)), finish_reason=last.finish_reason)],
            usage=usage_of(last),
        )

    def chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=choices, usage=usage)


def event(payload: ChatCompletionChunk | OpenAIError | str) -> str:
    if isinstance(payload, ChatCompletionChunk):
        data = payload.model_dump_json()
    elif isinstance(payload, OpenAIError):
        data = json.dumps(payload.body())
    else:
        data = payload
    return f"data: {data}\n\n"


async def sse_events(
    completion: Completion, first: Delta, rest: AsyncGenerator[Delta, None], include_usage: bool
) -> AsyncGenerator[str, None]:
    """The stream's events; `first` is already read (see the chat router), `rest` is closed at the end."""
    last = first
    try:
        yield event(
            completion.chunk(
                [
                    ChunkChoice(
                        delta=ChoiceDelta(role="assistant", content=first.text), finish_reason=first.finish_reason
                    )
                ]
            )
        )
        async for delta in rest:
            last = delta
            yield event(
                completion.chunk(
                    [ChunkChoice(delta=ChoiceDelta(content=delta.text), finish_reason=delta.finish_reason)]
                )
            )
        if include_usage:
            yield event(completion.chunk([], usage=usage_of(last)))
    except OpenAIError as exc:
        yield event(exc)
    except Exception:  # the stream is open: report in-band and end it properly
        log.exception("chat completion %s failed while streaming", completion.id)
        yield event(OpenAIError("internal server error"))
    finally:
        await rest.aclose()
    yield event("[DONE]")


class EventStreamResponse(StreamingResponse):
    """A text/event-stream response that always closes its events' iterator.

    Starlette stops iterating when the client goes away but leaves the
    iterator open until garbage collection; closing it here is what closes the
    engine's stream, and with it the Triton request, right away.
    """

    media_type = "text/event-stream"

    def __init__(self, events: AsyncGenerator[str, None]):
        # no-cache: nothing in between keeps or buffers the stream.
        super().__init__(events, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._events.aclose()
