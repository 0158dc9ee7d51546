"""Borda count: one ranking of methods from their ranks on several benchmarks (SDFR at FG 2024).

On each benchmark the n methods that have a score are ranked (higher score first); the method at rank r
earns n - r points, methods with equal scores share the mean of the points of the ranks they occupy, and a
method's Borda count is its sum over benchmarks. Summing ranks instead of scores keeps one benchmark with
a wide spread from deciding the order.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .inputs import MetricInputError


def benchmark_points(scores: Mapping[str, float]) -> dict[str, float]:
    """Borda points of each method on one benchmark (ties share the mean of their ranks' points)."""
    methods = list(scores)
    values = np.array([float(scores[m]) for m in methods])
    if not np.isfinite(values).all():
        raise MetricInputError("Borda scores must be finite numbers")
    n = len(methods)
    points: dict[str, float] = {}
    for method, value in zip(methods, values):
        above = int((values > value).sum())  # ranks above this tie group
        tied = int((values == value).sum())
        # the group occupies ranks above+1 .. above+tied, worth n-(above+1) .. n-(above+tied) points
        points[method] = float(n - above - (tied + 1) / 2)
    return points


def borda(table: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """``{method: points}`` from ``table`` = benchmark -> {method: score}, highest count first."""
    if not table:
        raise MetricInputError("Borda count needs at least one benchmark")
    total: dict[str, float] = {}
    for benchmark, scores in table.items():
        if not scores:
            raise MetricInputError(f"benchmark '{benchmark}' has no scores")
        for method, pts in benchmark_points(scores).items():
            total[method] = total.get(method, 0.0) + pts
    return dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))
