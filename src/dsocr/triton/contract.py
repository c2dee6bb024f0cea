"""The Triton models, their names and tensor contracts, in one place.

The models' docstrings describe the tensors and their shapes; these tables
are what `initialize` checks the model's config.pbtxt against (Triton hands
the parsed config over as JSON), so that a config edited apart from its
model fails at load time, naming the difference, not on the first request.
"""

from __future__ import annotations

import json

# The served pipeline (preprocess -> vllm_model), and its steps.
ENSEMBLE = "deepseek_ocr"
PREPROCESS_MODEL = "preprocess"
VLLM_MODEL = "vllm_model"


def ready_path(model: str = ENSEMBLE) -> str:
    """Triton's HTTP readiness of a model: 200 once it is loaded (the service is ready when the ensemble is)."""
    return f"/v2/models/{model}/ready"


PREPROCESS_TENSORS = {
    "input": {"IMAGE": "TYPE_UINT8", "PROMPT": "TYPE_UINT8", "PARAMETERS": "TYPE_UINT8"},
    "output": {"GLOBAL_VIEW": "TYPE_UINT8", "TILES": "TYPE_UINT8", "SPATIAL_CROP": "TYPE_INT64"},
}
VLLM_MODEL_TENSORS = {
    "input": {"PROMPT": "TYPE_UINT8", "GLOBAL_VIEW": "TYPE_UINT8", "TILES": "TYPE_UINT8",
              "SPATIAL_CROP": "TYPE_INT64", "PARAMETERS": "TYPE_UINT8", "CANCEL": "TYPE_UINT8"},
    "output": {"TEXT": "TYPE_UINT8", "FINISH_REASON": "TYPE_UINT8", "PROMPT_TOKENS": "TYPE_INT32",
               "COMPLETION_TOKENS": "TYPE_INT32"},
}  # fmt: skip
ENSEMBLE_TENSORS = {
    "input": dict(PREPROCESS_TENSORS["input"]),
    "output": dict(VLLM_MODEL_TENSORS["output"]),
}


class ContractError(ValueError):
    pass


def declared(model_config: str | dict) -> dict[str, dict[str, str]]:
    """{"input": {name: type}, "output": {name: type}} of a model config as Triton gives it."""
    config = json.loads(model_config) if isinstance(model_config, str) else model_config
    return {kind: {t["name"]: t["data_type"] for t in config.get(kind, [])} for kind in ("input", "output")}


def check(model_config: str | dict, contract: dict[str, dict[str, str]]) -> None:
    config = json.loads(model_config) if isinstance(model_config, str) else model_config
    found = declared(config)
    if found != contract:
        name = config.get("name", "model")
        raise ContractError(f"{name}: config.pbtxt declares {found}, the model's contract is {contract}")
