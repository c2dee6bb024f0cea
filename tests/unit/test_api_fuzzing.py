"""API fuzzing (schemathesis) of the live frontend against the OpenAPI schema it serves: every route.

Every response must conform to the schema (status, content type, headers, body), no request may
get a 5xx, every error must be OpenAI's shape, a request the schema calls invalid must be refused,
and one it calls valid must not be refused as invalid. The frontend runs as `python -m
openai_frontend` runs it, with an API key, over a scripted engine: what is fuzzed is the HTTP layer
(parsing, validation, errors, the schema), not the model.

Examples per route: DSOCR_FUZZ_MAX_EXAMPLES (CI: its declared default, about a minute; longer runs:
scripts/fuzz.sh --max-examples N). Every run uses a fresh random seed; a failure prints the request
that reproduces it.
"""

from __future__ import annotations

import base64
import copy
import io
import re

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from PIL import Image
from schemathesis.config import SchemathesisConfig

from dsocr import envs
from openai_frontend.app import create_app
from openai_frontend.settings import Settings
from tests.scripted_frontend import scripted_frontend

API_KEY = "fuzz-key"
AUTHORIZED = {"Authorization": f"Bearer {API_KEY}"}
ROUTES = {
    "/": {"get"},
    "/health": {"get"},
    "/health/ready": {"get"},
    "/v1/models": {"get"},
    "/v1/models/{name}": {"get"},
    "/v1/chat/completions": {"post"},
    "/v1/ocr": {"post"},
}
MAX_EXAMPLES = int(envs.value("DSOCR_FUZZ_MAX_EXAMPLES"))
# Codes only request validation gives (openai_frontend.errors.validation_error): a request the
# schema calls valid refused with one of these means the schema says less than the server checks.
VALIDATION_CODES = {"invalid_value", "invalid_json"}
# Beyond this, JSON numbers are doubles to the schema's validator (a value just past an integer
# bound such as seed's 2**64 - 1 passes it) but exact integers to the server.
EXACT_JSON_INTEGERS = 2**53


def png_data_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def fuzz_config() -> SchemathesisConfig:
    """Served model names and a decodable image often enough that requests get past the first checks.

    Schemathesis's positive_data_acceptance is off: a valid request may still be a 400 (see
    valid_requests_pass_validation, which replaces it).
    """
    often = {"probability": 0.7}
    return SchemathesisConfig.from_dict(
        {
            "checks": {"positive_data_acceptance": {"enabled": False}},
            "dictionaries": {
                "models": {"values": ["deepseek-ocr", "deepseek-ai/DeepSeek-OCR"]},
                "images": {"values": [png_data_url()]},
            },
            "parameters": {
                "body.model": {"dictionary": "models", **often},
                "path.name": {"dictionary": "models", "probability": 0.5},
                "body.messages[*].content[*].image_url.url": {"dictionary": "images", **often},
                "body.messages[*].content[*].file.file_data": {"dictionary": "images", **often},
                "body.document.document_url": {"dictionary": "images", **often},
                "body.document.image_url": {"dictionary": "images", **often},
            },
        }
    )


FRONTEND_FLAGS = [f"--api-key={API_KEY}", "--max-image-bytes=100000"]


@pytest.fixture(scope="module")
def frontend(tmp_path_factory):
    log = tmp_path_factory.mktemp("fuzz") / "frontend.log"
    with scripted_frontend(log, *FRONTEND_FLAGS) as frontend:
        yield frontend


def errors_are_openai_shaped(ctx, response, case) -> None:
    """Every error's body is exactly {"error": {"message", "type", "param", "code"}}."""
    if response.status_code < 400 or (case.path == "/health/ready" and response.status_code == 503):
        return
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str), error
    assert all(error[key] is None or isinstance(error[key], str) for key in ("param", "code")), error


def valid_requests_pass_validation(ctx, response, case) -> None:
    """A request generated as schema-valid is never refused by request validation.

    Other 400s are the API's to give to a valid request (no image, an undecodable one, a field
    Mistral has and this service refuses): the schema cannot say what a decodable image is.
    """
    if case.meta is None or not case.meta.generation.mode.is_positive or response.status_code != 400:
        return
    error = response.json()["error"]
    if error["code"] not in VALIDATION_CODES or beyond_json_schema(sent_value(case.body, error["param"])):
        return
    raise AssertionError(f"a request valid by the schema was refused as invalid: {error}")


def sent_value(body, param: str | None):
    """The value at `param` ("messages[0].content") in the body sent; None if not there."""
    if not param:
        return None
    value = body
    for index, key in re.findall(r"\[(\d+)\]|([^.\[\]]+)", param):
        try:
            value = value[int(index)] if index else value[key]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def beyond_json_schema(value) -> bool:
    """Numbers a JSON schema cannot tell from valid ones, refused by the server as OpenAI's API does:
    5.0 is an "integer" to JSON Schema, and past 2**53 its validator compares doubles."""
    if isinstance(value, list | dict):
        return any(beyond_json_schema(item) for item in (value.values() if isinstance(value, dict) else value))
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > EXACT_JSON_INTEGERS


# The schema the frontend serves, built by the same code with the same settings (the last test
# checks they are equal): schemathesis's fixture-loaded schemas do not run under pytest 9.2.
SERVED_SCHEMA = create_app(Settings.from_args(FRONTEND_FLAGS)).openapi()
schema = schemathesis.openapi.from_dict(copy.deepcopy(SERVED_SCHEMA), config=fuzz_config())


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_route_answers_as_its_schema_says(case, frontend):
    case.call_and_validate(
        base_url=frontend.base_url,
        headers=AUTHORIZED,
        additional_checks=[errors_are_openai_shaped, valid_requests_pass_validation],
    )


def test_the_served_schema_covers_every_route_and_documents_no_422(frontend):
    document = httpx.get(f"{frontend.base_url}/openapi.json", headers=AUTHORIZED).json()
    assert document == SERVED_SCHEMA
    assert {path: set(operations) for path, operations in document["paths"].items()} == ROUTES
    for path, operations in document["paths"].items():
        for operation in operations.values():
            assert "422" not in operation["responses"], path
            assert ("security" in operation) == (path not in {"/", "/health", "/health/ready"}), path
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"400", "401", "404", "408", "413", "429", "500", "503"} <= set(chat)
    assert set(chat["200"]["content"]) == {"application/json", "text/event-stream"}
