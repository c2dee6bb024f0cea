"""Each model's config.pbtxt declares the tensors its contract names, and a mismatch is caught."""

import re

import pytest

from dsocr import paths
from dsocr.triton import contract

TENSOR = re.compile(r'\{\s*name:\s*"(\w+)",\s*data_type:\s*(TYPE_\w+)')


def config_as_triton_gives_it(model: str) -> dict:
    """config.pbtxt's tensors in the JSON shape Triton passes to `initialize`."""
    text = (paths.MODEL_REPOSITORY / model / "config.pbtxt").read_text()
    config = {"name": model}
    for kind in ("input", "output"):
        section = re.search(rf"^{kind} \[(.*?)^\]", text, re.S | re.M).group(1)
        config[kind] = [{"name": name, "data_type": dtype} for name, dtype in TENSOR.findall(section)]
    return config


@pytest.mark.parametrize(
    "model, expected",
    [
        (contract.PREPROCESS_MODEL, contract.PREPROCESS_TENSORS),
        (contract.VLLM_MODEL, contract.VLLM_MODEL_TENSORS),
        (contract.ENSEMBLE, contract.ENSEMBLE_TENSORS),
    ],
)
def test_configs_declare_the_contract(model, expected):
    contract.check(config_as_triton_gives_it(model), expected)


def test_a_config_that_drifted_is_refused_naming_it():
    config = config_as_triton_gives_it(contract.PREPROCESS_MODEL)
    config["output"][0]["data_type"] = "TYPE_FP32"
    with pytest.raises(contract.ContractError, match="preprocess"):
        contract.check(config, contract.PREPROCESS_TENSORS)
