"""ROC curve, EER and TAR@FAR that treat tied scores as one threshold.

Sorting scores and walking them one pair at a time puts tied genuine and impostor pairs on opposite sides
of a "threshold" that no real threshold can produce, which inflates TAR at low FAR. Here every ROC point
is a distinct score value: all pairs scoring at least that value are accepted together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .inputs import MetricInputError, as_flags, as_vector, same_length

#: How TAR@FAR is estimated, recorded with every result.
TAR_ESTIMATOR = "highest TPR among distinct-score thresholds whose FPR <= target (no interpolation)"
#: How the EER is estimated, recorded with every result.
EER_ESTIMATOR = "FPR = FNR crossing, linear between adjacent distinct-score ROC points"


@dataclass(frozen=True)
class Roc:
    """ROC points from strict "accept everything" at the top: (0, 0) first, (1, 1) last."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray  # accept when score >= threshold; +inf for the (0, 0) point
    positives: int
    negatives: int


def roc_curve(scores: Any, same: Any) -> Roc:
    """Tie-safe ROC of similarity ``scores`` (higher = more alike) against the ``same`` flags."""
    scores = as_vector(scores, "scores")
    same = as_flags(same, "same")
    same_length(scores=scores, same=same)
    positives = int(same.sum())
    negatives = int(same.size - positives)
    if positives == 0 or negatives == 0:
        raise MetricInputError(
            f"ROC needs both genuine and impostor pairs, got {positives} genuine and {negatives} impostor"
        )
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    y = same[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    # The last index of each run of equal scores: there the whole tie group has been accepted.
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]
    tpr = np.r_[0.0, tp[last] / positives]
    fpr = np.r_[0.0, fp[last] / negatives]
    thresholds = np.r_[np.inf, s[last]]
    return Roc(fpr=fpr, tpr=tpr, thresholds=thresholds, positives=positives, negatives=negatives)


def tar_at_far(roc: Roc, far: float) -> float:
    """The highest TAR reachable with FAR <= ``far``; resolution is 1 / negatives (see ``far_resolution``)."""
    if not 0 <= far <= 1:
        raise MetricInputError(f"FAR target must lie in [0, 1], got {far}")
    ok = roc.fpr <= far
    return float(roc.tpr[ok].max())


def eer(roc: Roc) -> tuple[float, float]:
    """Equal error rate and the score threshold where it is reached."""
    fnr = 1.0 - roc.tpr
    gap = roc.fpr - fnr  # rises from -1 at (0, 0) to +1 at (1, 1)
    i = int(np.argmax(gap >= 0))
    if gap[i] == 0 or i == 0:
        return float(roc.fpr[i]), float(roc.thresholds[i])
    t = -gap[i - 1] / (gap[i] - gap[i - 1])
    rate = roc.fpr[i - 1] + t * (roc.fpr[i] - roc.fpr[i - 1])
    return float(rate), float(roc.thresholds[i])


def far_resolution(roc: Roc) -> float:
    """The smallest non-zero FAR this set of impostor pairs can measure."""
    return 1.0 / roc.negatives
