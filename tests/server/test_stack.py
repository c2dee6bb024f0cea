"""The real stack end to end: serve command, Triton ensemble, vLLM on CPU."""

from __future__ import annotations

import httpx
import pytest
from tritonclient.utils import InferenceServerException

from dsocr import paths
from dsocr.preprocessing import preprocess_image, resolution_mode
from dsocr.tiny_models import load_tokenizer
from tests.helpers import expected_prompt_ids, page_png, stream_ensemble


def test_frontend_health_models_and_readiness(service):
    health = httpx.get(f"{service.base_url}/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert httpx.get(f"{service.base_url}/health/ready").status_code == 200
    ids = [model["id"] for model in httpx.get(f"{service.base_url}/v1/models").json()["data"]]
    assert ids == ["deepseek-ocr", "deepseek-ai/DeepSeek-OCR"]


def test_unknown_route_is_an_openai_error(service):
    response = httpx.get(f"{service.base_url}/v1/nothing-here")
    assert response.status_code == 404
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_image_request_streams_from_vllm(service):
    page, prompt = page_png(), "<image>\nFree OCR."
    responses = stream_ensemble(service.triton_grpc_url, page, prompt, {"max_tokens": 8, "ignore_eos": True})
    texts = [r.as_numpy("TEXT").tobytes().decode() for r in responses]
    finish = [r.as_numpy("FINISH_REASON").tobytes().decode() for r in responses]
    completion = [int(r.as_numpy("COMPLETION_TOKENS")[0]) for r in responses]
    prompt_tokens = int(responses[-1].as_numpy("PROMPT_TOKENS")[0])
    # Streamed: several responses, counts growing to max_tokens, one finish at the end.
    assert len(responses) > 1
    assert completion == sorted(completion) and completion[-1] == 8
    assert finish[:-1] == [""] * (len(finish) - 1) and finish[-1] == "length"
    assert "".join(texts)
    # The default mode (Gundam) of a <=640 px page: one 1024 px global view, no tiles.
    image_tokens = preprocess_image(page, resolution_mode("ocr", "gundam")).num_image_tokens
    assert image_tokens == 256 + 16 + 1  # 16x16 grid, a newline per row, the view separator
    assert prompt_tokens == len(expected_prompt_ids(load_tokenizer(paths.tiny_model_dir("ocr")), prompt, image_tokens))


def test_bad_image_is_invalid_argument_and_service_keeps_serving(service):
    with pytest.raises(InferenceServerException) as error:
        stream_ensemble(service.triton_grpc_url, b"not an image", "<image>\nFree OCR.", {})
    assert "unsupported image format" in str(error.value)
    responses = stream_ensemble(service.triton_grpc_url, page_png(), "<image>\nFree OCR.", {"max_tokens": 2})
    assert responses[-1].as_numpy("FINISH_REASON").tobytes().decode() in ("stop", "length")
