"""Soak: the stack under a mix of work for N minutes, and whether it holds steady.

    benchmarks/bench.sh soak --minutes 30 [--clients 3] [--url http://host:8080 --marker NAME=VALUE]

A few clients send, back to back, a seeded mix: good requests (every resolution mode, streamed and not,
a small PDF through /v1/ocr), clients that leave mid-stream (cancellations), and bad input (an image that
is not one, an unknown parameter, a PDF that is not one). Every --sample-s seconds it records the RSS of
every process of the stack (by its role: frontend, tritonserver, preprocess and vLLM stubs, the engine)
and the /dev/shm bytes of Triton's and vLLM's regions. Per minute: good requests' latency p50/p95, and
outcomes by class. The verdict: RSS growth after the warm-up minute under 5%, and no 5xx for a good
request. Results: docs/benchmarks/soak-<device>.json, its block in docs/BENCHMARKS.md, and the plot
docs/benchmarks/soak-<device>.png.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from benchmarks.benchkit import cli, report, systems
from benchmarks.benchkit.host import role
from benchmarks.benchkit.images import make_images
from dsocr import healing, processes

MODES = ("tiny", "small", "base", "gundam")
# action -> weight: what a minute of traffic is made of
MIX = {"chat": 5, "stream": 3, "document": 1, "leave": 1, "bad_image": 1, "bad_parameter": 1, "bad_document": 1}
GOOD = ("chat", "stream", "document")


def parse_args(argv: list[str] | None = None):
    p = cli.parser(__doc__)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--sample-s", type=float, default=10.0)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--url", help="a running frontend (with --marker, the stack's environment marker)")
    p.add_argument("--marker", help="NAME=VALUE in the environment of every process of the running stack")
    return cli.parse(p, argv)


def pdf_url(pages: int = 2) -> str:
    from PIL import Image

    images = [Image.new("RGB", (300, 200), (220 - 40 * n, 220, 220)) for n in range(pages)]
    buffer = io.BytesIO()
    images[0].save(buffer, "PDF", save_all=True, append_images=images[1:], resolution=72)
    return "data:application/pdf;base64," + base64.b64encode(buffer.getvalue()).decode()


class Traffic:
    """One seeded stream of actions against the frontend, each timed and classed."""

    def __init__(self, url: str, args) -> None:
        self.url, self.args = url.rstrip("/"), args
        self.image = make_images("small", 1)[0].data_url
        self.pdf = pdf_url()
        self.http = httpx.AsyncClient(timeout=600)

    def chat_body(self, mode: str, stream: bool, extra: dict | None = None) -> dict:
        content = [{"type": "image_url", "image_url": {"url": self.image}}, {"type": "text", "text": "Free OCR."}]
        body = {"model": systems.SERVED_NAME, "messages": [{"role": "user", "content": content}],
                "max_tokens": self.args.max_tokens, "stream": stream, "resolution_mode": mode}  # fmt: skip
        return {**body, **(extra or {})}

    async def act(self, action: str, rng: random.Random) -> tuple[str, int]:
        """(action, HTTP status) of one action; 0 for a connection that failed."""
        mode = rng.choice(MODES)
        if action in ("chat", "bad_parameter"):
            extra = {"no_such_parameter": 1} if action == "bad_parameter" else None
            response = await self.http.post(f"{self.url}/v1/chat/completions", json=self.chat_body(mode, False, extra))
            return action, response.status_code
        if action == "bad_image":
            body = self.chat_body(mode, False)
            body["messages"][0]["content"][0]["image_url"]["url"] = (
                "data:image/png;base64," + base64.b64encode(b"not an image at all" * 10).decode()
            )
            return action, (await self.http.post(f"{self.url}/v1/chat/completions", json=body)).status_code
        if action in ("document", "bad_document"):
            url = self.pdf if action == "document" else "data:application/pdf;base64,aGVsbG8="
            body = {"model": systems.SERVED_NAME, "document": {"type": "document_url", "document_url": url},
                    "max_tokens": self.args.max_tokens, "resolution_mode": "tiny"}  # fmt: skip
            return action, (await self.http.post(f"{self.url}/v1/ocr", json=body)).status_code
        return action, await self.stream(mode, leave=action == "leave")

    async def stream(self, mode: str, leave: bool) -> int:
        async with self.http.stream("POST", f"{self.url}/v1/chat/completions", json=self.chat_body(mode, True)) as r:
            async for line in r.aiter_lines():
                if leave and line.startswith("data: "):
                    break  # the client goes away mid-stream
                if line.startswith("data: {") and '"error"' in line:
                    return 500
            return r.status_code


async def run_traffic(traffic: Traffic, args, deadline: float, records: list[dict]) -> None:
    actions, weights = list(MIX), list(MIX.values())

    async def client(index: int) -> None:
        rng = random.Random(args.seed * 1000 + index)
        while time.monotonic() < deadline:
            action = rng.choices(actions, weights)[0]
            started = time.monotonic()
            try:
                _, status = await traffic.act(action, rng)
            except httpx.HTTPError:
                status = 0
            records.append({"at": started, "action": action, "status": status, "s": time.monotonic() - started})

    await asyncio.gather(*(client(i) for i in range(args.clients)))


def sample(marker: str) -> dict[str, Any]:
    rss: Counter[str] = Counter()
    for pid in processes.processes_with_marker(marker):
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            rss[role(process)] += process.memory_info().rss
    shm = 0
    for path in healing.regions():
        with contextlib.suppress(OSError):
            shm += path.stat().st_size
    return {"rss": dict(rss), "shm_bytes": shm}


async def sampler(marker: str, start: float, deadline: float, every_s: float, samples: list[dict]) -> None:
    while time.monotonic() < deadline:
        samples.append({"t": time.monotonic() - start, **sample(marker)})
        await asyncio.sleep(every_s)


def per_minute(records: list[dict], start: float) -> list[dict]:
    minutes: dict[int, list[dict]] = {}
    for record in records:
        minutes.setdefault(int((record["at"] - start) // 60), []).append(record)
    rows = []
    for minute, batch in sorted(minutes.items()):
        good = [r for r in batch if r["action"] in GOOD and r["status"] == 200]
        latency = np.array([r["s"] for r in good]) if good else np.array([0.0])
        rows.append({
            "minute": minute,
            "requests": len(batch),
            "p50_s": float(np.percentile(latency, 50)),
            "p95_s": float(np.percentile(latency, 95)),
            "by_class": dict(Counter(f"{r['action']} {r['status']}" for r in batch)),
        })  # fmt: skip
    return rows


def verdict(samples: list[dict], records: list[dict], start: float) -> dict:
    total = [sum(s["rss"].values()) for s in samples if s["t"] >= 60] or [sum(s["rss"].values()) for s in samples]
    growth = total[-1] / total[0] - 1 if total and total[0] else 0.0
    good_5xx = sum(1 for r in records if r["action"] in GOOD and r["status"] >= 500)
    bad_5xx = sum(1 for r in records if r["action"].startswith("bad") and r["status"] >= 500)
    return {"rss_growth_after_warmup": growth, "good_5xx": good_5xx, "bad_input_5xx": bad_5xx,
            "held": growth < 0.05 and good_5xx == 0 and bad_5xx == 0}  # fmt: skip


def plot(data: dict, path: Path) -> None:
    from benchmarks.benchkit.plot import plt

    fig, (memory, latency) = plt.subplots(1, 2, figsize=(12, 4.6))
    samples = data["samples"]
    minutes = [s["t"] / 60 for s in samples]
    for name in sorted({name for s in samples for name in s["rss"]}):
        memory.plot(minutes, [s["rss"].get(name, 0) / 2**20 for s in samples], label=name)
    memory.plot(minutes, [s["shm_bytes"] / 2**20 for s in samples], linestyle="--", label="/dev/shm")
    memory.set(title="Memory of the stack's processes", xlabel="minutes", ylabel="MiB")
    memory.set_ylim(bottom=0)
    memory.legend(fontsize=7)
    rows = data["minutes"]
    latency.plot([r["minute"] for r in rows], [r["p50_s"] for r in rows], marker="o", label="p50")
    latency.plot([r["minute"] for r in rows], [r["p95_s"] for r in rows], marker="o", label="p95")
    latency.set(title="Good requests' latency per minute", xlabel="minute", ylabel="s")
    latency.set_ylim(bottom=0)
    latency.legend(fontsize=8)
    for ax in (memory, latency):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def soak(url: str, marker: str, args) -> dict:
    traffic = Traffic(url, args)
    start = time.monotonic()
    deadline = start + args.minutes * 60
    records: list[dict] = []
    samples: list[dict] = []
    try:
        await asyncio.gather(
            run_traffic(traffic, args, deadline, records), sampler(marker, start, deadline, args.sample_s, samples)
        )
    finally:
        await traffic.http.aclose()
    return {"samples": samples, "minutes": per_minute(records, start), "verdict": verdict(samples, records, start)}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    model = args.model or systems.default_model(args.device)
    data = report.new_run(args.device, {"model": model, "minutes": args.minutes, "clients": args.clients,
                                        "max_tokens": args.max_tokens, "mix": MIX, "seed": args.seed})  # fmt: skip
    if args.url:
        data.update(asyncio.run(soak(args.url, args.marker, args)))
    else:
        ports = processes.free_ports()
        command = systems.stack_command(model, args.device, ports)
        log = Path(tempfile.mkdtemp(prefix="dsocr-bench-soak-")) / "stack.log"
        env = systems.serve_env(model, args.device)
        with systems.ServerProcess("our stack (dsocr.serve)", command, env, log) as server:
            url = f"http://127.0.0.1:{ports['port']}"
            server.wait_ready(f"{url}/health/ready", args.ready_timeout_s)
            data.update(asyncio.run(soak(url, server.marker, args)))
    plot(data, Path(args.results_dir) / f"soak-{args.device}.png")
    return report.publish("soak", data, args)


if __name__ == "__main__":
    main()
