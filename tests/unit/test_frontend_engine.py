"""TritonEngine over a stand-in for tritonclient's asyncio stream: deltas, errors, and
the stream cancelled whenever its reader stops early."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from openai_frontend.engine import Delta, TritonEngine
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
    """stream_infer's response iterator: (result, error) pairs, then, as Triton does, the
    end of the stream after a final response or an error, else a wait; records cancel()."""

    def __init__(self, responses: list):
        self._responses = list(responses)
        self._last = None
        self.ended = False
        self.cancelled = False  # while the stream was still open

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._responses:
            self._last = self._responses.pop(0)
            return self._last
        result, error = self._last or (None, None)
        if error is not None or (result is not None and result.as_numpy("FINISH_REASON").size):
            self.ended = True
            raise StopAsyncIteration
        await asyncio.Event().wait()  # a long generation: the next token is not there yet

    def cancel(self) -> bool:
        self.cancelled = self.cancelled or not self.ended
        return True


def engine_over(call: Call) -> TritonEngine:
    engine = TritonEngine("127.0.0.1:1")
    engine._client.stream_infer = lambda requests: call
    return engine


def generate(engine: TritonEngine):
    return engine.generate(b"image", "<image>\nFree OCR.", {"max_tokens": 2})


def test_deltas_carry_the_models_counts_and_end_at_the_finish_reason():
    call = Call([(Result("In", "", 279, 1), None), (Result("voice", "length", 279, 2), None)])

    async def read():
        return [delta async for delta in generate(engine_over(call))]

    assert asyncio.run(read()) == [Delta("In", None, 279, 1), Delta("voice", "length", 279, 2)]


def test_a_completed_request_lets_triton_close_its_stream():
    # Cancelled between its last response and its end, a stream leaves the
    # ensemble referenced in Triton, which then cannot unload it at shutdown.
    call = Call([(Result("In", "", 279, 1), None), (Result("voice", "length", 279, 2), None)])

    async def read_to_the_finish_reason_then_close():
        deltas = generate(engine_over(call))
        while not (await anext(deltas)).finish_reason:
            pass
        await deltas.aclose()

    asyncio.run(read_to_the_finish_reason_then_close())
    assert call.ended and not call.cancelled


def test_closing_the_deltas_mid_stream_cancels_the_grpc_stream():
    call = Call([(Result("In", "", 279, 1), None)])

    async def read_one_then_close():
        deltas = generate(engine_over(call))
        await anext(deltas)
        await deltas.aclose()

    asyncio.run(read_one_then_close())
    assert call.cancelled


def test_cancelling_the_reader_while_it_waits_cancels_the_grpc_stream():
    call = Call([(Result("In", "", 279, 1), None)])

    async def read_all_but_give_up():
        deltas = generate(engine_over(call))
        reader = asyncio.ensure_future(deltas.__anext__())
        await reader
        reader = asyncio.ensure_future(deltas.__anext__())  # waits for a token that never comes
        await asyncio.sleep(0.01)
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader

    asyncio.run(read_all_but_give_up())
    assert call.cancelled


def test_a_streamed_model_error_is_raised_as_the_apis_error():
    refused = InferenceServerException("in ensemble 'deepseek_ocr', IMAGE is not a decodable image: x")
    call = Call([(None, refused)])

    async def read():
        return [delta async for delta in generate(engine_over(call))]

    with pytest.raises(BadRequest, match="^IMAGE is not a decodable image"):
        asyncio.run(read())


def test_a_stream_ending_without_a_finish_reason_is_a_server_error():
    class Ending(Call):
        async def __anext__(self):
            if self._responses:
                return self._responses.pop(0)
            raise StopAsyncIteration

    ending = Ending([(Result("In", "", 279, 1), None)])

    async def read():
        return [delta async for delta in generate(engine_over(ending))]

    with pytest.raises(OpenAIError, match="without a finish reason") as error:
        asyncio.run(read())
    assert error.value.status == 500
