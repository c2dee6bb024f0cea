"""uint8 views to the float tensor the vision encoders take, where the model runs.

Kept apart from the rest of the package so that decoding and tiling never
import torch.
"""

from __future__ import annotations

from functools import cache

import torch

# DeepSeek's image mean and std, per channel.
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


@cache
def _cpu_table() -> torch.Tensor:
    """float32 [3 * 256]: what torchvision makes of each byte value in each channel.

    Computed on the CPU, where the reference runs, with torchvision's
    operations in its order: to float32, divide by 255, subtract the mean,
    divide by the std. Other devices only copy these values: a CUDA division
    by a scalar may go through the reciprocal, which rounds differently for
    most byte values.
    """
    values = torch.arange(256, dtype=torch.uint8).expand(3, 1, 256)
    scaled = values.to(torch.float32).div(255)
    mean = torch.as_tensor(MEAN, dtype=torch.float32).view(-1, 1, 1)
    std = torch.as_tensor(STD, dtype=torch.float32).view(-1, 1, 1)
    return scaled.sub_(mean).div_(std).reshape(-1)


@cache
def _device_tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The table on `device`, and each channel's offset into it as [3, 1, 1]."""
    offsets = (torch.arange(3, dtype=torch.int32) * 256).view(-1, 1, 1)
    return _cpu_table().to(device), offsets.to(device)


def normalize(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 3, H, W] to float32, bit-identical to torchvision's
    `ToTensor()` then `Normalize(MEAN, STD)` on the same pixels, on any device.

    A table lookup per byte value and channel; the result is a new tensor.
    """
    if pixels.dtype != torch.uint8:
        raise TypeError(f"expected uint8 pixels, got {pixels.dtype}")
    if pixels.dim() < 3 or pixels.shape[-3] != 3:
        raise ValueError(f"expected [..., 3, H, W] pixels, got shape {tuple(pixels.shape)}")
    table, offsets = _device_tables(pixels.device)
    index = pixels.to(torch.int32).add_(offsets)
    return table.index_select(0, index.reshape(-1)).view(pixels.shape)
