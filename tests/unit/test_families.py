import json

import pytest

from dsocr.families import OCR, OCR2, family_of


def test_hf_ids():
    assert family_of("deepseek-ai/DeepSeek-OCR") is OCR
    assert family_of("deepseek-ai/DeepSeek-OCR-2") is OCR2


def test_local_checkpoint_by_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["DeepseekOCR2ForCausalLM"]}))
    assert family_of(str(tmp_path)) is OCR2
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(ValueError, match="not DeepSeek-OCR"):
        family_of(str(tmp_path))
