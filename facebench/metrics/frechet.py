"""Fréchet distance between two feature sets (FID when the features are Inception-v3 pool features).

The usual implementation calls ``scipy.linalg.sqrtm`` on the non-symmetric product of the covariances,
which can return complex values and loses precision on near-singular covariances. Here everything is
float64 and the trace term uses the identity tr sqrt(S1 S2) = tr sqrt(R S2 R) with R = S1^(1/2), where
``R S2 R`` is symmetric positive semi-definite, so two symmetric eigendecompositions suffice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .inputs import MetricInputError, as_matrix


@dataclass(frozen=True)
class FeatureStats:
    """Mean and covariance (unbiased, like numpy's ``np.cov``) of a feature set."""

    mean: np.ndarray
    cov: np.ndarray
    count: int


def feature_stats(features: Any, name: str = "features") -> FeatureStats:
    feats = as_matrix(features, name, min_rows=2)
    return FeatureStats(mean=feats.mean(axis=0), cov=np.cov(feats, rowvar=False).reshape(feats.shape[1], -1),
                        count=feats.shape[0])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2.0)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """tr((cov_a cov_b)^(1/2)) for symmetric PSD matrices, without a non-symmetric matrix root."""
    root_a = _psd_sqrt(cov_a)
    middle = root_a @ cov_b @ root_a
    values = np.linalg.eigvalsh((middle + middle.T) / 2.0)
    return float(np.sqrt(np.clip(values, 0.0, None)).sum())


def frechet_distance_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    if a.mean.shape != b.mean.shape:
        raise MetricInputError(f"feature sets differ in dimension: {a.mean.shape[0]} vs {b.mean.shape[0]}")
    diff = a.mean - b.mean
    value = diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * trace_sqrt_product(a.cov, b.cov)
    return float(max(value, 0.0))


def frechet_distance(feats_a: Any, feats_b: Any) -> float:
    """||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two (N, D) feature arrays, in float64."""
    return frechet_distance_from_stats(feature_stats(feats_a, "feats_a"), feature_stats(feats_b, "feats_b"))
