"""A request's image or document source -> its encoded bytes.

Data URLs are decoded here, never sent to Triton as base64; http(s) URLs go
through the URL fetcher's policy (openai_frontend.image_urls: the same for
images and documents). Either way the size is checked before the bytes travel
on: an image against the image limit (the preprocess model checks bytes and
pixels again), a document against the document limit.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Literal

from openai_frontend.errors import BadRequest
from openai_frontend.image_urls import ImageFetcher, Loaded

_DATA_URL = re.compile(r"^data:(?P<media_type>[^,;]*)[^,]*;base64,(?P<data>.*)$", re.S)

SourceKind = Literal["image", "document"]


@dataclass(frozen=True)
class Source:
    """Where an image or a document is (a data: or http(s) URL) and which request field said so."""

    url: str
    param: str
    kind: SourceKind = "image"

    @property
    def inline(self) -> bool:
        return self.url.startswith("data:")

    @classmethod
    def checked(cls, url: str, param: str, kind: SourceKind = "image") -> Source:
        """A source whose URL is one this service can load at all (whether it may: the URL policy's)."""
        if not url.startswith(("data:", "http://", "https://")):
            raise BadRequest(f"{param} must be a data: URL or an http(s) URL", param=param, code=f"invalid_{kind}_url")
        return cls(url, param, kind)


def decoded_size(encoded: str) -> int:
    return len(encoded) * 3 // 4 - encoded[-2:].count("=")


def decode_data_url(source: Source, max_bytes: int) -> Loaded:
    match = _DATA_URL.match(source.url)
    if not match:
        raise BadRequest(
            f"{source.kind} data URLs must be base64: data:<media type>;base64,<data>",
            param=source.param,
            code=f"invalid_{source.kind}_url",
        )
    encoded = match["data"]
    # Checked on the encoded length, before decoding allocates the data.
    if decoded_size(encoded) > max_bytes:
        raise too_large(source, max_bytes)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(
            f"the {source.kind} data URL is not valid base64: {exc}",
            param=source.param,
            code=f"invalid_{source.kind}_url",
        ) from exc
    return Loaded(data, match["media_type"].strip().lower() or None)


def too_large(source: Source, max_bytes: int) -> BadRequest:
    return BadRequest(
        f"the {source.kind} is larger than {max_bytes} bytes", param=source.param, code=f"{source.kind}_too_large"
    )


class SourceLoader:
    def __init__(self, max_image_bytes: int, max_document_bytes: int, fetcher: ImageFetcher):
        self.max_bytes = {"image": max_image_bytes, "document": max_document_bytes}
        self._fetcher = fetcher

    async def load(self, source: Source) -> Loaded:
        max_bytes = self.max_bytes[source.kind]
        if source.inline:
            loaded = decode_data_url(source, max_bytes)
        else:
            loaded = await self._fetcher.fetch(source.url, source.param, max_bytes=max_bytes, kind=source.kind)
        if not loaded.data and source.kind == "image":  # an empty document is the renderer's to name
            raise BadRequest("the image is empty", param=source.param, code="invalid_image")
        if len(loaded.data) > max_bytes:
            raise too_large(source, max_bytes)
        return loaded

    async def close(self) -> None:
        await self._fetcher.close()
