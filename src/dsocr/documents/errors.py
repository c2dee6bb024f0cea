"""The client error of a document request: a bad document, page selection or DPI."""

from __future__ import annotations

from dsocr.errors import RequestError


class DocumentError(RequestError):
    """A document, `pages` or `dpi` the service cannot serve as sent (a 4xx).

    Codes: "invalid_pages", "invalid_dpi", "document_too_large", "empty_document",
    "invalid_document", "unsupported_document", "encrypted_document",
    "too_many_pages", "page_too_large".
    """

    def __reduce__(self) -> tuple[type[DocumentError], tuple[str, str, str | None]]:
        # Raised inside worker processes and pickled back: Exception's default
        # pickling would call __init__ with the message alone.
        return (type(self), (self.code, self.message, self.param))
