"""vLLM engine arguments: a JSON file next to the model, then the environment.

The file (`vllm_model/1/engine.json` of the model repository) holds DeepSeek's
recommended serving settings, and under "on_cpu" what replaces them on vLLM's
CPU backend (there, torch.compile and the start-up profile of a full tiled
page cost more memory and time than the whole test run, and a shorter context
keeps the KV cache small). The environment variables `MODEL`,
`GPU_MEMORY_UTILIZATION`, `MAX_MODEL_LEN` and `TENSOR_PARALLEL_SIZE` override
it so one model repository serves any deployment.

Every process that builds or serves the engine asks here: which model is
served (`served_model`), with which arguments (`load_engine_args`), and in
which process environment on a CPU (`cpu_environment`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dsocr import envs, paths

# Environment variable -> (engine argument, parser)
ENV_OVERRIDES = {
    "MODEL": ("model", str),
    "GPU_MEMORY_UTILIZATION": ("gpu_memory_utilization", float),
    "MAX_MODEL_LEN": ("max_model_len", int),
    "TENSOR_PARALLEL_SIZE": ("tensor_parallel_size", int),
    "STREAM_INTERVAL": ("stream_interval", int),
}


class EngineConfigError(ValueError):
    pass


def engine_json(model_repository: Path = paths.MODEL_REPOSITORY) -> Path:
    return Path(model_repository) / "vllm_model" / "1" / "engine.json"


def served_model(model_repository: Path = paths.MODEL_REPOSITORY) -> str:
    """The model Triton serves from this repository: `MODEL`, else engine.json's."""
    return str(load_engine_args(engine_json(model_repository))["model"])


def cpu_environment() -> dict[str, str]:
    """What vLLM's CPU backend needs in its process environment, here.

    A fixed KV cache (GiB) instead of a share of host memory, and no core
    pinning, which on a small machine starves the Triton stubs next to the
    engine (and without OMP_NUM_THREADS vLLM cuts torch to one thread).
    """
    return {
        "VLLM_CPU_KVCACHE_SPACE": "2",
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
        "OMP_NUM_THREADS": str(os.cpu_count() or 1),
    }


def load_engine_args(path: Path, on_cpu: bool = False) -> dict[str, Any]:
    """Engine keyword arguments for `vllm.AsyncEngineArgs`."""
    try:
        args = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EngineConfigError(f"cannot read engine config {path}: {exc}") from exc
    if not isinstance(args, dict):
        raise EngineConfigError(f"{path}: expected a JSON object")
    cpu_args = args.pop("on_cpu", {})
    if on_cpu:
        args.update(cpu_args)
    for variable, (key, parse) in ENV_OVERRIDES.items():
        value = envs.get(variable)
        if value is None:
            continue
        try:
            args[key] = parse(value)
        except ValueError as exc:
            raise EngineConfigError(f"{variable}={value!r}: {exc}") from exc
    if not args.get("model"):
        raise EngineConfigError(f"{path}: no model configured (set MODEL)")
    return args
