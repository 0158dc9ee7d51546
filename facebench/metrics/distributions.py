"""Genuine and impostor similarity distributions of a labelled feature set (Vec2Face paper Fig. 11).

All image pairs would be O(images^2), so a fixed number of genuine pairs (two different images of one
identity) and impostor pairs (images of two different identities) is drawn with a seeded generator; the
result is reproducible and its size is the user's choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .inputs import MetricInputError, as_matrix, l2_normalise, same_length
from .roc import EER_ESTIMATOR, eer, roc_curve
from .rows import take_rows


@dataclass(frozen=True)
class PairDistributions:
    genuine: np.ndarray  # cosine similarities of genuine pairs
    impostor: np.ndarray
    eer: float
    eer_threshold: float
    estimator: str = EER_ESTIMATOR


def sample_pairs(labels: Any, genuine: int, impostor: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (k, 2): ``genuine`` same-identity pairs and ``impostor`` different-identity pairs."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    n = labels.size
    classes, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if genuine > 0:
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
    if impostor > 0:
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
    labels = np.asarray(labels)
    shape = getattr(features, "shape", None)
    if shape is None or len(shape) != 2:
        features = as_matrix(features, "features", dtype=np.float64)
        shape = features.shape
    if shape[0] < 1 or shape[1] < 1:
        raise MetricInputError(f"features: expected a non-empty (rows x dims) matrix, got shape {tuple(shape)}")
    same_length(features=range(shape[0]), labels=labels)
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
