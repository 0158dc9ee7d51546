"""Statistics of mated (genuine) and non-mated (impostor) comparison scores, as dataset audits report them.

NegFaceDiff and "Beyond Real Faces" describe how well a model separates a set's identities by the Fisher
Discriminant Ratio ``FDR = (mu_g - mu_i)^2 / (sigma_g^2 + sigma_i^2)``, the EER, FMR100 and FMR1000 and
the means and standard deviations of both score sets. FMR100 and FMR1000 are the false non-match rates
at a false match rate of 1% and 0.1% (ISO/IEC 19795 naming: "FNMR at FMR 1/100"), read off the tie-safe
ROC with the strict rule the verification tables use (the lowest FNMR whose FMR does not exceed the
target). Standard deviations use ``ddof=0`` (the population SD, numpy's default) unless asked otherwise;
the result records which.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .bootstrap import DEFAULT_RESAMPLES, LEVEL, _check, percentile_interval
from .inputs import MetricInputError, as_vector
from .roc import EER_ESTIMATOR, eer, group_counts, roc_curve, roc_from_counts, strict_tar_at_far, tie_groups

#: The false match rates of FMR100 and FMR1000.
FMR_TARGETS = {"fmr100": 1e-2, "fmr1000": 1e-3}
#: How FMR100/FMR1000 are read off the ROC, recorded with every result.
FNMR_ESTIMATOR = ("FNMR = 1 - the highest TPR among distinct-score thresholds whose FMR <= target "
                  "(no interpolation)")
#: The statistics that get bootstrap intervals.
INTERVAL_KEYS = ("fdr", "eer", "fmr100", "fmr1000", "genuine_mean", "genuine_std", "impostor_mean", "impostor_std")


@dataclass(frozen=True)
class ScoreStats:
    """The score-distribution figures of one genuine and one impostor score set (rates as fractions)."""

    fdr: float  # (mu_g - mu_i)^2 / (sigma_g^2 + sigma_i^2); inf when both variances are 0 and the means differ
    eer: float
    fmr100: float  # FNMR at FMR 1e-2
    fmr1000: float  # FNMR at FMR 1e-3
    genuine_mean: float
    genuine_std: float
    impostor_mean: float
    impostor_std: float
    eer_threshold: float
    genuine_pairs: int
    impostor_pairs: int
    ddof: int  # of both standard deviations (0: population SD)
    fmr1000_resolved: bool  # at least 1000 impostor scores, so FMR 1e-3 is measurable above FMR 0
    eer_estimator: str = EER_ESTIMATOR
    fnmr_estimator: str = FNMR_ESTIMATOR

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures (an infinite FDR is written as null)."""
        out = asdict(self)
        if not math.isfinite(out["fdr"]):
            out["fdr"] = None
        return out


def fisher_ratio(mu_g: float, var_g: float, mu_i: float, var_i: float) -> float:
    """FDR from the two means and variances; 0 / 0 (identical constant score sets) is an error."""
    spread = var_g + var_i
    gap = (mu_g - mu_i) ** 2
    if spread == 0:
        if gap == 0:
            raise MetricInputError("FDR is undefined: genuine and impostor scores are one and the same constant")
        return math.inf
    return float(gap / spread)


def _checked(genuine: Any, impostor: Any, ddof: int) -> tuple[np.ndarray, np.ndarray]:
    g = as_vector(genuine, "genuine scores")
    i = as_vector(impostor, "impostor scores")
    if ddof not in (0, 1):
        raise MetricInputError(f"ddof must be 0 (population SD) or 1 (sample SD), got {ddof}")
    for name, arr in (("genuine", g), ("impostor", i)):
        if arr.size <= ddof or arr.size == 0:
            raise MetricInputError(f"{name} scores: {arr.size} given, an SD with ddof={ddof} needs at least "
                                   f"{ddof + 1}")
    return g, i


def score_stats(genuine: Any, impostor: Any, *, ddof: int = 0) -> ScoreStats:
    """FDR, EER, FMR100, FMR1000 and the genuine/impostor means and SDs of similarity scores (higher =
    more alike): ``genuine`` from mated pairs, ``impostor`` from non-mated ones."""
    g, i = _checked(genuine, impostor, ddof)
    roc = roc_curve(np.r_[g, i], np.r_[np.ones(g.size, bool), np.zeros(i.size, bool)])
    rate, at = eer(roc)
    g_std, i_std = float(np.std(g, ddof=ddof)), float(np.std(i, ddof=ddof))
    g_mean, i_mean = float(g.mean()), float(i.mean())
    return ScoreStats(
        fdr=fisher_ratio(g_mean, g_std ** 2, i_mean, i_std ** 2), eer=rate,
        fmr100=1.0 - strict_tar_at_far(roc, FMR_TARGETS["fmr100"]),
        fmr1000=1.0 - strict_tar_at_far(roc, FMR_TARGETS["fmr1000"]),
        genuine_mean=g_mean, genuine_std=g_std, impostor_mean=i_mean, impostor_std=i_std, eer_threshold=at,
        genuine_pairs=int(g.size), impostor_pairs=int(i.size), ddof=ddof, fmr1000_resolved=bool(i.size >= 1000))


def _weighted_moments(centred: np.ndarray, shift: float, weights: np.ndarray, ddof: int) -> tuple[float, float] | None:
    """Mean and variance of scores counted ``weights`` times, from scores already centred on ``shift`` (the
    full sample's mean: sums of squares of centred values lose no precision). Element-wise sums, not BLAS
    dot products, whose thread start-up costs more than these 100k-element sums."""
    count = float(np.sum(weights))
    if count <= ddof or count == 0:
        return None
    first = float(np.sum(weights * centred)) / count
    second = float(np.sum(weights * centred * centred))
    var = (second - count * first * first) / (count - ddof)
    return shift + first, max(var, 0.0)


def score_stats_intervals(genuine: Any, impostor: Any, *, ddof: int = 0, resamples: int = DEFAULT_RESAMPLES,
                          seed: int = 0, level: float = LEVEL) -> dict[str, tuple[float, float]]:
    """Bootstrap percentile intervals of every :class:`ScoreStats` figure (keys of :data:`INTERVAL_KEYS`).

    As for the verification intervals, the pairs (genuine and impostor together) are resampled with
    replacement and every figure is recomputed from the same resample: the ROC figures from the scores
    sorted once (a resample only changes each pair's multiplicity), the moments as weighted sums. A
    resample without a genuine or an impostor pair (or one too few for the SD) is skipped."""
    _check(resamples, level)
    g, i = _checked(genuine, impostor, ddof)
    scores = np.r_[g, i]
    groups = tie_groups(scores, np.r_[np.ones(g.size, bool), np.zeros(i.size, bool)])
    order = np.argsort(-scores, kind="stable")  # the order tie_groups sorted the pairs in
    is_genuine = groups.same
    centred = {flag: (scores[order][is_genuine == flag] - mu, mu)
               for flag, mu in ((True, float(g.mean())), (False, float(i.mean())))}
    n = scores.size
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {key: [] for key in INTERVAL_KEYS}
    for _ in range(resamples):
        weights = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        tp, fp, at = group_counts(groups, weights)
        gm = _weighted_moments(*centred[True], weights[is_genuine], ddof)
        im = _weighted_moments(*centred[False], weights[~is_genuine], ddof)
        if tp[-1] == 0 or fp[-1] == 0 or gm is None or im is None:
            continue
        roc = roc_from_counts(tp, fp, at)
        try:
            fdr = fisher_ratio(gm[0], gm[1], im[0], im[1])
        except MetricInputError:
            continue
        figures = {"fdr": fdr, "eer": eer(roc)[0],
                   **{key: 1.0 - strict_tar_at_far(roc, far) for key, far in FMR_TARGETS.items()},
                   "genuine_mean": gm[0], "genuine_std": math.sqrt(gm[1]),
                   "impostor_mean": im[0], "impostor_std": math.sqrt(im[1])}
        for key, value in figures.items():
            values[key].append(value)
    if not values["eer"]:
        raise MetricInputError("no bootstrap resample held both genuine and impostor scores")
    return {key: percentile_interval(v, level) for key, v in values.items()}
