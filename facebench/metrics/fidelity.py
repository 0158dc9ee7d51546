"""How close a generated feature set is to a real one, beyond the Fréchet distance: KID, improved
precision/recall and density/coverage.

- KID (Binkowski et al. 2018): the unbiased MMD^2 with the cubic kernel ``(x.y / d + 1)^3``, averaged over
  random equal-size subsets (torch-fidelity's defaults: 100 subsets of 1,000). Unbiased, so it may dip
  slightly below zero for sets from one distribution, and it has no Gaussian assumption.
- Improved precision/recall (Kynkaanniemi et al. 2019, k = 3): each real sample's ball reaches its k-th
  nearest real neighbour; precision is the share of fakes inside some real ball, recall the share of reals
  inside some fake ball (fake radii).
- Density/coverage (Naeem et al. 2020, k = 5): density counts how many real balls hold each fake (divided
  by k, averaged); coverage is the share of real balls holding at least one fake.

"Inside" is strictly closer than the radius, as the ``prdc`` package compares. Distances are Euclidean and
computed in row blocks, so 10k x 10k sets never build the full matrix.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .inputs import MetricInputError, as_matrix

#: Rows per block of the distance matrices.
DISTANCE_BLOCK = 1024


def _pair_sets(a: Any, b: Any, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    x = as_matrix(a, names[0])
    y = as_matrix(b, names[1])
    if x.shape[1] != y.shape[1]:
        raise MetricInputError(f"{names[0]} have {x.shape[1]} dimensions but {names[1]} have {y.shape[1]}")
    return x, y


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of two equal-size sets with the cubic polynomial kernel (KID of one subset)."""
    m = x.shape[0]
    if y.shape[0] != m or m < 2:
        raise MetricInputError(f"MMD needs two sets of the same size >= 2, got {x.shape[0]} and {y.shape[0]}")
    d = x.shape[1]
    k_xx = (x @ x.T / d + 1.0) ** 3
    k_yy = (y @ y.T / d + 1.0) ** 3
    k_xy = (x @ y.T / d + 1.0) ** 3
    off_xx = k_xx.sum() - np.trace(k_xx)
    off_yy = k_yy.sum() - np.trace(k_yy)
    return float((off_xx + off_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kid(feats_a: Any, feats_b: Any, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """``(mean, std)`` of the unbiased MMD^2 over ``subsets`` random subsets of ``subset_size`` from each set
    (drawn without replacement; population std, as torch-fidelity reports it). The subsets are drawn as
    torch-fidelity draws them (a legacy ``RandomState(seed)``, set a then set b per subset), so the same seed
    gives the same subsets and the same figures as its ``kid_subsets`` / ``kid_subset_size`` / ``rng_seed``."""
    x, y = _pair_sets(feats_a, feats_b, ("feats_a", "feats_b"))
    if subsets < 1:
        raise MetricInputError(f"subsets must be at least 1, got {subsets}")
    if subset_size < 2 or subset_size > min(x.shape[0], y.shape[0]):
        raise MetricInputError(f"subset_size must lie in [2, {min(x.shape[0], y.shape[0])}] (the smaller set), "
                               f"got {subset_size}")
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        a = x[rng.choice(x.shape[0], subset_size, replace=False)]
        b = y[rng.choice(y.shape[0], subset_size, replace=False)]
        values[i] = mmd2_unbiased(a, b)
    return float(values.mean()), float(values.std())


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and ``b`` (float64)."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row to its k-th nearest other row."""
    if not 1 <= k < x.shape[0]:
        raise MetricInputError(f"k must lie in [1, {x.shape[0] - 1}] for {x.shape[0]} samples, got {k}")
    radii = np.empty(x.shape[0])
    for start in range(0, x.shape[0], DISTANCE_BLOCK):
        stop = min(start + DISTANCE_BLOCK, x.shape[0])
        dist = _distances(x[start:stop], x)
        dist[np.arange(stop - start), np.arange(start, stop)] = 0.0  # the row itself is the 0th neighbour
        radii[start:stop] = np.partition(dist, k, axis=1)[:, k]
    return radii


def _ball_counts(centres: np.ndarray, radii: np.ndarray, points: np.ndarray) -> np.ndarray:
    """For each point, how many balls (centre, radius) contain it strictly."""
    counts = np.zeros(points.shape[0], dtype=np.int64)
    for start in range(0, centres.shape[0], DISTANCE_BLOCK):
        stop = min(start + DISTANCE_BLOCK, centres.shape[0])
        counts += (_distances(centres[start:stop], points) < radii[start:stop, None]).sum(axis=0)
    return counts


def precision_recall(real: Any, fake: Any, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall of ``fake`` against ``real`` with k-NN balls."""
    x, y = _pair_sets(real, fake, ("real", "fake"))
    precision = float((_ball_counts(x, knn_radii(x, k), y) > 0).mean())
    recall = float((_ball_counts(y, knn_radii(y, k), x) > 0).mean())
    return precision, recall


def density_coverage(real: Any, fake: Any, k: int = 5) -> tuple[float, float]:
    """Density and coverage of ``fake`` against ``real`` with the real samples' k-NN balls."""
    x, y = _pair_sets(real, fake, ("real", "fake"))
    radii = knn_radii(x, k)
    density = float(_ball_counts(x, radii, y).sum() / (k * y.shape[0]))
    nearest_fake = np.empty(x.shape[0])
    for start in range(0, x.shape[0], DISTANCE_BLOCK):
        stop = min(start + DISTANCE_BLOCK, x.shape[0])
        nearest_fake[start:stop] = _distances(x[start:stop], y).min(axis=1)
    coverage = float((nearest_fake < radii).mean())
    return density, coverage
