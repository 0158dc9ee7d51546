"""Torch datasets and samplers over any training-format reader.

:class:`FaceDataset` is map-style (use it with :class:`IdentitySampler` or ``DistributedSampler``);
:class:`IterableFaceDataset` shards itself across DDP ranks and DataLoader workers, for streaming reads
where a sampler is not wanted. Both reopen the reader's files lazily in each worker process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, Sampler, get_worker_info

from .sharding import identity_epoch, rank_slice, shard_indices
from .transforms import eval_transform


def _dist_rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class FaceDataset(Dataset):
    """``dataset[i] -> (tensor (3,H,W) float in [-1,1], label)`` from a training-format reader."""

    def __init__(self, reader: Any, transform: Callable[[np.ndarray], torch.Tensor] | None = None):
        self.reader = reader
        self.transform = transform or eval_transform()

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.reader.image(int(i))), self.reader.label(int(i))

    @property
    def labels(self) -> np.ndarray:
        return self.reader.labels

    @property
    def num_classes(self) -> int:
        return self.reader.num_classes


class IterableFaceDataset(IterableDataset):
    """Streams ``(tensor, label)``; each (rank, worker) reads its own deterministic shard of the epoch."""

    def __init__(
        self,
        reader: Any,
        transform: Callable[[np.ndarray], torch.Tensor] | None = None,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        self.reader = reader
        self.transform = transform or eval_transform()
        self.shuffle = shuffle
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> np.ndarray:
        """The indices this process (rank and worker) reads this epoch."""
        rank, world = _dist_rank_world()
        rank = rank if self.rank is None else self.rank
        world = world if self.world_size is None else self.world_size
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        return shard_indices(
            len(self.reader), rank=rank, world_size=world, worker_id=worker, num_workers=workers,
            seed=self.seed, epoch=self.epoch, shuffle=self.shuffle,
        )

    def __len__(self) -> int:
        world = self.world_size or _dist_rank_world()[1]
        return -(-len(self.reader) // world)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        for i in self.indices():
            yield self.transform(self.reader.image(int(i))), self.reader.label(int(i))


class IdentitySampler(Sampler[int]):
    """Per-epoch sampler that keeps every identity, shuffles deterministically and splits across ranks.

    ``num_samples`` caps the images per epoch (all ranks together); the cap still includes at least one
    image of every identity. Call :meth:`set_epoch` each epoch for a new order.
    """

    def __init__(
        self,
        labels: np.ndarray,
        *,
        num_samples: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        self.labels = np.asarray(labels)
        self.num_samples = num_samples
        self.shuffle = shuffle
        self.seed = seed
        dist_rank, dist_world = _dist_rank_world()
        self.rank = dist_rank if rank is None else rank
        self.world_size = dist_world if world_size is None else world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_indices(self) -> np.ndarray:
        order = identity_epoch(self.labels, self.num_samples, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle)
        return rank_slice(order, self.rank, self.world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices().tolist())

    def __len__(self) -> int:
        total = len(self.labels) if self.num_samples is None else min(self.num_samples, len(self.labels))
        return -(-total // self.world_size)
