import json

import pytest

from dsocr import envs
from dsocr.engine_config import ENV_OVERRIDES, EngineConfigError, load_engine_args
from dsocr.paths import MODEL_REPOSITORY

SHIPPED = MODEL_REPOSITORY / "vllm_model" / "1" / "engine.json"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV_OVERRIDES:
        monkeypatch.delenv(name, raising=False)


def test_shipped_file_has_deepseek_serving_defaults():
    args = load_engine_args(SHIPPED)
    assert args["model"] == "deepseek-ai/DeepSeek-OCR"
    assert args["max_model_len"] == 8192
    assert args["enable_prefix_caching"] is False
    assert args["mm_processor_cache_gb"] == 0
    assert args["stream_interval"] == 8  # streamed responses of 8 tokens: the host's cost per token


def test_cpu_section_applies_only_on_cpu():
    assert "on_cpu" not in load_engine_args(SHIPPED)
    assert load_engine_args(SHIPPED)["max_num_seqs"] == 64
    on_cpu = load_engine_args(SHIPPED, on_cpu=True)
    assert on_cpu["enforce_eager"] is True and on_cpu["max_num_seqs"] == 16


def test_environment_overrides_the_file(monkeypatch):
    monkeypatch.setenv("MODEL", "/models/ocr2")
    monkeypatch.setenv("GPU_MEMORY_UTILIZATION", "0.5")
    monkeypatch.setenv("MAX_MODEL_LEN", "4096")
    monkeypatch.setenv("TENSOR_PARALLEL_SIZE", "2")
    monkeypatch.setenv("STREAM_INTERVAL", "4")
    args = load_engine_args(SHIPPED)
    assert (args["model"], args["gpu_memory_utilization"], args["max_model_len"], args["tensor_parallel_size"]) == (
        "/models/ocr2",
        0.5,
        4096,
        2,
    )
    assert args["stream_interval"] == 4


def test_bad_override_names_the_variable(monkeypatch):
    monkeypatch.setenv("MAX_MODEL_LEN", "lots")
    with pytest.raises(EngineConfigError, match="MAX_MODEL_LEN"):
        load_engine_args(SHIPPED)


def test_missing_model_is_refused(tmp_path):
    path = tmp_path / "engine.json"
    path.write_text(json.dumps({"max_model_len": 10}))
    with pytest.raises(EngineConfigError, match="no model"):
        load_engine_args(path)


def test_every_override_is_declared():
    assert set(ENV_OVERRIDES) <= set(envs.DECLARED)
