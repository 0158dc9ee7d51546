"""Bootstrap 95% confidence intervals for accuracy, EER and TAR@FAR ("Beyond Real Faces" reports them).

Pairs are resampled with replacement and every figure is recomputed on each resample with the same rule
as the point estimate; the interval is the 2.5th and 97.5th percentile. ROC figures are recomputed from
the scores sorted once: a resample only changes how often each pair counts (its multiplicity), so a
resample of IJB-C's 15.6M pairs costs a pass over counts, not a new sort.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .inputs import MetricInputError, as_flags
from .roc import eer, group_counts, nearest_tar, roc_from_counts, strict_tar_at_far, tie_groups
from .verification import fold_accuracies, pair_distances

#: Resamples drawn by default.
DEFAULT_RESAMPLES = 1000
#: The interval's coverage.
LEVEL = 0.95


def percentile_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap values."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise MetricInputError("no bootstrap values")
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(arr, [tail, 100.0 - tail])
    return float(lo), float(hi)


def _check(resamples: int, level: float) -> None:
    if resamples < 2:
        raise MetricInputError(f"the bootstrap needs at least 2 resamples, got {resamples}")
    if not 0 < level < 1:
        raise MetricInputError(f"the confidence level must lie in (0, 1), got {level}")


def roc_intervals(labels: Any, scores: Any, *, fars: Sequence[float], rule: str = "strict",
                  resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = LEVEL) -> dict[str, tuple[float, float]]:
    """Intervals of the EER and of TAR at each FAR (``rule``: ``strict`` = FPR <= target, ``nearest`` =
    insightface's IJB pick), keyed ``eer`` and ``tar_at_far_<far>``."""
    from .verification import far_key

    _check(resamples, level)
    if rule not in ("strict", "nearest"):
        raise MetricInputError(f"rule must be 'strict' or 'nearest', got {rule!r}")
    groups = tie_groups(scores, labels)
    n = groups.same.size
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {"eer": [], **{far_key(f): [] for f in fars}}
    for _ in range(resamples):
        weights = np.bincount(rng.integers(0, n, n), minlength=n)
        tp, fp, at = group_counts(groups, weights)
        if tp[-1] == 0 or fp[-1] == 0:
            continue  # a resample without genuine or impostor pairs has no ROC
        roc = roc_from_counts(tp, fp, at)
        values["eer"].append(eer(roc)[0])
        picked = roc_from_counts(tp, fp, at, corners=True) if rule == "nearest" else roc
        for f in fars:
            pick = nearest_tar(picked, f) if rule == "nearest" else strict_tar_at_far(roc, f)
            values[far_key(f)].append(pick)
    return {key: percentile_interval(v, level) for key, v in values.items()}


def verification_intervals(emb_a: Any, emb_b: Any, same: Any, *, folds: int = 10, fars: Sequence[float] = (1e-3, 1e-4),
                           resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                           level: float = LEVEL) -> dict[str, tuple[float, float]]:
    """Intervals of the 10-fold accuracy (the protocol rerun on each resample, pairs kept in pack order so
    folds stay contiguous), the EER and the strict TAR@FAR of a verification pack."""
    _check(resamples, level)
    same = as_flags(same, "same")
    dist = pair_distances(emb_a, emb_b)
    n = dist.size
    rng = np.random.default_rng(seed)
    accuracies = []
    for _ in range(resamples):
        idx = np.sort(rng.integers(0, n, n))
        acc, _ = fold_accuracies(dist[idx], same[idx], folds)
        accuracies.append(float(acc.mean()))
    out = {"accuracy": percentile_interval(accuracies, level)}
    out.update(roc_intervals(same, 1.0 - dist / 2.0, fars=fars, rule="strict", resamples=resamples, seed=seed,
                             level=level))
    return out
