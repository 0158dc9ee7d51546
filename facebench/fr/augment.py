"""FR training images from any train reader, with augmentation that is a fixed function of the sample.

Random flips and RandomErasing are drawn from a generator seeded by (seed, epoch, index), not from the
worker's global RNG, so results do not depend on the number of DataLoader workers, on the number of
processes, or on whether the run was interrupted and resumed.
"""

from __future__ import annotations

from typing import Any

from ..data.tensors import to_model_input


class AugmentedFaces:
    """Torch-style dataset over a train reader; items are keyed by ``(epoch, index)``."""

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

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[Any, int]:
        import torch

        epoch, index = key if isinstance(key, tuple) else (0, key)
        x = to_model_input(self.reader.image(index), self.input_size)[0]
        if self.flip or self.random_erasing:
            g = torch.Generator().manual_seed(self._sample_seed(epoch, index) % (2**63 - 1))
            if self.flip and torch.rand((), generator=g).item() < 0.5:
                x = x.flip(-1)
            if self.random_erasing:
                x = self._erase(x, g)
        return x, int(self.reader.label(index))

    @staticmethod
    def _erase(x: Any, g: Any, p: float = 0.5, scale: tuple[float, float] = (0.02, 0.33),
               ratio: tuple[float, float] = (0.3, 3.3)) -> Any:
        """torchvision ``RandomErasing()`` defaults (p 0.5, value 0), drawn from generator ``g``."""
        import math

        import torch

        if torch.rand((), generator=g).item() >= p:
            return x
        _, h, w = x.shape
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
                x = x.clone()
                x[:, i:i + eh, j:j + ew] = 0.0
                return x
        return x
