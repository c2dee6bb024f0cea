"""Our stack against `vllm serve` on the same model, images and engine settings, in one run.

    benchmarks/bench.sh compare [--workload short|long] [--concurrency 1 4 8] [--max-tokens 32] ...

Four systems, one after another (each engine reserves its KV cache), each
started here and stopped without leftovers; in --passes passes (default 2),
the second in the reverse order (a b c d, then d c b a), each level pooling
the requests of both, so that a machine that gets slower or faster during
the run weighs on every system alike:

  (a) our OpenAI frontend over Triton      HTTP+SSE, the shared OpenAI client
  (b) the ensemble over Triton gRPC        the same Triton as (a), no frontend
  (c) `vllm serve`, DeepSeek's flags       HTTP+SSE, the same client as (a)
  (d) vLLM AsyncLLM in-process             no server: the floor

Every request: one image and "Free OCR.", Gundam mode with 6 tiles at most
(vLLM's DeepSeek-OCR processor knows no other mode, so ours is asked for
it explicitly), exactly --max-tokens output tokens (ignore_eos), greedy, the
n-gram rule on. Per concurrency level: images/s, output tokens/s, time to
first token and end-to-end latency p50/p95, and their ratios to (c) and (d).
On the stack it also measures one request's stages (Triton statistics and
vLLM's engine metrics). Results go to docs/benchmarks/compare-<device>.json
(compare_long-<device>.json for --workload long), then docs/BENCHMARKS.md and
docs/benchmarks-<device>.png are re-rendered.

--frontend-url/--triton-*-url use an already running stack for (a)/(b)
instead of starting one (the smoke test does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.benchkit import cli, report, systems
from benchmarks.benchkit.asyncllm import InProcessEngine, start_engine
from benchmarks.benchkit.clients import OpenAIChat, TritonEnsemble, prometheus_values, triton_stats
from benchmarks.benchkit.images import IMAGE_SETS, Sample, make_images
from benchmarks.benchkit.load import RequestResult, pooled, requests_for, run_level
from dsocr import processes

SYSTEM_NAMES = tuple(report.SYSTEMS)
# vLLM's own clocks for a request, on Triton's metrics port: sums, and the counts that say a request landed.
ENGINE_E2E, ENGINE_TTFT, ENGINE_TTFT_COUNT, ENGINE_FINISHED = (
    "vllm:e2e_request_latency_seconds_total",
    "vllm:time_to_first_token_seconds_total",
    "vllm:time_to_first_token_count_total",
    "vllm:request_success_total",
)
ENGINE_METRICS = (ENGINE_E2E, ENGINE_TTFT, ENGINE_TTFT_COUNT, ENGINE_FINISHED)
# Two workloads, each its own result and report block:
#   short  few output tokens: the image's path (decode, views, vision encoder) dominates
#   long   a page of text out: the per-token path (engine steps, streaming) dominates,
#          as in OCR of real documents (a dense page is 1000-3000 tokens)
WORKLOADS = {"short": "compare", "long": "compare_long"}  # -> result name
DEFAULTS = {  # (device, workload) -> what a run measures unless told otherwise
    ("cpu", "short"): {
        "image_set": "small",
        "images": 4,
        "concurrency": [1, 4, 8],
        "max_tokens": 32,
        "min_requests": 4,
        "ttft_pairs": 20,
    },
    ("cpu", "long"): {
        "image_set": "small",
        "images": 4,
        "concurrency": [1, 4, 8],
        "max_tokens": 1024,
        "min_requests": 4,
        "ttft_pairs": 0,
    },
    ("gpu", "short"): {
        "image_set": "page",
        "images": 32,
        "concurrency": [1, 4, 8, 16, 32, 64],
        "max_tokens": 256,
        "min_requests": 8,
        "ttft_pairs": 20,
    },
    ("gpu", "long"): {
        "image_set": "page",
        "images": 32,
        "concurrency": [1, 4, 8, 16, 32, 64],
        "max_tokens": 2048,
        "min_requests": 8,
        "ttft_pairs": 0,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    p.add_argument(
        "--workload",
        choices=WORKLOADS,
        default="short",
        help="short: few output tokens (the image path); long: a page of text (the token path)",
    )
    p.add_argument("--systems", nargs="+", choices=SYSTEM_NAMES, default=list(SYSTEM_NAMES))
    p.add_argument("--image-set", choices=IMAGE_SETS, help="default: small on CPU, page on GPU")
    p.add_argument("--images", type=int, help="distinct images (default: 4 on CPU, 32 on GPU)")
    p.add_argument("--concurrency", type=int, nargs="+", help="default: 1 4 8 on CPU, up to 64 on GPU")
    p.add_argument(
        "--max-tokens",
        type=int,
        help="output tokens per request (default: short 32 on CPU, 256 on GPU; long 1024, 2048)",
    )
    p.add_argument("--passes", type=int, default=2, help="passes over the systems, alternating their order")
    p.add_argument("--requests-per-worker", type=int, default=1, help="requests each concurrent client sends")
    p.add_argument(
        "--min-requests", type=int, help="at least this many requests per level and pass (default: 4 on CPU)"
    )
    p.add_argument("--warmup", type=int, default=2, help="untimed requests per system first")
    p.add_argument(
        "--breakdown-requests",
        type=int,
        default=5,
        help="sequential request pairs, (b) then (a), for the stage breakdown",
    )
    p.add_argument(
        "--ttft-pairs",
        type=int,
        help="sequential pairs of least-work requests for the frontend's added time to first token "
        "(default: 20 for the short workload; 0, a property of the path measured once, for long)",
    )
    p.add_argument("--instruction", default="Free OCR.")
    p.add_argument("--max-crops", type=int, default=6, help="Gundam's tile limit (vLLM's processor: 6)")
    p.add_argument("--ngram-size", type=int, default=30)
    p.add_argument("--window-size", type=int, default=90)
    p.add_argument("--frontend-url", help="use this running frontend for (a)")
    p.add_argument("--triton-grpc-url", help="use this running Triton (host:port) for (b)")
    p.add_argument("--triton-http-url", help="its HTTP endpoint (statistics)")
    p.add_argument("--triton-metrics-url", help="its metrics endpoint (vLLM's engine metrics)")
    p.add_argument("--logs-dir", type=Path, help="server logs (default: a temporary folder)")
    p.add_argument("--child", choices=["asyncllm"], help=argparse.SUPPRESS)
    p.add_argument("--child-config", type=Path, help=argparse.SUPPRESS)
    args = cli.parse(p, argv, lambda args: DEFAULTS[args.device, args.workload])
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the child of (d)
    return args


# --- what each system is asked, so that all do the same work ------------------------


def ensemble_parameters(args) -> dict:
    return {
        "max_tokens": args.max_tokens,
        "ignore_eos": True,
        "temperature": 0,
        "skip_special_tokens": False,
        "resolution_mode": "gundam",
        "max_crops": args.max_crops,
        "ngram_size": args.ngram_size,
        "window_size": args.window_size,
    }


def frontend_extra_body(args) -> dict:
    parameters = ensemble_parameters(args)
    return {
        key: parameters[key]
        for key in ("ignore_eos", "skip_special_tokens", "resolution_mode", "max_crops", "ngram_size", "window_size")
    }


def ngram_whitelist(model: str) -> list[int]:
    from transformers import AutoTokenizer

    from dsocr.triton.generation import ngram_whitelist as whitelist_of

    return list(whitelist_of(AutoTokenizer.from_pretrained(model)))


def vllm_serve_extra_body(args, whitelist: list[int]) -> dict:
    """vLLM's own request extensions for the same settings (DeepSeek's recipe for the n-gram rule)."""
    return {
        "ignore_eos": True,
        "skip_special_tokens": False,
        "vllm_xargs": {
            "ngram_size": args.ngram_size,
            "window_size": args.window_size,
            "whitelist_token_ids": whitelist,
        },
    }


def prompt(args) -> str:
    """What the frontend makes of an image part and a text part."""
    return f"<image>\n{args.instruction}"


# --- running levels -----------------------------------------------------------------


async def measure(name: str, send, images: list[Sample], args) -> list[dict]:
    """Warm up, then one level per concurrency."""
    for index in range(args.warmup):
        await send(images[index % len(images)])
    levels = []
    for concurrency in args.concurrency:
        requests = requests_for(concurrency, args.requests_per_worker, args.min_requests)
        result = await run_level(send, images, concurrency, requests)
        print(
            f"[bench] {report.SYSTEMS[name]:34} c={concurrency:<3} {result.images_per_s:7.3f} images/s "
            f"{result.output_tokens_per_s:8.1f} tok/s  TTFT p50 {result.ttft_p50_s * 1000:8.1f} ms  "
            f"e2e p50 {result.e2e_p50_s * 1000:8.1f} ms  prompt tokens {result.prompt_tokens}",
            flush=True,
        )
        levels.append(result.to_dict())
    return levels


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def stage_seconds(before: dict, after: dict, model: str, kinds: tuple[str, ...]) -> float:
    """Seconds `model` spent in `kinds` between two statistics snapshots."""
    return sum(after[model][kind][1] - before[model][kind][1] for kind in kinds) / 1e9


@dataclass
class Measured:
    """One request alone on the stack, with what the engine's clocks say of it."""

    result: RequestResult
    engine_e2e_s: float
    engine_ttft_s: float
    stats: tuple[dict, dict] | None  # Triton's statistics before and after

    @property
    def outside_engine_s(self) -> float:
        return self.result.e2e_s - self.engine_e2e_s


# The vLLM model sends the engine's metrics to Triton once a second (dsocr.triton.metrics).
METRICS_LAG_S = 1.0
METRICS_WAIT_S = 10 * METRICS_LAG_S


async def settled_engine_metrics(metrics_url: str) -> dict[str, float]:
    """The engine's metrics once they stay still for longer than their lag: every earlier request counted."""
    deadline = time.monotonic() + METRICS_WAIT_S
    values = prometheus_values(metrics_url, ENGINE_METRICS)
    while time.monotonic() < deadline:
        await asyncio.sleep(1.2 * METRICS_LAG_S)
        latest = prometheus_values(metrics_url, ENGINE_METRICS)
        if latest == values:
            break
        values = latest
    return values


async def measured(send, image: Sample, urls: dict, stats: bool = False) -> Measured:
    """Send one request and read vLLM's metrics (and Triton's statistics) around it: each request
    net of the engine's own time, so that the engine's run-to-run spread drops out of a difference."""
    before = await settled_engine_metrics(urls["metrics"])
    stats_before = triton_stats(urls["http"]) if stats else {}
    result = await send(image)
    deadline = time.monotonic() + METRICS_WAIT_S
    while True:
        after = prometheus_values(urls["metrics"], ENGINE_METRICS)
        landed = (
            after[ENGINE_FINISHED] > before[ENGINE_FINISHED] and after[ENGINE_TTFT_COUNT] > before[ENGINE_TTFT_COUNT]
        )
        if landed or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    if (after[ENGINE_FINISHED] - before[ENGINE_FINISHED], after[ENGINE_TTFT_COUNT] - before[ENGINE_TTFT_COUNT]) != (
        1,
        1,
    ):
        raise RuntimeError("the engine's metrics did not count exactly this one request")
    delta = {name: after[name] - before[name] for name in ENGINE_METRICS}
    return Measured(
        result, delta[ENGINE_E2E], delta[ENGINE_TTFT], (stats_before, triton_stats(urls["http"])) if stats else None
    )


async def breakdown(frontend: OpenAIChat, ensemble: TritonEnsemble, image: Sample, urls: dict, n: int) -> dict:
    """One request's stages: sequential requests on an idle stack, Triton's and vLLM's own clocks.

    (b) alone gives Triton's stages (its statistics extension) and the
    engine's (vLLM's metrics); what remains of its end-to-end time is gRPC,
    the ensemble's hand-offs and the response stream. The frontend's share is
    the difference, pair by pair, of (a)'s and (b)'s time outside the engine.
    """
    direct: list[Measured] = []
    through_frontend: list[Measured] = []
    for _ in range(n):  # (b) then (a), in turns: both see the same machine conditions
        direct.append(await measured(ensemble, image, urls, stats=True))
        through_frontend.append(await measured(frontend, image, urls))

    def triton(model: str, *kinds: str) -> float:
        return mean(stage_seconds(m.stats[0], m.stats[1], model, kinds) for m in direct if m.stats is not None)

    stages = {
        "frontend (HTTP, JSON, base64, SSE)": mean(
            a.outside_engine_s - b.outside_engine_s for a, b in zip(through_frontend, direct, strict=True)
        ),
        "Triton queue: preprocess": triton("preprocess", "queue"),
        "preprocess (decode, views, tensor copies)": triton(
            "preprocess", "compute_input", "compute_infer", "compute_output"
        ),
        "Triton queue: vllm_model": triton("vllm_model", "queue"),
        "vllm_model execute (hands the request to the engine)": triton("vllm_model", "compute_input", "compute_infer"),
        "vLLM engine (its queue, encoder, prefill, decode)": mean(b.engine_e2e_s for b in direct),
    }
    in_triton = sum(list(stages.values())[1:])
    stages["gRPC, ensemble hand-offs, response streaming"] = mean(b.result.e2e_s for b in direct) - in_triton
    return {
        "requests": n,
        "image": image.name,
        "stages": stages,
        "engine_ttft_s": mean(m.engine_ttft_s for m in direct + through_frontend),
        "frontend_ttft_s": mean(m.result.ttft_s for m in through_frontend),
        "ensemble_ttft_s": mean(m.result.ttft_s for m in direct),
        "frontend_e2e_s": mean(m.result.e2e_s for m in through_frontend),
        "ensemble_e2e_s": mean(m.result.e2e_s for m in direct),
    }


async def added_ttft(urls: dict, image: Sample, args, n: int) -> dict:
    """What the frontend adds to the time to first token: the median of paired differences (a) - (b).

    Each request's time is taken net of the engine's own TTFT for it (vLLM's
    metric, read around each sequential request), so the engine's run-to-run
    spread, many times the frontend's cost, drops out. The pairs ask for the
    least work there is (tiny mode: one 512 px view; one output token) and
    alternate which goes first, so that neither always meets a warmer engine.
    """
    least = {"max_tokens": 1, "ignore_eos": True, "temperature": 0, "resolution_mode": "tiny"}
    frontend = OpenAIChat(
        urls["frontend"], systems.SERVED_NAME, args.instruction, 1, {"ignore_eos": True, "resolution_mode": "tiny"}, 1
    )
    ensemble = TritonEnsemble(urls["grpc"], prompt(args), least)
    differences: list[float] = []
    outside: dict[str, list[float]] = {"frontend": [], "ensemble": []}
    try:
        await frontend(image), await ensemble(image)  # warm both paths
        for index in range(n):
            order = ("frontend", "ensemble") if index % 2 else ("ensemble", "frontend")
            for name in order:
                one = await measured(frontend if name == "frontend" else ensemble, image, urls)
                outside[name].append(one.result.ttft_s - one.engine_ttft_s)
            differences.append(outside["frontend"][-1] - outside["ensemble"][-1])
    finally:
        await frontend.close()
        await ensemble.close()
    return {
        "pairs": n,
        "p50_s": float(np.percentile(differences, 50)),
        "p25_s": float(np.percentile(differences, 25)),
        "p75_s": float(np.percentile(differences, 75)),
        "outside_engine_p50_s": {name: float(np.percentile(values, 50)) for name, values in outside.items()},
    }


# --- the systems --------------------------------------------------------------------


def stack_urls(args, ports: dict[str, int] | None) -> dict[str, str]:
    if ports is None:
        return {
            "frontend": args.frontend_url,
            "grpc": args.triton_grpc_url,
            "http": args.triton_http_url,
            "metrics": args.triton_metrics_url,
        }
    return {
        "frontend": f"http://127.0.0.1:{ports['port']}",
        "grpc": f"127.0.0.1:{ports['triton_grpc_port']}",
        "http": f"http://127.0.0.1:{ports['triton_http_port']}",
        "metrics": f"http://127.0.0.1:{ports['triton_metrics_port']}",
    }


async def run_stack_systems(
    args, urls: dict[str, str], images: list[Sample], order: list[str], with_breakdown: bool
) -> tuple[dict, dict | None]:
    frontend = OpenAIChat(
        urls["frontend"],
        systems.SERVED_NAME,
        args.instruction,
        args.max_tokens,
        frontend_extra_body(args),
        max(args.concurrency),
    )
    ensemble = TritonEnsemble(urls["grpc"], prompt(args), ensemble_parameters(args))
    clients = {"frontend": frontend, "ensemble": ensemble}
    measured = {}
    try:
        for name in order:
            measured[name] = await measure(name, clients[name], images, args)
        stages = None
        if with_breakdown and args.breakdown_requests and {"frontend", "ensemble"} <= set(order) and urls.get("http"):
            stages = await breakdown(frontend, ensemble, images[0], urls, args.breakdown_requests)
            if args.ttft_pairs:
                stages["added_ttft"] = await added_ttft(urls, images[0], args, args.ttft_pairs)
    finally:
        await frontend.close()
        await ensemble.close()
    return measured, stages


def stack_systems(
    args, model: str, images: list[Sample], logs: Path, order: list[str], with_breakdown: bool
) -> tuple[dict, dict | None]:
    if args.frontend_url or args.triton_grpc_url:
        return asyncio.run(run_stack_systems(args, stack_urls(args, None), images, order, with_breakdown))
    ports = processes.free_ports()
    command = systems.stack_command(model, args.device, ports)
    with systems.ServerProcess(
        "our stack (dsocr.serve)", command, systems.serve_env(model, args.device), logs / "stack.log"
    ) as server:
        seconds = server.wait_ready(f"http://127.0.0.1:{ports['port']}/health/ready", args.ready_timeout_s)
        print(f"[bench] our stack ready in {seconds:.0f} s", flush=True)
        return asyncio.run(run_stack_systems(args, stack_urls(args, ports), images, order, with_breakdown))


def vllm_serve_system(args, model: str, engine_args: dict, images: list[Sample], logs: Path) -> list[dict]:
    port = processes.free_port()
    client_body = vllm_serve_extra_body(args, ngram_whitelist(model))
    command = systems.vllm_serve_command(engine_args, port)
    with systems.ServerProcess(
        "vllm serve", command, systems.serve_env(model, args.device), logs / "vllm_serve.log"
    ) as server:
        seconds = server.wait_ready(f"http://127.0.0.1:{port}/v1/models", args.ready_timeout_s)
        print(f"[bench] vllm serve ready in {seconds:.0f} s: {' '.join(command)}", flush=True)

        async def run() -> list[dict]:
            client = OpenAIChat(
                f"http://127.0.0.1:{port}",
                systems.SERVED_NAME,
                args.instruction,
                args.max_tokens,
                client_body,
                max(args.concurrency),
            )
            try:
                return await measure("vllm_serve", client, images, args)
            finally:
                await client.close()

        return asyncio.run(run())


def asyncllm_system(args, model: str, engine_args: dict, logs: Path) -> list[dict]:
    """(d) in a child process: its engine's memory and processes end with it."""
    argv = [*args.argv, "--child", "asyncllm"]
    env = systems.serve_env(model, args.device)
    return systems.run_child("AsyncLLM in-process", __spec__.name, argv, {"engine_args": engine_args}, env, logs)


def asyncllm_child(args) -> None:
    config = json.loads(args.child_config.read_text())
    images = make_images(args.image_set, args.images)

    async def run() -> list[dict]:
        engine = start_engine(config["engine_args"])
        try:
            return await measure("asyncllm", InProcessEngine(engine, prompt(args), args.max_tokens), images, args)
        finally:
            engine.shutdown()

    Path(config["out"]).write_text(json.dumps(asyncio.run(run())))


# --- the run ------------------------------------------------------------------------


def settings_record(args, model: str, engine_args: dict) -> dict:
    return {
        "workload": args.workload,
        "model": model,
        "image_set": args.image_set,
        "images": args.images,
        "resolution_mode": "gundam",
        "max_crops": args.max_crops,
        "instruction": args.instruction,
        "max_tokens": args.max_tokens,
        "ngram_size": args.ngram_size,
        "window_size": args.window_size,
        "warmup": args.warmup,
        "concurrency": args.concurrency,
        "passes": args.passes,
        "requests": {
            c: args.passes * requests_for(c, args.requests_per_worker, args.min_requests) for c in args.concurrency
        },
        "engine_args": engine_args,
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.child:
        asyncllm_child(args)
        return {}
    model = args.model or systems.default_model(args.device)
    engine_args = systems.engine_args(model, args.device)
    images = make_images(args.image_set, args.images)
    logs = args.logs_dir or Path(tempfile.mkdtemp(prefix="dsocr-bench-"))
    logs.mkdir(parents=True, exist_ok=True)
    print(f"[bench] {args.device}, model {model}; engine arguments for every system: {engine_args}", flush=True)
    data = report.new_run(args.device, settings_record(args, model, engine_args))
    runs: dict[str, list[list[dict]]] = {name: [] for name in SYSTEM_NAMES if name in args.systems}
    for index in range(args.passes):
        order = [name for name in SYSTEM_NAMES if name in args.systems][:: -1 if index % 2 else 1]
        stack_order = [name for name in order if name in ("frontend", "ensemble")]
        for name in order:
            if name in stack_order[:1]:  # (a) and (b) share one stack
                measured, stages = stack_systems(args, model, images, logs, stack_order, with_breakdown=index == 0)
                for system, levels in measured.items():
                    runs[system].append(levels)
                data["breakdown"] = data.get("breakdown") or stages
            elif name == "vllm_serve":
                runs[name].append(vllm_serve_system(args, model, engine_args, images, logs))
            elif name == "asyncllm":
                runs[name].append(asyncllm_system(args, model, engine_args, logs))
    data["systems"] = {
        name: [pooled(same_level) for same_level in zip(*passes, strict=True)] for name, passes in runs.items()
    }
    return report.publish(WORKLOADS[args.workload], data, args)


if __name__ == "__main__":
    main()
