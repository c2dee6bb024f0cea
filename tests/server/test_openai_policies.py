"""The frontend's refusals under other settings, against the real stack: frontends of their own
(cheap: no engine) over the session's Triton, each with the setting under test.

URL images and documents off (the default), private addresses refused (the default once URLs are
on), redirects refused (the default), the concurrency limit (429 with Retry-After), and the page limit.
"""

from __future__ import annotations

import base64
import contextlib

import httpx
import openai
import pytest

from dsocr import paths
from tests.helpers import Frontend, page_png, running_frontend, serving_image
from tests.sample_documents import raster_pdf

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
    """The page over HTTP: /page.png, /moved redirecting to it, and a PDF at /report.pdf."""
    with serving_image(PAGE, {"/report.pdf": (raster_pdf(), "application/pdf")}) as address:
        yield f"http://{address}"


@contextlib.contextmanager
def new_frontend(service, tmp_path_factory, **env):
    """A new frontend, with the settings `env`, over the session's Triton."""
    log = tmp_path_factory.mktemp("frontend") / "frontend.log"
    with running_frontend([service.triton_grpc_url], log, {"MODEL": TINY, **env}) as frontend:
        yield frontend


@contextlib.contextmanager
def frontend_client(service, tmp_path_factory, **env):
    """An OpenAI client of a new frontend, with the settings `env`, over the session's Triton."""
    with new_frontend(service, tmp_path_factory, **env) as frontend:
        yield frontend.client()


def ocr_error(frontend: Frontend, document: dict) -> dict:
    response = httpx.post(f"{frontend.base_url}/v1/ocr", json={"model": MODEL, "document": document}, timeout=60)
    assert response.status_code == 400, response.text
    return response.json()["error"]


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


def test_document_urls_follow_the_image_url_policy(service, tmp_path_factory, images):
    document = {"type": "document_url", "document_url": f"{images}/report.pdf"}
    with new_frontend(service, tmp_path_factory) as frontend:  # URLs off by default
        error = ocr_error(frontend, document)
        assert (error["code"], error["param"]) == ("image_url_disabled", "document.document_url")
        assert "document URLs are disabled" in error["message"]
    with new_frontend(service, tmp_path_factory, DSOCR_ALLOW_IMAGE_URLS="true") as frontend:  # 127.0.0.1: loopback
        assert ocr_error(frontend, document)["code"] == "image_url_private_address"


def test_a_document_over_the_page_limit_is_refused_when_opened(service, tmp_path_factory):
    pdf = "data:application/pdf;base64," + base64.b64encode(raster_pdf()).decode()  # three pages
    with new_frontend(service, tmp_path_factory, DSOCR_MAX_DOCUMENT_PAGES="2") as frontend:
        error = ocr_error(frontend, {"type": "document_url", "document_url": pdf})
        assert error["code"] == "too_many_pages" and "limit of 2 pages" in error["message"]
