"""The vLLM model behind the ensemble: cancellation, limits, modes, metrics."""

from __future__ import annotations

import threading
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from dsocr import paths
from dsocr.preprocessing import preprocess_image, resolution_mode
from dsocr.tiny_models import load_tokenizer
from dsocr.triton import client as ensemble
from openai_frontend.engine import model_error
from tests.helpers import (
    SERVICE_MAX_MODEL_LEN,
    cancel_ensemble_request,
    expected_prompt_ids,
    metric_when_still,
    page_png,
    stream_ensemble,
    wait_until,
)


def test_engine_metrics_are_on_tritons_metrics_endpoint(service):
    stream_ensemble(service.triton_grpc_url, page_png(), "<image>\nFree OCR.", {"max_tokens": 3, "ignore_eos": True})
    # The engine's figures reach Triton once a second (dsocr.triton.metrics), its last step's all at once.
    # A scrape may fall between two of its counters: each is waited for.
    assert wait_until(lambda: service.metric("vllm:generation_tokens_total") >= 3, 10)
    assert wait_until(
        lambda: "vllm:request_success_total{" in httpx.get(f"{service.triton_metrics_url}/metrics").text, 10
    )
    assert service.metric("vllm:request_success_total") >= 1
    assert service.metric("vllm:prompt_tokens_total") > 0
    assert service.metric("nv_inference_count") > 0  # Triton's own, same endpoint
    # The two queues the Kubernetes autoscaler adds up (deploy/monitoring/prometheus-adapter-values.yaml).
    text = httpx.get(f"{service.triton_metrics_url}/metrics").text
    for queue in ("nv_inference_pending_request_count{", "vllm:num_requests_waiting{"):
        assert any(line.startswith(queue) for line in text.splitlines()), queue


def test_cancel_request_stops_the_generation_in_the_engine(service):
    """A client that leaves names its request in a CANCEL: the engine stops, the stream ends."""
    max_tokens = 3000
    before = service.metric("vllm:generation_tokens_total")
    responses, received = [], threading.Event()
    client = grpcclient.InferenceServerClient(service.triton_grpc_url)
    client.start_stream(callback=lambda result, error: (responses.append(error or result), received.set()))
    client.async_stream_infer(
        **ensemble.ensemble_request(
            page_png(size=(200, 150)),
            "<image>\nFree OCR.",
            {"max_tokens": max_tokens, "ignore_eos": True, "resolution_mode": "tiny"},
            "leaving-client",
        )
    )
    assert received.wait(120)  # the first token: the request is in the engine's running batch
    cancel_ensemble_request(service.triton_grpc_url, "leaving-client")
    client.stop_stream()  # the stream ends by itself, with the generation
    client.close()

    assert responses[-1].as_numpy("FINISH_REASON").tobytes() == b"cancelled"
    generated = metric_when_still(service, "vllm:generation_tokens_total") - before  # and nothing more
    assert generated >= 1
    # Uncancelled, it would run to max_tokens (ignore_eos); how far it gets
    # before the CANCEL lands depends on the machine's speed.
    assert generated < max_tokens / 2


def test_a_cancel_that_comes_first_keeps_its_request_from_running(service):
    # A client can leave while its request is still in preprocess: the CANCEL
    # reaches vllm_model first, and the generation never starts.
    before = service.metric("vllm:prompt_tokens_total")
    cancel_ensemble_request(service.triton_grpc_url, "early-leaver")
    responses = stream_ensemble(
        service.triton_grpc_url,
        page_png(),
        "<image>\nFree OCR.",
        {"max_tokens": 50, "ignore_eos": True},
        request_id="early-leaver",
    )
    assert [r.as_numpy("FINISH_REASON").tobytes() for r in responses] == [b"cancelled"]
    time.sleep(2)  # longer than the engine metrics lag (dsocr.triton.metrics)
    assert service.metric("vllm:prompt_tokens_total") == before  # the engine never saw it
    # The cancel is used up: the same id runs again.
    again = stream_ensemble(
        service.triton_grpc_url,
        page_png(),
        "<image>\nFree OCR.",
        {"max_tokens": 2, "ignore_eos": True},
        request_id="early-leaver",
    )
    assert again[-1].as_numpy("FINISH_REASON").tobytes() == b"length"


def test_prompt_over_the_context_is_a_clear_error(service):
    prompt = "<image>\n" + "word " * 5000  # beyond the CPU service's context
    with pytest.raises(InferenceServerException) as error:
        stream_ensemble(service.triton_grpc_url, page_png(), prompt, {"max_tokens": 5})
    # Worded as a refusal (a stream carries no status code): the frontend answers it 400, the client's fault.
    answer = model_error(error.value.message())
    assert (answer.status, answer.code) == (400, "invalid_request"), answer
    assert f"maximum context length is {SERVICE_MAX_MODEL_LEN} tokens" in answer.message


def test_max_tokens_beyond_the_context_end_where_the_context_ends(service):
    """A prompt that leaves 3 tokens of the context: asking for 50 gets 3, finish reason "length"."""
    image, mode, room = page_png(size=(200, 150)), "tiny", 3
    image_tokens = preprocess_image(image, resolution_mode("ocr", mode)).num_image_tokens
    tokenizer = load_tokenizer(paths.tiny_model_dir("ocr"))
    words = 0
    while (
        len(expected_prompt_ids(tokenizer, prompt := "<image>\n" + "word " * words, image_tokens))
        < SERVICE_MAX_MODEL_LEN - room
    ):
        words += 1
    assert len(expected_prompt_ids(tokenizer, prompt, image_tokens)) == SERVICE_MAX_MODEL_LEN - room
    responses = stream_ensemble(
        service.triton_grpc_url, image, prompt, {"max_tokens": 50, "ignore_eos": True, "resolution_mode": mode}
    )
    assert responses[-1].as_numpy("FINISH_REASON").tobytes() == b"length"
    assert int(responses[-1].as_numpy("COMPLETION_TOKENS")[0]) == room
    assert int(responses[-1].as_numpy("PROMPT_TOKENS")[0]) == SERVICE_MAX_MODEL_LEN - room


@pytest.mark.parametrize("mode", ["tiny", "small"])
def test_other_modes_prompt_length_is_the_predicted_one(service, mode):
    image, prompt = page_png(size=(500, 700)), "<image>\nFree OCR."
    responses = stream_ensemble(service.triton_grpc_url, image, prompt, {"max_tokens": 1, "resolution_mode": mode})
    tokenizer = load_tokenizer(paths.tiny_model_dir("ocr"))
    text_tokens = 1 + len(tokenizer.encode("\nFree OCR.", add_special_tokens=False))  # BOS + text
    expected = preprocess_image(image, resolution_mode("ocr", mode)).num_image_tokens + text_tokens
    assert int(responses[-1].as_numpy("PROMPT_TOKENS")[0]) == expected
    assert np.array_equal(responses[-1].as_numpy("COMPLETION_TOKENS"), [1])
