"""TritonEngine over a stand-in for tritonclient's asyncio streams: deltas, errors, and how
a request whose reader stops early is stopped (a CANCEL, then its stream read to the end)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from dsocr.triton.client import Delta
from openai_frontend import engine as engine_module
from openai_frontend.engine import TritonEngine
from openai_frontend.errors import BadRequest, OpenAIError


class Result:
    """What tritonclient's InferResult offers the engine: as_numpy by output name."""

    def __init__(self, text: str, finish: str, prompt_tokens: int, completion_tokens: int):
        self._outputs = {
            "TEXT": np.frombuffer(text.encode(), dtype=np.uint8),
            "FINISH_REASON": np.frombuffer(finish.encode(), dtype=np.uint8),
            "PROMPT_TOKENS": np.array([prompt_tokens], dtype=np.int32),
            "COMPLETION_TOKENS": np.array([completion_tokens], dtype=np.int32),
        }

    def as_numpy(self, name: str):
        return self._outputs[name]


class Call:
    """stream_infer's response iterator for the ensemble: (result, error) pairs, then, as
    Triton does, the end of the stream after a final response or an error, else a wait
    for the next token (or for a CANCEL, which ends the generation); records cancel()."""

    def __init__(self, responses: list, answers_cancel: bool = True):
        self._responses = list(responses)
        self._last = None
        self._more = asyncio.Event()
        self.answers_cancel = answers_cancel
        self.ended = False
        self.cancelled = False  # while the stream was still open

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self._responses:
            result, error = self._last or (None, None)
            if error is not None or (result is not None and result.as_numpy("FINISH_REASON").size):
                self.ended = True
                raise StopAsyncIteration
            await self._more.wait()  # a long generation: the next token is not there yet
            self._more.clear()
        self._last = self._responses.pop(0)
        return self._last

    def push(self, *responses) -> None:
        self._responses.extend(responses)
        self._more.set()

    def cancel(self) -> bool:
        self.cancelled = self.cancelled or not self.ended
        return True


class Triton:
    """tritonclient's stream_infer: the ensemble request gets `call`; a CANCEL naming its
    request id is answered, and (as vllm_model does) ends the generation."""

    def __init__(self, call: Call):
        self.call = call
        self.request_id = None
        self.cancels: list[str] = []

    def stream_infer(self, requests):
        return _Stream(requests, self)

    def cancel(self, request: dict):
        named = request["inputs"][0]._get_content().decode()
        self.cancels.append(named)
        if self.call.answers_cancel and named == self.request_id:
            self.call.push((Result("", "cancelled", 0, 0), None))
        return Result("", "cancelled", 0, 0), None


class _Stream:
    """One stream_infer call: its one request read first, as Triton reads it, then answered."""

    def __init__(self, requests, triton: Triton):
        self._requests, self._triton, self._request = requests, triton, None

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._request is None:
            self._request = await anext(self._requests)
            if self._request["model_name"] == "vllm_model":
                return self._triton.cancel(self._request)
            self._triton.request_id = self._request["request_id"]
        if self._request["model_name"] == "vllm_model":
            raise StopAsyncIteration  # one answer per CANCEL
        return await self._triton.call.__anext__()

    def cancel(self) -> bool:
        return self._triton.call.cancel()


def engine_over(call: Call) -> tuple[TritonEngine, Triton]:
    engine = TritonEngine("127.0.0.1:1")
    triton = Triton(call)
    engine._client.stream_infer = triton.stream_infer
    return engine, triton


def generate(engine: TritonEngine):
    return engine.generate(b"image", "<image>\nFree OCR.", {"max_tokens": 2})


async def settled(engine: TritonEngine) -> None:
    """Until the engine's background work (stopping requests) is done."""
    while engine._background:
        await asyncio.sleep(0.01)


def test_deltas_carry_the_models_counts_and_end_at_the_finish_reason():
    call = Call([(Result("In", "", 279, 1), None)])

    async def read():
        engine, _ = engine_over(call)
        deltas = generate(engine)
        first = await anext(deltas)
        call.push((Result("voice", "length", 279, 2), None))
        return [first] + [delta async for delta in deltas]

    assert asyncio.run(read()) == [Delta("In", None, 279, 1), Delta("voice", "length", 279, 2)]


def test_responses_that_came_before_the_reader_asked_are_one_delta():
    # A reader that falls behind the engine (a slow client, a busy frontend) catches up in one step.
    call = Call(
        [(Result("In", "", 279, 1), None), (Result("vo", "", 279, 2), None), (Result("ice", "stop", 279, 3), None)]
    )

    async def read():
        await asyncio.sleep(0)
        engine, _ = engine_over(call)
        deltas = generate(engine)
        await asyncio.sleep(0.01)  # all three are in before the first read
        return [delta async for delta in deltas]

    assert asyncio.run(read()) == [Delta("Invoice", "stop", 279, 3)]


def test_a_completed_request_lets_triton_close_its_stream():
    # Cancelled between its last response and its end, a stream leaves the
    # ensemble referenced in Triton, which then cannot unload it at shutdown.
    call = Call([(Result("In", "", 279, 1), None), (Result("voice", "length", 279, 2), None)])

    async def read_to_the_finish_reason_then_close():
        engine, triton = engine_over(call)
        deltas = generate(engine)
        while not (await anext(deltas)).finish_reason:
            pass
        await deltas.aclose()
        await settled(engine)
        return triton

    triton = asyncio.run(read_to_the_finish_reason_then_close())
    assert call.ended and not call.cancelled and triton.cancels == []


def read_one_then_close(call: Call) -> Triton:
    """Read one delta, close the deltas, and wait until the engine has stopped the request."""

    async def run():
        engine, triton = engine_over(call)
        deltas = generate(engine)
        await anext(deltas)
        await deltas.aclose()
        await settled(engine)
        return triton

    return asyncio.run(run())


def test_closing_the_deltas_mid_stream_cancels_the_request_by_name_and_reads_its_end():
    call = Call([(Result("In", "", 279, 1), None)])
    triton = read_one_then_close(call)
    assert triton.cancels == [triton.request_id]
    assert call.ended and not call.cancelled  # Triton ended the stream itself


def test_cancelling_the_reader_while_it_waits_stops_the_request_the_same_way():
    # A client that disconnects cancels the task reading the deltas, mid-wait:
    # the gRPC stream must not be cancelled with it.
    call = Call([(Result("In", "", 279, 1), None)])

    async def read_all_but_give_up():
        engine, triton = engine_over(call)
        deltas = generate(engine)
        await asyncio.ensure_future(deltas.__anext__())
        reader = asyncio.ensure_future(deltas.__anext__())  # waits for a token that never comes
        await asyncio.sleep(0.01)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        await deltas.aclose()
        await settled(engine)
        return triton

    triton = asyncio.run(read_all_but_give_up())
    assert triton.cancels == [triton.request_id]
    assert call.ended and not call.cancelled


def test_a_stream_that_does_not_end_after_its_cancel_is_cancelled(monkeypatch):
    monkeypatch.setattr(engine_module, "CANCELLED_END_TIMEOUT_S", 0.05)
    call = Call([(Result("In", "", 279, 1), None)], answers_cancel=False)
    triton = read_one_then_close(call)
    assert triton.cancels == [triton.request_id] and call.cancelled


def test_a_streamed_model_error_is_raised_as_the_apis_error():
    refused = InferenceServerException(
        "in ensemble 'deepseek_ocr', refused [corrupt] IMAGE is not a decodable image: x"
    )
    call = Call([(None, refused)])

    async def read():
        engine, _ = engine_over(call)
        return [delta async for delta in generate(engine)]

    with pytest.raises(BadRequest, match=r"^IMAGE is not a decodable image"):
        asyncio.run(read())


def test_text_that_came_before_an_error_is_not_lost_to_it():
    refused = InferenceServerException("in ensemble 'deepseek_ocr', the model failed (RuntimeError)")
    call = Call([(Result("In", "", 279, 1), None), (None, refused)])

    async def read():
        await asyncio.sleep(0)
        engine, _ = engine_over(call)
        deltas = generate(engine)
        await asyncio.sleep(0.01)
        first = await anext(deltas)
        with pytest.raises(OpenAIError, match="the model failed") as error:
            await anext(deltas)
        return first, error.value.status

    assert asyncio.run(read()) == (Delta("In", None, 279, 1), 500)


def test_a_stream_ending_without_a_finish_reason_is_a_server_error():
    class Ending(Call):
        async def __anext__(self):
            if self._responses:
                return self._responses.pop(0)
            raise StopAsyncIteration

    ending = Ending([(Result("In", "", 279, 1), None)])

    async def read():
        engine, _ = engine_over(ending)
        return [delta async for delta in generate(engine)]

    with pytest.raises(OpenAIError, match="without a finish reason") as error:
        asyncio.run(read())
    assert error.value.status == 500
