"""The two model families served, DeepSeek-OCR and DeepSeek-OCR-2: every fact about each, in one table.

The view sizes are DeepSeek's (`config.py` of both repositories) and vLLM's
(`DeepseekOCRProcessor` as built by `deepseek_ocr.py` / `deepseek_ocr2.py`).
DeepSeek-OCR-2's encoder has learned queries only for 768- and 1024-pixel
views (144 and 256 queries), so that family offers Base and Gundam only, with
at most 6 tiles (its config's stated maximum); DeepSeek-OCR allows up to 9.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

# Every resolution mode there is (dsocr.preprocessing.modes defines each one's views).
ModeName = Literal["tiny", "small", "base", "large", "gundam"]
MODES: tuple[ModeName, ...] = get_args(ModeName)
DEFAULT_MODE: ModeName = "gundam"
# "v1": a newline token ends every row of view tokens; "v2": no newline tokens.
TokenLayout = Literal["v1", "v2"]
# Gundam cuts at least this many tiles; at most `Family.max_crops_limit`, by default 6.
MIN_CROPS = 2
DEFAULT_MAX_CROPS = 6


@dataclass(frozen=True)
class Family:
    key: str  # "ocr" | "ocr2"
    served_name: str  # the model name clients send
    hf_id: str  # accepted as an alias
    architecture: str  # config.json "architectures"
    tile_size: int  # side of a Gundam tile, in pixels
    token_layout: TokenLayout
    modes: tuple[ModeName, ...]  # the resolution modes its encoder accepts
    max_crops_limit: int  # the most tiles Gundam may cut
    tiny_model: str  # directory of its tiny test model (dsocr.tiny_models) in the cache


OCR = Family(
    key="ocr", served_name="deepseek-ocr", hf_id="deepseek-ai/DeepSeek-OCR",
    architecture="DeepseekOCRForCausalLM", tile_size=640, token_layout="v1", modes=MODES,
    max_crops_limit=9, tiny_model="tiny-deepseek-ocr",
)  # fmt: skip
OCR2 = Family(
    key="ocr2", served_name="deepseek-ocr-2", hf_id="deepseek-ai/DeepSeek-OCR-2",
    architecture="DeepseekOCR2ForCausalLM", tile_size=768, token_layout="v2", modes=("base", "gundam"),
    max_crops_limit=6, tiny_model="tiny-deepseek-ocr2",
)  # fmt: skip
FAMILIES = (OCR, OCR2)
KEYS = tuple(family.key for family in FAMILIES)
# The most tiles any family accepts: the bound a request's max_crops is checked against
# before the served family is known (the family's own limit is checked where it is).
MAX_CROPS_LIMIT = max(family.max_crops_limit for family in FAMILIES)


def family(key: str) -> Family:
    """The family with this key ("ocr", "ocr2"); ValueError naming the keys otherwise."""
    for candidate in FAMILIES:
        if candidate.key == key:
            return candidate
    raise ValueError(f"unknown model family {key!r}; expected one of {KEYS}")


def family_of(model: str) -> Family:
    """The family of a model given as HF id or local checkpoint directory."""
    config = Path(model) / "config.json"
    if config.is_file():
        architectures = json.loads(config.read_text()).get("architectures", [])
        for candidate in FAMILIES:
            if candidate.architecture in architectures:
                return candidate
        raise ValueError(f"{model}: architectures {architectures} are not DeepSeek-OCR or OCR-2")
    name = model.rstrip("/").lower()
    return OCR2 if name.endswith(("ocr-2", "ocr2")) else OCR
