"""A request's image source -> the encoded image bytes the ensemble takes.

Data URLs are decoded here, never sent to Triton as base64; http(s) URLs go
through the ImageFetcher's policy. Either way the size is checked before the
bytes travel on (the preprocess model checks bytes and pixels again).
"""

from __future__ import annotations

import base64
import binascii
import re

from openai_frontend.errors import BadRequest
from openai_frontend.image_urls import ImageFetcher
from openai_frontend.messages import ImageSource

_DATA_URL = re.compile(r"^data:[^,]*;base64,(?P<data>.*)$", re.S)


def decoded_size(encoded: str) -> int:
    return len(encoded) * 3 // 4 - encoded[-2:].count("=")


def decode_data_url(source: ImageSource, max_bytes: int) -> bytes:
    match = _DATA_URL.match(source.url)
    if not match:
        raise BadRequest(
            "image data URLs must be base64: data:image/<type>;base64,<data>",
            param=source.param,
            code="invalid_image_url",
        )
    encoded = match["data"]
    # Checked on the encoded length, before decoding allocates the image.
    if decoded_size(encoded) > max_bytes:
        raise image_too_large(source, max_bytes)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(
            f"the image data URL is not valid base64: {exc}", param=source.param, code="invalid_image_url"
        ) from exc
    return data


def image_too_large(source: ImageSource, max_bytes: int) -> BadRequest:
    return BadRequest(f"the image is larger than {max_bytes} bytes", param=source.param, code="image_too_large")


class ImageLoader:
    def __init__(self, max_bytes: int, fetcher: ImageFetcher):
        self.max_bytes = max_bytes
        self._fetcher = fetcher

    async def load(self, source: ImageSource) -> bytes:
        if source.inline:
            data = decode_data_url(source, self.max_bytes)
        else:
            data = await self._fetcher.fetch(source.url, source.param)
        if not data:
            raise BadRequest("the image is empty", param=source.param, code="invalid_image")
        if len(data) > self.max_bytes:
            raise image_too_large(source, self.max_bytes)
        return data

    async def close(self) -> None:
        await self._fetcher.close()
