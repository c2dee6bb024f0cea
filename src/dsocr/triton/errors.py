"""How the models word the errors they stream back, so that the frontend can tell whose fault each is.

A streamed error reaches the client as text only (Triton drops its status
code on the way). So a request the models refuse, and only such a request
(a `dsocr.errors.RequestError`, or vLLM's own validation), is worded as a
refusal: "refused [code] message"; the frontend answers it 400 with that
code. Anything else a model or Triton streams back is a server fault (500),
or, where it says the engine or a model process is down, unavailable (503):
never the client's.
"""

from __future__ import annotations

import re

# A fault of the model's own: logged with its traceback, named to the client by its type only.
SERVER_FAULT = "the model failed"
ENGINE_DEAD = "the vLLM engine is not running"

_REFUSAL = re.compile(r"refused \[(?P<code>[a-z0-9_]+)\] (?P<message>.*)", re.S)


def refusal(code: str, message: str) -> str:
    """The error text of a request the model refuses."""
    return f"refused [{code}] {message}"


def parse_refusal(text: str) -> tuple[str, str] | None:
    """(code, message) of a refusal's text; None for any other error."""
    match = _REFUSAL.fullmatch(text)
    return (match["code"], match["message"]) if match else None


def server_fault(exc: BaseException) -> str:
    return f"{SERVER_FAULT} ({type(exc).__name__})"
