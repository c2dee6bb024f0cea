"""The frontend's settings: declared defaults, environment, flags, and the README's table."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsocr import envs
from openai_frontend.settings import REQUEST_OVERHEAD_BYTES, Settings, variables

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_are_the_declared_ones():
    settings = Settings()
    assert settings.port == int(envs.DECLARED["DSOCR_PORT"].default)
    assert settings.max_image_bytes == int(envs.DECLARED["DSOCR_MAX_IMAGE_BYTES"].default)
    assert settings.api_key is None and settings.image_url_hosts == ()
    assert not settings.image_urls_enabled and not settings.image_url_allow_private


def test_environment_then_flags(monkeypatch):
    monkeypatch.setenv("DSOCR_PORT", "9000")
    monkeypatch.setenv("DSOCR_ALLOW_IMAGE_URLS", "true")
    monkeypatch.setenv("DSOCR_IMAGE_URL_HOSTS", "Images.Example.com, *.cdn.example.org")
    monkeypatch.setenv("DSOCR_API_KEY", "from-env")
    assert Settings.from_env().port == 9000
    settings = Settings.from_args(["--port", "9100", "--no-allow-image-urls", "--max-concurrent-requests", "4"])
    assert (settings.port, settings.allow_image_urls, settings.max_concurrent_requests) == (9100, False, 4)
    assert settings.image_url_hosts == ("images.example.com", "*.cdn.example.org")
    assert settings.api_key == "from-env"
    assert settings.image_urls_enabled  # an allowlist alone turns URLs on, for its hosts


def test_the_body_limit_follows_the_image_or_document_limit_unless_set():
    documents = Settings(max_image_bytes=3_000_000, max_document_bytes=6_000_000)
    assert documents.request_byte_limit == 8_000_000 + REQUEST_OVERHEAD_BYTES
    images = Settings(max_image_bytes=3_000_000, max_document_bytes=1_000)
    assert images.request_byte_limit == 4_000_000 + REQUEST_OVERHEAD_BYTES
    assert Settings(max_image_bytes=3_000_000, max_request_bytes=10).request_byte_limit == 10
    # The default lets a document at the default limit (50 MiB, as Mistral's) through as base64.
    assert Settings().request_byte_limit > 4 * 50 * 2**20 / 3


@pytest.mark.parametrize("flags", [["--port", "x"], ["--max-concurrent-requests", "0"], ["--image-url-timeout-s", "0"]])
def test_bad_values_are_refused(flags):
    with pytest.raises(ValueError):
        Settings.from_args(flags)


def test_every_setting_is_a_declared_variable_in_the_readme():
    readme = README.read_text()
    for name, variable in variables().items():
        assert variable in envs.DECLARED, name
        assert f"`{variable}`" in readme, f"{variable} is missing from README's configuration table"
