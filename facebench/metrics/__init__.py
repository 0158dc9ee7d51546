"""Metric primitives: the verification protocol, ROC/EER, Fréchet distance and identity-level measures.

Plain numpy functions of arrays (torch only for the blocked separability pass), so plugins, the CLI and
users' notebooks compute the same numbers.
"""

from __future__ import annotations

from .distributions import PairDistributions, pair_distributions, sample_pairs
from .frechet import FeatureStats, feature_stats, frechet_distance, frechet_distance_from_stats
from .identity import (
    InterClassNoise,
    class_centers,
    inter_class_noise,
    intra_class_similarity,
    leaked_identities,
    nearest_reference,
)
from .inputs import MetricInputError
from .roc import Roc, eer, roc_curve, tar_at_far
from .separability import has_earlier_match, separability_curve
from .verification import (
    INSIGHTFACE_THRESHOLDS,
    VerificationResult,
    far_key,
    fold_sizes,
    pair_distances,
    verify,
)

__all__ = [
    "INSIGHTFACE_THRESHOLDS",
    "FeatureStats",
    "InterClassNoise",
    "MetricInputError",
    "PairDistributions",
    "Roc",
    "VerificationResult",
    "class_centers",
    "eer",
    "far_key",
    "feature_stats",
    "fold_sizes",
    "frechet_distance",
    "frechet_distance_from_stats",
    "has_earlier_match",
    "inter_class_noise",
    "intra_class_similarity",
    "leaked_identities",
    "nearest_reference",
    "pair_distances",
    "pair_distributions",
    "roc_curve",
    "sample_pairs",
    "separability_curve",
    "tar_at_far",
    "verify",
]
