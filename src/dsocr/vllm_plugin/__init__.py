"""A vLLM plugin: DeepSeek-OCR / OCR-2 take already-processed views in any resolution mode.

vLLM's own processor decodes and tiles every image again, always in Gundam
mode. With this plugin the same engine also accepts, per image, the views
`dsocr.preprocessing` made (the dict contract is in `dsocr.vllm_plugin.inputs`):

    from dsocr.vllm_plugin import ENGINE_ARGS, image_data

    llm = vllm.LLM(model=..., **ENGINE_ARGS)
    image = preprocess_image(jpeg_bytes, resolution_mode("ocr", "small"))
    llm.generate({"prompt": "<image>\\nFree OCR.", "multi_modal_data": {"image": image_data(image)}})

PIL images keep vLLM's own path, unchanged. vLLM calls `register` in each of
its processes through the `vllm.general_plugins` entry point; it replaces the
classes of both architectures with subclasses that add the views path.
"""

from __future__ import annotations

from dsocr.families import OCR, OCR2

from .inputs import ImageDataError, check_image_data, image_data, views_data

# What an engine needs for the views path: dict inputs are refused without
# enable_mm_embeds. cudagraph_mm_encoder must stay off (its default).
ENGINE_ARGS = {"enable_mm_embeds": True}

# Registered lazily ("module:class"), as vLLM does its own models: importing
# the model code is left to the processes that build the model.
MODEL_CLASSES = {
    OCR.architecture: "dsocr.vllm_plugin.models:DeepseekOCRWithViews",
    OCR2.architecture: "dsocr.vllm_plugin.models:DeepseekOCR2WithViews",
}

__all__ = ["ENGINE_ARGS", "ImageDataError", "check_image_data", "image_data", "register", "views_data"]


def register() -> None:
    """Register both model classes under their architecture names (idempotent)."""
    from vllm import ModelRegistry

    for architecture, model_class in MODEL_CLASSES.items():
        ModelRegistry.register_model(architecture, model_class)
