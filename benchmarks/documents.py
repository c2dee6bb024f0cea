"""A PDF through `/v1/ocr` against the offline floor, in one run.

    benchmarks/bench.sh documents [--pages 8] [--page-points 300 300] [--max-tokens 16] [--passes 2]

Three ways to OCR the same N-page PDF, the same model and engine settings, the same work per page
(Gundam mode with at most --max-crops tiles, DeepSeek's document prompt, --max-tokens output tokens):

  (a) document   our stack: the whole PDF in one /v1/ocr request; its pages fan out at once
                 (rendered in the frontend's workers, preprocessed by Triton, batched by vLLM)
  (b) one by one our stack: the same pages, one /v1/ocr request per page, each after the last
                 (what a client loop without the fan-out gets: the page-parallelism figure is a/b)
  (f) floor      DeepSeek's own script's way, offline: every page rendered with the same renderer,
                 then one `LLM.generate` over all of them (vLLM's processor makes the views), in a
                 process of its own

Each in --passes passes, the second in the reverse order, so that a machine that gets slower or
faster weighs on both alike; the best pass counts. Also measured: the render time per page
(PDFium, one worker, in this process). Results: docs/benchmarks/documents-<device>.json and the
report's block. --url measures a running frontend for (a) and (b) instead of starting the stack
(the smoke test does); --systems picks which run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from benchmarks.benchkit import cli, report, systems
from benchmarks.benchkit.images import text_page
from dsocr import processes, prompts
from dsocr.documents.limits import DEFAULT_DPI
from dsocr.documents.render import DocumentRenderer

SYSTEMS = {"document": "(a) one /v1/ocr request", "one_by_one": "(b) a request per page", "floor": "(f) offline"}
DEFAULTS = {
    "cpu": {"pages": 8, "page_points": [300, 300], "max_tokens": 16},
    "gpu": {"pages": 64, "page_points": [595, 842], "max_tokens": 512},
}
HTTP_TIMEOUT_S = 3600.0


def parse_args(argv: list[str] | None = None):
    p = cli.parser(__doc__)
    p.add_argument("--pages", type=int, help="pages in the PDF (default: 8 on CPU, 64 on GPU)")
    p.add_argument("--page-points", type=float, nargs=2, help="page width and height in points (A4: 595 842)")
    p.add_argument("--max-tokens", type=int, help="output tokens per page")
    p.add_argument("--max-crops", type=int, default=6, help="Gundam's tile limit (vLLM's processor: 6)")
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    p.add_argument("--url", help="a running frontend for (a) and (b); default: start the stack")
    p.add_argument("--child", choices=["floor"], help=argparse.SUPPRESS)
    p.add_argument("--child-config", type=Path, help=argparse.SUPPRESS)
    return cli.parse(p, argv, lambda args: DEFAULTS[args.device])


def document(pages: int, points: list[float]) -> bytes:
    """A PDF of distinct text pages, `points` in size (Pillow's writer: one image per page at 72 DPI)."""
    width, height = (round(side) for side in points)
    images = [text_page(width * 2, height * 2, seed=index) for index in range(pages)]
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", save_all=True, append_images=images[1:], resolution=144)
    return buffer.getvalue()


def ocr_body(args, pdf: bytes, pages: str | None = None) -> dict[str, Any]:
    url = "data:application/pdf;base64," + base64.b64encode(pdf).decode()
    body: dict[str, Any] = {
        "model": systems.SERVED_NAME,
        "document": {"type": "document_url", "document_url": url},
        "max_tokens": args.max_tokens,
        "resolution_mode": "gundam",
        "max_crops": args.max_crops,
        "include_blocks": False,
    }  # fmt: skip
    if pages is not None:
        body["pages"] = pages
    return body


# --- (a) and (b): our stack ----------------------------------------------------------


async def through_the_stack(args, url: str, pdf: bytes, name: str) -> dict:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:

        async def ocr(pages: str | None) -> list[dict]:
            response = await client.post(f"{url}/v1/ocr", json=ocr_body(args, pdf, pages))
            if response.status_code != 200:
                raise RuntimeError(f"/v1/ocr: {response.status_code} {response.text[:500]}")
            return response.json()["pages"]

        await ocr("0")  # warm: the render workers, the model's first page
        started = time.perf_counter()
        if name == "document":
            pages = await ocr(None)
        else:
            pages = [page for index in range(args.pages) for page in await ocr(str(index))]
        seconds = time.perf_counter() - started
    return outcome(seconds, [page["usage"]["completion_tokens"] for page in pages])


def outcome(seconds: float, completion_tokens: list[int]) -> dict:
    return {
        "seconds": seconds,
        "pages": len(completion_tokens),
        "pages_per_s": len(completion_tokens) / seconds,
        "completion_tokens": sum(completion_tokens),
    }


def stack_systems(args, model: str, pdf: bytes, names: list[str], logs: Path) -> dict[str, dict]:
    if args.url:
        return {name: asyncio.run(through_the_stack(args, args.url, pdf, name)) for name in names}
    ports = processes.free_ports()
    command = systems.stack_command(model, args.device, ports)
    with systems.ServerProcess(
        "our stack (dsocr.serve)", command, systems.serve_env(model, args.device), logs / "stack.log"
    ) as server:
        url = f"http://127.0.0.1:{ports['port']}"
        server.wait_ready(f"{url}/health/ready", args.ready_timeout_s)
        return {name: asyncio.run(through_the_stack(args, url, pdf, name)) for name in names}


# --- (f): the offline floor, in a child process ------------------------------------------


def floor_system(args, model: str, pdf: bytes, logs: Path) -> dict:
    (logs / "document.pdf").write_bytes(pdf)
    config = {"engine_args": systems.engine_args(model, args.device), "pdf": str(logs / "document.pdf")}
    argv = ["--device", args.device, "--max-tokens", str(args.max_tokens), "--child", "floor"]
    return systems.run_child("offline floor", __spec__.name, argv, config, systems.serve_env(model, args.device), logs)


def floor_child(args) -> None:
    from vllm import LLM

    from dsocr.parameters import GenerationParameters
    from dsocr.triton.generation import ngram_whitelist, sampling_params

    config = json.loads(args.child_config.read_text())
    pdf = Path(config["pdf"]).read_bytes()
    llm = LLM(**config["engine_args"])
    parameters = GenerationParameters(max_tokens=args.max_tokens)
    params = sampling_params(parameters, ngram_whitelist(llm.get_tokenizer()))
    prompt = f"<image>\n{prompts.DEFAULT}"
    llm.generate([{"prompt": prompt, "multi_modal_data": {"image": page}} for page in rendered(pdf)[:1]], params)
    started = time.perf_counter()
    pages = rendered(pdf)
    outputs = llm.generate([{"prompt": prompt, "multi_modal_data": {"image": page}} for page in pages], params)
    seconds = time.perf_counter() - started
    Path(config["out"]).write_text(json.dumps(outcome(seconds, [len(o.outputs[0].token_ids) for o in outputs])))


def rendered(pdf: bytes) -> list[Image.Image]:
    """Every page rendered at DeepSeek's 144 DPI by the renderer the stack uses, as RGB images."""

    async def render() -> list[bytes]:
        async with DocumentRenderer(workers=1) as renderer, await renderer.open(pdf) as opened:
            return [(await renderer.render(opened, index, DEFAULT_DPI)).image for index in range(opened.page_count)]

    return [Image.open(io.BytesIO(png)).convert("RGB") for png in asyncio.run(render())]


def render_ms_per_page(pdf: bytes) -> float:
    async def render() -> float:
        async with DocumentRenderer(workers=1) as renderer, await renderer.open(pdf) as opened:
            await renderer.render(opened, 0, DEFAULT_DPI)  # the worker started and the PDF parsed
            started = time.perf_counter()
            for index in range(opened.page_count):
                await renderer.render(opened, index, DEFAULT_DPI)
            return (time.perf_counter() - started) * 1000 / opened.page_count

    return asyncio.run(render())


# --- the run -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child:
        floor_child(args)
        return {}
    model = args.model or systems.default_model(args.device)
    pdf = document(args.pages, args.page_points)
    logs = Path(tempfile.mkdtemp(prefix="dsocr-bench-documents-"))
    data = report.new_run(
        args.device,
        {
            "model": model,
            "pages": args.pages,
            "page_points": args.page_points,
            "dpi": DEFAULT_DPI,
            "max_tokens": args.max_tokens,
            "max_crops": args.max_crops,
            "document_bytes": len(pdf),
            "passes": args.passes,
        },
    )
    data["render_ms_per_page"] = render_ms_per_page(pdf)
    runs: dict[str, list[dict]] = {name: [] for name in SYSTEMS if name in args.systems}
    stack = [name for name in runs if name != "floor"]
    for index in range(args.passes):
        order = ["stack", "floor"][:: -1 if index % 2 else 1]
        for part in order:
            if part == "stack" and stack:
                for name, result in stack_systems(args, model, pdf, stack, logs).items():
                    runs[name].append(result)
            elif part == "floor" and "floor" in runs:
                runs["floor"].append(floor_system(args, model, pdf, logs))
    best = {name: max(passes, key=lambda run: run["pages_per_s"]) for name, passes in runs.items()}
    data["systems"] = {name: best[name] | {"passes": passes} for name, passes in runs.items()}
    return report.publish("documents", data, args)


if __name__ == "__main__":
    main()
