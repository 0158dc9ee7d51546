"""The face-verification protocol of insightface's ``eval/verification.py``, vectorised.

Published LFW/CFP-FP/AgeDB numbers all come from that protocol, so facebench reproduces it exactly:
L2-normalised embeddings, squared L2 distance, candidate thresholds ``np.arange(0, 4, 0.01)``, a pair is
"same" when ``distance < threshold``, ten contiguous unshuffled folds (``KFold(10, shuffle=False)``), each
fold scored at the threshold with the best accuracy on the other nine (first best wins), and mean and
population std of the ten fold accuracies. Instead of a loop over thresholds x folds, each pair is binned
once by the first threshold above its distance and per-fold cumulative counts give every accuracy at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .inputs import MetricInputError, as_flags, as_matrix, l2_normalise, same_length
from .roc import EER_ESTIMATOR, TAR_ESTIMATOR, eer, far_resolution, roc_curve, strict_tar_at_far

#: insightface's candidate thresholds on the squared L2 distance between unit vectors (range [0, 4]).
INSIGHTFACE_THRESHOLDS = np.arange(0, 4, 0.01)
#: FAR targets reported by default.
DEFAULT_FARS = (1e-3, 1e-4)


@dataclass(frozen=True)
class VerificationResult:
    """Accuracy over folds (fractions, not %) plus threshold-free figures on all pairs."""

    accuracy: float
    std: float
    thresholds: np.ndarray  # best squared-L2 threshold of each fold
    fold_accuracies: np.ndarray
    tar_at_far: dict[float, float]
    eer: float
    eer_threshold: float  # cosine similarity at the EER point
    num_pairs: int
    num_same: int
    folds: int
    far_resolution: float  # 1 / impostor pairs: FAR targets below it can only be met at FAR 0
    estimators: dict[str, str] = field(default_factory=lambda: {"tar_at_far": TAR_ESTIMATOR, "eer": EER_ESTIMATOR})
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # bootstrap 95% (lo, hi) by figure

    @property
    def threshold(self) -> float:
        """Mean of the fold thresholds (squared L2 distance; cosine = 1 - threshold / 2)."""
        return float(np.mean(self.thresholds))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures; TAR keys are written ``tar_at_far_1e-3`` like the result tables."""
        row: dict[str, Any] = {
            "accuracy": self.accuracy,
            "std": self.std,
            "threshold": self.threshold,
            "eer": self.eer,
            "eer_threshold": self.eer_threshold,
            "num_pairs": self.num_pairs,
            "num_same": self.num_same,
            "folds": self.folds,
            "far_resolution": self.far_resolution,
            "fold_accuracies": [float(a) for a in self.fold_accuracies],
            "fold_thresholds": [float(t) for t in self.thresholds],
        }
        for far, tar in self.tar_at_far.items():
            row[far_key(far)] = tar
        row["estimators"] = dict(self.estimators)
        if self.intervals:
            row["ci95"] = {key: [float(lo), float(hi)] for key, (lo, hi) in self.intervals.items()}
        return row


def far_key(far: float) -> str:
    """``1e-3`` -> ``"tar_at_far_1e-3"`` (the column name used in ``results.csv``)."""
    mantissa, _, exponent = f"{far:.0e}".partition("e")
    text = f"1e{int(exponent)}" if mantissa == "1" else f"{far:g}"
    return f"tar_at_far_{text}"


def fold_sizes(n: int, folds: int) -> np.ndarray:
    """Sizes of ``KFold(folds, shuffle=False)`` folds: the first ``n % folds`` get one extra pair."""
    sizes = np.full(folds, n // folds, dtype=np.int64)
    sizes[: n % folds] += 1
    return sizes


def pair_distances(emb_a: Any, emb_b: Any) -> np.ndarray:
    """Squared L2 distance between the L2-normalised rows of two embedding arrays (float64)."""
    a = l2_normalise(as_matrix(emb_a, "emb_a"), "emb_a")
    b = l2_normalise(as_matrix(emb_b, "emb_b"), "emb_b")
    same_length(emb_a=a, emb_b=b)
    if a.shape[1] != b.shape[1]:
        raise MetricInputError(f"emb_a has {a.shape[1]} dimensions but emb_b has {b.shape[1]}")
    diff = a - b
    return np.einsum("ij,ij->i", diff, diff)


def fold_accuracies(dist: np.ndarray, same: np.ndarray, folds: int = 10,
                    thresholds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Test accuracy of each fold and the threshold chosen on the other folds, from squared L2 distances."""
    n = dist.size
    grid = INSIGHTFACE_THRESHOLDS if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or np.any(np.diff(grid) <= 0):
        raise MetricInputError("thresholds must be a non-empty, strictly increasing 1-D array")
    sizes = fold_sizes(n, folds)
    fold_of = np.repeat(np.arange(folds), sizes)
    # Pair k is predicted "same" at threshold j exactly when j >= first[k].
    first = np.searchsorted(grid, dist, side="right")
    bins = grid.size + 1
    pos = np.bincount(fold_of[same] * bins + first[same], minlength=folds * bins).reshape(folds, bins)
    neg = np.bincount(fold_of[~same] * bins + first[~same], minlength=folds * bins).reshape(folds, bins)
    true_pos = np.cumsum(pos, axis=1)[:, :-1]
    true_neg = neg.sum(axis=1, keepdims=True) - np.cumsum(neg, axis=1)[:, :-1]
    correct = true_pos + true_neg  # (folds, thresholds): correct decisions inside each fold
    train_correct = correct.sum(axis=0, keepdims=True) - correct
    best = np.argmax(train_correct, axis=1)  # first maximum, as np.argmax in insightface
    return correct[np.arange(folds), best] / sizes, grid[best]


def verify(
    emb_a: Any,
    emb_b: Any,
    same: Any,
    folds: int = 10,
    *,
    thresholds: np.ndarray | None = None,
    fars: tuple[float, ...] = DEFAULT_FARS,
) -> VerificationResult:
    """Score pairs ``(emb_a[k], emb_b[k])`` labelled ``same[k]`` with the insightface protocol.

    Pass flip-test embeddings (the sum of an image's and its mirror's embedding) for published-comparable
    numbers; ``facebench evaluate`` does.
    """
    same = as_flags(same, "same")
    if same.size == 0:
        raise MetricInputError("no pairs to verify (zero pairs)")
    dist = pair_distances(emb_a, emb_b)
    n = same_length(embeddings=dist, same=same)
    if not isinstance(folds, int | np.integer) or folds < 2:
        raise MetricInputError(f"folds must be an integer >= 2, got {folds!r}")
    if n < folds:
        raise MetricInputError(f"{n} pairs cannot be split into {folds} folds")
    fold_acc, best_thresholds = fold_accuracies(dist, same, folds, thresholds)

    roc = roc_curve(1.0 - dist / 2.0, same)
    rate, at = eer(roc)
    return VerificationResult(
        accuracy=float(fold_acc.mean()),
        std=float(fold_acc.std()),
        thresholds=best_thresholds,
        fold_accuracies=fold_acc,
        tar_at_far={float(f): strict_tar_at_far(roc, f) for f in fars},
        eer=rate,
        eer_threshold=at,
        num_pairs=n,
        num_same=int(same.sum()),
        folds=int(folds),
        far_resolution=far_resolution(roc),
    )
