"""Chat messages -> one image and DeepSeek's prompt.

DeepSeek-OCR takes one image and a short instruction, laid out as
"<image>\\n<instruction>". The image may come in any content part of any user
message; the instructions are the text parts, in order. An image with no text
gets DeepSeek's default document prompt.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from openai_frontend.errors import BadRequest
from openai_frontend.schemas import ChatCompletionRequest, ImagePart, TextPart

IMAGE_PLACEHOLDER = "<image>"
DEFAULT_PROMPT = "<|grounding|>Convert the document to markdown."

# DeepSeek's prompt presets (README: "Prompts").
PRESETS = {
    "document": "<|grounding|>Convert the document to markdown.",
    "free_ocr": "Free OCR.",
    "figure": "Parse the figure.",
    "describe": "Describe this image in detail.",
    "locate": "Locate <|ref|>{text}<|/ref|> in the image.",
}

_DATA_URL = re.compile(r"^data:[^,]*;base64,(?P<data>.*)$", re.S)


@dataclass(frozen=True)
class ImageSource:
    """Inline bytes (from a data URL) or a remote URL still to fetch."""

    data: bytes | None = None
    url: str | None = None


@dataclass(frozen=True)
class OCRRequest:
    image: ImageSource
    prompt: str


def decode_data_url(url: str, param: str) -> bytes:
    match = _DATA_URL.match(url)
    if not match:
        raise BadRequest("image data URLs must be base64: data:image/<type>;base64,<data>", param=param,
                         code="invalid_image_url")
    try:
        data = base64.b64decode(match["data"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"the image data URL is not valid base64: {exc}", param=param,
                         code="invalid_image_url") from exc
    if not data:
        raise BadRequest("the image data URL is empty", param=param, code="invalid_image_url")
    return data


def to_ocr_request(request: ChatCompletionRequest) -> OCRRequest:
    images: list[tuple[str, str]] = []
    texts: list[str] = []
    for m, message in enumerate(request.messages):
        if message.role == "assistant" or message.content is None:
            continue
        parts = [TextPart(type="text", text=message.content)] if isinstance(message.content, str) else message.content
        for p, part in enumerate(parts):
            param = f"messages[{m}].content[{p}]"
            if isinstance(part, ImagePart):
                if message.role != "user":
                    raise BadRequest("images belong in user messages", param=param)
                images.append((part.image_url.url, param))
            elif part.text.strip():
                if IMAGE_PLACEHOLDER in part.text:
                    raise BadRequest(f"text must not contain {IMAGE_PLACEHOLDER}; send the image as an image_url part",
                                     param=param)
                texts.append(part.text.strip())
    if len(images) != 1:
        raise BadRequest(f"exactly one image is required per request, got {len(images)}", param="messages",
                         code="image_count")
    url, param = images[0]
    if url.startswith("data:"):
        source = ImageSource(data=decode_data_url(url, param))
    elif url.startswith(("http://", "https://")):
        source = ImageSource(url=url)
    else:
        raise BadRequest("image_url must be a data: URL or an http(s) URL", param=param, code="invalid_image_url")
    instruction = "\n".join(texts) or DEFAULT_PROMPT
    return OCRRequest(image=source, prompt=f"{IMAGE_PLACEHOLDER}\n{instruction}")
