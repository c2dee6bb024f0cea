"""Preprocessing model: one request's image bytes + prompt -> the views to encode.

Tensor contract (also in config.pbtxt):
  inputs   IMAGE             UINT8 [n]           encoded image file (JPEG, PNG, WebP, BMP, GIF, TIFF)
           PROMPT            UINT8 [n]           UTF-8 prompt with one "<image>" placeholder
           PARAMETERS        UINT8 [n]           UTF-8 JSON (dsocr.settings): resolution_mode, max_crops; empty: defaults
  outputs  GLOBAL_VIEW       UINT8 [1, 3, B, B]  the whole image, B = the mode's base size
           TILES             UINT8 [t, 3, T, T]  Gundam tiles (t may be 0), T = the family's tile size
           SPATIAL_CROP      INT64 [1, 2]        tile grid (columns, rows); (1, 1) without tiles
           NUM_IMAGE_TOKENS  INT32 [1]           how many tokens the image expands to
           PROMPT_OUT        UINT8 [n]           the prompt, checked

Pixels stay uint8 (4x fewer bytes than float32 through Triton); the vLLM
model normalises them where the model runs. A bad image, prompt or setting is
an INVALID_ARGUMENT error naming the problem. The family (DeepSeek-OCR or
OCR-2) follows the served model.
"""

from pathlib import Path

import numpy as np

from dsocr import contract, envs
from dsocr import triton_tensors as tt
from dsocr.engine_config import load_engine_args
from dsocr.families import family_of
from dsocr.preprocessing import DecodeLimits, preprocess_request, resolution_mode, warm_up
from dsocr.settings import parse_settings

ENGINE_CONFIG = Path(__file__).parents[2] / "vllm_model" / "1" / "engine.json"
DEFAULT_MODE = "gundam"


class TritonPythonModel:
    def initialize(self, args):
        contract.check(args["model_config"], contract.PREPROCESS)
        self._family = family_of(load_engine_args(ENGINE_CONFIG)["model"]).key
        self._limits = DecodeLimits(
            max_bytes=int(envs.get("DSOCR_MAX_IMAGE_BYTES")),
            max_pixels=int(envs.get("DSOCR_MAX_IMAGE_PIXELS")),
        )
        warm_up()  # the first request must not wait for the resize passes to compile

    def execute(self, requests):
        return [self._process(request) for request in requests]

    def _process(self, request):
        try:
            settings = parse_settings(tt.input_bytes(request, "PARAMETERS"))
            mode = resolution_mode(self._family, settings.resolution_mode or DEFAULT_MODE, settings.max_crops)
            prompt = tt.input_text(request, "PROMPT")
            [image] = preprocess_request(prompt, [tt.input_bytes(request, "IMAGE")], mode, self._limits)
        except ValueError as exc:  # PreprocessError, ParameterError: the request's fault
            return tt.error_response(str(exc))
        return tt.pb_utils.InferenceResponse(
            output_tensors=[
                tt.output_tensor("GLOBAL_VIEW", image.global_view.reshape(1, *image.global_view.shape)),
                tt.output_tensor("TILES", image.tiles),
                tt.output_tensor("SPATIAL_CROP", np.array([image.spatial_crop], dtype=np.int64)),
                tt.output_tensor("NUM_IMAGE_TOKENS", np.array([image.num_image_tokens], dtype=np.int32)),
                tt.output_text("PROMPT_OUT", prompt),
            ]
        )
