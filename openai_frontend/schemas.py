"""OpenAI Chat Completions request and response models (fields in OpenAI's order).

Extensions, sent as extra body fields (the OpenAI SDK's `extra_body`):
`resolution_mode`, `max_crops`, `ngram_size`, `window_size`,
`skip_special_tokens`, `ignore_eos` (see dsocr.settings).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dsocr.settings import MAX_NGRAM_TOKENS


class ImageURL(BaseModel):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImagePart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageURL


# Tagged by "type", so that an unknown part type is named as such.
ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class Message(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: list[ContentPart] | None = None
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_is_one_part(cls, content):
        # OpenAI's shorthand: a string is one text part.
        return [{"type": "text", "text": content}] if isinstance(content, str) else content


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    # A setting this service does not implement (penalties, logprobs, tools)
    # is refused, not silently ignored.
    model_config = ConfigDict(extra="forbid")

    messages: list[Message] = Field(min_length=1)
    model: str
    max_completion_tokens: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1, le=1)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)  # the sampler's 64-bit seed
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    user: str | None = None
    # Extensions
    resolution_mode: Literal["tiny", "small", "base", "large", "gundam"] | None = None
    max_crops: int | None = Field(default=None, ge=2, le=9)
    ngram_size: int | None = Field(default=None, ge=0, le=MAX_NGRAM_TOKENS)
    window_size: int | None = Field(default=None, ge=1, le=MAX_NGRAM_TOKENS)
    skip_special_tokens: bool | None = None
    ignore_eos: bool | None = None

    def parameters(self) -> dict:
        """The ensemble's PARAMETERS JSON (dsocr.settings)."""
        settings = {
            "max_tokens": self.max_completion_tokens or self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "stop": self.stop,
            "skip_special_tokens": self.skip_special_tokens,
            "ignore_eos": self.ignore_eos,
            "ngram_size": self.ngram_size,
            "window_size": self.window_size,
            "resolution_mode": self.resolution_mode,
            "max_crops": self.max_crops,
        }
        return {key: value for key, value in settings.items() if value is not None}


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str | None
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


def _omitted_when_none(**kwargs):
    return Field(None, exclude_if=lambda value: value is None, **kwargs)


class Delta(BaseModel):
    # Only the first chunk carries the role, as OpenAI's do.
    role: Literal["assistant"] | None = _omitted_when_none()
    content: str | None = _omitted_when_none()


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = _omitted_when_none()


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]
