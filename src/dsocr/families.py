"""The two model families served: DeepSeek-OCR and DeepSeek-OCR-2."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Family:
    key: str  # "ocr" | "ocr2"
    served_name: str  # the model name clients send
    hf_id: str  # accepted as an alias
    architecture: str  # config.json "architectures"


OCR = Family("ocr", "deepseek-ocr", "deepseek-ai/DeepSeek-OCR", "DeepseekOCRForCausalLM")
OCR2 = Family("ocr2", "deepseek-ocr-2", "deepseek-ai/DeepSeek-OCR-2", "DeepseekOCR2ForCausalLM")
FAMILIES = (OCR, OCR2)


def family_of(model: str) -> Family:
    """The family of a model given as HF id or local checkpoint directory."""
    config = Path(model) / "config.json"
    if config.is_file():
        architectures = json.loads(config.read_text()).get("architectures", [])
        for family in FAMILIES:
            if family.architecture in architectures:
                return family
        raise ValueError(f"{model}: architectures {architectures} are not DeepSeek-OCR or OCR-2")
    name = model.rstrip("/").lower()
    return OCR2 if name.endswith(("ocr-2", "ocr2")) else OCR
