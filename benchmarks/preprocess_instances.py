"""Images/s against the number of preprocess instances, on a preprocessing-heavy load.

    benchmarks/bench.sh preprocess-instances [--instances 1 2 4] [--target preprocess|ensemble]

Large images (A4 at 200 DPI, 12 Mpx phone photos) in Gundam mode. For each
instance count, a copy of the model repository with `preprocess`'s
instance_group count changed is served, and `--concurrency` clients keep it
busy:

- `--target preprocess` (CPU default): Triton serving the preprocess model
  alone, called directly (only its small SPATIAL_CROP output is sent
  back). On a CPU this is the only way to see preprocessing scale: through
  the ensemble the vision encoder takes seconds per page on the same cores.
- `--target ensemble` (GPU default): the whole stack, one output token per
  request, so that decoding, tiling and the hand-over are the load.

--url measures a running Triton's preprocess model as it is configured
(the smoke test does). Results: docs/benchmarks/preprocess_instances-<device>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import tempfile
from pathlib import Path

import tritonclient.grpc.aio as grpcclient

from benchmarks.benchkit import cli, report, systems
from benchmarks.benchkit.clients import TritonEnsemble
from benchmarks.benchkit.images import IMAGE_SETS, Sample, make_images
from benchmarks.benchkit.load import RequestResult, Stopwatch, run_level
from dsocr import paths, processes
from dsocr.triton import client as ensemble
from dsocr.triton import contract
from dsocr.triton.contract import PREPROCESS_MODEL

MODEL_REPOSITORY = paths.MODEL_REPOSITORY
PROMPT = "<image>\nFree OCR."
DEFAULTS = {
    "cpu": {"target": "preprocess", "instances": [1, 2, 4], "concurrency": 8, "requests": 24, "images": 4},
    "gpu": {"target": "ensemble", "instances": [1, 2, 4, 8], "concurrency": 32, "requests": 256, "images": 16},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.parser(__doc__)
    p.add_argument("--target", choices=["preprocess", "ensemble"])
    p.add_argument("--instances", type=int, nargs="+", help="preprocess instance counts to compare")
    p.add_argument("--concurrency", type=int)
    p.add_argument("--requests", type=int, help="requests per instance count")
    p.add_argument("--image-set", choices=IMAGE_SETS, default="large")
    p.add_argument("--images", type=int)
    p.add_argument("--max-crops", type=int, default=6)
    p.add_argument("--warmup", type=int, default=4, help="untimed requests per instance count")
    p.add_argument("--url", help="measure this running Triton (gRPC host:port) as configured; no restarts")
    return cli.parse(p, argv, lambda args: DEFAULTS[args.device])


def parameters(args) -> dict:
    return {"resolution_mode": "gundam", "max_crops": args.max_crops, "max_tokens": 1, "ignore_eos": True}


def repository_with_instances(destination: Path, count: int) -> Path:
    """A copy of the model repository whose preprocess model runs `count` instances."""
    shutil.copytree(MODEL_REPOSITORY, destination, ignore=shutil.ignore_patterns("__pycache__"))
    config = destination / "preprocess" / "config.pbtxt"
    text, replaced = re.subn(r"(instance_group\s*\[\s*\{\s*count:\s*)\d+", rf"\g<1>{count}", config.read_text())
    if replaced != 1:
        raise RuntimeError(f"{config}: no instance_group count to change")
    config.write_text(text)
    return destination


class PreprocessModel:
    """One call of the preprocess model per image; only the token count comes back."""

    def __init__(self, url: str, parameters: dict) -> None:
        self._client = grpcclient.InferenceServerClient(url)
        self._parameters = parameters

    async def __call__(self, image: Sample) -> RequestResult:
        clock = Stopwatch()
        await self._client.infer(
            PREPROCESS_MODEL,
            ensemble.request_inputs(image.data, PROMPT, self._parameters),
            outputs=[grpcclient.InferRequestedOutput("SPATIAL_CROP")],
        )
        clock.saw("done")
        return clock.result(0, 0)

    async def close(self) -> None:
        await self._client.close()


async def measure(args, url: str, images: list[Sample], instances: int) -> dict:
    target = (
        PreprocessModel(url, parameters(args))
        if args.target == "preprocess"
        else (TritonEnsemble(url, PROMPT, parameters(args)))
    )
    try:
        for index in range(args.warmup):
            await target(images[index % len(images)])
        level = await run_level(target, images, args.concurrency, args.requests)
    finally:
        await target.close()
    print(
        f"[bench] {instances} preprocess instance(s): {level.images_per_s:.2f} images/s "
        f"(e2e p50 {level.e2e_p50_s * 1000:.0f} ms)",
        flush=True,
    )
    return {"instances": instances, **level.to_dict()}


def serve_preprocess_only(repository: Path, env: dict, log: Path):
    """tritonserver loading the preprocess model only (it reads engine.json next to it, so the
    repository is whole); returns (server, gRPC url, ready url)."""
    from dsocr.serve import PYTHON_BACKEND_SHM, find_tritonserver

    http, grpc, metrics = (processes.free_port() for _ in range(3))
    command = [
        find_tritonserver(),
        f"--model-repository={repository}",
        f"--http-port={http}",
        f"--grpc-port={grpc}",
        f"--metrics-port={metrics}",
        "--log-info=false",
        *PYTHON_BACKEND_SHM,
        "--model-control-mode=explicit",
        "--load-model=preprocess",
    ]
    server = systems.ServerProcess("tritonserver (preprocess only)", command, env, log)
    return server, f"127.0.0.1:{grpc}", f"http://127.0.0.1:{http}{contract.ready_path(PREPROCESS_MODEL)}"


def serve_stack(repository: Path, model: str, device: str, env: dict, log: Path):
    ports = processes.free_ports()
    server = systems.ServerProcess(
        "our stack (dsocr.serve)", systems.stack_command(model, device, ports, repository), env, log
    )
    return (
        server,
        f"127.0.0.1:{ports['triton_grpc_port']}",
        f"http://127.0.0.1:{ports['triton_http_port']}{contract.ready_path()}",
    )


def measure_instances(args, model: str, images: list[Sample], instances: int, scratch: Path) -> dict:
    repository = repository_with_instances(scratch / f"repository-{instances}", instances)
    env = systems.serve_env(model, args.device)
    log = scratch / f"server-{instances}.log"
    if args.target == "preprocess":
        server, url, ready = serve_preprocess_only(repository, env, log)
    else:
        server, url, ready = serve_stack(repository, model, args.device, env, log)
    with server:
        server.wait_ready(ready, args.ready_timeout_s)
        return asyncio.run(measure(args, url, images, instances))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    model = args.model or systems.default_model(args.device)
    images = make_images(args.image_set, args.images)
    data = report.new_run(
        args.device,
        {
            "target": args.target,
            "image_set": args.image_set,
            "images": args.images,
            "resolution_mode": "gundam",
            "max_crops": args.max_crops,
            "concurrency": args.concurrency,
            "max_tokens": 1 if args.target == "ensemble" else None,
        },
    )
    if args.url:
        data["levels"] = [asyncio.run(measure(args, args.url, images, 0))]
    else:
        with tempfile.TemporaryDirectory(prefix="dsocr-bench-preprocess-") as scratch:
            data["levels"] = [measure_instances(args, model, images, n, Path(scratch)) for n in args.instances]
    return report.publish("preprocess_instances", data, args)


if __name__ == "__main__":
    main()
