"""The one error type a bad request's image or prompt raises during preprocessing."""

from __future__ import annotations

from dsocr.errors import RequestError


class PreprocessError(RequestError, ValueError):
    """A client error in the request's images or prompt (answer 400, never 500)."""


class ImageError(PreprocessError):
    """An image that cannot be accepted: empty, not an image, an unsupported
    format, truncated or corrupt, zero-sized, or over a size limit."""


class PromptError(PreprocessError):
    """A prompt whose `<image>` placeholders do not match the images sent."""
