"""vLLM model: decoupled, one streamed response per engine step.

Tensor contract (also in config.pbtxt):
  inputs   PROMPT             UINT8 [n]        UTF-8 prompt with one "<image>"
           IMAGE_RGB          UINT8 [H, W, 3]  the decoded image
           PARAMETERS         UINT8 [n]        UTF-8 JSON settings (dsocr.sampling); empty: defaults
  outputs  TEXT               UINT8 [n]        UTF-8 text generated since the last response
           FINISH_REASON      UINT8 [n]        "stop" / "length" on the last response, else empty
           PROMPT_TOKENS      INT32 [1]        prompt length in tokens, image tokens included
           COMPLETION_TOKENS  INT32 [1]        tokens generated so far

The engine (vLLM AsyncLLM) runs on an asyncio loop in its own thread:
`execute` only schedules, so Triton's request thread never blocks and vLLM
batches every request in flight. Engine arguments: engine.json next to this
file, overridden by MODEL, GPU_MEMORY_UTILIZATION, MAX_MODEL_LEN,
TENSOR_PARALLEL_SIZE.
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
from PIL import Image  # noqa: E402

from dsocr import triton_tensors as tt  # noqa: E402
from dsocr.engine_config import load_engine_args  # noqa: E402
from dsocr.settings import ParameterError, parse_settings  # noqa: E402

ENGINE_CONFIG = Path(__file__).with_name("engine.json")


class ResponseStream:
    """One request's responses; guarantees exactly one final flag."""

    def __init__(self, request):
        self._sender = request.get_response_sender()
        self._request = request
        self.closed = False

    def cancelled(self) -> bool:
        return self._request.is_cancelled()

    def send(self, response, final: bool = False) -> None:
        flags = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL if final else 0
        self._sender.send(response, flags=flags)
        self.closed = final

    def close(self) -> None:
        if not self.closed:
            self._sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
            self.closed = True


def output_response(text: str, finish_reason: str | None, prompt_tokens: int, completion_tokens: int):
    return pb_utils.InferenceResponse(
        output_tensors=[
            tt.output_text("TEXT", text),
            tt.output_text("FINISH_REASON", finish_reason or ""),
            tt.output_tensor("PROMPT_TOKENS", np.array([prompt_tokens], dtype=np.int32)),
            tt.output_tensor("COMPLETION_TOKENS", np.array([completion_tokens], dtype=np.int32)),
        ]
    )


class TritonPythonModel:
    def initialize(self, args):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vllm-loop", daemon=True)
        self._thread.start()
        from vllm.platforms import current_platform

        engine_args = load_engine_args(ENGINE_CONFIG, on_cpu=current_platform.is_cpu())
        pb_utils.Logger.log_info(f"vllm_model: engine arguments {engine_args}")
        self._engine = self._run(self._create_engine(engine_args))

    async def _create_engine(self, engine_args):
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        return AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_args))

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def execute(self, requests):
        for request in requests:
            asyncio.run_coroutine_threadsafe(self._generate(request), self._loop)
        return None

    async def _generate(self, request):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        stream = ResponseStream(request)
        request_id = uuid.uuid4().hex
        try:
            prompt = tt.input_text(request, "PROMPT")
            image = Image.fromarray(tt.input_tensor(request, "IMAGE_RGB").numpy())
            settings = parse_settings(tt.input_bytes(request, "PARAMETERS")).generation
            params = SamplingParams(
                max_tokens=settings.max_tokens,
                temperature=settings.temperature,
                top_p=settings.top_p,
                seed=settings.seed,
                stop=list(settings.stop),
                skip_special_tokens=settings.skip_special_tokens,
                ignore_eos=settings.ignore_eos,
                output_kind=RequestOutputKind.DELTA,
            )
            inputs = {"prompt": prompt, "multi_modal_data": {"image": image}}
            prompt_tokens = completion_tokens = 0
            async for output in self._engine.generate(inputs, params, request_id):
                if stream.cancelled():
                    await self._engine.abort(request_id)
                    return
                step = output.outputs[0]
                prompt_tokens = len(output.prompt_token_ids or ()) or prompt_tokens
                completion_tokens += len(step.token_ids)
                stream.send(
                    output_response(step.text, step.finish_reason, prompt_tokens, completion_tokens),
                    final=output.finished,
                )
        except (ParameterError, ValueError) as exc:
            stream.send(tt.error_response(str(exc)), final=True)
        except Exception as exc:
            pb_utils.Logger.log_error(f"vllm_model: request {request_id} failed: {exc!r}")
            stream.send(tt.error_response(f"generation failed: {exc}", pb_utils.TritonError.INTERNAL), final=True)
        finally:
            stream.close()

    def finalize(self):
        # Shutting the engine down ends its EngineCore process; without it the
        # process outlives the server.
        self._engine.shutdown()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
