"""The OpenAPI schema (/openapi.json, /docs) as the API really answers.

FastAPI documents a 422 for every route with a body or parameters; this API answers a request
that fails validation with a 400, and every error in OpenAI's shape (openai_frontend/errors.py).
So each route names the error statuses it can answer with `errors(...)`, and `describe_api`
drops FastAPI's 422s and, when a key is required, documents the bearer scheme and its 401.
A streamed completion's events are documented as OpenAPI 3.1 does it: `schema` is one event,
its `data` a chunk, an error or `[DONE]`.
tests/unit/test_api_fuzzing.py holds the API to this schema.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from openai_frontend.middlewares import OPEN_PATHS, RETRY_AFTER_S
from openai_frontend.schemas import ChatCompletionChunk


class ErrorObject(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """Every error's body: OpenAI's shape."""

    error: ErrorObject


class Status(BaseModel):
    """/health and /health/ready."""

    status: str


_WHEN = {
    400: "a field, image or document is invalid or unsupported (`code` names the problem, `param` the field)",
    401: "no or a wrong API key",
    404: "an unknown model",
    408: "the request body did not all arrive within DSOCR_BODY_TIMEOUT_S",
    413: "the request body is larger than DSOCR_MAX_REQUEST_BYTES",
    429: "DSOCR_MAX_CONCURRENT_REQUESTS requests are in flight; retry after Retry-After",
    500: "a fault of the server's",
    503: "Triton is unreachable or the model is not loaded",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": f"seconds to wait before retrying ({RETRY_AFTER_S})",
        "schema": {"type": "string"},
    }
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route that may answer these error statuses."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        documented[status] = {"model": ErrorResponse, "description": _WHEN[status]}
        if status == 429:
            documented[status]["headers"] = _RETRY_AFTER
    return documented


# What the routes that run the model can answer, besides their result.
GENERATION_ERRORS = errors(400, 404, 408, 413, 429, 500, 503)
_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
_COMPONENTS = "#/components/schemas/{model}"


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _COMPONENTS.format(model=model.__name__)}


# One server-sent event of a streamed completion (openai_frontend/completions.py).
_COMPLETION_EVENT = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "data": {
            "anyOf": [
                {"const": "[DONE]"},
                {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"anyOf": [_ref(ChatCompletionChunk), _ref(ErrorResponse)]},
                },
            ]
        }
    },
}
STREAMED_COMPLETION = {
    "description": "the completion; with `stream: true`, server-sent events instead: a `chat.completion.chunk` per "
    "delta, then `[DONE]` (an error after the stream started: an error event, then `[DONE]`)",
    "content": {"text/event-stream": {"schema": _COMPLETION_EVENT}},
}


def describe_api(app: FastAPI, api_key_required: bool) -> None:
    """Fix the schema FastAPI generated for `app`'s routes, once (FastAPI keeps it and serves that)."""
    schema = app.openapi()
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            operation["responses"].pop("422", None)
            if api_key_required and path not in OPEN_PATHS:
                operation["security"] = [{"bearer": []}]
                operation["responses"]["401"] = _error_response(401)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in _VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    _, events = models_json_schema([(ChatCompletionChunk, "serialization")], ref_template=_COMPONENTS)
    for name, definition in events["$defs"].items():
        schemas.setdefault(name, definition)
    if api_key_required:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}


def _error_response(status: int) -> dict[str, Any]:
    return {
        "description": _WHEN[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
