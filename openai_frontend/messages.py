"""Chat messages -> one image and DeepSeek's prompt.

DeepSeek-OCR takes one image and a short instruction, laid out as
"<image>\\n<instruction>". The image may come in any content part of any user
message; the instruction is the text parts of the system, developer and user
messages, in order. An image with no text gets DeepSeek's default document
prompt. Assistant turns are not part of an OCR prompt and are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsocr import prompts
from dsocr.preprocessing.prompt import IMAGE_PLACEHOLDER
from openai_frontend.errors import BadRequest
from openai_frontend.schemas import ChatCompletionRequest, ImagePart

DEFAULT_PROMPT = prompts.DEFAULT


@dataclass(frozen=True)
class ImageSource:
    """Where the image is (a data: or http(s) URL) and which request field said so."""

    url: str
    param: str

    @property
    def inline(self) -> bool:
        return self.url.startswith("data:")


@dataclass(frozen=True)
class OCRRequest:
    image: ImageSource
    prompt: str


def to_ocr_request(request: ChatCompletionRequest) -> OCRRequest:
    images: list[ImageSource] = []
    texts: list[str] = []
    for m, message in enumerate(request.messages):
        if message.role == "assistant":
            continue
        for p, part in enumerate(message.content or ()):
            param = f"messages[{m}].content[{p}]"
            if isinstance(part, ImagePart):
                images.append(_image_source(message.role, part, param))
            elif part.text.strip():
                texts.append(_instruction(part.text, param))
    if len(images) != 1:
        raise BadRequest(
            f"exactly one image is required per request, got {len(images)}", param="messages", code="image_count"
        )
    instruction = "\n".join(texts) or DEFAULT_PROMPT
    return OCRRequest(image=images[0], prompt=f"{IMAGE_PLACEHOLDER}\n{instruction}")


def _image_source(role: str, part: ImagePart, param: str) -> ImageSource:
    if role != "user":
        raise BadRequest("images belong in user messages", param=param)
    url = part.image_url.url
    if not url.startswith(("data:", "http://", "https://")):
        raise BadRequest(
            "image_url must be a data: URL or an http(s) URL", param=f"{param}.image_url.url", code="invalid_image_url"
        )
    return ImageSource(url=url, param=f"{param}.image_url.url")


def _instruction(text: str, param: str) -> str:
    # The placeholder is where the image's tokens go: text carrying one would
    # make the prompt's image count disagree with the images sent.
    if IMAGE_PLACEHOLDER in text:
        raise BadRequest(
            f"text must not contain {IMAGE_PLACEHOLDER}; send the image as an image_url part",
            param=param,
            code="invalid_prompt",
        )
    return text.strip()
