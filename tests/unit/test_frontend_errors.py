"""Error mapping: what Triton streams back, and request validation, -> OpenAI's error shape."""

from __future__ import annotations

import grpc
import pytest
from tritonclient.utils import InferenceServerException

from openai_frontend.engine import model_error, transport_error
from openai_frontend.errors import BadRequest, OpenAIError, RateLimited, Unavailable, request_path


@pytest.mark.parametrize(
    "streamed, kind, status, message",
    [
        # What the ensemble sends for a request it refuses, as seen on the stream.
        (
            "in ensemble 'deepseek_ocr', refused [corrupt] PNG data is truncated or corrupt: broken data stream",
            BadRequest,
            400,
            "PNG data is truncated or corrupt",
        ),
        (
            "in ensemble 'deepseek_ocr', refused [invalid_parameter] max_tokens must be an integer",
            BadRequest,
            400,
            "max_tokens must be an integer",
        ),
        (
            "in ensemble 'deepseek_ocr', refused [invalid_request] This model's maximum context length is 4096 tokens.",
            BadRequest,
            400,
            "maximum context length",
        ),
        # A fault of the model's own, and anything not worded as a refusal (a numpy or vLLM ValueError
        # from a bug included): the server's, never the client's.
        ("in ensemble 'deepseek_ocr', the model failed (RuntimeError)", OpenAIError, 500, "the model failed"),
        ("in ensemble 'deepseek_ocr', could not broadcast input array from shape (3,)", OpenAIError, 500, "broadcast"),
        # A model process that crashed: the server cannot serve it (the pool tries another).
        (
            "in ensemble 'deepseek_ocr', Failed to process the request(s) for model instance 'vllm_model_0_0', "
            "message: Stub process is not healthy.",
            Unavailable,
            503,
            "model process",
        ),
        ("in ensemble 'deepseek_ocr', the vLLM engine is not running", Unavailable, 503, "engine is not running"),
        ("Request for unknown model: 'deepseek_ocr' is not found", Unavailable, 503, "not loaded"),
        # Triton shutting down (SIGTERM) refuses what arrives in the meantime.
        (
            "[request id: 4f2c] Server is stopping, scheduler for model has stopped accepting new inference requests",
            Unavailable,
            503,
            "stopping",
        ),
    ],
)
def test_streamed_model_errors(streamed, kind, status, message):
    error = model_error(streamed)
    assert type(error) is kind and error.status == status
    assert message in error.message and "in ensemble" not in error.message and "refused [" not in error.message


def test_a_refusal_keeps_the_models_code():
    error = model_error("in ensemble 'deepseek_ocr', refused [placeholder_mismatch] the prompt has 2 placeholders")
    assert (error.code, error.type) == ("placeholder_mismatch", "invalid_request_error")


def test_triton_unreachable_is_503_whichever_way_grpc_says_it():
    refused = InferenceServerException("failed to connect to all addresses", status="StatusCode.UNAVAILABLE")
    assert transport_error(refused).status == 503
    other = InferenceServerException("deadline", status="StatusCode.DEADLINE_EXCEEDED")
    assert transport_error(other).status == 500
    rpc = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details="connection refused"
    )
    assert isinstance(transport_error(rpc), Unavailable)


@pytest.mark.parametrize(
    "location, path",
    [
        (("body", "messages", 0, "content", 1, "image_url", "url"), "messages[0].content[1].image_url.url"),
        (("body", "stop", "str"), "stop"),
        (("body", "stop", "list[str]", 2), "stop[2]"),
        (("body", "messages", 0, "content", "list[tagged-union[TextPart,ImagePart]]", 0), "messages[0].content[0]"),
        (("body",), ""),
    ],
)
def test_request_paths_drop_pydantics_union_labels(location, path):
    assert request_path(location) == path


def test_every_error_has_openais_four_fields():
    for error in (
        BadRequest("m", param="p", code="c"),
        OpenAIError("m"),
        Unavailable("m"),
        RateLimited("m", retry_after_s=1),
    ):
        assert set(error.body()["error"]) == {"message", "type", "param", "code"}
    assert RateLimited("m", retry_after_s=3).response().headers["retry-after"] == "3"
