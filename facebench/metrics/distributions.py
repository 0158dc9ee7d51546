"""Genuine and impostor similarity distributions of a labelled feature set (Vec2Face paper Fig. 11).

All image pairs would be O(images^2), so a fixed number of genuine pairs (two different images of one
identity) and impostor pairs (images of two different identities) is drawn with a seeded generator; the
result is reproducible and its size is the user's choice. A small set with fewer pairs than asked for
gives every pair once instead (drawing more would repeat pairs and only pretend to a larger sample).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .inputs import MetricInputError, as_matrix, l2_normalise, labelled_rows
from .roc import EER_ESTIMATOR, eer, roc_curve
from .rows import take_rows


@dataclass(frozen=True)
class PairDistributions:
    genuine: np.ndarray  # cosine similarities of genuine pairs
    impostor: np.ndarray
    eer: float
    eer_threshold: float
    estimator: str = EER_ESTIMATOR


def _all_genuine_pairs(index: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Every unordered pair of two different images of one identity, identity by identity."""
    order = np.argsort(index, kind="stable")
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    pairs = []
    for start, count in zip(starts, counts):
        if count >= 2:
            a, b = np.triu_indices(int(count), 1)
            pairs.append(np.stack([order[start + a], order[start + b]], axis=1))
    return np.concatenate(pairs).astype(np.int64)


def sample_pairs(labels: Any, genuine: int, impostor: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (k, 2): ``genuine`` same-identity pairs and ``impostor`` different-identity pairs, or
    every pair of a kind, each once, when fewer exist than are asked for."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    n = labels.size
    classes, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    existing = int((counts * (counts - 1) // 2).sum())
    if 0 < existing <= genuine:  # no more genuine pairs than exist: all of them, each once
        gen = _all_genuine_pairs(index, counts)
    elif genuine > 0:
        multi = np.flatnonzero(counts >= 2)
        if multi.size == 0:
            raise MetricInputError("no identity has two images, so there are no genuine pairs")
        order = np.argsort(index, kind="stable")
        starts = np.r_[0, np.cumsum(counts)[:-1]]
        # Identities are drawn in proportion to their genuine pair counts, then two distinct images.
        weights = counts[multi] * (counts[multi] - 1) / 2.0
        ids = rng.choice(multi, size=genuine, p=weights / weights.sum())
        first = rng.integers(0, counts[ids])
        second = (first + rng.integers(1, counts[ids])) % counts[ids]
        gen = np.stack([order[starts[ids] + first], order[starts[ids] + second]], axis=1)
    else:
        gen = np.empty((0, 2), dtype=np.int64)
    if impostor > 0 and classes.size >= 2 and n * (n - 1) // 2 - existing <= impostor:
        a, b = np.triu_indices(n, 1)
        keep = index[a] != index[b]
        imp = np.stack([a[keep], b[keep]], axis=1)
    elif impostor > 0:
        if classes.size < 2:
            raise MetricInputError("only one identity, so there are no impostor pairs")
        a = rng.integers(0, n, size=impostor)
        b = rng.integers(0, n, size=impostor)
        clash = index[a] == index[b]
        while clash.any():  # redraw the partners that share an identity; ends because >= 2 identities exist
            b[clash] = rng.integers(0, n, size=int(clash.sum()))
            clash = index[a] == index[b]
        imp = np.stack([a, b], axis=1)
    else:
        imp = np.empty((0, 2), dtype=np.int64)
    return gen, imp


def pair_distributions(features: Any, labels: Any, genuine: int = 100_000, impostor: int = 100_000,
                       seed: int = 0, *, chunk: int = 16384) -> PairDistributions:
    """Cosine similarities of sampled genuine and impostor pairs, and the EER separating them.

    The pairs are drawn first and only their rows are read, ``chunk`` pairs at a time: ``features`` may
    be a memory map of 15M x 512 (31 GB as float32), of which this holds a few hundred MB."""
    features, labels = labelled_rows(features, labels)
    if genuine < 1 or impostor < 1:
        raise MetricInputError(f"need at least one genuine and one impostor pair, got {genuine} and {impostor}")
    gen, imp = sample_pairs(labels, genuine, impostor, seed)
    g = _pair_cosines(features, gen, chunk)
    i = _pair_cosines(features, imp, chunk)
    roc = roc_curve(np.r_[g, i], np.r_[np.ones(g.size, bool), np.zeros(i.size, bool)])
    rate, at = eer(roc)
    return PairDistributions(genuine=g, impostor=i, eer=rate, eer_threshold=at)


def _pair_cosines(features: Any, pairs: np.ndarray, chunk: int) -> np.ndarray:
    out = np.empty(len(pairs))
    for lo in range(0, len(pairs), chunk):
        part = pairs[lo:lo + chunk]
        a = as_matrix(take_rows(features, part[:, 0]), "features")
        b = as_matrix(take_rows(features, part[:, 1]), "features")
        out[lo:lo + len(part)] = np.einsum("ij,ij->i", l2_normalise(a, "features"), l2_normalise(b, "features"))
    return out
