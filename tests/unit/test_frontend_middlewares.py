"""The pure-ASGI middlewares, driven with ASGI messages directly: body size, API key, concurrency."""

from __future__ import annotations

import asyncio
import json

import pytest

from openai_frontend.middlewares import ApiKeyAuth, BodySizeLimit, ConcurrencyLimit


class Echo:
    """An app that reads the whole body and answers its length; counts its calls.
    With `hold`, chat completions wait for it before answering."""

    def __init__(self, hold: asyncio.Event | None = None):
        self.calls = 0
        self.hold = hold

    async def __call__(self, scope, receive, send):
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if self.hold is not None and scope["path"] == "/v1/chat/completions":
            await self.hold.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})


def scope(path: str = "/v1/chat/completions", headers: dict[str, str] | None = None) -> dict:
    raw = [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    return {"type": "http", "method": "POST", "path": path, "headers": raw, "query_string": b""}


async def call(app, scope: dict, chunks: list[bytes] = (b"",)) -> tuple[int, dict, bytes]:
    """Send `chunks` as the body; the response's status, headers and body."""
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1} for i, chunk in enumerate(chunks)
    ]
    read = []

    async def receive():
        if messages:
            message = messages.pop(0)
            read.append(message)
            return message
        await asyncio.Event().wait()  # the client stays connected

    sent = []

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = {name.decode(): value.decode() for name, value in start["headers"]}
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    call.chunks_read = len(read)
    return start["status"], headers, body


def openai_error(body: bytes) -> dict:
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def run(coroutine):
    return asyncio.run(coroutine)


# --- body size ---------------------------------------------------------------


def test_body_within_the_limit_reaches_the_app_whole():
    app = Echo()
    status, _, body = run(call(BodySizeLimit(app, max_bytes=10), scope(), [b"12345", b"67890"]))
    assert (status, body) == (200, b"10")


def test_declared_length_over_the_limit_is_413_before_reading():
    app = Echo()
    status, _, body = run(call(BodySizeLimit(app, max_bytes=10), scope(headers={"content-length": "11"}), [bytes(11)]))
    assert status == 413 and app.calls == 0 and call.chunks_read == 0
    error = openai_error(body)
    assert error["code"] == "request_too_large" and "10 bytes" in error["message"]


def test_streamed_body_over_the_limit_is_413_and_reading_stops():
    # No Content-Length (chunked upload): counted while it arrives.
    app = Echo()
    chunks = [bytes(4)] * 10
    status, _, body = run(call(BodySizeLimit(app, max_bytes=10), scope(), chunks))
    assert status == 413 and app.calls == 0
    assert call.chunks_read == 3  # 12 bytes > 10: the rest is never read
    assert openai_error(body)["type"] == "invalid_request_error"


def test_a_body_not_all_in_by_the_timeout_is_408_and_its_connection_not_kept():
    app = Echo()
    first_byte = [{"type": "http.request", "body": b"{", "more_body": True}]

    async def receive():
        if first_byte:
            return first_byte.pop()
        await asyncio.Event().wait()  # the rest never comes

    sent = []

    async def send(message):
        sent.append(message)

    run(BodySizeLimit(app, max_bytes=10, timeout_s=0.05)(scope(), receive, send))
    assert sent[0]["status"] == 408 and app.calls == 0
    assert (b"connection", b"close") in sent[0]["headers"]
    error = openai_error(sent[1]["body"])
    assert error["code"] == "request_timeout" and "0.05 s" in error["message"]


# --- API key -----------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", "Basic secret", "secret", "Bearer secre"])
def test_requests_without_the_key_are_401(authorization):
    app = Echo()
    headers = {"authorization": authorization} if authorization else {}
    status, response_headers, body = run(call(ApiKeyAuth(app, "secret"), scope(headers=headers)))
    assert status == 401 and app.calls == 0
    assert response_headers["www-authenticate"] == "Bearer"
    assert openai_error(body)["code"] == "invalid_api_key"


@pytest.mark.parametrize("authorization", ["Bearer secret", "bearer secret"])
def test_the_key_lets_requests_through(authorization):
    app = Echo()
    status, _, _ = run(call(ApiKeyAuth(app, "secret"), scope(headers={"authorization": authorization})))
    assert status == 200 and app.calls == 1


@pytest.mark.parametrize(
    "path, status",
    [
        ("/health", 200),
        ("/health/ready", 200),
        ("/", 200),
        ("/v1/models", 401),
        ("/docs", 401),
        ("/health/ready/x", 401),
    ],
)
def test_only_probes_and_the_service_description_are_open(path, status):
    assert run(call(ApiKeyAuth(Echo(), "secret"), scope(path)))[0] == status


# --- concurrency -------------------------------------------------------------


def test_requests_beyond_the_limit_are_429_with_retry_after_until_a_slot_frees():
    async def scenario():
        hold = asyncio.Event()
        app = Echo(hold)
        limit = ConcurrencyLimit(app, limit=2, paths=frozenset({"/v1/chat/completions"}))
        running = [asyncio.create_task(call(limit, scope())) for _ in range(2)]
        await asyncio.sleep(0.01)
        assert limit.in_flight == 2
        status, headers, body = await call(limit, scope())
        assert status == 429 and headers["retry-after"] == "1"
        assert openai_error(body)["code"] == "rate_limit_exceeded"
        assert (await call(limit, scope("/v1/models")))[0] == 200  # other paths are not counted
        hold.set()
        assert [(await task)[0] for task in running] == [200, 200]
        assert limit.in_flight == 0
        assert (await call(limit, scope()))[0] == 200

    run(scenario())


def test_a_failing_request_frees_its_slot():
    async def failing(scope, receive, send):
        raise RuntimeError("boom")

    limit = ConcurrencyLimit(failing, limit=1, paths=frozenset({"/v1/chat/completions"}))
    with pytest.raises(RuntimeError):
        run(call(limit, scope()))
    assert limit.in_flight == 0
