"""Preprocessing model: one request's image bytes + prompt -> the views to encode.

Tensor contract (also in config.pbtxt; names and types: dsocr.triton.contract):
  inputs   IMAGE         UINT8 [n]           encoded image file (JPEG, PNG, WebP, BMP, GIF, TIFF)
           PROMPT        UINT8 [n]           UTF-8 prompt with one "<image>" placeholder (checked here;
                                             the ensemble hands it to the vLLM model directly)
           PARAMETERS    UINT8 [n]           UTF-8 JSON (dsocr.parameters): resolution_mode, max_crops; empty: defaults
  outputs  GLOBAL_VIEW   UINT8 [1, 3, B, B]  the whole image, B = the mode's base size
           TILES         UINT8 [t, 3, T, T]  Gundam tiles (t may be 0), T = the family's tile size
           SPATIAL_CROP  INT64 [1, 2]        tile grid (columns, rows); (1, 1) without tiles

Pixels stay uint8 (4x fewer bytes than float32 through Triton); the vLLM
model normalises them where the model runs. A bad image, prompt or parameter
is an INVALID_ARGUMENT error worded as a refusal naming the problem
(dsocr.triton.errors); anything else that fails is an INTERNAL error. The family (DeepSeek-OCR or
OCR-2) follows the served model.
"""

from pathlib import Path

import numpy as np

from dsocr import envs
from dsocr.engine_config import served_model
from dsocr.errors import RequestError
from dsocr.families import DEFAULT_MODE, family_of
from dsocr.parameters import parse_parameters
from dsocr.preprocessing import DecodeLimits, preprocess_request, resolution_mode, warm_up
from dsocr.triton import contract
from dsocr.triton import tensors as tt
from dsocr.triton.errors import refusal, server_fault

MODEL_REPOSITORY = Path(__file__).parents[2]


class TritonPythonModel:
    def initialize(self, args):
        contract.check(args["model_config"], contract.PREPROCESS_TENSORS)
        self._family = family_of(served_model(MODEL_REPOSITORY)).key
        self._limits = DecodeLimits(
            max_bytes=int(envs.value("DSOCR_MAX_IMAGE_BYTES")),
            max_pixels=int(envs.value("DSOCR_MAX_IMAGE_PIXELS")),
        )
        warm_up()  # the first request must not wait for the resize passes to compile

    def execute(self, requests):
        return [self._process(request) for request in requests]

    def _process(self, request):
        try:
            parameters = parse_parameters(tt.input_bytes(request, "PARAMETERS"))
            mode = resolution_mode(self._family, parameters.resolution_mode or DEFAULT_MODE, parameters.max_crops)
            prompt = tt.input_text(request, "PROMPT")
            [image] = preprocess_request(prompt, [tt.input_bytes(request, "IMAGE")], mode, self._limits)
        except RequestError as exc:  # a bad image, prompt or parameter: the request's fault
            return tt.error_response(refusal(exc.code, exc.message))
        except Exception as exc:  # ours: never the client's
            tt.pb_utils.Logger.log_error(f"preprocess: a request failed: {exc!r}")
            return tt.error_response(server_fault(exc), tt.pb_utils.TritonError.INTERNAL)
        return tt.pb_utils.InferenceResponse(
            output_tensors=[
                tt.output_tensor("GLOBAL_VIEW", image.global_view.reshape(1, *image.global_view.shape)),
                tt.output_tensor("TILES", image.tiles),
                tt.output_tensor("SPATIAL_CROP", np.array([image.spatial_crop], dtype=np.int64)),
            ]
        )
