"""The service's HTTP API as the batch commands call it: the API key, and retries that wait.

What is retried is what says "later", never what says "no": 429 (the server's limit on requests
in flight) and 502/503/504 (the service or a proxy in front of it not ready), after the server's
`Retry-After` when it sends one, else an exponential backoff with jitter; and a request whose
connection failed or broke (the server restarting). Any other answer, 4xx or 500, is final:
sending the same document again would get the same answer.

A request cancelled by its caller closes its connection, which the service takes as the client
gone: it stops the request's pages in the engine.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

RETRY_STATUSES = frozenset({429, 502, 503, 504})
# A Retry-After longer than this is a server asking for more patience than a batch has.
MAX_RETRY_AFTER_S = 300.0

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8  # tries in all, the first included
    base_s: float = 0.5
    cap_s: float = 30.0

    def backoff_s(self, retry: int) -> float:
        """Before retry number `retry` (1, 2, ...): half of the exponential step fixed, half random, so
        that many clients refused at once do not come back at once."""
        step = min(self.cap_s, self.base_s * 2 ** (retry - 1))
        return step / 2 + random.uniform(0, step / 2)


@dataclass(frozen=True)
class ApiResponse:
    status_code: int
    body: Any  # parsed JSON, else the text
    request_id: str | None
    attempts: int


class ApiError(Exception):
    """A request that failed for good: an error answer, or no answer after every retry."""

    def __init__(self, message: str, *, status_code: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code

    @classmethod
    def from_response(cls, response: ApiResponse) -> ApiError:
        """The service's error shape, {"error": {"message", "type", "param", "code"}}, or what came instead."""
        error = response.body.get("error") if isinstance(response.body, dict) else None
        if isinstance(error, dict):
            message, code = str(error.get("message", "")), error.get("code")
        else:
            message, code = str(response.body)[:1000], None
        return cls(message, status_code=response.status_code, code=code)

    def record(self) -> dict[str, Any]:
        return {"status_code": self.status_code, "code": self.code, "message": self.message}


class ApiClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 1800.0,
        connections: int = 64,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            # A page takes seconds to minutes; only connecting should be quick.
            timeout=httpx.Timeout(timeout_s, connect=30.0),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            transport=transport,
        )
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    async def post(self, path: str, body: dict[str, Any]) -> ApiResponse:
        """The answer to a POST, retried as the module says; raises ApiError when no answer ever came."""
        content = json.dumps(body).encode()  # once, not once per try: a document can be megabytes
        headers = {"Content-Type": "application/json"}
        for attempt in range(1, self.retry.attempts + 1):
            last_try = attempt == self.retry.attempts
            try:
                response = await self._http.post(path, content=content, headers=headers)
            except httpx.TransportError as exc:
                if last_try:
                    raise ApiError(
                        f"no answer from {self._http.base_url} after {attempt} tries: {exc!r}", code="connection_error"
                    ) from exc
                await self._sleep(self.retry.backoff_s(attempt))
                continue
            if response.status_code not in RETRY_STATUSES or last_try:
                return _answer(response, attempt)
            asked = retry_after_s(response.headers.get("retry-after"))
            await self._sleep(self.retry.backoff_s(attempt) if asked is None else asked)
        raise AssertionError("unreachable: the last try returns or raises")

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: a number of seconds or an HTTP date (RFC 9110); None when absent or unreadable."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _answer(response: httpx.Response, attempts: int) -> ApiResponse:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    return ApiResponse(response.status_code, body, response.headers.get("x-request-id"), attempts)
