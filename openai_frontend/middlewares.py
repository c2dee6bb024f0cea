"""Pure-ASGI middlewares, each answering in OpenAI's error shape before the app runs.

Pure ASGI rather than Starlette's BaseHTTPMiddleware: they do not buffer or
re-wrap streamed responses, and a client's disconnect still reaches the app.
Outermost first: ApiKeyAuth, ConcurrencyLimit, BodySizeLimit.
"""

from __future__ import annotations

import asyncio
import hmac

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openai_frontend.errors import RateLimited, RequestTimeout, TooLarge, Unauthorized

# Probes and the service description stay reachable without a key.
OPEN_PATHS = frozenset({"/", "/health", "/health/ready"})
# What a client told to retry should wait: a generation frees its slot in seconds.
RETRY_AFTER_S = 1


class ApiKeyAuth:
    """`Authorization: Bearer <key>` on every path but OPEN_PATHS."""

    def __init__(self, app: ASGIApp, api_key: str):
        self.app = app
        self._key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or self._authorized(Headers(scope=scope)):
            return await self.app(scope, receive, send)
        await Unauthorized("a valid API key is required: Authorization: Bearer <key>").response()(scope, receive, send)

    def _authorized(self, headers: Headers) -> bool:
        scheme, _, key = headers.get("authorization", "").partition(" ")
        # compare_digest: the time taken says nothing about how much of the key matched.
        return scheme.lower() == "bearer" and hmac.compare_digest(key.strip().encode(), self._key)


class ConcurrencyLimit:
    """At most `limit` requests in flight on `paths`, each until its response (stream included) ends."""

    def __init__(self, app: ASGIApp, limit: int, paths: frozenset[str]):
        self.app = app
        self.limit = limit
        self.paths = paths
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        if self.in_flight >= self.limit:
            error = RateLimited(
                f"the server is at its limit of {self.limit} requests in flight; retry shortly",
                retry_after_s=RETRY_AFTER_S,
            )
            return await error.response()(scope, receive, send)
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class BodySizeLimit:
    """413 for a body over `max_bytes`: by its Content-Length, or while it streams in;
    408 for one that has not all arrived `timeout_s` after the request's head.

    The body is read here, up to the cap, and handed to the app in one piece,
    so that the app never sees part of an oversized body. The deadline is for
    the whole body, not each read: a client sending a byte a second would
    otherwise hold its concurrency slot for ever.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large().response()(scope, receive, send)
        try:
            async with asyncio.timeout(self.timeout_s):
                body = await self._read(receive)
        except _BodyTooLarge:
            return await self._too_large().response()(scope, receive, send)
        except TimeoutError:
            late = RequestTimeout(f"the request body did not arrive within {self.timeout_s:g} s")
            return await late.response()(scope, receive, send)
        except _ClientLeft:
            return  # nobody to answer
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise _ClientLeft()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _BodyTooLarge()  # reading stops here
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _too_large(self) -> TooLarge:
        return TooLarge(f"the request body is larger than {self.max_bytes} bytes")


class _BodyTooLarge(Exception):
    pass


class _ClientLeft(Exception):
    pass


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body as one message, then whatever the server sends next (the disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
