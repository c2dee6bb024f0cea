"""Triton's perf_analyzer against the ensemble: gRPC, streaming, document images.

    benchmarks/bench.sh perf-analyzer [--concurrency 1 2 4] [--max-tokens 32] [--url host:8001]

Writes perf_analyzer's --input-data file from the benchmark images: one entry
per image, each input as base64 of the tensor's raw bytes. The ensemble's
IMAGE, PROMPT and PARAMETERS are UINT8 tensors, so the bytes are the file,
the UTF-8 prompt and the UTF-8 JSON settings as they are, with the shape
their length. (Only BYTES/TYPE_STRING tensors would need each element
prefixed with its 4-byte little-endian length; this contract has none.)

Then runs the real perf_analyzer binary (scripts/install_perf_analyzer.sh)
once per concurrency with a fixed request count, reads its CSV and its
profile export (per request: send time and every streamed response's time),
and reports throughput, latency p50/p95 and first-response p50 per level.
Without --url it starts the stack (`python -m dsocr.serve`) and stops it.
Results: docs/benchmarks/perf_analyzer-<device>.json, then the report is
re-rendered.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.benchkit import cli, report, systems
from benchmarks.benchkit.images import IMAGE_SETS, Sample, make_images
from dsocr import processes
from dsocr.triton import contract

DEFAULTS = {
    "cpu": {"image_set": "small", "images": 4, "concurrency": [1, 2, 4], "max_tokens": 32, "requests": 8},
    "gpu": {
        "image_set": "page",
        "images": 32,
        "concurrency": [1, 4, 8, 16, 32, 64],
        "max_tokens": 256,
        "requests": 128,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    p.add_argument("--url", help="a running Triton's gRPC endpoint; default: start the stack")
    p.add_argument("--image-set", choices=IMAGE_SETS)
    p.add_argument("--images", type=int)
    p.add_argument("--concurrency", type=int, nargs="+")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--requests", type=int, help="requests measured per concurrency (at least the concurrency)")
    p.add_argument("--warmup-requests", type=int, default=2)
    p.add_argument("--instruction", default="Free OCR.")
    p.add_argument("--max-crops", type=int, default=6)
    p.add_argument("--perf-analyzer", default=str(Path(sys.executable).with_name("perf_analyzer")))
    p.add_argument("--work-dir", type=Path, help="input data, CSV and profile exports (default: temporary)")
    return cli.parse(p, argv, lambda args: DEFAULTS[args.device])


def uint8_tensor(data: bytes) -> dict:
    """One UINT8 input of perf_analyzer's JSON input data: raw bytes, base64, no length prefix."""
    return {"b64": base64.b64encode(data).decode(), "shape": [len(data)]}


def input_data(images: list[Sample], prompt: str, parameters: dict) -> dict:
    settings = json.dumps(parameters).encode()
    return {
        "data": [
            {
                "IMAGE": uint8_tensor(image.data),
                "PROMPT": uint8_tensor(prompt.encode()),
                "PARAMETERS": uint8_tensor(settings),
            }
            for image in images
        ]
    }


def parameters(args) -> dict:
    return {
        "max_tokens": args.max_tokens,
        "ignore_eos": True,
        "temperature": 0,
        "resolution_mode": "gundam",
        "max_crops": args.max_crops,
    }


def command(args, url: str, concurrency: int, data_file: Path, csv_file: Path, profile_file: Path) -> list[str]:
    return [
        args.perf_analyzer, "-m", contract.ENSEMBLE, "-i", "grpc", "--streaming", "-u", url,
        "--input-data", str(data_file), "--concurrency-range", f"{concurrency}:{concurrency}",
        "--request-count", str(max(args.requests, concurrency)), "--warmup-request-count", str(args.warmup_requests),
        "--percentile", "95", "-f", str(csv_file), "--profile-export-file", str(profile_file),
    ]  # fmt: skip


def read_csv(path: Path) -> dict:
    with open(path) as f:
        return next(csv.DictReader(f))


def response_times(profile: dict) -> tuple[list[float], list[float]]:
    """(first response, last response) seconds after send, per request in the export."""
    first, last = [], []
    for experiment in profile["experiments"]:
        for request in experiment["requests"]:
            responses = request["response_timestamps"]
            if responses:
                first.append((responses[0] - request["timestamp"]) / 1e9)
                last.append((responses[-1] - request["timestamp"]) / 1e9)
    return first, last


def run_level(args, url: str, concurrency: int, data_file: Path, work: Path) -> dict:
    csv_file, profile_file = work / f"c{concurrency}.csv", work / f"c{concurrency}-profile.json"
    cmd = command(args, url, concurrency, data_file, csv_file, profile_file)
    run = subprocess.run(cmd, capture_output=True, text=True)
    print(run.stdout[-3000:], flush=True)
    if run.returncode != 0:
        raise RuntimeError(f"perf_analyzer exited with {run.returncode}:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    row = read_csv(csv_file)
    summary = run.stdout[run.stdout.rfind("Request concurrency") :].strip()  # the measured level, not the warm-up
    first, last = response_times(json.loads(profile_file.read_text()))
    return {
        "concurrency": concurrency,
        "requests": len(last),
        "throughput": float(row["Inferences/Second"]),
        "avg_latency_s": float(np.mean(last)),
        "p50_latency_s": float(np.percentile(last, 50)),
        "p95_latency_s": float(np.percentile(last, 95)),
        "first_response_p50_s": float(np.percentile(first, 50)),
        "first_response_p95_s": float(np.percentile(first, 95)),
        "summary": summary,  # perf_analyzer's own report: client and per-model server times
    }


def run_all(args, url: str, work: Path) -> tuple[list[dict], list[str]]:
    images = make_images(args.image_set, args.images)
    data_file = work / "input_data.json"
    data_file.write_text(json.dumps(input_data(images, f"<image>\n{args.instruction}", parameters(args))))
    levels = [run_level(args, url, c, data_file, work) for c in args.concurrency]
    shown = command(args, url, args.concurrency[0], Path("input_data.json"), Path("c.csv"), Path("profile.json"))
    shown[0], shown[shown.index("--concurrency-range") + 1] = "perf_analyzer", "C:C"
    return levels, shown


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if not Path(args.perf_analyzer).exists() and not shutil.which(args.perf_analyzer):
        sys.exit(f"{args.perf_analyzer} not found: run scripts/setup.sh (it runs scripts/install_perf_analyzer.sh)")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="dsocr-perf-analyzer-"))
    work.mkdir(parents=True, exist_ok=True)
    data = report.new_run(
        args.device,
        {
            "image_set": args.image_set,
            "images": args.images,
            "max_tokens": args.max_tokens,
            "resolution_mode": "gundam",
            "input_data": "input_data.json",
        },
    )
    if args.url:
        data["levels"], data["command"] = run_all(args, args.url, work)
    else:
        model = args.model or systems.default_model(args.device)
        ports = processes.free_ports()
        with systems.ServerProcess(
            "our stack (dsocr.serve)",
            systems.stack_command(model, args.device, ports),
            systems.serve_env(model, args.device),
            work / "stack.log",
        ) as server:
            server.wait_ready(f"http://127.0.0.1:{ports['triton_http_port']}/v2/health/ready", args.ready_timeout_s)
            data["levels"], data["command"] = run_all(args, f"127.0.0.1:{ports['triton_grpc_port']}", work)
    return report.publish("perf_analyzer", data, args)


if __name__ == "__main__":
    main()
