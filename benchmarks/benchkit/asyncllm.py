"""System (d): vLLM's AsyncLLM in-process, no server at all: the floor.

It gets what a user of plain vLLM would hand it: the decoded PIL image and
DeepSeek's prompt, so vLLM's own processor makes the views (Gundam, the only
mode vLLM's DeepSeek-OCR processor has). The sampling parameters are built by
the same function our Triton model uses (`dsocr.triton.generation.sampling_params`),
so the n-gram rule, ignore_eos, and special-token handling are identical.

Runs in a child process of the comparison (`benchmarks.compare --child`):
the engine's memory and processes go away with it. For the host-cost
benchmark, which runs every system at once in alternating rounds, the same
engine sits behind a minimal HTTP endpoint (`python -m
benchmarks.benchkit.asyncllm`): one POST of an image's bytes per request,
answered with the request's timing measured in the process, so that the
process's CPU time is the engine client's and next to nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import io
import json
import uuid
from pathlib import Path

from PIL import Image, ImageOps

from benchmarks.benchkit.images import Sample
from benchmarks.benchkit.load import RequestResult, Stopwatch


def decode(data: bytes) -> Image.Image:
    """DeepSeek's image loader: EXIF orientation applied, RGB."""
    return ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")


def generation_parameters(max_tokens: int):
    from dsocr.parameters import GenerationParameters

    return GenerationParameters(max_tokens=max_tokens, ignore_eos=True, skip_special_tokens=False)


def engine_inputs(prompt: str, image: Image.Image) -> dict:
    return {"prompt": prompt, "multi_modal_data": {"image": image}}


class InProcessEngine:
    """Sends one request per call to an AsyncLLM and times it like the HTTP and gRPC clients."""

    def __init__(self, engine, prompt: str, max_tokens: int) -> None:
        from dsocr.triton.generation import ngram_whitelist, sampling_params

        self._engine, self._prompt = engine, prompt
        self._params = sampling_params(generation_parameters(max_tokens), ngram_whitelist(engine.get_tokenizer()))

    async def __call__(self, image: Sample) -> RequestResult:
        return await self.generate(image.data)

    async def generate(self, data: bytes) -> RequestResult:
        clock = Stopwatch()
        # Off the event loop, as a careful user would: a page's decode must
        # not stall the other requests' streams.
        pil_image = await asyncio.to_thread(decode, data)
        prompt_tokens = completion_tokens = 0
        async for output in self._engine.generate(
            engine_inputs(self._prompt, pil_image), self._params, uuid.uuid4().hex
        ):
            step = output.outputs[0]
            clock.saw(step.text)
            completion_tokens += len(step.token_ids)
            prompt_tokens = len(output.prompt_token_ids or ()) or prompt_tokens
        return clock.result(prompt_tokens, completion_tokens)


def start_engine(engine_args: dict):
    from vllm import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    return AsyncLLM.from_engine_args(AsyncEngineArgs(**engine_args))


READY_PATH, GENERATE_PATH = "/ready", "/generate"


def serve(port: int, config: dict) -> None:
    """The engine behind `POST /generate` (the image's bytes in, the request's timing out as JSON) until killed."""
    from aiohttp import web

    async def start(app: web.Application):
        engine = start_engine(config["engine_args"])
        app["send"] = InProcessEngine(engine, config["prompt"], config["max_tokens"])
        yield
        engine.shutdown()

    async def ready(request: web.Request) -> web.Response:
        return web.Response(text="ready")

    async def generate(request: web.Request) -> web.Response:
        result = await request.app["send"].generate(await request.read())
        return web.json_response(dataclasses.asdict(result))

    app = web.Application(client_max_size=64 * 2**20)
    app.cleanup_ctx.append(start)
    app.add_routes([web.get(READY_PATH, ready), web.post(GENERATE_PATH, generate)])
    web.run_app(app, host="127.0.0.1", port=port, print=None)


def main() -> None:
    p = argparse.ArgumentParser(description=serve.__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--config", type=Path, required=True, help="JSON: engine_args, prompt, max_tokens")
    args = p.parse_args()
    serve(args.port, json.loads(args.config.read_text()))


if __name__ == "__main__":
    main()
