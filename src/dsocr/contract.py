"""The tensor contract of each Triton model: names and types, in one place.

The models' docstrings describe the tensors and their shapes; these tables
are what `initialize` checks the model's config.pbtxt against (Triton hands
the parsed config over as JSON), so that a config edited apart from its
model fails at load time, naming the difference, not on the first request.
"""

from __future__ import annotations

import json

PREPROCESS = {
    "input": {"IMAGE": "TYPE_UINT8", "PROMPT": "TYPE_UINT8", "PARAMETERS": "TYPE_UINT8"},
    "output": {"GLOBAL_VIEW": "TYPE_UINT8", "TILES": "TYPE_UINT8", "SPATIAL_CROP": "TYPE_INT64",
               "NUM_IMAGE_TOKENS": "TYPE_INT32", "PROMPT_OUT": "TYPE_UINT8"},
}
VLLM_MODEL = {
    "input": {"PROMPT": "TYPE_UINT8", "GLOBAL_VIEW": "TYPE_UINT8", "TILES": "TYPE_UINT8",
              "SPATIAL_CROP": "TYPE_INT64", "NUM_IMAGE_TOKENS": "TYPE_INT32", "PARAMETERS": "TYPE_UINT8",
              "CANCEL": "TYPE_UINT8"},
    "output": {"TEXT": "TYPE_UINT8", "FINISH_REASON": "TYPE_UINT8", "PROMPT_TOKENS": "TYPE_INT32",
               "COMPLETION_TOKENS": "TYPE_INT32"},
}
ENSEMBLE = {
    "input": dict(PREPROCESS["input"]),
    "output": dict(VLLM_MODEL["output"]),
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
