"""Tensor I/O for the Python-backend models, through DLPack only.

The Triton 2.51 Python-backend stub predates numpy 2: with numpy 2 installed
`as_numpy()` corrupts UINT8 inputs and BYTES (TYPE_STRING) tensors crash the
stub. DLPack conversion does not go through numpy, so every tensor crosses the
stub as torch, and text travels as UTF-8 in UINT8 tensors. Newer stubs accept
both ways; one interface keeps the models identical on every Triton release.

Imported only inside a Triton stub process (`triton_python_backend_utils`).
"""

from __future__ import annotations

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from dsocr.errors import RequestError


class MissingInput(RequestError):
    def __init__(self, name: str) -> None:
        super().__init__("missing_input", f"input {name} is required", name)


def input_tensor(request, name: str) -> torch.Tensor:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        raise MissingInput(name)
    return torch.from_dlpack(tensor.to_dlpack())


def input_bytes(request, name: str) -> bytes:
    return input_tensor(request, name).numpy().tobytes()


def input_text(request, name: str) -> str:
    try:
        return input_bytes(request, name).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError("invalid_utf8", f"input {name} is not valid UTF-8: {exc}", name) from exc


def _c_order_strides(shape) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(size, 1)
    return tuple(reversed(strides))


def output_tensor(name: str, value: torch.Tensor | np.ndarray):
    """An output tensor sharing `value`'s memory where Triton allows it.

    Triton takes DLPack tensors only with exact C-order strides; numpy and
    torch call an array contiguous even when a size-1 axis (`a[None]`) has
    another stride, so that case is copied.
    """
    if isinstance(value, np.ndarray):
        if not value.flags.writeable:  # torch refuses to share read-only memory
            value = value.copy()
        value = torch.from_numpy(value)
    if value.stride() != _c_order_strides(value.shape):
        value = torch.empty(value.shape, dtype=value.dtype).copy_(value)
    return pb_utils.Tensor.from_dlpack(name, torch.utils.dlpack.to_dlpack(value))


def output_text(name: str, text: str):
    return output_tensor(name, np.frombuffer(bytearray(text.encode("utf-8")), dtype=np.uint8))


def error_response(message: str, code=None):
    code = pb_utils.TritonError.INVALID_ARG if code is None else code
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
