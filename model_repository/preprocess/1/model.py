"""Preprocessing model: one request's image bytes + prompt -> model inputs.

Tensor contract (also in config.pbtxt):
  inputs   IMAGE       UINT8 [n]        encoded image file, raw bytes
           PROMPT      UINT8 [n]        UTF-8 prompt, one "<image>" placeholder
  outputs  IMAGE_RGB   UINT8 [H, W, 3]  decoded image, EXIF orientation applied
           PROMPT_OUT  UINT8 [n]        the prompt, checked

Runs as several CPU instances (separate processes) so that decoding never
waits on the GIL of the process that drives the GPU.
"""

import io

import numpy as np
from PIL import Image, ImageOps

from dsocr import triton_tensors as tt

IMAGE_PLACEHOLDER = "<image>"


def decode_rgb(data: bytes) -> np.ndarray:
    if not data:
        raise ValueError("IMAGE is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
    except Exception as exc:  # PIL raises many types for bad files
        raise ValueError(f"IMAGE is not a decodable image: {exc}") from exc
    return np.asarray(image)


class TritonPythonModel:
    def execute(self, requests):
        return [self._process(request) for request in requests]

    def _process(self, request):
        try:
            image = decode_rgb(tt.input_tensor(request, "IMAGE").numpy().tobytes())
            prompt = tt.input_text(request, "PROMPT")
            if prompt.count(IMAGE_PLACEHOLDER) != 1:
                raise ValueError(f"PROMPT must contain exactly one {IMAGE_PLACEHOLDER} placeholder")
        except ValueError as exc:
            return tt.error_response(str(exc))
        return tt.pb_utils.InferenceResponse(
            output_tensors=[
                tt.output_tensor("IMAGE_RGB", image),
                tt.output_text("PROMPT_OUT", prompt),
            ]
        )
