"""`dsocr ocr` on a corpus against the same pages sent one request at a time, in one run.

    benchmarks/bench.sh batch [--page-points 300 300] [--max-tokens 16] [--passes 2] [--url URL]

A corpus of 20 pages in several documents (PDFs of 8, 6, 3 and 1 pages, two page images), OCR'd with
the same work per page (DeepSeek's document prompt, --resolution-mode with at most --max-crops tiles,
--max-tokens output tokens) two ways against the same stack:

  (a) dsocr ocr    the command as a user runs it (a subprocess): documents in flight at once, each
                   split into requests of a few pages, pages in flight bounded by --concurrency
  (b) one by one   every page its own /v1/ocr request, each after the last (a plain client loop)

pages/s of (a) is the run's own (its summary.json: from the first document read to the last output
written); its wall time, interpreter start included, is recorded too. Each in --passes passes, the
second in the reverse order, the best counting. --url measures a running frontend instead of starting
the stack (the smoke test does). Results: docs/benchmarks/batch-<device>.json and the report's block.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.benchkit import cli, report, systems
from benchmarks.benchkit.images import text_page
from dsocr import processes

# Pages per document of the corpus; 0: a page image (PNG) rather than a PDF.
CORPUS = (8, 6, 3, 1, 0, 0)
SYSTEMS = {"dsocr_ocr": "(a) dsocr ocr", "one_by_one": "(b) a request per page, one at a time"}
DEFAULTS = {
    "cpu": {"page_points": [300, 300], "max_tokens": 16, "resolution_mode": "gundam"},
    "gpu": {"page_points": [595, 842], "max_tokens": 512, "resolution_mode": "gundam"},
}
HTTP_TIMEOUT_S = 3600.0


def parse_args(argv: list[str] | None = None):
    p = cli.parser(__doc__)
    p.add_argument("--page-points", type=float, nargs=2, help="page width and height in points (A4: 595 842)")
    p.add_argument("--max-tokens", type=int, help="output tokens per page")
    p.add_argument("--resolution-mode", help="DeepSeek's resolution mode (default: gundam)")
    p.add_argument("--max-crops", type=int, default=6, help="Gundam's tile limit")
    p.add_argument("--concurrency", type=int, help="dsocr ocr's pages in flight (default: its own)")
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--corpus", type=int, nargs="+", default=list(CORPUS), help="pages per document; 0: an image")
    p.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    p.add_argument("--url", help="a running frontend; default: start the stack")
    return cli.parse(p, argv, lambda args: DEFAULTS[args.device])


# --- the corpus ---------------------------------------------------------------------------


def write_corpus(folder: Path, layout: list[int], points: list[float]) -> list[tuple[Path, int]]:
    """Distinct text pages, `points` in size (rendered by the service at 144 DPI: twice the points in pixels).
    Each document with its page count."""
    width, height = (round(side * 2) for side in points)
    documents, seed = [], 0
    for number, pages in enumerate(layout):
        images = [text_page(width, height, seed=seed + index) for index in range(max(pages, 1))]
        seed += len(images)
        buffer = io.BytesIO()
        if pages:
            images[0].save(buffer, "PDF", save_all=True, append_images=images[1:], resolution=144)
            path = folder / f"document-{number}.pdf"
        else:
            images[0].save(buffer, "PNG")
            path = folder / f"image-{number}.png"
        path.write_bytes(buffer.getvalue())
        documents.append((path, len(images)))
    return documents


# --- (a) dsocr ocr ---------------------------------------------------------------------------


def dsocr_ocr(args, url: str, corpus: Path, work: Path) -> dict:
    out = Path(tempfile.mkdtemp(prefix="out-", dir=work))  # a fresh OUT_DIR: nothing to skip
    command = [sys.executable, "-m", "dsocr.cli", "ocr", str(corpus), "-o", str(out), "--url", url]
    command += [*request_flags(args), "--progress", "none"]
    if args.concurrency:
        command += ["--concurrency", str(args.concurrency)]
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True)
    wall_s = time.perf_counter() - started
    if run.returncode != 0:
        raise RuntimeError(f"dsocr ocr exited with {run.returncode}:\n{run.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    return outcome(summary["seconds"], summary["pages"], summary["completion_tokens"]) | {"wall_s": wall_s}


def request_flags(args) -> list[str]:
    return [f"--{name.replace('_', '-')}={value}" for name, value in request_fields(args).items()]


def request_fields(args) -> dict[str, Any]:
    """The work per page, the same for (a) and (b); the tile limit is Gundam's alone (the service refuses it
    with another mode)."""
    fields = {"max_tokens": args.max_tokens, "resolution_mode": args.resolution_mode}
    return fields | ({"max_crops": args.max_crops} if args.resolution_mode == "gundam" else {})


# --- (b) one request per page, one at a time ------------------------------------------------------


async def one_by_one(args, url: str, documents: list[tuple[Path, int]]) -> dict:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
        completion_tokens, pages = 0, 0
        started = time.perf_counter()
        for path, count in documents:
            data = path.read_bytes()
            for index in range(count):
                answer = await ocr_page(client, url, args, data, path, index)
                completion_tokens += answer["usage"]["completion_tokens"]
                pages += len(answer["pages"])
        seconds = time.perf_counter() - started
    return outcome(seconds, pages, completion_tokens)


async def ocr_page(client: httpx.AsyncClient, url: str, args, data: bytes, path: Path, index: int) -> dict:
    media_type = "image/png" if path.suffix == ".png" else "application/pdf"
    document = f"data:{media_type};base64,{base64.b64encode(data).decode()}"
    body: dict[str, Any] = {
        "model": None,
        "document": {"type": "document_url", "document_url": document},
        "pages": [index],
        **request_fields(args),
    }  # fmt: skip
    response = await client.post(f"{url}/v1/ocr", json=body)
    if response.status_code != 200:
        raise RuntimeError(f"/v1/ocr: {response.status_code} {response.text[:500]}")
    return response.json()


def outcome(seconds: float, pages: int, completion_tokens: int) -> dict:
    return {"seconds": seconds, "pages": pages, "pages_per_s": pages / seconds, "completion_tokens": completion_tokens}


# --- the run ---------------------------------------------------------------------------------------


def measure(args, url: str, corpus: Path, documents: list[tuple[Path, int]], work: Path) -> dict[str, list[dict]]:
    asyncio.run(warm(args, url, documents[0][0]))
    runs: dict[str, list[dict]] = {name: [] for name in SYSTEMS if name in args.systems}
    for index in range(args.passes):
        for name in list(runs)[:: -1 if index % 2 else 1]:
            if name == "dsocr_ocr":
                runs[name].append(dsocr_ocr(args, url, corpus, work))
            else:
                runs[name].append(asyncio.run(one_by_one(args, url, documents)))
    return runs


async def warm(args, url: str, path: Path) -> None:
    """The render workers started and the model's first page done, before anything is timed."""
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
        await ocr_page(client, url, args, path.read_bytes(), path, 0)


def with_stack(args, work: Path, measure_at) -> dict[str, list[dict]]:
    if args.url:
        return measure_at(args.url)
    model = args.model or systems.default_model(args.device)
    ports = processes.free_ports()
    command = systems.stack_command(model, args.device, ports)
    env = systems.serve_env(model, args.device)
    with systems.ServerProcess("our stack (dsocr.serve)", command, env, work / "stack.log") as server:
        url = f"http://127.0.0.1:{ports['port']}"
        server.wait_ready(f"{url}/health/ready", args.ready_timeout_s)
        return measure_at(url)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="dsocr-bench-batch-"))
    corpus = work / "corpus"
    corpus.mkdir()
    documents = write_corpus(corpus, args.corpus, args.page_points)
    pages = sum(count for _, count in documents)
    data = report.new_run(
        args.device,
        {
            "model": args.model or systems.default_model(args.device),
            "corpus": args.corpus,
            "pages": pages,
            "page_points": args.page_points,
            "max_tokens": args.max_tokens,
            "resolution_mode": args.resolution_mode,
            "max_crops": args.max_crops,
            "concurrency": args.concurrency,
            "passes": args.passes,
        },
    )
    runs = with_stack(args, work, lambda url: measure(args, url, corpus, documents, work))
    best = {name: max(passes, key=lambda run: run["pages_per_s"]) for name, passes in runs.items()}
    data["systems"] = {name: best[name] | {"passes": passes} for name, passes in runs.items()}
    return report.publish("batch", data, args)


if __name__ == "__main__":
    main()
