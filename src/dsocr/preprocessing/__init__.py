"""Preprocessing for DeepSeek-OCR / DeepSeek-OCR-2: encoded image bytes and a
prompt in, the uint8 global view, tiles, spatial crop and image token count
of each image out, pixel-for-pixel what DeepSeek's and vLLM's processors make.

    mode = resolution_mode("ocr", "gundam")
    [image] = preprocess_request("<image>\\nFree OCR.", [jpeg_bytes], mode)

Normalisation to float lives in `dsocr.preprocessing.normalize` (torch),
applied where the model runs; nothing here imports torch.
"""

from .decode import SUPPORTED_FORMATS, DecodeLimits, decode_image
from .errors import ImageError, PreprocessError, PromptError
from .modes import ResolutionMode, resolution_mode
from .pipeline import PreprocessedImage, image_views, preprocess_image, preprocess_request, warm_up
from .prompt import IMAGE_PLACEHOLDER, check_placeholders, prompt_token_ids
from .tiles import image_token_count, spatial_crop

__all__ = [
    "IMAGE_PLACEHOLDER",
    "SUPPORTED_FORMATS",
    "DecodeLimits",
    "ImageError",
    "PreprocessError",
    "PreprocessedImage",
    "PromptError",
    "ResolutionMode",
    "check_placeholders",
    "decode_image",
    "image_token_count",
    "image_views",
    "preprocess_image",
    "preprocess_request",
    "prompt_token_ids",
    "resolution_mode",
    "spatial_crop",
    "warm_up",
]
