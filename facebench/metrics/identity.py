"""Identity-level measures of a labelled feature set: centres, intra/inter-class noise, leakage.

They answer "are the images of one identity really alike?" (intra-class noise: images far from their
identity centre), "are different identities really different?" (inter-class noise: identity centres that
nearly coincide) and "did the generator copy its training identities?" (leakage). Pairwise work is done
in row blocks so the memory stays O(identities x block) at 300k identities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .inputs import MetricInputError, as_matrix, l2_normalise, same_length

INTRA_THRESHOLD = 0.3
INTER_THRESHOLD = 0.7
LEAKAGE_THRESHOLD = 0.4
DEFAULT_BLOCK = 2048


def class_centers(features: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean raw feature of each identity and the sorted identity labels (Vec2Face's ``center_features``)."""
    feats = as_matrix(features, "features", dtype=np.float64)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise MetricInputError(f"labels: expected a 1-D array, got shape {labels.shape}")
    same_length(features=feats, labels=labels)
    classes, index = np.unique(labels, return_inverse=True)
    sums = np.zeros((classes.size, feats.shape[1]))
    np.add.at(sums, index, feats)
    counts = np.bincount(index, minlength=classes.size)
    return sums / counts[:, None], classes


def intra_class_similarity(features: Any, labels: Any) -> np.ndarray:
    """Cosine similarity of every image to the centre of its own identity."""
    feats = as_matrix(features, "features", dtype=np.float64)
    centers, classes = class_centers(feats, labels)
    index = np.searchsorted(classes, np.asarray(labels))
    unit_c = l2_normalise(centers, "identity centres")
    unit_f = l2_normalise(feats, "features")
    return np.einsum("ij,ij->i", unit_f, unit_c[index])


def _blocked_rows(a: np.ndarray, b: np.ndarray, block: int):
    for start in range(0, a.shape[0], block):
        stop = min(start + block, a.shape[0])
        yield start, stop, a[start:stop] @ b.T


@dataclass(frozen=True)
class InterClassNoise:
    """Identity pairs whose centres are above the threshold, and each identity's nearest other identity."""

    pairs_above: int
    pairs_total: int
    nearest: np.ndarray  # highest cosine similarity of each centre to any other centre

    @property
    def share(self) -> float:
        return self.pairs_above / self.pairs_total if self.pairs_total else 0.0


def inter_class_noise(centers: Any, threshold: float = INTER_THRESHOLD, *, block: int = DEFAULT_BLOCK) -> InterClassNoise:
    """Count unordered identity pairs with centre cosine above ``threshold`` (exact, blocked)."""
    unit = l2_normalise(as_matrix(centers, "centers"), "centers").astype(np.float32)
    n = unit.shape[0]
    if n < 2:
        raise MetricInputError(f"inter-class noise needs at least 2 identities, got {n}")
    nearest = np.full(n, -np.inf)
    above = 0
    for start, stop, sims in _blocked_rows(unit, unit, block):
        rows = np.arange(start, stop)
        sims[rows - start, rows] = -np.inf  # an identity is not its own neighbour
        nearest[start:stop] = sims.max(axis=1)
        later = np.arange(n)[None, :] > rows[:, None]
        above += int(np.count_nonzero((sims > threshold) & later))
    return InterClassNoise(pairs_above=above, pairs_total=n * (n - 1) // 2, nearest=nearest)


def nearest_reference(centers: Any, reference: Any, *, block: int = DEFAULT_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """For each centre, the highest cosine similarity to any reference centre and that reference's index."""
    unit = l2_normalise(as_matrix(centers, "centers"), "centers").astype(np.float32)
    ref = l2_normalise(as_matrix(reference, "reference centers"), "reference centers").astype(np.float32)
    if unit.shape[1] != ref.shape[1]:
        raise MetricInputError(f"centers have {unit.shape[1]} dimensions but the reference has {ref.shape[1]}")
    best = np.empty(unit.shape[0])
    which = np.empty(unit.shape[0], dtype=np.int64)
    for start, stop, sims in _blocked_rows(unit, ref, block):
        which[start:stop] = sims.argmax(axis=1)
        best[start:stop] = sims[np.arange(stop - start), which[start:stop]]
    return best, which


def leaked_identities(centers: Any, reference: Any, threshold: float = LEAKAGE_THRESHOLD,
                      *, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """Indices of the identities whose centre is above ``threshold`` to some reference centre."""
    best, _ = nearest_reference(centers, reference, block=block)
    return np.flatnonzero(best > threshold)
