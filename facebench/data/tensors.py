"""The one conversion from decoded images to model input: uint8 NHWC RGB -> float NCHW in [-1, 1].

Every model facebench feeds (FR backbones, the Vec2Face trainer, pose models, evaluation) normalises
``(x/255 - 0.5) / 0.5`` and resizes the same way, so it is written once here.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def to_model_input(images: np.ndarray, size: int | None = None) -> Any:
    """``uint8`` NHWC RGB -> float tensor (N,3,S,S) in [-1, 1], resized (bilinear, antialiased) if needed."""
    import torch

    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # e.g. decoded from a read-only buffer; torch wants writable memory
        arr = arr.copy()
    return uint8_to_input(torch.from_numpy(arr), size)


def uint8_to_input(x: Any, size: int | None = None, *, channels_first: bool = False) -> Any:
    """The same conversion on a ``uint8`` tensor, on whatever device it is: loaders send ``uint8`` (a
    quarter of float32's bytes through worker pipes and the PCIe bus) and the GPU normalises.
    ``channels_first``: the tensor is already (N,3,H,W)."""
    import torch.nn.functional as F

    if not channels_first:
        x = x.permute(0, 3, 1, 2)
    x = x.float().div_(127.5).sub_(1.0)
    if size is not None and (x.shape[-1] != size or x.shape[-2] != size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def to_uint8(images) -> np.ndarray:
    """The inverse: (N,3,H,W) tensor in [-1, 1] -> (N,H,W,3) ``uint8``, clipping as the release does."""
    import torch

    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()
