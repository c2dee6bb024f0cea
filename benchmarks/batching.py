"""Does vLLM batch the requests that reach it through Triton? N at once against one alone, in one run.

    benchmarks/bench.sh batching [--concurrency 4 8] [--max-tokens 256] [--url HOST:PORT]

Sends the same decode-heavy request through the ensemble (tiny mode: one
512 px view; a fixed number of output tokens, ignore_eos, the n-gram rule
off) alone, then N at once, and compares the wall times: serialised requests
take N times one; batched ones little more than one while decoding dominates.
On a CPU the vision encoder is compute-bound, so image-heavy loads cannot
show batching; this load is the one that can. The stack is started here
(dsocr.serve, Triton only) unless --url names a running Triton.
Results: docs/benchmarks/batching-<device>.json, rendered into docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from benchmarks.benchkit import cli, report, systems
from benchmarks.benchkit.clients import TritonEnsemble
from benchmarks.benchkit.images import make_images
from dsocr import processes
from dsocr.triton import contract

PROMPT = "<image>\nFree OCR."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    p.add_argument("--concurrency", type=int, nargs="+", default=[4, 8], help="requests sent at once")
    p.add_argument("--max-tokens", type=int, default=256, help="output tokens per request")
    p.add_argument("--repeat", type=int, default=2, help="runs of each size; the best counts (a shared machine)")
    p.add_argument("--url", help="a running Triton's gRPC endpoint (host:port) instead of starting one")
    return cli.parse(p, argv)


async def wall_time(send, image, n: int, repeat: int) -> tuple[float, list[int]]:
    """Best wall time of `n` requests sent together, and the output tokens each got."""
    best, tokens = float("inf"), []
    for _ in range(repeat):
        started = time.monotonic()
        results = await asyncio.gather(*(send(image) for _ in range(n)))
        best = min(best, time.monotonic() - started)
        tokens = sorted({r.completion_tokens for r in results})
    return best, tokens


async def measure(args, url: str) -> dict:
    image = make_images("small", 1)[0]
    settings = {"max_tokens": args.max_tokens, "ignore_eos": True, "resolution_mode": "tiny", "ngram_size": 0}
    ensemble = TritonEnsemble(url, PROMPT, settings)
    try:
        await wall_time(ensemble, image, 1, 1)  # warm-up
        alone, tokens = await wall_time(ensemble, image, 1, args.repeat)
        print(f"[bench] 1 request, {tokens} tokens: {alone:.2f} s", flush=True)
        levels = [{"requests": 1, "wall_s": alone, "vs_one": 1.0, "completion_tokens": tokens}]
        for n in args.concurrency:
            together, tokens = await wall_time(ensemble, image, n, args.repeat)
            levels.append({"requests": n, "wall_s": together, "vs_one": together / alone, "completion_tokens": tokens})
            print(f"[bench] {n} at once: {together:.2f} s = {together / alone:.2f}x one (serialised: {n}x)", flush=True)
    finally:
        await ensemble.close()
    return {"levels": levels}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    model = args.model or systems.default_model(args.device)
    data = report.new_run(
        args.device,
        {
            "model": model,
            "resolution_mode": "tiny",
            "image_set": "small",
            "max_tokens": args.max_tokens,
            "ngram_size": 0,
            "repeat": args.repeat,
        },
    )
    if args.url:
        data.update(asyncio.run(measure(args, args.url)))
    else:
        ports = processes.free_ports()
        command = [*systems.stack_command(model, args.device, ports), "--no-frontend"]
        log = Path(tempfile.mkdtemp(prefix="dsocr-bench-batching-")) / "stack.log"
        with systems.ServerProcess(
            "our stack (dsocr.serve)", command, systems.serve_env(model, args.device), log
        ) as server:
            server.wait_ready(
                f"http://127.0.0.1:{ports['triton_http_port']}{contract.ready_path()}", args.ready_timeout_s
            )
            data.update(asyncio.run(measure(args, f"127.0.0.1:{ports['triton_grpc_port']}")))
    return report.publish("batching", data, args)


if __name__ == "__main__":
    main()
