"""FR training images from any train reader, with augmentation that is a fixed function of the sample.

Random flips and RandomErasing are drawn from a generator seeded by (seed, epoch, index), not from the
worker's global RNG, so results do not depend on the number of DataLoader workers, on the number of
processes, or on whether the run was interrupted and resumed. Workers draw them and send ``uint8``
images; the training device normalises and applies them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.tensors import to_model_input, uint8_to_input

#: Columns of the augmentation parameters each item carries: flip, erased box (top, left, height, width).
AUG_COLUMNS = ("flip", "top", "left", "height", "width")


class AugmentedFaces:
    """Torch-style dataset over a train reader; items are keyed by ``(epoch, index)``.

    An item is ``(image, label, params)``: the ``uint8`` (3,S,S) image (resized in the worker, and rounded
    back to uint8, only when the stored size differs from the input size), its label, and the drawn
    augmentation (:data:`AUG_COLUMNS`). The device applies them with :func:`apply_augmentation`:
    workers send a quarter of float32's bytes and the GPU does the arithmetic.
    """

    def __init__(self, reader: Any, *, input_size: int, flip: bool = True, random_erasing: bool = False,
                 seed: int = 0):
        self.reader = reader
        self.input_size = input_size
        self.flip = flip
        self.random_erasing = random_erasing
        self.seed = seed

    def __len__(self) -> int:
        return len(self.reader)

    def _sample_seed(self, epoch: int, index: int) -> int:
        return (self.seed * 1_000_003 + epoch) * 2_147_483_647 + index

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[Any, int, Any]:
        import torch

        epoch, index = key if isinstance(key, tuple) else (0, key)
        image = np.asarray(self.reader.image(index))
        size = self.input_size
        if image.shape[0] != size or image.shape[1] != size:
            x = to_model_input(image, size)[0]
            image = x.add(1.0).mul(127.5).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        pixels = torch.from_numpy(np.ascontiguousarray(image).copy()).permute(2, 0, 1).contiguous()
        params = torch.zeros(len(AUG_COLUMNS), dtype=torch.int64)
        if self.flip or self.random_erasing:
            g = torch.Generator().manual_seed(self._sample_seed(epoch, index) % (2**63 - 1))
            if self.flip and torch.rand((), generator=g).item() < 0.5:
                params[0] = 1
            if self.random_erasing:
                params[1:] = torch.tensor(self._erase_box(size, size, g))
        return pixels, int(self.reader.label(index)), params

    @staticmethod
    def _erase_box(h: int, w: int, g: Any, p: float = 0.5, scale: tuple[float, float] = (0.02, 0.33),
                   ratio: tuple[float, float] = (0.3, 3.3)) -> tuple[int, int, int, int]:
        """torchvision ``RandomErasing()`` defaults (p 0.5, value 0), drawn from generator ``g``:
        ``(top, left, height, width)``, all zero when nothing is erased."""
        import math

        import torch

        if torch.rand((), generator=g).item() >= p:
            return 0, 0, 0, 0
        area = h * w
        log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
        for _ in range(10):
            target = area * (scale[0] + (scale[1] - scale[0]) * torch.rand((), generator=g).item())
            aspect = math.exp(log_lo + (log_hi - log_lo) * torch.rand((), generator=g).item())
            eh = int(round(math.sqrt(target * aspect)))
            ew = int(round(math.sqrt(target / aspect)))
            if eh < h and ew < w:
                i = int(torch.randint(0, h - eh + 1, (1,), generator=g).item())
                j = int(torch.randint(0, w - ew + 1, (1,), generator=g).item())
                return i, j, eh, ew
        return 0, 0, 0, 0


def apply_augmentation(images: Any, params: Any) -> Any:
    """``uint8`` (N,3,S,S) images and their :data:`AUG_COLUMNS` -> float model input in [-1, 1]: mirrored
    where ``flip``, then the box set to 0 (torchvision's RandomErasing value). Elementwise on the
    images' device, no host synchronisation."""
    import torch

    x = uint8_to_input(images, None, channels_first=True)
    params = params.to(x.device)
    flip = params[:, 0].bool()[:, None, None, None]
    x = torch.where(flip, x.flip(-1), x)
    top, left, height, width = (params[:, k, None, None] for k in range(1, 5))
    rows = torch.arange(x.shape[-2], device=x.device)[None, :, None]
    cols = torch.arange(x.shape[-1], device=x.device)[None, None, :]
    box = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
    return x.masked_fill(box[:, None], 0.0)
