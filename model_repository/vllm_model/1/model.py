"""vLLM model: preprocessed views in, streamed responses out (one per engine output, every
`stream_interval` tokens; only the first and the last for a request with `stream: false`).

Tensor contract (also in config.pbtxt; names and types: dsocr.triton.contract):
  inputs   PROMPT             UINT8 [n]           UTF-8 prompt with one "<image>"
           GLOBAL_VIEW        UINT8 [1, 3, B, B]  from `preprocess`
           TILES              UINT8 [t, 3, T, T]  from `preprocess` (t may be 0)
           SPATIAL_CROP       INT64 [1, 2]        from `preprocess`
           PARAMETERS         UINT8 [n]           UTF-8 JSON (dsocr.parameters); empty: defaults
           CANCEL             UINT8 [n]           control request, alone: abort the generation of the
                                                  request with this (Triton) request id; answered
                                                  with one final response, FINISH_REASON "cancelled"
  outputs  TEXT               UINT8 [n]           UTF-8 text generated since the last response
           FINISH_REASON      UINT8 [n]           "stop" / "length" on the last response ("cancelled"
                                                  when a CANCEL stopped it), else empty
           PROMPT_TOKENS      INT32 [1]           prompt length in tokens, image tokens included
           COMPLETION_TOKENS  INT32 [1]           tokens generated so far

The views go to vLLM as already-processed inputs (dsocr.vllm_plugin): vLLM
does not decode or tile the image again, and normalises the uint8 pixels on
the device that runs the model.

The engine (vLLM AsyncLLM) runs on an asyncio loop in its own thread:
`execute` only schedules, so Triton's request thread never blocks and vLLM
batches every request in flight. Responses are sent by a thread of their own
(dsocr.triton.streaming): the loop never waits on a send, and a response
carries everything generated since the request's last one. Every request gets exactly one
final response, whatever fails. A generation stops in the engine when its request
is cancelled: seen directly (`is_cancelled`, a gRPC stream cancelled on this
model) or through a CANCEL request naming its request id, which is how a
client of the ensemble stops it (Triton does not pass cancellation on to an
ensemble step that is already running). A CANCEL that comes before its
request is kept for a minute (dsocr.triton.inflight). Engine arguments: engine.json
next to this file, overridden by the environment (dsocr.engine_config.ENV_OVERRIDES).

An engine that dies (its EngineCore process gone) cannot come back in this
process: the model answers every request UNAVAILABLE with ENGINE_DEAD in the
message (the frontend's 503) and unloads itself with the ensemble over it, so
that Triton reports it not ready. Triton allows that in explicit
model-control mode (dsocr.serve runs it so); in the default mode the model
stays loaded and keeps answering UNAVAILABLE.
"""

import asyncio
import locale
import threading
import uuid
from pathlib import Path

# The stub's embedded interpreter starts in the C locale (ASCII); torch and
# vLLM read UTF-8 files at import time.
locale.setlocale(locale.LC_CTYPE, "C.UTF-8")

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

from dsocr.engine_config import load_engine_args  # noqa: E402
from dsocr.errors import RequestError  # noqa: E402
from dsocr.parameters import parse_parameters  # noqa: E402
from dsocr.triton import contract  # noqa: E402
from dsocr.triton import tensors as tt  # noqa: E402
from dsocr.triton.errors import ENGINE_DEAD, refusal, server_fault  # noqa: E402
from dsocr.triton.inflight import InflightRequests  # noqa: E402
from dsocr.triton.streaming import ResponseStream, Sender, Update  # noqa: E402

ENGINE_CONFIG = Path(__file__).with_name("engine.json")
HEALTH_CHECK_INTERVAL_S = 1.0


class TritonTransport:
    """A request's response sender and cancellation flag (dsocr.triton.streaming's Transport)."""

    def __init__(self, request):
        self._sender = request.get_response_sender()
        self._request = request

    def send(self, update: Update) -> None:
        flags = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if update.final else 0
        if update.kind == "end":
            self._sender.send(flags=flags)
        elif update.kind == "error":
            self._sender.send(tt.error_response(update.error, update.error_code), flags=flags)
        else:
            self._sender.send(output_response(update), flags=flags)

    def cancelled(self) -> bool:
        return self._request.is_cancelled()


def output_response(update: Update):
    return pb_utils.InferenceResponse(
        output_tensors=[
            tt.output_text("TEXT", update.text),
            tt.output_text("FINISH_REASON", update.finish_reason or ""),
            tt.output_tensor("PROMPT_TOKENS", np.array([update.prompt_tokens], dtype=np.int32)),
            tt.output_tensor("COMPLETION_TOKENS", np.array([update.completion_tokens], dtype=np.int32)),
        ]
    )


class TritonPythonModel:
    def initialize(self, args):
        from vllm.platforms import current_platform

        contract.check(args["model_config"], contract.VLLM_MODEL_TENSORS)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-loop", daemon=True)
        self._thread.start()
        self._sender = Sender(on_error=lambda message: pb_utils.Logger.log_error(f"vllm_model: {message}"))
        engine_args = load_engine_args(ENGINE_CONFIG, on_cpu=current_platform.is_cpu())
        pb_utils.Logger.log_info(f"vllm_model: engine arguments {engine_args}")
        self._engine, self._ngram_whitelist = self._run(self._start_engine(engine_args))
        # Touched only on the engine loop's thread.
        self._inflight = InflightRequests()
        self._name = args["model_name"]
        self._watcher = asyncio.run_coroutine_threadsafe(self._watch_engine(), self._loop)

    async def _start_engine(self, engine_args):
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from dsocr.triton.generation import ngram_whitelist
        from dsocr.triton.metrics import NoPrometheus, TritonStatLogger
        from dsocr.vllm_plugin import ENGINE_ARGS

        def stat_logger(vllm_config, engine_index=0):
            self._stat_loggers.append(TritonStatLogger(vllm_config, engine_index))
            return self._stat_loggers[-1]

        self._stat_loggers = []
        engine = AsyncLLM.from_engine_args(
            AsyncEngineArgs(**{**engine_args, **ENGINE_ARGS}), stat_loggers=[stat_logger, NoPrometheus]
        )
        return engine, ngram_whitelist(engine.get_tokenizer())

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _watch_engine(self) -> None:
        while not self._engine.errored:
            await asyncio.sleep(HEALTH_CHECK_INTERVAL_S)
            for stat_logger in self._stat_loggers:
                stat_logger.flush()  # what the engine's last steps added
        pb_utils.Logger.log_error(f"vllm_model: {ENGINE_DEAD} (it died); unloading the model")
        try:
            pb_utils.unload_model(self._name, unload_dependents=True)
        except Exception as exc:  # not in explicit model-control mode
            pb_utils.Logger.log_error(f"vllm_model: cannot unload itself ({exc}); answering UNAVAILABLE")

    def execute(self, requests):
        for request in requests:
            if pb_utils.get_input_tensor_by_name(request, "CANCEL") is not None:
                work = self._cancel(request)
            else:
                work = self._generate(request)
            asyncio.run_coroutine_threadsafe(work, self._loop).add_done_callback(_log_failure)
        return None

    def _stream(self, request) -> ResponseStream:
        return ResponseStream(TritonTransport(request), self._sender)

    async def _cancel(self, request):
        stream = self._stream(request)
        try:
            client_id = tt.input_text(request, "CANCEL")
            engine_ids = self._inflight.cancel(client_id)
            if engine_ids:
                await self._engine.abort(engine_ids)
                pb_utils.Logger.log_info(f"vllm_model: aborted {len(engine_ids)} generation(s) of request {client_id}")
            else:  # not here yet, or finished already
                pb_utils.Logger.log_info(f"vllm_model: request {client_id} will not run if it comes")
            stream.add("", "cancelled", 0, 0, final=True)
        except RequestError as exc:
            stream.fail(refusal(exc.code, exc.message))
        except Exception as exc:  # the engine is dead: nothing runs that could be aborted
            pb_utils.Logger.log_error(f"vllm_model: a CANCEL failed: {exc!r}")
            stream.fail(server_fault(exc), pb_utils.TritonError.INTERNAL)
        finally:
            stream.close()

    async def _generate(self, request):
        from vllm.exceptions import VLLMClientError
        from vllm.v1.engine.exceptions import EngineDeadError

        from dsocr.triton.generation import finish_reason

        stream = self._stream(request)
        request_id = uuid.uuid4().hex  # client ids need not be unique; the engine's must
        client_id = request.request_id()
        try:
            if self._engine.errored:
                stream.fail(ENGINE_DEAD, pb_utils.TritonError.UNAVAILABLE)
                return
            if not self._inflight.start(client_id, request_id):
                stream.add("", "cancelled", 0, 0, final=True)
                return
            inputs, params, counter = self._engine_request(request)
            async for output in self._engine.generate(inputs, params, request_id):
                if stream.cancelled:  # seen by the sender after the last response
                    await self._engine.abort(request_id)
                    pb_utils.Logger.log_info(f"vllm_model: request {request_id} cancelled by the client; aborted")
                    return
                counter.add(output)
                step = output.outputs[0]
                reason = finish_reason(step.finish_reason)
                stream.add(step.text, reason, counter.prompt_tokens, counter.completion_tokens, final=output.finished)
        except RequestError as exc:  # the request's fault, as our checks find it
            stream.fail(refusal(exc.code, exc.message))
        except VLLMClientError as exc:  # the request's fault, as vLLM's validation finds it
            stream.fail(refusal("invalid_request", str(exc)))
        except EngineDeadError:
            stream.fail(ENGINE_DEAD, pb_utils.TritonError.UNAVAILABLE)
        except Exception as exc:  # ours: never the client's
            pb_utils.Logger.log_error(f"vllm_model: request {request_id} failed: {exc!r}")
            stream.fail(server_fault(exc), pb_utils.TritonError.INTERNAL)
        finally:
            stream.close()
            self._inflight.finish(client_id, request_id)

    def _engine_request(self, request):
        """(engine inputs, sampling parameters, token counter) of one request; RequestError if it is bad."""
        from dsocr.triton.generation import CompletionCounter, sampling_params
        from dsocr.vllm_plugin import views_data

        prompt = tt.input_text(request, "PROMPT")
        image = views_data(
            tt.input_tensor(request, "GLOBAL_VIEW")[0],
            tt.input_tensor(request, "TILES"),
            tt.input_tensor(request, "SPATIAL_CROP"),
        )
        parameters = parse_parameters(tt.input_bytes(request, "PARAMETERS")).generation
        params = sampling_params(parameters, self._ngram_whitelist)
        return {"prompt": prompt, "multi_modal_data": {"image": image}}, params, CompletionCounter()

    def finalize(self):
        # Shutting the engine down ends its EngineCore process; without it the
        # process outlives the server.
        self._watcher.cancel()
        self._engine.shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._sender.stop()  # what the engine's last outputs left to send
        for stat_logger in self._stat_loggers:
            stat_logger.close()


def _log_failure(future) -> None:
    """What escaped a request's coroutine (its stream has already ended, or the sender logged why not)."""
    if not future.cancelled() and future.exception() is not None:
        pb_utils.Logger.log_error(f"vllm_model: a request's coroutine failed: {future.exception()!r}")
