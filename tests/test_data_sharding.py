"""Deterministic sharding across ranks and DataLoader workers, and the identity-keeping sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from facebench.data import (
    IdentitySampler,
    IterableFaceDataset,
    encode_image,
    identity_epoch,
    open_dataset,
    open_writer,
    shard_indices,
)


def test_shards_are_disjoint_cover_everything_and_repeat():
    n, world, workers = 103, 3, 2
    parts = [shard_indices(n, rank=r, world_size=world, worker_id=w, num_workers=workers, seed=5, epoch=1)
             for r in range(world) for w in range(workers)]
    per_rank = [np.concatenate([parts[r * workers + w] for w in range(workers)]) for r in range(world)]
    assert len({len(p) for p in per_rank}) == 1 and len(per_rank[0]) == 35  # padded to ceil(103/3)
    assert set(np.concatenate(parts).tolist()) == set(range(n))
    assert sum(len(p) for p in parts) == 105  # 103 + 2 wrapped pads
    again = shard_indices(n, rank=1, world_size=world, worker_id=1, num_workers=workers, seed=5, epoch=1)
    np.testing.assert_array_equal(again, parts[3])
    other_epoch = shard_indices(n, rank=1, world_size=world, worker_id=1, num_workers=workers, seed=5, epoch=2)
    assert not np.array_equal(other_epoch, parts[3])
    with pytest.raises(ValueError, match="rank 3 is outside world size 3"):
        shard_indices(n, rank=3, world_size=3)


def test_identity_epoch_keeps_every_identity_under_a_cap():
    labels = np.repeat(np.arange(50), np.random.default_rng(0).integers(1, 30, 50))
    order = identity_epoch(labels, num_samples=60, seed=1, epoch=0)
    assert len(order) == 60 and len(set(order.tolist())) == 60
    assert set(labels[order].tolist()) == set(range(50))
    assert not np.array_equal(order, identity_epoch(labels, num_samples=60, seed=1, epoch=1))
    with pytest.raises(ValueError, match="cannot keep all 50 identities"):
        identity_epoch(labels, num_samples=10)


def test_identity_sampler_splits_across_ranks():
    labels = np.repeat(np.arange(20), 5)
    samplers = [IdentitySampler(labels, num_samples=40, rank=r, world_size=2, seed=3) for r in range(2)]
    for s in samplers:
        s.set_epoch(4)
    got = [list(s) for s in samplers]
    assert [len(g) for g in got] == [20, 20] == [len(s) for s in samplers]
    assert not set(got[0]) & set(got[1])
    assert set(labels[got[0] + got[1]].tolist()) == set(range(20))


def test_iterable_dataset_reads_each_image_once_across_workers(tmp_path):
    with open_writer(tmp_path / "d", "folder") as w:
        for i in range(12):
            w.add(encode_image(np.full((8, 8, 3), i * 20, np.uint8), "png"), i // 3)
    reader = open_dataset(tmp_path / "d")
    ds = IterableFaceDataset(reader, shuffle=True, seed=0, rank=0, world_size=1)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
    seen = [(round(float((x[0, 0, 0] + 1) / 2 * 255)), y) for x, y in loader]
    assert sorted(seen) == [(i * 20, i // 3) for i in range(12)]
