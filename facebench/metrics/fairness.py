"""Fairness across demographic groups (RFW, FRCSyn) and the gap to a real-data baseline.

- RFW (Tencent TFace's ``verification_rfw.py``): per-group accuracy (%), their mean, the *sample* standard
  deviation (``ddof=1``) and the skewed error ratio SER = highest error / lowest error (error = 100 - acc).
- FRCSyn task 1 ranks by the trade-off TO = mean - STD across groups.
- FRCSyn GAP = (REAL - SYN) / SYN x 100 compares the same recipe trained on real and on synthetic data: a
  negative GAP means the synthetic data did better. Some papers flip the sign, so reports print the formula.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .inputs import MetricInputError

#: The formula printed beside every GAP value.
GAP_FORMULA = "GAP = (REAL - SYN) / SYN x 100 (negative: the synthetic data did better)"


@dataclass(frozen=True)
class GroupSummary:
    """Accuracies in percent per group and what the fairness tables print."""

    accuracies: dict[str, float]
    mean: float
    std: float  # sample standard deviation (ddof=1)
    ser: float  # max error / min error; inf when some group makes no error
    trade_off: float  # mean - std (FRCSyn TO)


def group_summary(accuracies: Mapping[str, float]) -> GroupSummary:
    """Mean, sample STD, SER and TO of per-group accuracies given in percent."""
    if len(accuracies) < 2:
        raise MetricInputError(f"fairness needs at least two groups, got {len(accuracies)}")
    acc = np.array([float(v) for v in accuracies.values()])
    if not np.isfinite(acc).all() or (acc < 0).any() or (acc > 100).any():
        raise MetricInputError("group accuracies must be percentages in [0, 100]")
    mean = float(acc.mean())
    std = float(np.std(acc, ddof=1))
    errors = 100.0 - acc
    ser = float(errors.max() / errors.min()) if errors.min() > 0 else float("inf")
    return GroupSummary(accuracies={k: float(v) for k, v in accuracies.items()}, mean=mean, std=std, ser=ser,
                        trade_off=mean - std)


def gap(real: float, synthetic: float) -> float:
    """FRCSyn's GAP in percent (see :data:`GAP_FORMULA`)."""
    if synthetic == 0:
        raise MetricInputError("GAP is undefined for a synthetic score of 0")
    return float((real - synthetic) / synthetic * 100.0)
