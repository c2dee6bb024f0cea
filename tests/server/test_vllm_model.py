"""The vLLM model behind the ensemble: cancellation, limits, modes, metrics."""

from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from helpers import page_png, stream_ensemble, uint8_input

from dsocr import paths
from dsocr.preprocessing import preprocess_image, resolution_mode
from dsocr.tiny_models import load_tokenizer

pytestmark = [pytest.mark.server, pytest.mark.engine]


def metric(service, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{service.triton_metrics_port}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def wait_until(condition, timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_engine_metrics_are_on_tritons_metrics_endpoint(service):
    stream_ensemble(service.triton_grpc_url, page_png(), "<image>\nFree OCR.", {"max_tokens": 3, "ignore_eos": True})
    assert metric(service, "vllm:generation_tokens_total") >= 3
    assert metric(service, "vllm:prompt_tokens_total") > 0
    assert metric(service, 'vllm:request_success_total') >= 1
    assert metric(service, "nv_inference_count") > 0  # Triton's own, same endpoint
    # The two queues the Kubernetes autoscaler adds up (deploy/monitoring/prometheus-adapter-values.yaml).
    text = httpx.get(f"http://127.0.0.1:{service.triton_metrics_port}/metrics").text
    for queue in ("nv_inference_pending_request_count{", "vllm:num_requests_waiting{"):
        assert any(line.startswith(queue) for line in text.splitlines()), queue


def test_cancel_request_stops_the_generation_in_the_engine(service):
    """A client that leaves names its request in a CANCEL: the engine stops, the stream ends."""
    max_tokens = 3000
    before = metric(service, "vllm:generation_tokens_total")
    responses, received = [], threading.Event()
    client = grpcclient.InferenceServerClient(service.triton_grpc_url)
    client.start_stream(callback=lambda result, error: (responses.append(error or result), received.set()))
    client.async_stream_infer(
        "deepseek_ocr",
        [uint8_input("IMAGE", page_png(size=(200, 150))), uint8_input("PROMPT", b"<image>\nFree OCR."),
         uint8_input("PARAMETERS", json.dumps({"max_tokens": max_tokens, "ignore_eos": True,
                                               "resolution_mode": "tiny"}).encode())],
        request_id="leaving-client",
    )
    assert received.wait(120)  # the first token: the request is in the engine's running batch
    stream_cancel(service, b"leaving-client")
    client.stop_stream()  # the stream ends by itself, with the generation
    client.close()

    assert responses[-1].as_numpy("FINISH_REASON").tobytes() == b"cancelled"
    assert wait_until(lambda: metric(service, "vllm:num_requests_running") == 0)
    generated = metric(service, "vllm:generation_tokens_total") - before
    time.sleep(1)
    assert metric(service, "vllm:generation_tokens_total") - before == generated  # nothing more
    # Uncancelled, it would run to max_tokens (ignore_eos); how far it gets
    # before the CANCEL lands depends on the machine's speed.
    assert generated < max_tokens / 2


def test_a_cancel_that_comes_first_keeps_its_request_from_running(service):
    # A client can leave while its request is still in preprocess: the CANCEL
    # reaches vllm_model first, and the generation never starts.
    before = metric(service, "vllm:prompt_tokens_total")
    stream_cancel(service, b"early-leaver")
    responses = stream_ensemble(service.triton_grpc_url, page_png(), "<image>\nFree OCR.",
                                {"max_tokens": 50, "ignore_eos": True}, request_id="early-leaver")
    assert [r.as_numpy("FINISH_REASON").tobytes() for r in responses] == [b"cancelled"]
    assert metric(service, "vllm:prompt_tokens_total") == before  # the engine never saw it
    # The cancel is used up: the same id runs again.
    again = stream_ensemble(service.triton_grpc_url, page_png(), "<image>\nFree OCR.",
                            {"max_tokens": 2, "ignore_eos": True}, request_id="early-leaver")
    assert again[-1].as_numpy("FINISH_REASON").tobytes() == b"length"


def stream_cancel(service, request_id: bytes) -> None:
    client = grpcclient.InferenceServerClient(service.triton_grpc_url)
    client.start_stream(callback=lambda result, error: None)
    client.async_stream_infer("vllm_model", [uint8_input("CANCEL", request_id)])
    client.stop_stream()
    client.close()


def test_prompt_over_the_context_is_a_clear_error(service):
    prompt = "<image>\n" + "word " * 5000  # MAX_MODEL_LEN is 4096 in the test service
    with pytest.raises(InferenceServerException) as error:
        stream_ensemble(service.triton_grpc_url, page_png(), prompt, {"max_tokens": 5})
    assert "no room for output in the context of 4096 tokens" in str(error.value)


@pytest.mark.parametrize("mode", ["tiny", "small"])
def test_other_modes_prompt_length_is_the_predicted_one(service, mode):
    image, prompt = page_png(size=(500, 700)), "<image>\nFree OCR."
    responses = stream_ensemble(service.triton_grpc_url, image, prompt, {"max_tokens": 1, "resolution_mode": mode})
    tokenizer = load_tokenizer(paths.tiny_model_dir("ocr"))
    text_tokens = 1 + len(tokenizer.encode("\nFree OCR.", add_special_tokens=False))  # BOS + text
    expected = preprocess_image(image, resolution_mode("ocr", mode)).num_image_tokens + text_tokens
    assert int(responses[-1].as_numpy("PROMPT_TOKENS")[0]) == expected
    assert np.array_equal(responses[-1].as_numpy("COMPLETION_TOKENS"), [1])
