"""Our stack, `vllm serve` and vLLM's AsyncLLM alone loaded at once and measured in alternating rounds:
throughput, and what each token and each page costs the host outside the engine.

    benchmarks/bench.sh host-cost [--workload long|page] [--concurrency 1 4 8 16] [--rounds 2] [--systems ...]

Every system runs its own engine with the same engine arguments (benchkit.systems); all are loaded before
the first request. Each concurrency level is run on one system, then on the next, round after round, the
order reversed every round, so that a machine that gets slower or faster weighs on all of them alike, and
every figure of a level comes from the same rounds. The systems:

  frontend            (a) our stack: the OpenAI frontend over Triton (dsocr.serve)
  vllm_serve          (c) `vllm serve`, DeepSeek's flags, vLLM's defaults otherwise
  vllm_serve_matched  (c) with `--stream-interval` set to ours, when our engine.json coalesces tokens
  vllm_serve_api2     (c) with `--api-server-count 2`: vLLM's own way to spread preprocessing over processes
  asyncllm            (d) vLLM's AsyncLLM in a process of its own, no server (benchkit.asyncllm): the engine's
                      client alone, the floor of what a token costs outside the engine, with our engine
                      arguments (our stream interval included) as our vLLM model's stub runs it

The workloads: `long`, small images and --max-tokens output tokens each (ignore_eos): the per-token path;
`page`, Gundam A4 pages and one output token: the per-page path (decode, views, hand-over to the engine).

Host CPU is the user + system time of a system's processes outside vLLM's engine (benchkit.host): ours the
frontend, tritonserver and the stubs; `vllm serve`'s its API server(s); (d)'s its one process. Per level:
output tok/s, images/s, TTFT p50, host CPU ms per output token and per request, the pages/s one core of host CPU
would carry at that cost, and the same per process. Before the first level every system's idle rate is
metered (--idle-s, all loaded, nothing in flight); a level's host CPU net of idle subtracts that rate over
its wall time: on a CPU a page lasts seconds, and what the processes spend idle meanwhile would be charged
to it as it is not on a GPU. Results: docs/benchmarks/host_cost_<workload>-<device>.json and the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.benchkit import cli, report, systems
from benchmarks.benchkit.asyncllm import READY_PATH
from benchmarks.benchkit.clients import InProcessEngineClient, OpenAIChat
from benchmarks.benchkit.host import HostCPU
from benchmarks.benchkit.images import IMAGE_SETS, make_images
from benchmarks.benchkit.load import Send, pooled, requests_for, run_level
from benchmarks.compare import frontend_extra_body, ngram_whitelist, prompt, vllm_serve_extra_body
from dsocr import processes

SYSTEMS = ("frontend", "vllm_serve", "vllm_serve_matched", "vllm_serve_api2", "asyncllm")  # report.HOST_COST_SYSTEMS
WORKLOADS = {"long": "host_cost_long", "page": "host_cost_page"}  # -> result name
DEFAULTS = {
    ("cpu", "long"): {"image_set": "small", "concurrency": [1, 4, 8, 16], "max_tokens": 1024, "min_requests": 4},
    ("cpu", "page"): {"image_set": "page", "concurrency": [1, 4], "max_tokens": 1, "min_requests": 4},
    ("gpu", "long"): {"image_set": "page", "concurrency": [1, 8, 16, 32, 64], "max_tokens": 2048, "min_requests": 16},
    ("gpu", "page"): {"image_set": "page", "concurrency": [8, 32, 64], "max_tokens": 1, "min_requests": 64},
}


def parse_args(argv: list[str] | None = None):
    p = cli.parser(__doc__)
    p.add_argument("--workload", choices=list(WORKLOADS), default="long")
    p.add_argument("--systems", nargs="+", choices=SYSTEMS, help="default: (a), (c), and (c) matched or api2")
    p.add_argument("--image-set", choices=IMAGE_SETS)
    p.add_argument("--images", type=int, default=4)
    p.add_argument("--concurrency", type=int, nargs="+")
    p.add_argument("--max-tokens", type=int, help="output tokens per request")
    p.add_argument("--min-requests", type=int, help="at least this many requests per level, system and round")
    p.add_argument("--rounds", type=int, default=2, help="rounds per level, the systems' order reversed each round")
    p.add_argument("--warmup", type=int, default=2, help="untimed requests per system first")
    p.add_argument("--idle-s", type=float, default=20.0, help="how long the loaded systems' idle CPU is metered")
    p.add_argument("--instruction", default="Free OCR.")
    p.add_argument("--max-crops", type=int, default=6)
    p.add_argument("--ngram-size", type=int, default=30)
    p.add_argument("--window-size", type=int, default=90)
    args = cli.parse(p, argv, lambda args: DEFAULTS[args.device, args.workload])
    args.systems = args.systems or default_systems(args)
    return args


def default_systems(args) -> list[str]:
    """(a) and (c); per pages (c) with two API servers; per token (c) at our stream interval, and (d)."""
    if args.workload == "page":
        return ["frontend", "vllm_serve", "vllm_serve_api2"]
    matched = ["vllm_serve_matched"] if our_stream_interval(args) > 1 else []
    return ["frontend", "vllm_serve", *matched, "asyncllm"]


def our_stream_interval(args) -> int:
    return int(systems.engine_args(args.model, args.device).get("stream_interval", 1))


def serve_flags(name: str, engine_args: dict) -> dict:
    """The engine arguments `vllm serve` gets as flags: vLLM's defaults where ours differ on purpose."""
    flags = {key: value for key, value in engine_args.items() if key != "stream_interval"}
    if name == "vllm_serve_matched":
        flags["stream_interval"] = engine_args.get("stream_interval", 1)
    if name == "vllm_serve_api2":
        flags["api_server_count"] = 2
    return flags


def launch(name: str, args, model: str, logs: Path) -> tuple[list[str], str, Callable[[], Any]]:
    """How one system starts: its command, the URL that answers once it is ready, and a function making its client."""
    engine_args = systems.engine_args(model, args.device)
    concurrency = max(args.concurrency)
    if name == "asyncllm":
        port = processes.free_port()
        config = logs / "asyncllm-config.json"
        config.write_text(
            json.dumps({"engine_args": engine_args, "prompt": prompt(args), "max_tokens": args.max_tokens})
        )
        command = [sys.executable, "-m", "benchmarks.benchkit.asyncllm", f"--port={port}", f"--config={config}"]
        url = f"http://127.0.0.1:{port}"
        return command, url + READY_PATH, lambda: InProcessEngineClient(url, concurrency)
    if name == "frontend":
        ports = processes.free_ports()
        command = systems.stack_command(model, args.device, ports)
        url, ready, body = f"http://127.0.0.1:{ports['port']}", "/health/ready", frontend_extra_body(args)
    else:
        port = processes.free_port()
        command = systems.vllm_serve_command(serve_flags(name, engine_args), port)
        url, ready, body = f"http://127.0.0.1:{port}", "/v1/models", vllm_serve_extra_body(args, ngram_whitelist(model))
    return (
        command,
        url + ready,
        lambda: OpenAIChat(url, systems.SERVED_NAME, args.instruction, args.max_tokens, body, concurrency),
    )


@contextlib.contextmanager
def started(name: str, args, model: str, logs: Path):
    """One system, loaded and ready: (its host CPU meter, a function that makes a client of it)."""
    command, ready, client = launch(name, args, model, logs)
    env = systems.serve_env(model, args.device)
    with systems.ServerProcess(report.HOST_COST_SYSTEMS[name], command, env, logs / f"{name}.log") as server:
        server.wait_ready(ready, args.ready_timeout_s)
        yield HostCPU(server.marker), client


async def rounds(args, clients: dict[str, Send], meters: dict[str, HostCPU], images) -> dict[str, list[dict]]:
    for client in clients.values():
        for index in range(args.warmup):
            await client(images[index % len(images)])
    idle = await idle_cpu_per_s(meters, args.idle_s)
    levels: dict[str, list[dict]] = {name: [] for name in clients}
    for concurrency in args.concurrency:
        requests = requests_for(concurrency, 1, args.min_requests)
        measured: dict[str, list[tuple[dict, dict[str, float]]]] = {name: [] for name in clients}
        for index in range(args.rounds):
            for name in list(clients)[:: -1 if index % 2 else 1]:
                before = meters[name].by_role()
                level = await run_level(clients[name], images, concurrency, requests)
                used = difference(meters[name].by_role(), before)
                measured[name].append((level.to_dict(), used))
                print(
                    f"[bench] {name:20} c={concurrency:<3} round {index + 1}: {level.output_tokens_per_s:8.1f} tok/s "
                    f"{level.images_per_s:6.3f} images/s  host CPU {sum(used.values()):6.2f} s",
                    flush=True,
                )
        for name, runs in measured.items():
            by_role = {role: sum(used.get(role, 0.0) for _, used in runs) for _, one in runs for role in one}
            levels[name].append(with_host_cost(pooled([level for level, _ in runs]), by_role, idle[name]))
    return levels


async def idle_cpu_per_s(meters: dict[str, HostCPU], seconds: float) -> dict[str, dict[str, float]]:
    """Each loaded system's CPU seconds a second, by role, with no request in flight: what its processes spend
    whether or not they serve (event loops' ticks, health polling), charged to every request while it lasts."""
    before = {name: meter.by_role() for name, meter in meters.items()}
    started = time.monotonic()
    await asyncio.sleep(seconds)
    elapsed = time.monotonic() - started
    idle = {
        name: {r: s / elapsed for r, s in difference(meter.by_role(), before[name]).items()}
        for name, meter in meters.items()
    }
    for name, rates in idle.items():
        print(f"[bench] {name:20} idle: {1000 * sum(rates.values()):.1f} ms of CPU a second", flush=True)
    return idle


def difference(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {role: seconds - before.get(role, 0.0) for role, seconds in after.items()}


def with_host_cost(level: dict, by_role: dict[str, float], idle_per_s: dict[str, float]) -> dict:
    """Host CPU per output token and per request; per request also net of what the system spends idle over the
    level's wall time (on a CPU a request lasts seconds, and the idle cost weighs on it as it would not on a GPU)."""
    tokens = sum(sample[3] for sample in level["samples"])
    host_cpu_s = sum(by_role.values())
    idle_s = sum(idle_per_s.values()) * level["wall_s"]
    return {
        **level,
        "host_cpu_s": host_cpu_s,
        "host_cpu_s_by_role": by_role,
        "idle_cpu_ms_per_s": {role: 1000 * rate for role, rate in idle_per_s.items()},
        "host_cpu_ms_per_token": 1000 * host_cpu_s / max(tokens, 1),
        "host_cpu_ms_per_request": 1000 * host_cpu_s / level["requests"],
        "host_cpu_net_ms_per_request": 1000 * (host_cpu_s - idle_s) / level["requests"],
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    model = args.model or systems.default_model(args.device)
    images = make_images(args.image_set, args.images)
    logs = Path(tempfile.mkdtemp(prefix="dsocr-bench-host-"))
    settings: dict[str, Any] = {
        "workload": args.workload,
        "model": model,
        "systems": args.systems,
        "image_set": args.image_set,
        "images": args.images,
        "max_tokens": args.max_tokens,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "stream_interval": our_stream_interval(args),
        "engine_args": systems.engine_args(model, args.device),
    }
    data = report.new_run(args.device, settings)
    with contextlib.ExitStack() as stack:
        loaded = {name: stack.enter_context(started(name, args, model, logs)) for name in args.systems}

        async def run() -> dict[str, list[dict]]:
            clients = {name: client() for name, (_, client) in loaded.items()}
            try:
                return await rounds(args, clients, {name: meter for name, (meter, _) in loaded.items()}, images)
            finally:
                for client in clients.values():
                    await client.close()

        data["systems"] = asyncio.run(run())
    return report.publish(WORKLOADS[args.workload], data, args)


if __name__ == "__main__":
    main()
