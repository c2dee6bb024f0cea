"""One error hierarchy, always answered in OpenAI's shape:

    {"error": {"message": str, "type": str, "param": str | None, "code": str | None}}

The status decides the OpenAI SDK's exception: 400 BadRequestError, 401
AuthenticationError, 404 NotFoundError, 429 RateLimitError, 5xx
InternalServerError, 413 APIStatusError. Types follow OpenAI's: every client
error is an "invalid_request_error"; `code` names the problem.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from dsocr.documents.render import RenderFailed
from dsocr.errors import RequestError

# What a 503 asks a client to wait before trying again.
RETRY_AFTER_UNAVAILABLE_S = 2


class OpenAIError(Exception):
    status = 500
    type = "server_error"
    default_code: str | None = None

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        return {}

    def response(self) -> JSONResponse:
        """Also an ASGI app, so that middlewares answer with it too."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers())

    def prefixed(self, prefix: str) -> OpenAIError:
        """The same error (status, type, code, param, headers), `prefix` before its message."""
        error = type(self).__new__(type(self))
        error.__dict__.update(self.__dict__)
        error.message = prefix + self.message
        error.args = (error.message,)
        return error


class BadRequest(OpenAIError):
    status = 400
    type = "invalid_request_error"


class Unauthorized(OpenAIError):
    status = 401
    type = "invalid_request_error"
    default_code = "invalid_api_key"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class NotFound(OpenAIError):
    status = 404
    type = "invalid_request_error"


class RequestTimeout(OpenAIError):
    status = 408
    type = "invalid_request_error"
    default_code = "request_timeout"

    def headers(self) -> dict[str, str]:
        # The rest of the body may still be trickling in: the connection is not reused (RFC 9110, 15.5.9).
        return {"Connection": "close"}


class TooLarge(OpenAIError):
    status = 413
    type = "invalid_request_error"
    default_code = "request_too_large"


class RateLimited(OpenAIError):
    status = 429
    type = "rate_limit_error"
    default_code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class Unavailable(OpenAIError):
    status = 503
    default_code = "service_unavailable"

    def headers(self) -> dict[str, str]:
        # A part of the server is down and being put back (seconds for a preprocess instance, a minute for
        # the engine): clients should retry, the OpenAI SDK does after this.
        return {"Retry-After": str(RETRY_AFTER_UNAVAILABLE_S)}


def client_error(exc: RequestError) -> BadRequest:
    """The package's client errors (bad image, prompt, parameter, document) in the API's shape."""
    return BadRequest(exc.message, param=exc.param, code=exc.code)


def render_failed(exc: RenderFailed) -> OpenAIError:
    """A document worker that died: a server fault, whatever the document was."""
    return OpenAIError(str(exc), code="render_failed")


# Labels pydantic puts in an error's location for the member of a union it
# tried ("str", "list[str]", "tagged-union[...]"); not part of the request's path.
_UNION_MEMBERS = {"str", "int", "float", "bool", "none"}


def request_path(location: tuple) -> str:
    """("body", "messages", 0, "content", 1) -> "messages[0].content[1]"."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part != "body" and part not in _UNION_MEMBERS and "[" not in part:
            path += f".{part}" if path else part
    return path


def validation_error(exc: RequestValidationError) -> BadRequest:
    """FastAPI's 422 -> 400, naming the first offending field."""
    first = exc.errors()[0] if exc.errors() else {}
    if first.get("type") == "json_invalid":
        return BadRequest("the request body is not valid JSON", code="invalid_json")
    param = request_path(first.get("loc", ())) or None
    if param is None and first.get("type") == "missing":
        return BadRequest("the request body is missing: send a JSON object", code="invalid_value")
    if first.get("type") == "extra_forbidden":
        return BadRequest(
            f"{param}: this server does not support this parameter", param=param, code="unsupported_parameter"
        )
    message = f"{param + ': ' if param else ''}{first.get('msg', 'invalid request')}"
    return BadRequest(message, param=param, code="invalid_value")


class RoutingError(OpenAIError):
    """Routing's own errors, with their headers (a 405's Allow lists the methods the path takes)."""

    def __init__(self, message: str, status: int, headers: dict[str, str]):
        super().__init__(message)
        self.status = status
        self.type = "invalid_request_error" if status < 500 else "server_error"
        self._headers = headers

    def headers(self) -> dict[str, str]:
        return self._headers


def http_error(request: Request, exc: HTTPException) -> OpenAIError:
    """Routing's own errors (unknown path 404, wrong method 405) in the same shape."""
    return RoutingError(f"{exc.detail}: {request.method} {request.url.path}", exc.status_code, dict(exc.headers or {}))


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(OpenAIError)
    async def _openai(_: Request, exc: OpenAIError):
        return exc.response()

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError):
        return client_error(exc).response()

    @app.exception_handler(RenderFailed)
    async def _render_failed(_: Request, exc: RenderFailed):
        return render_failed(exc).response()

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        return validation_error(exc).response()

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return http_error(request, exc).response()

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        # Starlette re-raises after answering, so the traceback reaches the
        # server log; the client gets no internals.
        return OpenAIError("internal server error").response()
