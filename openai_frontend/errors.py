"""One error type, always answered in OpenAI's shape:

    {"error": {"message": str, "type": str, "param": str | None, "code": str | None}}
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException


class OpenAIError(Exception):
    status = 500
    type = "server_error"

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


class BadRequest(OpenAIError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(OpenAIError):
    status = 401
    type = "authentication_error"


class NotFound(OpenAIError):
    status = 404
    type = "not_found_error"


class TooLarge(OpenAIError):
    status = 413
    type = "invalid_request_error"


class Overloaded(OpenAIError):
    status = 503
    type = "server_error"


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(OpenAIError)
    async def _openai(_: Request, exc: OpenAIError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part != "body"]
        message = f"{'.'.join(location) + ': ' if location else ''}{first.get('msg', 'invalid request')}"
        return BadRequest(message, param=".".join(location) or None, code="invalid_value").response()

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException):
        error = OpenAIError(str(exc.detail))
        error.status = exc.status_code
        error.type = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error.response()
