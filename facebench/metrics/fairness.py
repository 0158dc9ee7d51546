"""Fairness across demographic groups (RFW, FRCSyn) and the gap to a real-data baseline.

- RFW (Tencent TFace's ``verification_rfw.py``): per-group accuracy (%), their mean, the *sample* standard
  deviation (``ddof=1``) and the skewed error ratio SER = highest error / lowest error (error = 100 - acc).
- FRCSyn ranks bias sub-tasks by the trade-off TO = mean - SD of the accuracies across groups
  (:func:`tradeoff`, for any grouped benchmark: RFW's 4 groups, BUPT-BalancedFace's 8); the SD's ``ddof`` is
  recorded with the result because papers differ (the default, 1, is the sample SD the RFW script uses).
- FRCSyn GAP = (REAL - SYN) / SYN x 100 compares the same recipe trained on real and on synthetic data: a
  negative GAP means the synthetic data did better. Some papers flip the sign, so reports print the formula.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .inputs import MetricInputError

#: The SD's ddof of :func:`tradeoff` and :func:`group_summary` unless asked otherwise (sample SD, as RFW's script).
TRADEOFF_DDOF = 1
#: The formula printed beside every trade-off value.
TRADEOFF_FORMULA = "TO = mean - SD of the per-group accuracies"
#: The formula printed beside every GAP value.
GAP_FORMULA = "GAP = (REAL - SYN) / SYN x 100 (negative: the synthetic data did better)"


@dataclass(frozen=True)
class TradeOff:
    """FRCSyn's bias trade-off of per-group accuracies (in the accuracies' own unit)."""

    mean: float
    std: float
    ddof: int  # of ``std``: 1 = sample SD (n - 1 in the denominator), 0 = population SD
    trade_off: float  # mean - std
    groups: int


def tradeoff(accuracies: Mapping[str, float] | Sequence[float], *, ddof: int = TRADEOFF_DDOF) -> TradeOff:
    """``mean - SD`` of the accuracies of the groups of one benchmark (a mapping group -> accuracy, or a
    sequence); ``ddof`` (0 or 1) is the SD's and is recorded in the result."""
    values = list(accuracies.values()) if isinstance(accuracies, Mapping) else list(accuracies)
    if ddof not in (0, 1):
        raise MetricInputError(f"ddof must be 0 (population SD) or 1 (sample SD), got {ddof}")
    if len(values) < 2:
        raise MetricInputError(f"a trade-off across groups needs at least two groups, got {len(values)}")
    try:
        acc = np.array([float(v) for v in values])
    except (TypeError, ValueError):
        raise MetricInputError("group accuracies must be numbers") from None
    if not np.isfinite(acc).all():
        raise MetricInputError("group accuracies must be finite numbers")
    mean = float(acc.mean())
    std = float(np.std(acc, ddof=ddof))
    return TradeOff(mean=mean, std=std, ddof=ddof, trade_off=mean - std, groups=int(acc.size))


@dataclass(frozen=True)
class GroupSummary:
    """Accuracies in percent per group and what the fairness tables print."""

    accuracies: dict[str, float]
    mean: float
    std: float  # sample standard deviation (ddof=1)
    ser: float  # max error / min error; inf when some group makes no error
    trade_off: float  # mean - std (FRCSyn TO)
    ddof: int = TRADEOFF_DDOF


def group_summary(accuracies: Mapping[str, float]) -> GroupSummary:
    """Mean, sample STD, SER and TO of per-group accuracies given in percent."""
    if len(accuracies) < 2:
        raise MetricInputError(f"fairness needs at least two groups, got {len(accuracies)}")
    acc = np.array([float(v) for v in accuracies.values()])
    if not np.isfinite(acc).all() or (acc < 0).any() or (acc > 100).any():
        raise MetricInputError("group accuracies must be percentages in [0, 100]")
    to = tradeoff(acc)
    errors = 100.0 - acc
    ser = float(errors.max() / errors.min()) if errors.min() > 0 else float("inf")
    return GroupSummary(accuracies={k: float(v) for k, v in accuracies.items()}, mean=to.mean, std=to.std, ser=ser,
                        trade_off=to.trade_off, ddof=to.ddof)


def gap(real: float, synthetic: float) -> float:
    """FRCSyn's GAP in percent (see :data:`GAP_FORMULA`)."""
    if synthetic == 0:
        raise MetricInputError("GAP is undefined for a synthetic score of 0")
    return float((real - synthetic) / synthetic * 100.0)
