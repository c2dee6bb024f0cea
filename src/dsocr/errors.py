"""The one error type for a request the service cannot serve as sent.

Bad images, prompts, parameters and documents raise a subclass; it is
answered with a 4xx naming the problem. Any other exception is a server fault
(5xx): a bug must never be blamed on the client.
"""

from __future__ import annotations


class RequestError(Exception):
    """A client error. `code` names the problem in a stable, machine-readable way,
    the message says it in words, `param` is the request field at fault, if known."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
