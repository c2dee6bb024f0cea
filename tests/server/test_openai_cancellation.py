"""A client that leaves mid-stream should stop the generation in vLLM, not only the reading.

Shown on the engine's own counter, vLLM's `vllm:generation_tokens_total` on
Triton's metrics port: it climbs while the stream is read, and should stop
climbing once the client has closed the connection, far below the budget.

The request asks for the whole context (no max_tokens, ignore_eos): several
thousand tokens. The client leaves as soon as it has read a few chunks:
the tiny model generates far faster than the stream is read, and a client
that idled with the connection open would let the engine finish first.

The frontend's part (closing the response closes the gRPC stream, which
cancels the Triton request) is covered in tests/unit/test_frontend_engine.py
and test_frontend_app.py. Triton's ensemble scheduler passes a stream's
cancellation only to steps it schedules afterwards, never to the running
vLLM step, so the frontend also names the request in a CANCEL request to
`vllm_model`; this test shows the two together stop the engine.
"""

from __future__ import annotations

import base64
import itertools
import json

import httpx

from tests.helpers import SERVICE_MAX_MODEL_LEN, metric_when_still, page_png

GENERATED = "vllm:generation_tokens_total"
READ_CHUNKS = 5  # chunks read before the client leaves
PROMPTED = "vllm:prompt_tokens_total"


def test_closing_the_stream_aborts_the_generation(service):
    before = metric_when_still(service, GENERATED)
    prompted_before = service.metric(PROMPTED)
    page = "data:image/png;base64," + base64.b64encode(page_png()).decode()
    body = {
        "model": "deepseek-ocr",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": page}}]}],
        "ignore_eos": True,
        "stream": True,
    }
    with httpx.stream("POST", f"{service.base_url}/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        chunks = [
            json.loads(line.removeprefix("data: "))
            for line in itertools.islice(
                (line for line in response.iter_lines() if line.startswith("data: ")), READ_CHUNKS
            )
        ]
    # The connection is closed here, mid-stream.
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(chunk["choices"][0]["finish_reason"] is None for chunk in chunks), "the stream ended on its own"
    generated = metric_when_still(service, GENERATED) - before
    budget = SERVICE_MAX_MODEL_LEN - (service.metric(PROMPTED) - prompted_before)
    assert generated >= READ_CHUNKS, "the engine was not generating while the stream was open"
    assert generated < budget / 2, f"{generated:.0f} of about {budget} tokens generated: the request was not aborted"
