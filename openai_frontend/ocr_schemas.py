"""Mistral OCR's `/v1/ocr` request and response models (Mistral's field names and order).

What Mistral offers and this service does not (structured annotations,
tables split out of the markdown, header and footer extraction, confidence
scores, uploaded files) is refused with a 400 naming the field when it is
set, never silently ignored. Extensions, documented in the README:
`prompt`, `resolution_mode`, `max_crops`, `dpi`, `max_tokens` in the
request; per page `finish_reason` and `usage`, and the document's token
`usage`, in the response. Every bound of a model parameter is
dsocr.parameters', every mode name dsocr.families'.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dsocr.documents.limits import DEFAULT_DPI
from dsocr.families import ModeName
from dsocr.prompts import DEFAULT as DEFAULT_PROMPT
from openai_frontend.errors import BadRequest
from openai_frontend.schemas import EXAMPLE_IMAGE_URL, RequestModel, Usage, bounded


# Each chunk's `type` is required, with no default: it is the tag that picks the chunk.
class DocumentURLChunk(RequestModel):
    type: Literal["document_url"]
    document_url: str  # an http(s) URL (where URLs are on) or a base64 data URL
    document_name: str | None = None


class ImageURL(RequestModel):
    url: str
    detail: str | None = None


class ImageURLChunk(RequestModel):
    type: Literal["image_url"]
    image_url: str | ImageURL

    @property
    def url(self) -> str:
        return self.image_url if isinstance(self.image_url, str) else self.image_url.url


class FileChunk(RequestModel):
    """An uploaded file, by id: refused (this service keeps no files), with the way to send it instead."""

    type: Literal["file"]
    file_id: str


Document = Annotated[DocumentURLChunk | ImageURLChunk | FileChunk, Field(discriminator="type")]

# Mistral's fields this service cannot honour, each refused when set (to anything but its "off" value).
_UNSUPPORTED: dict[str, object] = {
    "bbox_annotation_format": None,
    "document_annotation_format": None,
    "document_annotation_prompt": None,
    "table_format": None,
    "extract_header": False,
    "extract_footer": False,
    "confidence_scores_granularity": None,
}


class OCRRequest(RequestModel):
    # A field this service does not implement is refused, not silently ignored.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"model": "deepseek-ocr", "document": {"type": "image_url", "image_url": EXAMPLE_IMAGE_URL}}]
        },
    )

    model: str | None
    document: Document
    pages: str | list[int] | None = None  # 0-based: [0, 2] or "0,2-4"; None: every page
    include_image_base64: bool | None = None
    image_limit: int | None = Field(default=None, ge=0)
    image_min_size: int | None = Field(default=None, ge=0)
    bbox_annotation_format: dict[str, Any] | None = None
    document_annotation_format: dict[str, Any] | None = None
    document_annotation_prompt: str | None = None
    table_format: str | None = None
    extract_header: bool | None = None
    extract_footer: bool | None = None
    include_blocks: bool = True
    confidence_scores_granularity: str | None = None
    # Extensions
    prompt: str = Field(default=DEFAULT_PROMPT, min_length=1)  # the instruction after the page's <image>
    resolution_mode: ModeName | None = None
    max_crops: int | None = bounded("max_crops")
    dpi: int = DEFAULT_DPI  # PDF pages are rendered at this resolution
    max_tokens: int | None = bounded("max_tokens")  # per page

    def refuse_unsupported(self) -> None:
        for name, off in _UNSUPPORTED.items():
            if getattr(self, name) not in (None, off):
                raise BadRequest(
                    f"{name}: this server does not support this parameter", param=name, code="unsupported_parameter"
                )
        if isinstance(self.document, FileChunk):
            raise BadRequest(
                "document.file_id: this server keeps no uploaded files; send the document as a document_url "
                "(a base64 data URL, or an http(s) URL where URLs are on)",
                param="document.file_id",
                code="unsupported_parameter",
            )

    def parameters(self, default_max_tokens: int | None = None) -> dict[str, Any]:
        """Each page's PARAMETERS JSON (dsocr.parameters); the server's per-page budget unless the request sets one."""
        settings = {
            "max_tokens": self.max_tokens or default_max_tokens,
            "resolution_mode": self.resolution_mode,
            "max_crops": self.max_crops,
            "stream": False,  # a page's text is answered whole
        }
        return {key: value for key, value in settings.items() if value is not None}


class OCRImageObject(BaseModel):
    id: str
    top_left_x: int
    top_left_y: int
    bottom_right_x: int
    bottom_right_y: int
    image_base64: str | None = None


class OCRPageDimensions(BaseModel):
    dpi: int
    height: int
    width: int


class OCRBlock(BaseModel):
    type: str  # text, title, image, table, caption, equation, list, code, header, footer, ...
    top_left_x: int
    top_left_y: int
    bottom_right_x: int
    bottom_right_y: int
    content: str
    image_id: str | None = Field(default=None, exclude_if=lambda value: value is None)  # image blocks only


class OCRPageObject(BaseModel):
    index: int
    markdown: str
    images: list[OCRImageObject]
    dimensions: OCRPageDimensions
    tables: list[dict[str, Any]] = []
    hyperlinks: list[str] = []
    header: str | None = None
    footer: str | None = None
    blocks: list[OCRBlock] | None = None
    # Extensions: how the page's generation ended ("length": cut by max_tokens or the context), its tokens.
    finish_reason: str
    usage: Usage


class OCRUsageInfo(BaseModel):
    pages_processed: int
    doc_size_bytes: int | None = None


class OCRResponse(BaseModel):
    pages: list[OCRPageObject]
    model: str
    usage_info: OCRUsageInfo
    document_annotation: str | None = None
    usage: Usage  # extension: the document's tokens, every page's summed
