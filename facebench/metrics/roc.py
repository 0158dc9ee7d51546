"""ROC curve, EER and TAR@FAR that treat tied scores as one threshold.

Sorting scores and walking them one pair at a time puts tied genuine and impostor pairs on opposite sides
of a "threshold" that no real threshold can produce, which inflates TAR at low FAR. Here every ROC point
is a distinct score value: all pairs scoring at least that value are accepted together.

Two TAR@FAR rules live here because the literature uses both: :func:`strict_tar_at_far` (the highest TPR
whose FPR does not exceed the target, what the small verification sets report) and :func:`tar_at_far`
(insightface's IJB rule: the ROC point whose FPR is nearest the target, so IJB numbers compare with papers).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .inputs import MetricInputError, as_flags, as_vector, same_length

#: How TAR@FAR is estimated, recorded with every result.
TAR_ESTIMATOR = "highest TPR among distinct-score thresholds whose FPR <= target (no interpolation)"
#: How IJB TAR@FAR is picked (insightface ``eval_ijbc.py``), recorded with every IJB result.
NEAREST_ESTIMATOR = ("TPR of the ROC point whose FPR is nearest the target, on sklearn's roc_curve points "
                     "(collinear points dropped); among equally near points the lowest threshold, as insightface")
#: The FAR targets of insightface's IJB table.
IJB_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
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


@dataclass(frozen=True)
class TieGroups:
    """Pairs sorted by descending score and cut into runs of equal scores (one ROC point per run)."""

    same: np.ndarray  # the flags in sorted order
    starts: np.ndarray  # index of the first pair of each run
    scores: np.ndarray  # the score of each run


def tie_groups(scores: Any, same: Any) -> TieGroups:
    scores = as_vector(scores, "scores")
    same = as_flags(same, "same")
    same_length(scores=scores, same=same)
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    starts = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1]
    return TieGroups(same=same[order], starts=starts, scores=s[starts])


def roc_from_counts(tp: np.ndarray, fp: np.ndarray, thresholds: np.ndarray, *, corners: bool = False) -> Roc:
    """The ROC of cumulative accepted genuine (``tp``) and impostor (``fp``) counts at descending
    ``thresholds``; ``corners`` drops the points sklearn's ``roc_curve`` drops (``drop_intermediate``: a
    point in the middle of a straight run with equal steps), on which the IJB TAR pick is made."""
    positives, negatives = int(round(tp[-1])), int(round(fp[-1]))
    if positives == 0 or negatives == 0:
        raise MetricInputError(
            f"ROC needs both genuine and impostor pairs, got {positives} genuine and {negatives} impostor"
        )
    if corners and tp.size > 2:
        keep = np.r_[True, (np.diff(fp, 2) != 0) | (np.diff(tp, 2) != 0), True]
        tp, fp, thresholds = tp[keep], fp[keep], thresholds[keep]
    return Roc(fpr=np.r_[0.0, fp / fp[-1]], tpr=np.r_[0.0, tp / tp[-1]], thresholds=np.r_[np.inf, thresholds],
               positives=positives, negatives=negatives)


def group_counts(groups: TieGroups, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (tp, fp, threshold) per run of equal scores; ``weights`` (in sorted order, e.g. bootstrap
    multiplicities) count each pair that many times, and runs of weight 0 vanish as absent scores would."""
    w = np.ones(groups.same.size) if weights is None else np.asarray(weights, dtype=np.float64)
    gen = np.add.reduceat(w * groups.same, groups.starts)
    imp = np.add.reduceat(w * ~groups.same, groups.starts)
    at = groups.scores
    if weights is not None:
        present = (gen + imp) > 0
        gen, imp, at = gen[present], imp[present], at[present]
    return np.cumsum(gen), np.cumsum(imp), at


def roc_curve(scores: Any, same: Any) -> Roc:
    """Tie-safe ROC of similarity ``scores`` (higher = more alike) against the ``same`` flags."""
    return roc_from_counts(*group_counts(tie_groups(scores, same)))


def corner_roc(scores: Any, same: Any) -> Roc:
    """The ROC points sklearn's ``roc_curve`` returns (``drop_intermediate=True``)."""
    return roc_from_counts(*group_counts(tie_groups(scores, same)), corners=True)


def nearest_tar(roc: Roc, far: float) -> float:
    """The TPR of the point whose FPR is nearest ``far``; among equally near points the last one (the pick
    insightface makes on the reversed arrays)."""
    gap = np.abs(roc.fpr - far)
    return float(roc.tpr[gap.size - 1 - int(np.argmin(gap[::-1]))])


def tar_at_far(labels: Any, scores: Any, fars: Any = IJB_FARS) -> dict[float, float]:
    """``{far: tar}`` with insightface's IJB rule (:data:`NEAREST_ESTIMATOR`), TAR as a fraction."""
    roc = corner_roc(scores, labels)
    return {float(f): nearest_tar(roc, float(f)) for f in fars}


def strict_tar_at_far(roc: Roc, far: float) -> float:
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


def impostor_threshold(impostor: Any, far: float) -> float:
    """The lowest score threshold ``t`` such that accepting scores strictly above ``t`` lets through at most
    ``floor(far x impostors)`` impostor scores (``-inf`` when that allows them all)."""
    values = as_vector(impostor, "impostor scores")
    if values.size == 0:
        raise MetricInputError("no impostor scores to set a threshold on")
    if not 0 <= far <= 1:
        raise MetricInputError(f"FAR target must lie in [0, 1], got {far}")
    allowed = int(np.floor(far * values.size + 1e-9))
    if allowed >= values.size:
        return float("-inf")
    return float(-np.partition(-values, allowed)[allowed])
