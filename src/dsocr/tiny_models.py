"""Tiny DeepSeek-OCR / DeepSeek-OCR-2 checkpoints, built locally for tests on CPU.

No weights can be downloaded here, and vLLM's dummy loader fills weights so
close to zero that every logit is equal: a test on such a model cannot tell
two images apart. These checkpoints are real files instead: the config, the
tokenizer and a `model.safetensors` laid out like the HF repos
`deepseek-ai/DeepSeek-OCR` and `deepseek-ai/DeepSeek-OCR-2`, with seeded random
weights at a normal initialisation scale, so vLLM loads them through its own
weight loading and different images give different logits.

Only the language model is shrunk. The vision towers' sizes are fixed in
vLLM's code (SAM ViT-B + CLIP-L for OCR, SAM ViT-B + a Qwen2-0.5B-shaped
encoder for OCR-2), so they are full size here too.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from dsocr import families

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

# Bump whenever the files written change, so stale caches are rebuilt.
BUILDER_VERSION = "1"
STAMP_FILE = ".dsocr-tiny-model"
FAMILIES = families.KEYS  # ("ocr", "ocr2")

# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------

BOS_TOKEN = "<｜begin▁of▁sentence｜>"
EOS_TOKEN = "<｜end▁of▁sentence｜>"
PAD_TOKEN = "<｜▁pad▁｜>"
IMAGE_TOKEN = "<image>"
# In the real vocabulary's order (ids 128815-128822 there), after the learned tokens.
OCR_TOKENS = ("<image>", "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>", "<|grounding|>", "<td>", "</td>")
SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, *OCR_TOKENS)

# Upper bound on the vocabulary: 256 byte tokens plus merges and the special
# tokens. Small keeps the embedding and LM head small.
TOKENIZER_VOCAB_SIZE = 512

# Enough text for a few hundred merges; the mix (prose, markdown, a table,
# numbers, grounding markup) matches what OCR prompts and outputs look like.
_TRAINING_TEXT = """\
Free OCR. Convert the document to markdown. Parse the figure. Describe this image in detail.
Locate the text in the image. OCR this image with grounding.
# Annual Report 2024

## Summary of results

The company reported revenue of 1,234,567 dollars in the first quarter, an increase of 12.5 percent
over the same period of the previous year. Operating costs were stable at 845,210 dollars, and the
board approved a dividend of 0.45 per share. The document below lists the figures for each region.

| Region | Revenue | Cost | Margin |
|--------|---------|------|--------|
| North  | 412,000 | 280,100 | 32.0% |
| South  | 398,500 | 270,900 | 32.0% |
| East   | 424,067 | 294,210 | 30.6% |

<table><tr><td>Name</td><td>Date</td><td>Amount</td></tr>
<tr><td>Invoice 0042</td><td>2024-03-15</td><td>1,250.00</td></tr></table>

<|ref|>title<|/ref|><|det|>[[120, 45, 880, 110]]<|/det|>
<|ref|>text<|/ref|><|det|>[[118, 150, 882, 420]]<|/det|>
<|ref|>table<|/ref|><|det|>[[100, 450, 900, 760]]<|/det|>

Optical character recognition turns the image of a page into text that a computer can search,
edit and read aloud. A good reader keeps the reading order, the headings, the lists and the tables,
and it reports where on the page each block of text was found. Scanned letters, receipts, forms,
books, slides and handwritten notes all look different, so the model sees the whole page at once
and then each tile of it in more detail.

- First item of the list
- Second item, with a number: 3.14159
- Third item: the quick brown fox jumps over the lazy dog.

THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG. 0123456789 (a+b)*c = d/e; x_1, y^2, 50% off!
Page 1 of 12. Chapter 3: Methods. Section 3.2 describes the experiment and Table 4 gives the data.
"""


def train_tokenizer() -> Tokenizer:
    """A byte-level BPE with DeepSeek's special tokens, trained on built-in text.

    BOS/EOS/pad get ids 0, 1, 2 as in the real tokenizer; the OCR markup
    tokens come after the learned vocabulary, as they do there.
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE - len(OCR_TOKENS),
        special_tokens=[BOS_TOKEN, EOS_TOKEN, PAD_TOKEN],
        # Every byte must be encodable, not only those in the training text.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TRAINING_TEXT.splitlines(keepends=True), trainer=trainer)
    tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in OCR_TOKENS])
    # Like the real tokenizer: a plain encode starts with BOS (vLLM relies on
    # this for text prompts; DeepseekOCRProcessor adds BOS itself).
    bos_id = tokenizer.token_to_id(BOS_TOKEN)
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS_TOKEN} $A",
                pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B:1",
                special_tokens=[(BOS_TOKEN, bos_id)],
            ),
        ]
    )
    return tokenizer


def _tokenizer_config(tokenizer: Tokenizer) -> dict:
    added = {
        str(tokenizer.token_to_id(token)): {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for token in SPECIAL_TOKENS
    }
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": added,
        "bos_token": BOS_TOKEN,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS_TOKEN,
        "legacy": True,
        "model_max_length": 8192,
        "pad_token": PAD_TOKEN,
        "sp_model_kwargs": {},
        # As in the HF repos. transformers >= 5 ignores it for model_type
        # deepseek_vl_v2 and reads tokenizer.json as is; a directory without
        # that config.json must be loaded with PreTrainedTokenizerFast.
        "tokenizer_class": "LlamaTokenizerFast",
        "unk_token": None,
        "use_default_system_prompt": False,
    }


def _special_tokens_map() -> dict:
    return {"bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN}


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


def build_tokenizer(out_dir: Path) -> Path:
    """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json into out_dir.

    Deterministic: the same files every time. Returns out_dir.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer()
    (out_dir / "tokenizer.json").write_text(tokenizer.to_str(pretty=True) + "\n", encoding="utf-8")
    _write_json(out_dir / "tokenizer_config.json", _tokenizer_config(tokenizer))
    _write_json(out_dir / "special_tokens_map.json", _special_tokens_map())
    return out_dir


def load_tokenizer(model_dir: Path) -> PreTrainedTokenizerFast:
    """The tokenizer in model_dir as transformers loads it for these models.

    transformers >= 5 maps `LlamaTokenizerFast` to a SentencePiece-style
    tokenizer that would drop the byte-level pre-tokenizer; for model_type
    deepseek_vl_v2 it reads tokenizer.json as is, which is what this does
    without needing a config.json next to it.
    """
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(str(model_dir))


# ---------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------

# The tiny DeepseekV2 language model: MHA (no MLA, as the real OCR models),
# one dense layer then one small MoE layer.
LM_HIDDEN_SIZE = 128
LM_HEADS = 4
LM_INTERMEDIATE_SIZE = 256
LM_MOE_INTERMEDIATE_SIZE = 64
LM_ROUTED_EXPERTS = 4
LM_SHARED_EXPERTS = 2
LM_EXPERTS_PER_TOKEN = 2
LM_LAYERS = 2
LM_FIRST_DENSE_LAYERS = 1

# Must match vLLM's fixed vision towers: SAM's last convolution, and what the
# projector receives from them.
SAM_LAST_CHANNELS = {"ocr": 1024, "ocr2": 896}
PROJECTOR_INPUT_DIM = {"ocr": 2048, "ocr2": 896}  # CLIP-L 1024 + SAM 1024 | Qwen2 encoder 896

SAM_GLOBAL_ATTENTION_BLOCKS = (2, 5, 8, 11)
_SAM_WIDTH = {
    "downsample_channels": [512, 1024],
    "global_attn_indexes": list(SAM_GLOBAL_ATTENTION_BLOCKS),
    "heads": 12,
    "layers": 12,
    "width": 768,
}
_VISION_CONFIG = {
    "ocr": {
        "model_name": "deeplip_b_l",
        "width": {
            "clip-l-14-224": {"heads": 16, "image_size": 224, "layers": 24, "patch_size": 14, "width": 1024},
            "sam_vit_b": _SAM_WIDTH,
        },
    },
    "ocr2": {
        "model_name": "deepencoderv2",
        "width": {"qwen2-0-5b": {"dim": 896}, "sam_vit_b": _SAM_WIDTH},
    },
}


def language_config(vocab_size: int) -> dict:
    """The `language_config` block, with the real checkpoints' fields."""
    return {
        "architectures": ["DeepseekV2ForCausalLM"],
        "bos_token_id": 0,
        "eos_token_id": 1,
        "first_k_dense_replace": LM_FIRST_DENSE_LAYERS,
        "hidden_act": "silu",
        "hidden_size": LM_HIDDEN_SIZE,
        "intermediate_size": LM_INTERMEDIATE_SIZE,
        "kv_lora_rank": None,
        "lm_head": True,
        "max_position_embeddings": 8192,
        "model_type": "deepseek_v2",
        "moe_intermediate_size": LM_MOE_INTERMEDIATE_SIZE,
        "n_group": 1,
        "n_routed_experts": LM_ROUTED_EXPERTS,
        "n_shared_experts": LM_SHARED_EXPERTS,
        "num_attention_heads": LM_HEADS,
        "num_experts_per_tok": LM_EXPERTS_PER_TOKEN,
        "num_hidden_layers": LM_LAYERS,
        "num_key_value_heads": LM_HEADS,
        "q_lora_rank": None,
        # Both zero: vLLM then builds plain multi-head attention (q/k/v/o).
        "qk_nope_head_dim": 0,
        "qk_rope_head_dim": 0,
        "rm_head": False,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "topk_group": 1,
        "topk_method": "greedy",
        "torch_dtype": "bfloat16",
        "use_mla": False,
        "v_head_dim": 0,
        "vocab_size": vocab_size,
    }


def model_config(family: str, vocab_size: int) -> dict:
    """config.json for a family, shaped like the HF repo's."""
    language = language_config(vocab_size)
    shared = {k: v for k, v in language.items() if k not in ("architectures", "model_type", "torch_dtype")}
    return {
        # The real files repeat the language fields at the top level.
        **shared,
        "architectures": [families.family(family).architecture],
        "candidate_resolutions": [[1024, 1024]],
        "global_view_pos": "head",
        "language_config": language,
        "model_type": "deepseek_vl_v2",
        "projector_config": {
            "input_dim": PROJECTOR_INPUT_DIM[family],
            "model_type": "mlp_projector",
            "n_embed": LM_HIDDEN_SIZE,
            "projector_type": "linear",
        },
        "tile_tag": "2D",
        "torch_dtype": "bfloat16",
        "vision_config": {
            # OCR-2 checks pixel_values against this as the global view size.
            "image_size": 1024,
            "mlp_ratio": 3.7362,
            "model_type": "vision",
            **_VISION_CONFIG[family],
        },
    }


# ---------------------------------------------------------------------------
# Checkpoint layout: every tensor the HF checkpoint holds, by its HF name
# ---------------------------------------------------------------------------

INIT_STD = 0.02  # transformers' initializer_range


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    init: str  # "normal" (std INIT_STD), "ones" (norm scales) or "zeros" (biases)


def _weight(name: str, *shape: int) -> TensorSpec:
    return TensorSpec(name, tuple(shape), "normal")


def _linear(prefix: str, out_features: int, in_features: int, bias: bool = True) -> Iterator[TensorSpec]:
    yield _weight(f"{prefix}.weight", out_features, in_features)
    if bias:
        yield TensorSpec(f"{prefix}.bias", (out_features,), "zeros")


def _conv(prefix: str, out_channels: int, in_channels: int, kernel: int, bias: bool = False) -> Iterator[TensorSpec]:
    yield _weight(f"{prefix}.weight", out_channels, in_channels, kernel, kernel)
    if bias:
        yield TensorSpec(f"{prefix}.bias", (out_channels,), "zeros")


def _norm(prefix: str, dim: int, bias: bool = True) -> Iterator[TensorSpec]:
    yield TensorSpec(f"{prefix}.weight", (dim,), "ones")
    if bias:
        yield TensorSpec(f"{prefix}.bias", (dim,), "zeros")


def _gated_mlp(prefix: str, hidden: int, intermediate: int) -> Iterator[TensorSpec]:
    yield from _linear(f"{prefix}.gate_proj", intermediate, hidden, bias=False)
    yield from _linear(f"{prefix}.up_proj", intermediate, hidden, bias=False)
    yield from _linear(f"{prefix}.down_proj", hidden, intermediate, bias=False)


def language_model_tensors(vocab_size: int) -> Iterator[TensorSpec]:
    """transformers' DeepseekV2ForCausalLM names (what vLLM's DeepseekV2 loader reads)."""
    hidden = LM_HIDDEN_SIZE
    yield _weight("model.embed_tokens.weight", vocab_size, hidden)
    for i in range(LM_LAYERS):
        layer = f"model.layers.{i}"
        yield from _norm(f"{layer}.input_layernorm", hidden, bias=False)
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            yield from _linear(f"{layer}.self_attn.{proj}", hidden, hidden, bias=False)
        yield from _norm(f"{layer}.post_attention_layernorm", hidden, bias=False)
        if i < LM_FIRST_DENSE_LAYERS:
            yield from _gated_mlp(f"{layer}.mlp", hidden, LM_INTERMEDIATE_SIZE)
            continue
        yield from _linear(f"{layer}.mlp.gate", LM_ROUTED_EXPERTS, hidden, bias=False)
        for expert in range(LM_ROUTED_EXPERTS):
            yield from _gated_mlp(f"{layer}.mlp.experts.{expert}", hidden, LM_MOE_INTERMEDIATE_SIZE)
        yield from _gated_mlp(f"{layer}.mlp.shared_experts", hidden, LM_MOE_INTERMEDIATE_SIZE * LM_SHARED_EXPERTS)
    yield from _norm("model.norm", hidden, bias=False)
    yield _weight("lm_head.weight", vocab_size, hidden)


def sam_tensors(last_channels: int) -> Iterator[TensorSpec]:
    """SAM ViT-B image encoder (vLLM deepencoder.ImageEncoderViT), 1024 px input."""
    prefix, dim, grid, window = "model.sam_model", 768, 1024 // 16, 14
    head_dim = dim // 12
    yield from _conv(f"{prefix}.patch_embed.proj", dim, 3, 16, bias=True)
    yield _weight(f"{prefix}.pos_embed", 1, grid, grid, dim)
    for i in range(12):
        block = f"{prefix}.blocks.{i}"
        # Global-attention blocks see the whole grid, the others a 14x14 window.
        span = grid if i in SAM_GLOBAL_ATTENTION_BLOCKS else window
        yield from _norm(f"{block}.norm1", dim)
        yield from _linear(f"{block}.attn.qkv", 3 * dim, dim)
        yield from _linear(f"{block}.attn.proj", dim, dim)
        yield _weight(f"{block}.attn.rel_pos_h", 2 * span - 1, head_dim)
        yield _weight(f"{block}.attn.rel_pos_w", 2 * span - 1, head_dim)
        yield from _norm(f"{block}.norm2", dim)
        yield from _linear(f"{block}.mlp.lin1", 4 * dim, dim)
        yield from _linear(f"{block}.mlp.lin2", dim, 4 * dim)
    yield from _conv(f"{prefix}.neck.0", 256, dim, 1)
    yield from _norm(f"{prefix}.neck.1", 256)
    yield from _conv(f"{prefix}.neck.2", 256, 256, 3)
    yield from _norm(f"{prefix}.neck.3", 256)
    yield from _conv(f"{prefix}.net_2", 512, 256, 3)
    yield from _conv(f"{prefix}.net_3", last_channels, 512, 3)


def clip_tensors() -> Iterator[TensorSpec]:
    """CLIP-L/14 at 224 px (vLLM deepencoder.DeepCLIPVisionTransformer).

    The real checkpoint stores attention as one fused `qkv_proj`, which is
    also what vLLM's module holds, so no stacking happens on load.
    """
    prefix, dim, positions = "model.vision_model", 1024, (224 // 14) ** 2 + 1
    yield _weight(f"{prefix}.embeddings.class_embedding", dim)
    # Unused on the OCR path (CLIP takes SAM's features as patch embeddings),
    # but present in the real checkpoint and a parameter in vLLM.
    yield from _conv(f"{prefix}.embeddings.patch_embedding", dim, 3, 14)
    yield _weight(f"{prefix}.embeddings.position_embedding.weight", positions, dim)
    yield from _norm(f"{prefix}.pre_layrnorm", dim)  # sic, as in transformers' CLIP
    for i in range(24):
        layer = f"{prefix}.transformer.layers.{i}"
        yield from _linear(f"{layer}.self_attn.qkv_proj", 3 * dim, dim)
        yield from _linear(f"{layer}.self_attn.out_proj", dim, dim)
        yield from _norm(f"{layer}.layer_norm1", dim)
        yield from _linear(f"{layer}.mlp.fc1", 4 * dim, dim)
        yield from _linear(f"{layer}.mlp.fc2", dim, 4 * dim)
        yield from _norm(f"{layer}.layer_norm2", dim)


def qwen2_encoder_tensors() -> Iterator[TensorSpec]:
    """The Qwen2-0.5B-shaped encoder of OCR-2 (vLLM deepencoder2.Qwen2Decoder2Encoder).

    transformers' Qwen2Model sits two wrappers deep, hence `model.model`; its
    token embedding is deleted, its place taken by learned queries per view size.
    """
    prefix, dim, kv_dim, intermediate = "model.qwen2_model", 896, 2 * 64, 4864
    for i in range(24):
        layer = f"{prefix}.model.model.layers.{i}"
        yield from _linear(f"{layer}.self_attn.q_proj", dim, dim)
        yield from _linear(f"{layer}.self_attn.k_proj", kv_dim, dim)
        yield from _linear(f"{layer}.self_attn.v_proj", kv_dim, dim)
        yield from _linear(f"{layer}.self_attn.o_proj", dim, dim, bias=False)
        yield from _gated_mlp(f"{layer}.mlp", dim, intermediate)
        yield from _norm(f"{layer}.input_layernorm", dim, bias=False)
        yield from _norm(f"{layer}.post_attention_layernorm", dim, bias=False)
    yield from _norm(f"{prefix}.model.model.norm", dim, bias=False)
    yield _weight(f"{prefix}.query_768.weight", (768 // 16 // 4) ** 2, dim)
    yield _weight(f"{prefix}.query_1024.weight", (1024 // 16 // 4) ** 2, dim)


def vision_tensors(family: str) -> Iterator[TensorSpec]:
    """Vision towers, projector and the learned layout embeddings."""
    yield from sam_tensors(SAM_LAST_CHANNELS[family])
    yield from clip_tensors() if family == "ocr" else qwen2_encoder_tensors()
    yield from _linear("model.projector.layers", LM_HIDDEN_SIZE, PROJECTOR_INPUT_DIM[family])
    if family == "ocr":  # OCR-2 has no row-end token
        yield _weight("model.image_newline", LM_HIDDEN_SIZE)
    yield _weight("model.view_seperator", LM_HIDDEN_SIZE)  # sic, as in the real checkpoint


def checkpoint_tensors(family: str, vocab_size: int) -> list[TensorSpec]:
    """Every tensor of the family's model.safetensors, by its HF name."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {FAMILIES}")
    return [*language_model_tensors(vocab_size), *vision_tensors(family)]


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

STORAGE_DTYPE = torch.bfloat16


def _tensor_seed(seed: int, name: str) -> int:
    """A per-tensor seed, so a tensor's values depend only on (seed, name)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _materialise(spec: TensorSpec, seed: int) -> torch.Tensor:
    if spec.init == "ones":
        return torch.ones(spec.shape, dtype=STORAGE_DTYPE)
    if spec.init == "zeros":
        return torch.zeros(spec.shape, dtype=STORAGE_DTYPE)
    generator = torch.Generator().manual_seed(_tensor_seed(seed, spec.name))
    return (torch.randn(spec.shape, generator=generator) * INIT_STD).to(STORAGE_DTYPE)


def write_checkpoint(path: Path, specs: list[TensorSpec], seed: int) -> None:
    tensors = {spec.name: _materialise(spec, seed) for spec in specs}
    if len(tensors) != len(specs):
        raise ValueError("duplicate tensor names in the checkpoint layout")
    save_file(tensors, str(path), metadata={"format": "pt"})


def write_config(model_dir: Path, family: str) -> dict:
    """Write config.json for the tokenizer already in model_dir; return the config."""
    model_dir = Path(model_dir)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    config = model_config(family, tokenizer.get_vocab_size(with_added_tokens=True))
    _write_json(model_dir / "config.json", config)
    return config


def _stamp(family: str, seed: int) -> str:
    return json.dumps({"builder_version": BUILDER_VERSION, "family": family, "seed": seed}, sort_keys=True)


def is_built(model_dir: Path, family: str, seed: int = 0) -> bool:
    """Whether model_dir holds a complete model of this builder version, family and seed."""
    stamp = Path(model_dir) / STAMP_FILE
    return stamp.is_file() and stamp.read_text(encoding="utf-8").strip() == _stamp(family, seed)


def _write_model(model_dir: Path, family: str, seed: int) -> None:
    build_tokenizer(model_dir)
    config = write_config(model_dir, family)
    write_checkpoint(model_dir / "model.safetensors", checkpoint_tensors(family, config["vocab_size"]), seed)
    # Written last: its presence means every other file is complete.
    (model_dir / STAMP_FILE).write_text(_stamp(family, seed) + "\n", encoding="utf-8")


def _move_into_place(staging: Path, out_dir: Path, family: str, seed: int) -> None:
    """Rename staging to out_dir, replacing a stale out_dir.

    Tolerates a concurrent builder that got there first with the same model.
    """
    if out_dir.exists():
        stale = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.stale.", dir=out_dir.parent))
        out_dir.rename(stale / out_dir.name)
        shutil.rmtree(stale)
    try:
        staging.rename(out_dir)
    except OSError:
        if not is_built(out_dir, family, seed):
            raise
        shutil.rmtree(staging)


def build_tiny_model(out_dir: Path, family: str, seed: int = 0) -> Path:
    """Build the tiny `family` ("ocr" or "ocr2") model into out_dir; return out_dir.

    A no-op when out_dir already holds this builder version's model of that
    family and seed. Otherwise the model is written into a temporary sibling
    directory and renamed into place, so a crash never leaves a half-written
    model that looks complete. The same seed gives byte-identical files.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; expected one of {FAMILIES}")
    out_dir = Path(out_dir)
    if is_built(out_dir, family, seed):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.building.", dir=out_dir.parent))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would stick after the rename
        _write_model(staging, family, seed)
        _move_into_place(staging, out_dir, family, seed)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
