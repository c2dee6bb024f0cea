"""OpenAI Chat Completions request and response models (fields in OpenAI's order).

Extensions, sent as extra body fields (the OpenAI SDK's `extra_body`):
`resolution_mode`, `max_crops`, `ngram_size`, `window_size`,
`skip_special_tokens`, `ignore_eos` (see dsocr.parameters). Every bound of a
model parameter is dsocr.parameters', every mode name dsocr.families'.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dsocr.families import ModeName
from dsocr.parameters import BOUNDS

# A 1x1 white PNG: the schemas' examples are requests that run as they are (/docs, API fuzzing).
EXAMPLE_IMAGE_URL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4//8/AAX+Av4N70a4AAAAAElFTkSuQmCC"
)


def bounded(name: str) -> Any:
    """An optional field (None: not set) with the bounds dsocr.parameters declares for `name`."""
    bound = BOUNDS[name]
    if bound.low_exclusive:
        return Field(default=None, gt=bound.low, le=bound.high)
    return Field(default=None, ge=bound.low, le=bound.high)


class RequestModel(BaseModel):
    """A part of a request: each field takes the JSON type the schema gives it, never a look-alike
    (0 is no boolean, "2" no integer), as in OpenAI's API; the API fuzzing test holds them to it."""

    model_config = ConfigDict(strict=True)


class ImageURL(RequestModel):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(RequestModel):
    type: Literal["text"]
    text: str


class ImagePart(RequestModel):
    type: Literal["image_url"]
    image_url: ImageURL


class FileData(RequestModel):
    file_data: str | None = None  # a base64 data URL: data:application/pdf;base64,...
    file_id: str | None = None  # an uploaded file: refused (this service keeps no files)
    filename: str | None = None


class FilePart(RequestModel):
    type: Literal["file"]
    file: FileData


# Tagged by "type", so that an unknown part type is named as such.
ContentPart = Annotated[TextPart | ImagePart | FilePart, Field(discriminator="type")]


class Message(RequestModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: list[ContentPart] | None = None
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _text_is_one_part(cls, content):
        # OpenAI's shorthand: a string is one text part.
        return [{"type": "text", "text": content}] if isinstance(content, str) else content


class StreamOptions(RequestModel):
    include_usage: bool = False


class ChatCompletionRequest(RequestModel):
    # A setting this service does not implement (penalties, logprobs, tools)
    # is refused, not silently ignored.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "model": "deepseek-ocr",
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "image_url", "image_url": {"url": EXAMPLE_IMAGE_URL}},
                                {"type": "text", "text": "Free OCR."},
                            ],
                        }
                    ],
                    "max_tokens": 2048,
                }
            ]
        },
    )

    messages: list[Message] = Field(min_length=1)
    model: str
    max_completion_tokens: int | None = bounded("max_tokens")
    max_tokens: int | None = bounded("max_tokens")
    n: int | None = Field(default=None, ge=1, le=1)
    seed: int | None = bounded("seed")
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = bounded("temperature")
    top_p: float | None = bounded("top_p")
    user: str | None = None
    # Extensions
    resolution_mode: ModeName | None = None
    max_crops: int | None = bounded("max_crops")
    ngram_size: int | None = bounded("ngram_size")
    window_size: int | None = bounded("window_size")
    skip_special_tokens: bool | None = None
    ignore_eos: bool | None = None

    def parameters(self) -> dict:
        """The ensemble's PARAMETERS JSON (dsocr.parameters)."""
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
            "stream": bool(self.stream),
            "resolution_mode": self.resolution_mode,
            "max_crops": self.max_crops,
        }
        return {key: value for key, value in settings.items() if value is not None}


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def counted(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


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


class ChoiceDelta(BaseModel):
    # Only the first chunk carries the role, as OpenAI's do.
    role: Literal["assistant"] | None = _omitted_when_none()
    content: str | None = _omitted_when_none()


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChoiceDelta
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
