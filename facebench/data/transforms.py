"""The standard FR training transforms: RGB, resize, horizontal flip, ``(x/255-0.5)/0.5``, RandomErasing.

These are the arcface_torch / SOTA-FR defaults (the Vec2Face recipe adds RandomErasing after the
normalisation), written once so trainers and evaluators feed models identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def normalize(images: np.ndarray):
    """``uint8`` NHWC or HWC RGB -> float tensor NCHW/CHW in [-1, 1] (``(x/255-0.5)/0.5``)."""
    import torch

    array = np.array(images, dtype=np.uint8, copy=True)  # writable, contiguous: torch shares its memory
    tensor = torch.from_numpy(array).to(torch.float32)
    tensor = tensor.permute(2, 0, 1) if tensor.ndim == 3 else tensor.permute(0, 3, 1, 2)
    return (tensor / 255.0 - 0.5) / 0.5


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Square-resize an RGB array (bilinear) unless it already has that size."""
    if image.shape[0] == size and image.shape[1] == size:
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


@dataclass
class FRTransform:
    """Callable: RGB ``uint8`` HxWx3 -> tensor (3, size, size) in [-1, 1].

    ``flip`` mirrors with probability 0.5 and ``random_erasing`` applies torchvision's RandomErasing with
    probability ``erasing_p``; both draw from torch's RNG, which DataLoader seeds per worker.
    """

    size: int = 112
    flip: bool = False
    random_erasing: bool = False
    erasing_p: float = 0.5

    def __call__(self, image: np.ndarray):
        import torch

        tensor = normalize(resize(image, self.size))
        if self.flip and torch.rand(()) < 0.5:
            tensor = tensor.flip(-1)
        if self.random_erasing:
            from torchvision.transforms import RandomErasing

            tensor = RandomErasing(p=self.erasing_p, value=0)(tensor)
        return tensor


def train_transform(size: int = 112, random_erasing: bool = False) -> FRTransform:
    """Training augmentation: flip, plus RandomErasing when asked (the Vec2Face recipe)."""
    return FRTransform(size=size, flip=True, random_erasing=random_erasing)


def eval_transform(size: int = 112) -> FRTransform:
    """Deterministic evaluation transform: resize and normalise only."""
    return FRTransform(size=size)
