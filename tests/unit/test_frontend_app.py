"""The frontend over real HTTP (uvicorn on loopback) with a scripted engine in place of Triton.

The engine double is for the transport's corner cases only: errors before and
after the stream started, a client that goes away, requests piling up. The
features themselves are shown on the real stack in tests/server/.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from contextlib import contextmanager

import httpx
import openai
import pytest
import uvicorn

from dsocr.triton.client import Delta
from openai_frontend.app import create_app
from openai_frontend.errors import BadRequest
from openai_frontend.settings import Settings
from tests.helpers import free_port, openai_client


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


IMAGE = b"\x89PNG not decoded by the scripted engine"
IMAGE_URL = "data:image/png;base64," + base64.b64encode(IMAGE).decode()
MESSAGES = [{"role": "user", "content": [image_part(IMAGE_URL), {"type": "text", "text": "Free OCR."}]}]
MODEL = "deepseek-ocr"
# Counts no code path would make up, so that seeing them proves they were passed through.
PROMPT_TOKENS = 279


def deltas(*texts: str, finish: str = "length") -> list[Delta]:
    return [Delta(text, finish if i == len(texts) - 1 else None, PROMPT_TOKENS, i + 1) for i, text in enumerate(texts)]


class ScriptedEngine:
    """Plays `script` (deltas, or an exception to raise), one step per `pause_s`.

    Records each request and sets `closed` when a stream ends early or late,
    the way closing the Triton stream would cancel the request.
    """

    def __init__(self):
        self.script: list = deltas("Invoice ", "42")
        self.pause_s = 0.01
        self.requests: list[tuple[bytes, str, dict]] = []
        self.closed = threading.Event()
        self.steps_played = 0

    async def ready(self) -> bool:
        return True

    async def generate(self, image: bytes, prompt: str, parameters: dict):
        self.requests.append((image, prompt, parameters))
        try:
            for step in self.script:
                await asyncio.sleep(self.pause_s)
                if isinstance(step, BaseException):
                    raise step
                self.steps_played += 1
                yield step
        finally:
            self.closed.set()

    async def close(self) -> None:
        pass


@contextmanager
def serving(settings: Settings, engine=None):
    """The app on a loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, engine=engine), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


SETTINGS = Settings(max_image_bytes=1000, max_concurrent_requests=2)


@pytest.fixture(scope="module")
def engine_and_url():
    engine = ScriptedEngine()
    with serving(SETTINGS, engine) as url:
        yield engine, url


@pytest.fixture
def engine(engine_and_url) -> ScriptedEngine:
    engine, _ = engine_and_url
    engine.__init__()  # a fresh script and records per test
    return engine


@pytest.fixture
def base_url(engine_and_url) -> str:
    return engine_and_url[1]


@pytest.fixture
def client(base_url) -> openai.OpenAI:
    return openai_client(base_url)


def sse_data(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.split("\n\n") if line]


def post(base_url: str, body: dict, timeout: float = 10) -> httpx.Response:
    return httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=timeout)


def openai_error(response: httpx.Response) -> dict:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


# --- completions -------------------------------------------------------------


def test_non_streaming_completion_passes_the_models_usage_and_finish_reason(engine, client):
    completion = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=2, temperature=0)
    assert completion.choices[0].message.content == "Invoice 42"
    assert completion.choices[0].finish_reason == "length"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        PROMPT_TOKENS,
        2,
        PROMPT_TOKENS + 2,
    )
    ((image, prompt, parameters),) = engine.requests
    assert image == IMAGE  # decoded from the data URL, never sent as base64
    assert prompt == "<image>\nFree OCR."
    assert parameters == {"max_tokens": 2, "temperature": 0, "stream": False}  # the text whole: no deltas


def test_stream_framing_role_first_finish_last_usage_then_done(engine, base_url):
    engine.script = deltas("a", "b", "c", finish="stop")
    body = {"model": MODEL, "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    response = post(base_url, body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_data(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert [c["choices"][0]["delta"] for c in chunks[:3]] == [
        {"role": "assistant", "content": "a"},
        {"content": "b"},
        {"content": "c"},
    ]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:3]] == [None, None, "stop"]
    assert chunks[3]["choices"] == []
    assert chunks[3]["usage"] == {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": 3,
        "total_tokens": PROMPT_TOKENS + 3,
    }
    assert len({c["id"] for c in chunks}) == 1 and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert engine.requests[0][2]["stream"] is True  # the model streams its deltas


def test_stream_without_include_usage_has_no_usage(engine, client):
    chunks = list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert [c.usage for c in chunks] == [None, None]
    assert "".join(c.choices[0].delta.content for c in chunks) == "Invoice 42"


# --- errors ------------------------------------------------------------------


def test_an_error_before_the_first_delta_is_an_http_error(engine, client):
    engine.script = [BadRequest("IMAGE is not a decodable image", code="invalid_request")]
    with pytest.raises(openai.BadRequestError, match="decodable"):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)


def test_an_error_after_the_stream_started_is_an_error_event_then_done(engine, base_url, client):
    engine.script = [*deltas("a", "b")[:1], BadRequest("the model refused mid-way", code="invalid_request")]
    events = sse_data(post(base_url, {"model": MODEL, "messages": MESSAGES, "stream": True}).text)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2]) == {
        "error": {
            "message": "the model refused mid-way",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_request",
        }
    }
    with pytest.raises(openai.APIError, match="refused mid-way") as error:
        list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert error.value.body["code"] == "invalid_request"


def test_an_unexpected_failure_mid_stream_is_reported_without_internals(engine, base_url):
    engine.script = [*deltas("a", "b")[:1], RuntimeError("secret internals")]
    events = sse_data(post(base_url, {"model": MODEL, "messages": MESSAGES, "stream": True}).text)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["message"] == "internal server error"
    assert "secret" not in events[-2]


IMAGE_URL_OF_1001_BYTES = "data:image/png;base64," + base64.b64encode(bytes(1001)).decode()


@pytest.mark.parametrize(
    "change, status, param, code",
    [
        ({"model": "gpt-4o"}, 404, "model", "model_not_found"),
        ({"n": 2}, 400, "n", "invalid_value"),
        ({"temperature": 5}, 400, "temperature", "invalid_value"),
        ({"frequency_penalty": 0.5}, 400, "frequency_penalty", "unsupported_parameter"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            400,
            "messages[0].content[0]",
            "invalid_value",
        ),
        ({"messages": [{"role": "user", "content": "no image"}]}, 400, "messages", "image_count"),
        (
            {"messages": [{"role": "user", "content": [image_part(IMAGE_URL_OF_1001_BYTES)]}]},
            400,
            "messages[0].content[0].image_url.url",
            "image_too_large",
        ),
        (
            {"messages": [{"role": "user", "content": [image_part("https://a.example/x.png")]}]},
            400,
            "messages[0].content[0].image_url.url",
            "image_url_disabled",
        ),
    ],
)
def test_bad_requests_are_openai_errors_naming_the_field(engine, base_url, change, status, param, code):
    response = post(base_url, {"model": MODEL, "messages": MESSAGES, **change})
    assert response.status_code == status
    error = openai_error(response)
    assert (error["param"], error["code"]) == (param, code)
    assert engine.requests == []


def test_sdk_exceptions_per_status(engine, client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES, n=3)
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    assert client.models.retrieve("deepseek-ai/DeepSeek-OCR").id == "deepseek-ai/DeepSeek-OCR"


def test_malformed_json_unknown_route_and_wrong_method(base_url):
    response = httpx.post(
        f"{base_url}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and openai_error(response)["code"] == "invalid_json"
    response = httpx.get(f"{base_url}/v1/nothing")
    assert response.status_code == 404 and "/v1/nothing" in openai_error(response)["message"]
    response = httpx.get(f"{base_url}/v1/chat/completions")
    assert response.status_code == 405 and openai_error(response)["type"] == "invalid_request_error"
    assert response.headers["allow"] == "POST"  # RFC 9110: a 405 names the methods the path takes
    response = httpx.post(f"{base_url}/v1/chat/completions")
    assert response.status_code == 400 and "body is missing" in openai_error(response)["message"]


def test_body_over_the_limit_is_413(engine, client):
    # 1000-byte images: the derived body limit is a base64 image + 1 MiB.
    too_big = "x" * (SETTINGS.request_byte_limit + 1)
    with pytest.raises(openai.APIStatusError) as error:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": too_big}])
    assert error.value.status_code == 413 and error.value.body["code"] == "request_too_large"


# --- disconnects and load ----------------------------------------------------


def long_script() -> list[Delta]:
    return deltas(*["token "] * 10_000)


def test_a_client_leaving_mid_stream_closes_the_engine_stream(engine, base_url):
    engine.script = long_script()
    with httpx.stream(
        "POST", f"{base_url}/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES, "stream": True}
    ) as response:
        next(response.iter_lines())
    assert engine.closed.wait(timeout=5), "the engine stream outlived the client"
    assert engine.steps_played < 1000


def test_a_client_leaving_a_non_streamed_request_closes_the_engine_stream(engine, base_url):
    engine.script = long_script()
    with pytest.raises(httpx.ReadTimeout):
        post(base_url, {"model": MODEL, "messages": MESSAGES}, timeout=0.5)
    assert engine.closed.wait(timeout=5), "the engine stream outlived the client"
    assert engine.steps_played < 1000


def test_requests_beyond_the_concurrency_limit_get_429_with_retry_after(engine, base_url, client):
    engine.script = long_script()
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    client = client.with_options(timeout=5)
    with (
        httpx.Client(timeout=10) as a,
        httpx.Client(timeout=10) as b,
        a.stream("POST", f"{base_url}/v1/chat/completions", json=body) as first,
        b.stream("POST", f"{base_url}/v1/chat/completions", json=body) as second,
    ):
        # Kept: dropping a line iterator would close its connection.
        streams = [first.iter_lines(), second.iter_lines()]
        assert all(next(lines).startswith("data: ") for lines in streams)
        with pytest.raises(openai.RateLimitError) as error:
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert error.value.response.headers["retry-after"] == "1"
        assert client.models.list().data  # only generations are counted
    engine.script = deltas("ok")
    deadline = time.monotonic() + 5
    while True:  # the slots free as the server notices the two clients left
        try:
            assert client.chat.completions.create(model=MODEL, messages=MESSAGES).choices[0].message.content == "ok"
            break
        except openai.RateLimitError:
            assert time.monotonic() < deadline, "slots were not freed"
            time.sleep(0.05)


def test_triton_unreachable_is_503_and_not_ready():
    # The real engine, pointed at a port nobody listens on.
    with serving(Settings(triton_grpc_url=f"127.0.0.1:{free_port()}")) as url:
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.get(f"{url}/health/ready").status_code == 503
        client = openai_client(url)
        with pytest.raises(openai.InternalServerError) as error:
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
        assert error.value.status_code == 503
        assert error.value.body["code"] == "service_unavailable"


def test_health_and_service_description(base_url):
    assert httpx.get(f"{base_url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{base_url}/health/ready").json() == {"status": "ready"}
    assert "/v1/chat/completions" in httpx.get(f"{base_url}/").json()["endpoints"]
