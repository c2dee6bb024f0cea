"""DeepSeek-OCR and DeepSeek-OCR-2 as vLLM implements them, taking uint8 views too.

Views from image data (`dsocr.vllm_plugin.inputs`) arrive as uint8 on the
model's device and are normalised there, bit for bit as the reference
processor does on the CPU, then cast to the model dtype: the values vLLM's
own processor hands over for a PIL image, whose float views pass untouched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from vllm.config import VllmConfig
from vllm.model_executor.models.deepseek_ocr import DeepseekOCRDummyInputsBuilder, DeepseekOCRForCausalLM
from vllm.model_executor.models.deepseek_ocr2 import DeepseekOCR2DummyInputsBuilder, DeepseekOCR2ForCausalLM
from vllm.multimodal import MULTIMODAL_REGISTRY

from dsocr.preprocessing.normalize import normalize

from .inputs import GLOBAL_VIEWS, TILES
from .processing import VIEW_SIZES, OCR2ProcessingInfo, OCR2Processor, OCRProcessingInfo, OCRProcessor


def encoder_pixels(views: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 views normalised and cast to `dtype` on their device; float views as they are."""
    if views.dtype != torch.uint8:
        return views
    return normalize(views).to(dtype)


if TYPE_CHECKING:  # what the mixin below is mixed into
    from vllm.model_executor.models.deepseek_ocr import DeepseekOCRForCausalLM as _Model
else:
    _Model = object


class ViewsModel(_Model):
    """Mixed in before a DeepSeek-OCR model class."""

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        self.views_dtype = vllm_config.model_config.dtype

    def _parse_and_validate_image_input(self, **kwargs: object):
        # The view sizes only keep different modes out of one batch.
        kwargs.pop(VIEW_SIZES, None)
        for key in (GLOBAL_VIEWS, TILES):
            if isinstance(kwargs.get(key), torch.Tensor):
                kwargs[key] = encoder_pixels(kwargs[key], self.views_dtype)
        return super()._parse_and_validate_image_input(**kwargs)


@MULTIMODAL_REGISTRY.register_processor(
    OCRProcessor, info=OCRProcessingInfo, dummy_inputs=DeepseekOCRDummyInputsBuilder
)
class DeepseekOCRWithViews(ViewsModel, DeepseekOCRForCausalLM):
    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        # The CUDA-graph encoder path takes its inputs straight from the
        # batch (no normalisation) and is built for Gundam's sizes only.
        if vllm_config.compilation_config.cudagraph_mm_encoder:
            raise ValueError("DeepSeek-OCR with per-request resolution modes needs cudagraph_mm_encoder=False")
        super().__init__(vllm_config=vllm_config, prefix=prefix)


@MULTIMODAL_REGISTRY.register_processor(
    OCR2Processor, info=OCR2ProcessingInfo, dummy_inputs=DeepseekOCR2DummyInputsBuilder
)
class DeepseekOCR2WithViews(ViewsModel, DeepseekOCR2ForCausalLM):
    pass
