"""The frontend's settings, in one object: environment (declared in dsocr.envs), then flags.

Every setting is both an environment variable and a flag of
`python -m openai_frontend`; a flag wins. `--help` shows each one's meaning
as dsocr.envs declares it.
"""

from __future__ import annotations

import argparse
import os
from typing import cast

from pydantic import BaseModel, ConfigDict, Field, field_validator

from dsocr import envs
from dsocr.documents.limits import DocumentLimits
from dsocr.engine_config import served_model
from dsocr.families import Family, family_of

# JSON around the image in a request: messages, parameters, the data URL's header.
REQUEST_OVERHEAD_BYTES = 1024 * 1024


def base64_size(size: int) -> int:
    return 4 * ((size + 2) // 3)


def env(variable: str, default=None, **constraints):
    """A setting read from `variable`; its default is the one dsocr.envs declares."""
    declared = envs.DECLARED[variable].default
    if declared is None and callable(default):
        return Field(default_factory=default, json_schema_extra={"env": variable}, **constraints)
    return Field(declared if declared is not None else default, json_schema_extra={"env": variable}, **constraints)


class Settings(BaseModel):
    # Declared defaults are strings, as the environment gives them: validated like any value.
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    host: str = env("DSOCR_HOST")
    port: int = env("DSOCR_PORT", ge=0, le=65535)
    triton_grpc_url: str = env("DSOCR_TRITON_GRPC_URL")
    # What Triton serves; decides the model names the API answers to.
    model: str = env("MODEL", default=served_model)
    api_key: str | None = env("DSOCR_API_KEY")
    max_request_bytes: int | None = env("DSOCR_MAX_REQUEST_BYTES", ge=1)
    max_image_bytes: int = env("DSOCR_MAX_IMAGE_BYTES", ge=1)
    max_image_pixels: int = env("DSOCR_MAX_IMAGE_PIXELS", ge=1)
    max_concurrent_requests: int = env("DSOCR_MAX_CONCURRENT_REQUESTS", ge=1)
    max_document_bytes: int = env("DSOCR_MAX_DOCUMENT_BYTES", ge=1)
    max_document_pages: int = env("DSOCR_MAX_DOCUMENT_PAGES", ge=1)
    min_dpi: int = env("DSOCR_MIN_DPI", ge=1)
    max_dpi: int = env("DSOCR_MAX_DPI", ge=1)
    max_pages_in_flight: int = env("DSOCR_MAX_PAGES_IN_FLIGHT", ge=1)
    max_pages_in_flight_per_request: int = env("DSOCR_MAX_PAGES_IN_FLIGHT_PER_REQUEST", ge=1)
    ocr_max_tokens: int | None = env("DSOCR_OCR_MAX_TOKENS", ge=1)
    render_workers: int = env("DSOCR_RENDER_WORKERS", default=lambda: min(4, os.cpu_count() or 1), ge=1)
    allow_image_urls: bool = env("DSOCR_ALLOW_IMAGE_URLS")
    image_url_hosts: tuple[str, ...] = env("DSOCR_IMAGE_URL_HOSTS", default=())
    image_url_allow_private: bool = env("DSOCR_IMAGE_URL_ALLOW_PRIVATE")
    image_url_timeout_s: float = env("DSOCR_IMAGE_URL_TIMEOUT_S", gt=0)
    image_url_max_redirects: int = env("DSOCR_IMAGE_URL_MAX_REDIRECTS", ge=0)
    # Slow and hostile clients (openai_frontend/server.py).
    header_timeout_s: float = env("DSOCR_HEADER_TIMEOUT_S", gt=0)
    body_timeout_s: float = env("DSOCR_BODY_TIMEOUT_S", gt=0)
    write_timeout_s: float = env("DSOCR_WRITE_TIMEOUT_S", gt=0)
    keep_alive_timeout_s: int = env("DSOCR_KEEP_ALIVE_TIMEOUT_S", ge=1)

    @field_validator("image_url_hosts", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        if isinstance(value, str):
            return tuple(host.strip().lower() for host in value.split(",") if host.strip())
        return value

    @property
    def family(self) -> Family:
        return family_of(self.model)

    @property
    def triton_grpc_urls(self) -> list[str]:
        return [url.strip() for url in self.triton_grpc_url.split(",") if url.strip()]

    @property
    def request_byte_limit(self) -> int:
        # Derived when unset, so that raising the image or document limit
        # alone does not leave requests carrying one refused at the door.
        if self.max_request_bytes is not None:
            return self.max_request_bytes
        return base64_size(max(self.max_image_bytes, self.max_document_bytes)) + REQUEST_OVERHEAD_BYTES

    @property
    def document_limits(self) -> DocumentLimits:
        return DocumentLimits(
            max_bytes=self.max_document_bytes,
            max_pages=self.max_document_pages,
            max_page_pixels=self.max_image_pixels,
            min_dpi=self.min_dpi,
            max_dpi=self.max_dpi,
        )

    @property
    def image_urls_enabled(self) -> bool:
        """URL images are on for any public host, or for the allowlist alone."""
        return self.allow_image_urls or bool(self.image_url_hosts)

    @classmethod
    def from_env(cls) -> Settings:
        return cls.model_validate(_env_values())

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> Settings:
        flags = {name: value for name, value in vars(_parser().parse_args(argv)).items() if value is not None}
        return cls.model_validate({**_env_values(), **flags})


def variables() -> dict[str, str]:
    """setting -> the environment variable that sets it"""
    return {name: cast(dict, field.json_schema_extra)["env"] for name, field in Settings.model_fields.items()}


def _env_values() -> dict[str, str]:
    values = {name: envs.get(variable) for name, variable in variables().items()}
    return {name: value for name, value in values.items() if value is not None}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m openai_frontend", description="OpenAI-compatible API in front of Triton's deepseek_ocr ensemble"
    )
    for name, variable in variables().items():
        flag = f"--{name.replace('_', '-')}"
        help = f"{envs.DECLARED[variable].meaning} (env {variable})"
        if Settings.model_fields[name].annotation is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help)
        else:
            parser.add_argument(flag, default=None, help=help)
    return parser
