"""The official OpenAI SDK against the real stack: frontend, Triton ensemble, vLLM on CPU.

The tiny model's text is meaningless; its tokens, usage and finish reasons are
real. Each generation costs seconds here, so max_tokens stays small and the
requests that the service refuses before generating carry most of the checks.
"""

from __future__ import annotations

import asyncio
import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from dsocr import paths
from tests.helpers import page_png, running_frontend, serving_image, stream_ensemble

MODEL = "deepseek-ocr"
PROMPT = "Free OCR."
PAGE = page_png()
MAX_TOKENS = 4


def image_part(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def data_url(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


def messages(url: str, text: str = PROMPT) -> list[dict]:
    return [{"role": "user", "content": [image_part(url), {"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def client(service) -> openai.OpenAI:
    return service.client()


@pytest.fixture(scope="module")
def async_client(service) -> openai.AsyncOpenAI:
    return service.async_client()


@pytest.fixture(scope="module")
def image_server():
    """The page over HTTP from 127.0.0.1 (the service's allowlist)."""
    with serving_image(PAGE) as address:
        yield address


@pytest.fixture(scope="module")
def triton_reference(service) -> dict:
    """What the ensemble itself reports for the request the SDK tests send: text and token counts."""
    responses = stream_ensemble(service.triton_grpc_url, PAGE, f"<image>\n{PROMPT}", {"max_tokens": MAX_TOKENS})
    last = responses[-1]
    return {
        "text": "".join(r.as_numpy("TEXT").tobytes().decode() for r in responses),
        "finish_reason": last.as_numpy("FINISH_REASON").tobytes().decode(),
        "prompt_tokens": int(last.as_numpy("PROMPT_TOKENS")[0]),
        "completion_tokens": int(last.as_numpy("COMPLETION_TOKENS")[0]),
    }


# --- completions -------------------------------------------------------------


def test_sync_completion_reports_what_triton_reports(client, triton_reference):
    completion = client.chat.completions.create(model=MODEL, messages=messages(data_url(PAGE)), max_tokens=MAX_TOKENS)
    choice = completion.choices[0]
    assert choice.finish_reason == triton_reference["finish_reason"] == "length"
    assert choice.message.content == triton_reference["text"]  # greedy: the same tokens
    assert completion.usage.prompt_tokens == triton_reference["prompt_tokens"]
    assert completion.usage.completion_tokens == triton_reference["completion_tokens"] == MAX_TOKENS
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + MAX_TOKENS
    assert completion.model == MODEL and completion.id.startswith("chatcmpl-")


def test_sync_stream_with_usage(client, triton_reference):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=messages(data_url(PAGE)),
        max_tokens=MAX_TOKENS,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    content = [c for c in chunks if c.choices]
    assert len(content) > 1  # streamed, not one lump
    assert content[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in content] == [None] * (len(content) - 1) + ["length"]
    assert "".join(c.choices[0].delta.content for c in content) == triton_reference["text"]
    usage = chunks[-1].usage
    assert chunks[-1].choices == []
    assert (usage.prompt_tokens, usage.completion_tokens) == (triton_reference["prompt_tokens"], MAX_TOKENS)


def test_async_completion_of_a_url_image_and_async_stream(async_client, image_server, triton_reference):
    async def both():
        from_url = await async_client.chat.completions.create(
            model="deepseek-ai/DeepSeek-OCR", messages=messages(f"http://{image_server}/page.png"), max_tokens=2
        )
        stream = await async_client.chat.completions.create(
            model=MODEL, messages=messages(data_url(PAGE)), max_tokens=2, stream=True
        )
        return from_url, [chunk async for chunk in stream]

    from_url, chunks = asyncio.run(both())
    # The same page fetched by URL: the same prompt, the same first tokens.
    assert from_url.usage.prompt_tokens == triton_reference["prompt_tokens"]
    assert from_url.usage.completion_tokens == 2 and from_url.choices[0].finish_reason == "length"
    assert triton_reference["text"].startswith(from_url.choices[0].message.content)
    assert chunks[-1].choices[0].finish_reason == "length"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == from_url.choices[0].message.content


# --- refused before any generation ---------------------------------------------


def test_garbage_image_is_400_naming_the_image(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model=MODEL, messages=messages(data_url(b"not an image at all")))
    assert "image" in error.value.body["message"].lower()
    assert "in ensemble" not in error.value.body["message"]  # Triton's internals stay out
    assert error.value.body["type"] == "invalid_request_error"


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="gpt-4o", messages=messages(data_url(PAGE)))
    assert error.value.body["code"] == "model_not_found"


@pytest.mark.parametrize(
    "parameters, param",
    [
        ({"temperature": 7}, "temperature"),
        ({"extra_body": {"resolution_mode": "huge"}}, "resolution_mode"),
        ({"presence_penalty": 1.0}, "presence_penalty"),
    ],
)
def test_bad_parameter_is_400_naming_it(client, parameters, param):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model=MODEL, messages=messages(data_url(PAGE)), **parameters)
    assert error.value.body["param"] == param


def test_prompt_that_leaves_no_room_in_the_context_is_400_from_the_model(client):
    # ~6000 text tokens against the CPU stack's 4096-token context.
    with pytest.raises(openai.BadRequestError, match="maximum context length is") as error:
        client.chat.completions.create(model=MODEL, messages=messages(data_url(PAGE), "word " * 6000), max_tokens=1)
    assert error.value.body["type"] == "invalid_request_error"


def test_body_too_large_is_413(client):
    too_large = data_url(bytes(3_000_000))  # the service allows 2 MB images
    with pytest.raises(openai.APIStatusError) as error:
        client.chat.completions.create(model=MODEL, messages=messages(too_large))
    assert error.value.status_code == 413 and error.value.body["code"] == "request_too_large"


def test_image_over_the_image_limit_is_400(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model=MODEL, messages=messages(data_url(bytes(2_000_001))))
    assert error.value.body["code"] == "image_too_large"


def test_url_from_a_host_outside_the_allowlist_is_400(client, image_server):
    port = image_server.split(":")[1]
    with pytest.raises(openai.BadRequestError, match="not allowed") as error:
        client.chat.completions.create(model=MODEL, messages=messages(f"http://localhost:{port}/page.png"))
    assert error.value.body["code"] == "image_url_host_not_allowed"
    with pytest.raises(openai.BadRequestError, match="HTTP 404"):
        client.chat.completions.create(model=MODEL, messages=messages(f"http://{image_server}/missing.png"))


# --- API key -----------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed_frontend(service, tmp_path_factory):
    """A second frontend on the same Triton, with DSOCR_API_KEY set."""
    log = tmp_path_factory.mktemp("keyed") / "frontend.log"
    env = {"DSOCR_API_KEY": "test-key", "MODEL": str(paths.tiny_model_dir("ocr"))}
    with running_frontend([service.triton_grpc_url], log, env) as frontend:
        yield frontend


def test_api_key_is_required_except_on_health(keyed_frontend):
    anonymous = keyed_frontend.client(api_key="wrong-key")
    with pytest.raises(openai.AuthenticationError) as error:
        anonymous.models.list()
    assert error.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        anonymous.chat.completions.create(model=MODEL, messages=messages(data_url(PAGE)), max_tokens=1)
    for path in ("/health", "/health/ready", "/"):
        assert httpx.get(f"{keyed_frontend.base_url}{path}").status_code == 200

    keyed = keyed_frontend.client(api_key="test-key")
    assert [model.id for model in keyed.models.list()] == [MODEL, "deepseek-ai/DeepSeek-OCR"]
    completion = keyed.chat.completions.create(model=MODEL, messages=messages(data_url(PAGE)), max_tokens=1)
    assert completion.usage.completion_tokens == 1


# --- generation settings -------------------------------------------------------


def test_a_stop_string_ends_the_text_before_it_with_finish_reason_stop(client, triton_reference):
    text = triton_reference["text"]
    # The first character of the greedy text not seen before it: stopping there keeps what precedes it.
    cut = next(k for k in range(1, len(text)) if text[k] not in text[:k] and text[k].strip())
    completion = client.chat.completions.create(
        model=MODEL, messages=messages(data_url(PAGE)), max_tokens=MAX_TOKENS, stop=[text[cut]]
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == text[:cut]
    assert completion.usage.completion_tokens < MAX_TOKENS


def test_a_seed_makes_sampling_repeatable(client):
    def sample(seed: int) -> str:
        completion = client.chat.completions.create(
            model=MODEL, messages=messages(data_url(PAGE)), max_tokens=6, temperature=1.0, seed=seed
        )
        return completion.choices[0].message.content

    first = sample(7)
    assert sample(7) == first
    assert sample(8) != first


def test_an_image_over_the_pixel_limit_is_400_before_it_is_decoded(client):
    # 9000 x 8000 = 72 Mpx of white, a small PNG: over the default 64 Mpx, read from its header.
    buffer = io.BytesIO()
    Image.new("L", (9000, 8000), 255).save(buffer, "PNG")
    assert len(buffer.getvalue()) < 2_000_000
    with pytest.raises(openai.BadRequestError, match="pixels") as error:
        client.chat.completions.create(model=MODEL, messages=messages(data_url(buffer.getvalue())), max_tokens=1)
    assert "9000" in error.value.body["message"]
