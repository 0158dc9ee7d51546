"""Which images each optimizer step sees: a fixed function of (seed, epoch, step, rank).

A global batch of ``global_batch`` indices is drawn per step from a seeded permutation of the epoch
and split into equal contiguous slices, one per rank. The same global batch is therefore seen by one
process or by several, and a resumed run restarts mid-epoch at the exact next batch. Keys are
``(epoch, index)`` pairs so the dataset can seed per-sample augmentation the same way.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..errors import ConfigError


class GlobalBatchSampler:
    """Batch sampler for ``DataLoader(batch_sampler=...)`` yielding this rank's ``(epoch, index)`` keys."""

    def __init__(self, num_items: int, global_batch: int, *, rank: int = 0, world_size: int = 1,
                 seed: int = 0, shuffle: bool = True):
        if global_batch % world_size:
            raise ConfigError(f"batch size {global_batch} is not divisible by the {world_size} processes")
        if num_items < global_batch:
            raise ConfigError(f"the dataset has {num_items} images, fewer than one batch of {global_batch}")
        self.num_items = num_items
        self.global_batch = global_batch
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start_step = 0

    @property
    def steps_per_epoch(self) -> int:
        """Full global batches per epoch (the incomplete last one is dropped, as in every FR trainer)."""
        return self.num_items // self.global_batch

    @property
    def local_batch(self) -> int:
        return self.global_batch // self.world_size

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch = epoch
        self.start_step = start_step

    def order(self, epoch: int) -> list[int]:
        import torch

        if not self.shuffle:
            return list(range(self.num_items))
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_items, generator=g).tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.order(self.epoch)
        lo = self.rank * self.local_batch
        for step in range(self.start_step, self.steps_per_epoch):
            batch = order[step * self.global_batch:(step + 1) * self.global_batch]
            yield [(self.epoch, i) for i in batch[lo:lo + self.local_batch]]

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start_step
