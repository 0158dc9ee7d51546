"""Deterministic splitting of a dataset across DDP ranks and DataLoader workers.

Every process computes the same epoch permutation from ``(seed, epoch)`` and takes its own slice, so no
communication is needed, shards are disjoint, and together they cover every image (ranks are padded to
equal length by wrapping, as ``DistributedSampler`` does, so collective ops stay in step).
"""

from __future__ import annotations

import numpy as np


def epoch_order(n: int, *, seed: int = 0, epoch: int = 0, shuffle: bool = True) -> np.ndarray:
    """The global order of ``n`` items for one epoch: a permutation seeded by ``(seed, epoch)``."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)


def rank_slice(order: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s share of ``order``: padded by wrapping to a multiple of ``world_size``, then strided."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside world size {world_size}")
    n = len(order)
    if n == 0:
        return order
    per_rank = -(-n // world_size)
    padded = np.resize(order, per_rank * world_size)
    return padded[rank::world_size]


def shard_indices(
    n: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    worker_id: int = 0,
    num_workers: int = 1,
    seed: int = 0,
    epoch: int = 0,
    shuffle: bool = True,
) -> np.ndarray:
    """The indices one DataLoader worker of one rank reads in one epoch (deterministic, disjoint)."""
    if not 0 <= worker_id < max(num_workers, 1):
        raise ValueError(f"worker {worker_id} is outside {num_workers} workers")
    mine = rank_slice(epoch_order(n, seed=seed, epoch=epoch, shuffle=shuffle), rank, world_size)
    return mine[worker_id :: max(num_workers, 1)]


def identity_epoch(
    labels: np.ndarray, num_samples: int | None = None, *, seed: int = 0, epoch: int = 0, shuffle: bool = True
) -> np.ndarray:
    """An epoch's image order that contains every identity at least once.

    With ``num_samples`` below the dataset size (SOTA-FR's per-epoch image cap) a plain random subset
    would drop rare identities; here one random image of each identity is taken first and the rest of
    the budget is filled at random without repeats.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if num_samples is None or num_samples >= n:
        return epoch_order(n, seed=seed, epoch=epoch, shuffle=shuffle)
    classes = np.unique(labels)
    if num_samples < len(classes):
        raise ValueError(f"num_samples={num_samples} cannot keep all {len(classes)} identities")
    rng = np.random.default_rng([seed, epoch, 1])
    # A random key per image, then the image with the smallest key of each identity is its representative.
    keys = rng.random(n)
    order = np.lexsort((keys, labels))
    first = np.ones(n, dtype=bool)
    first[1:] = labels[order][1:] != labels[order][:-1]
    chosen = order[first]
    rest = np.setdiff1d(np.arange(n), chosen, assume_unique=True)
    extra = rng.choice(rest, size=num_samples - len(chosen), replace=False)
    picked = np.concatenate([chosen, extra]).astype(np.int64)
    return rng.permutation(picked) if shuffle else np.sort(picked)
