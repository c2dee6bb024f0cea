"""vLLM engine arguments: a JSON file next to the model, then the environment.

The file holds DeepSeek's recommended serving settings, and under "on_cpu"
what replaces them on vLLM's CPU backend (there, torch.compile and the
start-up profile of a full tiled page cost more memory and time than the
whole test run). The environment
variables `MODEL`, `GPU_MEMORY_UTILIZATION`, `MAX_MODEL_LEN` and
`TENSOR_PARALLEL_SIZE` override it so one model repository serves any
deployment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dsocr import envs

# Environment variable -> (engine argument, parser)
_OVERRIDES = {
    "MODEL": ("model", str),
    "GPU_MEMORY_UTILIZATION": ("gpu_memory_utilization", float),
    "MAX_MODEL_LEN": ("max_model_len", int),
    "TENSOR_PARALLEL_SIZE": ("tensor_parallel_size", int),
}


class EngineConfigError(ValueError):
    pass


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
    for variable, (key, parse) in _OVERRIDES.items():
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
