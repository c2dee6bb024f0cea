"""The one error type a bad request's image or prompt raises during preprocessing."""

from __future__ import annotations


class PreprocessError(ValueError):
    """A client error in the request's images or prompt (answer 400, never 500).

    `code` names the problem in a stable, machine-readable way; the message
    says it in words for the client.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class ImageError(PreprocessError):
    """An image that cannot be accepted: empty, not an image, an unsupported
    format, truncated or corrupt, zero-sized, or over a size limit."""


class PromptError(PreprocessError):
    """A prompt whose `<image>` placeholders do not match the images sent."""
