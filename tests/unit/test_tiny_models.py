"""The tiny test models: tokenizer, checkpoint layout against vLLM's models, reproducible builds.

No engine here. The layout check instantiates vLLM's model class on the meta
device and runs its own `load_weights` over the checkpoint's names and shapes,
so a name or shape vLLM would reject, or a parameter left uninitialised,
fails in well under a second once vLLM is imported.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from dsocr import paths, tiny_models
from dsocr.tiny_models import (
    BOS_TOKEN,
    EOS_TOKEN,
    FAMILIES,
    IMAGE_TOKEN,
    INIT_STD,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    build_tiny_model,
    build_tokenizer,
    checkpoint_tensors,
    load_tokenizer,
    write_config,
)

SAMPLE_TEXT = "# Title\n\nFree OCR. Ünïcödé 漢字, tabs\tand  spaces: 3.14 | a | b |\n"


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    return load_tokenizer(build_tokenizer(tmp_path_factory.mktemp("tokenizer")))


def file_digests(directory: Path) -> dict[str, str]:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(directory.iterdir())}


# --- tokenizer --------------------------------------------------------------


def test_tokenizer_round_trips_text(tokenizer):
    ids = tokenizer.encode(SAMPLE_TEXT, add_special_tokens=False)
    assert tokenizer.decode(ids) == SAMPLE_TEXT


def test_every_special_token_is_one_id(tokenizer):
    for token in SPECIAL_TOKENS:
        ids = tokenizer.encode(token, add_special_tokens=False)
        assert ids == [tokenizer.convert_tokens_to_ids(token)], token
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (BOS_TOKEN, EOS_TOKEN, PAD_TOKEN)
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (0, 1, 2)


def test_special_tokens_are_not_split_inside_text(tokenizer):
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    ids = tokenizer.encode(f"{IMAGE_TOKEN}\n<|grounding|>Convert the document to markdown.")
    assert ids[0] == tokenizer.bos_token_id  # a plain encode starts with BOS
    assert ids[1] == image_id
    assert ids[3] == tokenizer.convert_tokens_to_ids("<|grounding|>")


def test_tokenizer_build_is_deterministic(tmp_path):
    first = build_tokenizer(tmp_path / "a")
    second = build_tokenizer(tmp_path / "b")
    assert file_digests(first) == file_digests(second)


def test_vllm_processor_accepts_tokenizer(tokenizer):
    from vllm.transformers_utils.processors.deepseek_ocr import DeepseekOCRProcessor

    processor = DeepseekOCRProcessor(tokenizer=tokenizer)
    image = Image.new("RGB", (320, 200), "white")
    input_ids, pixel_values, _, _, spatial_crop, num_image_tokens, _ = processor.tokenize_with_images(
        f"{IMAGE_TOKEN}\nFree OCR.", [image], bos=True, eos=True, cropping=True
    )
    # A small image is one 1024 px global view: 16 rows of 16 + a row end, + the view separator.
    assert num_image_tokens == [16 * 17 + 1]
    assert input_ids[0, 0].item() == tokenizer.bos_token_id
    assert (input_ids == processor.image_token_id).sum().item() == 16 * 17 + 1
    assert tuple(pixel_values.shape) == (1, 3, 1024, 1024)
    assert spatial_crop.tolist() == [[1, 1]]


# --- checkpoint layout against vLLM ----------------------------------------


@pytest.fixture
def meta_vllm_model(request, tmp_path):
    """vLLM's model for a family, parameters on the meta device (no memory, no weights)."""
    from vllm.config import set_current_vllm_config
    from vllm.distributed import ensure_model_parallel_initialized, init_distributed_environment
    from vllm.distributed.parallel_state import cleanup_dist_env_and_memory
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.model_loader.utils import initialize_model

    family = request.param
    model_dir = build_tokenizer(tmp_path / "model")
    config = write_config(model_dir, family)
    vllm_config = EngineArgs(model=str(model_dir), max_model_len=4096, enforce_eager=True).create_engine_config()
    with set_current_vllm_config(vllm_config):
        init_distributed_environment(
            world_size=1,
            rank=0,
            local_rank=0,
            distributed_init_method=f"file://{tmp_path / 'dist-init'}",
            backend="gloo",
        )
        try:
            ensure_model_parallel_initialized(1, 1)
            with torch.device("meta"):
                model = initialize_model(vllm_config=vllm_config)
            yield family, config, model
        finally:
            cleanup_dist_env_and_memory()


@pytest.mark.parametrize("meta_vllm_model", FAMILIES, indirect=True)
def test_checkpoint_names_are_what_vllm_loads(meta_vllm_model):
    family, config, model = meta_vllm_model
    specs = checkpoint_tensors(family, config["vocab_size"])
    weights = ((spec.name, torch.empty(spec.shape, dtype=torch.bfloat16, device="meta")) for spec in specs)
    # vLLM's own loader: maps HF names, stacks q/k/v, gate/up and the experts,
    # and raises on a name or shape it does not expect.
    loaded = model.load_weights(weights)
    assert loaded == {name for name, _ in model.named_parameters()}


def test_checkpoint_names_follow_the_hf_repos():
    names = {spec.name for spec in checkpoint_tensors("ocr", 512)}
    # Spot checks against the real deepseek-ai/DeepSeek-OCR checkpoint.
    for name in (
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.mlp.gate_proj.weight",
        "model.layers.1.mlp.gate.weight",
        "model.layers.1.mlp.experts.0.down_proj.weight",
        "model.layers.1.mlp.shared_experts.up_proj.weight",
        "model.norm.weight",
        "lm_head.weight",
        "model.sam_model.blocks.0.attn.rel_pos_h",
        "model.vision_model.transformer.layers.0.self_attn.qkv_proj.weight",
        "model.vision_model.pre_layrnorm.weight",
        "model.projector.layers.weight",
        "model.image_newline",
        "model.view_seperator",
    ):
        assert name in names, name
    # The real checkpoint holds 2710 tensors, 2234 of them its language model's.
    assert len(list(tiny_models.vision_tensors("ocr"))) == 2710 - 2234


# --- full builds -------------------------------------------------------------


@pytest.fixture(scope="module", params=FAMILIES)
def cached_model(request) -> tuple[str, Path]:
    """The family's model in the shared cache (built there when missing, as the engine tests need it)."""
    family = request.param
    return family, build_tiny_model(paths.tiny_model_dir(family), family)


def test_same_seed_gives_identical_bytes(cached_model, tmp_path):
    family, cached = cached_model
    fresh = build_tiny_model(tmp_path / "fresh", family)
    assert file_digests(fresh) == file_digests(cached), (
        f"{cached} differs from a fresh build: the builder changed without a new BUILDER_VERSION"
    )


def test_weights_have_a_normal_initialisation_scale(cached_model):
    _, model_dir = cached_model
    with safe_open(str(model_dir / "model.safetensors"), "pt") as checkpoint:
        assert checkpoint.get_tensor("lm_head.weight").dtype == torch.bfloat16
        weight = checkpoint.get_tensor("model.sam_model.blocks.0.attn.qkv.weight").float()
        assert math.isclose(weight.std().item(), INIT_STD, rel_tol=0.05)
        assert abs(weight.mean().item()) < INIT_STD / 10
        assert torch.equal(checkpoint.get_tensor("model.norm.weight").float(), torch.ones(tiny_models.LM_HIDDEN_SIZE))


def test_built_model_is_not_rebuilt(cached_model, monkeypatch):
    family, model_dir = cached_model

    def refuse(*args):
        raise AssertionError("rebuilt a complete model")

    monkeypatch.setattr(tiny_models, "_write_model", refuse)
    assert build_tiny_model(model_dir, family) == model_dir


def test_stale_model_is_replaced(tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / tiny_models.STAMP_FILE).write_text('{"builder_version": "0"}')
    (model_dir / "leftover").write_text("from an older build")

    def write_stamp_only(staging: Path, family: str, seed: int) -> None:
        (staging / tiny_models.STAMP_FILE).write_text(tiny_models._stamp(family, seed))

    monkeypatch.setattr(tiny_models, "_write_model", write_stamp_only)
    build_tiny_model(model_dir, "ocr")
    assert sorted(p.name for p in model_dir.iterdir()) == [tiny_models.STAMP_FILE]
    assert tiny_models.is_built(model_dir, "ocr")
    assert not tiny_models.is_built(model_dir, "ocr2")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging or stale directories left


def test_failed_build_leaves_nothing_behind(tmp_path, monkeypatch):
    def fail(staging: Path, family: str, seed: int) -> None:
        (staging / "partial").write_text("")
        raise OSError("disk full")

    monkeypatch.setattr(tiny_models, "_write_model", fail)
    with pytest.raises(OSError, match="disk full"):
        build_tiny_model(tmp_path / "model", "ocr")
    assert list(tmp_path.iterdir()) == []


def test_unknown_family_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown model family"):
        build_tiny_model(tmp_path / "model", "ocr3")
