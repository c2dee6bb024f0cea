"""Chat messages -> the images and documents to OCR, and DeepSeek's prompt.

DeepSeek-OCR takes one image and a short instruction, laid out as
"<image>\\n<instruction>". A chat request may carry several images and
documents (`file` parts: PDFs, TIFFs), in any content part of any user
message; each image and each page is OCR'd on its own with the same
instruction. The instruction is the text parts of the system, developer and
user messages, in order. Images with no text get DeepSeek's default document
prompt. Assistant turns are not part of an OCR prompt and are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsocr import prompts
from dsocr.preprocessing.prompt import IMAGE_PLACEHOLDER
from openai_frontend.errors import BadRequest
from openai_frontend.schemas import ChatCompletionRequest, FilePart, ImagePart
from openai_frontend.sources import Source

DEFAULT_PROMPT = prompts.DEFAULT


@dataclass(frozen=True)
class OCRRequest:
    sources: list[Source]  # images and documents, in the order the messages give them
    prompt: str  # "<image>\n<instruction>", for each image and page

    @property
    def single_image(self) -> bool:
        """One image and nothing else: the request is one ensemble request."""
        return len(self.sources) == 1 and self.sources[0].kind == "image"


def to_ocr_request(request: ChatCompletionRequest) -> OCRRequest:
    sources: list[Source] = []
    texts: list[str] = []
    for m, message in enumerate(request.messages):
        if message.role == "assistant":
            continue
        for p, part in enumerate(message.content or ()):
            param = f"messages[{m}].content[{p}]"
            if isinstance(part, ImagePart):
                sources.append(_image_source(message.role, part, param))
            elif isinstance(part, FilePart):
                sources.append(_file_source(message.role, part, param))
            elif part.text.strip():
                texts.append(_instruction(part.text, param))
    if not sources:
        raise BadRequest(
            "an image or a file is required: send it as an image_url or file content part",
            param="messages",
            code="image_count",
        )
    instruction = "\n".join(texts) or DEFAULT_PROMPT
    return OCRRequest(sources=sources, prompt=f"{IMAGE_PLACEHOLDER}\n{instruction}")


def _image_source(role: str, part: ImagePart, param: str) -> Source:
    _in_user_message(role, param)
    return Source.checked(part.image_url.url, f"{param}.image_url.url")


def _file_source(role: str, part: FilePart, param: str) -> Source:
    _in_user_message(role, param)
    if part.file.file_id is not None:
        raise BadRequest(
            "file_id: this server keeps no uploaded files; send the file as file_data "
            "(data:application/pdf;base64,...)",
            param=f"{param}.file.file_id",
            code="unsupported_parameter",
        )
    data = part.file.file_data
    if not data or not data.startswith("data:"):
        raise BadRequest(
            "file.file_data must be a base64 data URL: data:application/pdf;base64,<data>",
            param=f"{param}.file.file_data",
            code="invalid_document_url",
        )
    return Source(url=data, param=f"{param}.file.file_data", kind="document")


def _in_user_message(role: str, param: str) -> None:
    if role != "user":
        raise BadRequest("images and files belong in user messages", param=param, code="misplaced_image")


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
