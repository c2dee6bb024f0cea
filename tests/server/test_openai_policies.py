"""The frontend's refusals under other settings, against the real stack: frontends of their own
(cheap: no engine) over the session's Triton, each with the setting under test.

URL images off (the default), private addresses refused (the default once URLs are on),
redirects refused (the default), and the concurrency limit (429 with Retry-After).
"""

from __future__ import annotations

import base64
import contextlib

import openai
import pytest

from dsocr import paths
from tests.helpers import page_png, running_frontend, serving_image

MODEL = "deepseek-ocr"
PAGE = page_png()
TINY = str(paths.tiny_model_dir("ocr"))


def messages(url: str) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "Free OCR."}],
        }
    ]


@pytest.fixture(scope="module")
def images():
    """The page over HTTP: /page.png, and /moved redirecting to it."""
    with serving_image(PAGE) as address:
        yield f"http://{address}"


@contextlib.contextmanager
def frontend_client(service, tmp_path_factory, **env):
    """An OpenAI client of a new frontend, with the settings `env`, over the session's Triton."""
    log = tmp_path_factory.mktemp("frontend") / "frontend.log"
    with running_frontend([service.triton_grpc_url], log, {"MODEL": TINY, **env}) as frontend:
        yield frontend.client()


def test_image_urls_are_off_by_default(service, tmp_path_factory, images):
    with frontend_client(service, tmp_path_factory) as client:
        with pytest.raises(openai.BadRequestError) as error:
            client.chat.completions.create(model=MODEL, messages=messages(f"{images}/page.png"))
        assert error.value.body["code"] == "image_url_disabled"
        assert error.value.body["param"] == "messages[0].content[0].image_url.url"
        # Base64 images are served as ever.
        data = "data:image/png;base64," + base64.b64encode(PAGE).decode()
        assert client.chat.completions.create(model=MODEL, messages=messages(data), max_tokens=1).choices


def test_urls_on_still_refuse_private_addresses_and_redirects(service, tmp_path_factory, images):
    with frontend_client(service, tmp_path_factory, DSOCR_ALLOW_IMAGE_URLS="true") as client:
        with pytest.raises(openai.BadRequestError) as error:  # 127.0.0.1: loopback
            client.chat.completions.create(model=MODEL, messages=messages(f"{images}/page.png"))
        assert error.value.body["code"] == "image_url_private_address"
    private_ok = {"DSOCR_ALLOW_IMAGE_URLS": "true", "DSOCR_IMAGE_URL_ALLOW_PRIVATE": "true"}
    with frontend_client(service, tmp_path_factory, **private_ok) as client:
        with pytest.raises(openai.BadRequestError) as error:
            client.chat.completions.create(model=MODEL, messages=messages(f"{images}/moved"))
        assert error.value.body["code"] == "image_url_redirect"


def test_beyond_the_concurrency_limit_is_429_with_retry_after(service, tmp_path_factory):
    data = "data:image/png;base64," + base64.b64encode(PAGE).decode()
    with frontend_client(service, tmp_path_factory, DSOCR_MAX_CONCURRENT_REQUESTS="1") as client:
        stream = client.chat.completions.create(
            model=MODEL, messages=messages(data), max_tokens=200, stream=True, extra_body={"ignore_eos": True}
        )
        next(iter(stream))  # one request in flight, holding the only slot
        with pytest.raises(openai.RateLimitError) as error:
            client.chat.completions.create(model=MODEL, messages=messages(data), max_tokens=1)
        assert error.value.response.headers["retry-after"] == "1"
        assert error.value.body["code"] == "rate_limit_exceeded"
        stream.close()
