"""dsocr.triton.client's reading of a stream (the transport's corner cases; the requests it builds are
shown working against a real tritonserver in tests/server)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from dsocr.triton import client
from dsocr.triton.client import InferenceServerException


def triton_streaming(*responses):
    """stream_infer answering `responses` (result, error pairs), then ending the stream; records that end."""
    ended = []

    async def stream_infer(requests):
        async for _ in requests:
            break
        for response in responses:
            yield response
        ended.append(True)

    return SimpleNamespace(stream_infer=stream_infer), ended


def read(triton) -> list:
    async def responses():
        return [result async for result in client.stream(triton, client.cancel_request("a-request"))]

    return asyncio.run(responses())


def test_a_streamed_error_is_raised_once_triton_has_ended_the_stream():
    # Cancelled at the error instead, the stream would now and then leave its
    # ensemble request behind in Triton, and the ensemble loaded until shutdown.
    triton, ended = triton_streaming((None, InferenceServerException("refused")))
    with pytest.raises(InferenceServerException, match="refused"):
        read(triton)
    assert ended


def test_responses_come_until_an_error_and_the_first_error_is_the_one_raised():
    triton, ended = triton_streaming(
        ("first", None),
        (None, InferenceServerException("refused")),
        ("late", None),
        (None, InferenceServerException("again")),
    )
    seen = []

    async def responses():
        async for result in client.stream(triton, client.cancel_request("a-request")):
            seen.append(result)

    with pytest.raises(InferenceServerException, match="refused"):
        asyncio.run(responses())
    assert seen == ["first"] and ended


def test_a_stream_without_an_error_gives_every_response():
    triton, ended = triton_streaming(("first", None), ("last", None))
    assert read(triton) == ["first", "last"] and ended
