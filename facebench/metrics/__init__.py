"""Metric primitives: the verification protocol, ROC/EER and TAR@FAR, IJB templates, 1:N identification,
genuine/impostor score statistics (FDR, FMR100/FMR1000), the Vendi diversity score, Fréchet distance, KID,
precision/recall, density/coverage, identity-level measures, fairness across groups and the bias trade-off,
Borda ranking, certainty-ratio quality and bootstrap confidence intervals.

Plain numpy functions of arrays (torch only for the blocked separability pass), so plugins, the CLI and
users' notebooks compute the same numbers.
"""

from __future__ import annotations

from .bootstrap import percentile_interval, roc_intervals, verification_intervals
from .distributions import PairDistributions, pair_distributions, sample_pairs
from .fairness import GAP_FORMULA, TRADEOFF_FORMULA, GroupSummary, TradeOff, gap, group_summary, tradeoff
from .fidelity import density_coverage, kid, mmd2_unbiased, precision_recall
from .frechet import FeatureStats, feature_stats, frechet_distance, frechet_distance_from_stats
from .identification import ProbeScores, probe_scores, rank_rates, tpir_at_fpir
from .identity import (
    InterClassNoise,
    class_centers,
    inter_class_noise,
    intra_class_similarity,
    leaked_identities,
    nearest_reference,
)
from .inputs import MetricInputError
from .quality import certainty_ratio
from .ranking import benchmark_points, borda
from .roc import (
    IJB_FARS,
    Roc,
    corner_roc,
    eer,
    impostor_threshold,
    roc_curve,
    strict_tar_at_far,
    tar_at_far,
)
from .score_statistics import ScoreStats, score_stats, score_stats_intervals
from .separability import has_earlier_match, separability_curve
from .templates import fuse_image_features, template_features, template_pair_scores
from .vendi import vendi_by_identity, vendi_score
from .verification import (
    INSIGHTFACE_THRESHOLDS,
    VerificationResult,
    far_key,
    fold_sizes,
    pair_distances,
    verify,
)

__all__ = [
    "GAP_FORMULA",
    "IJB_FARS",
    "INSIGHTFACE_THRESHOLDS",
    "FeatureStats",
    "GroupSummary",
    "InterClassNoise",
    "MetricInputError",
    "PairDistributions",
    "ProbeScores",
    "Roc",
    "ScoreStats",
    "TRADEOFF_FORMULA",
    "TradeOff",
    "VerificationResult",
    "benchmark_points",
    "borda",
    "certainty_ratio",
    "class_centers",
    "corner_roc",
    "density_coverage",
    "eer",
    "far_key",
    "feature_stats",
    "fold_sizes",
    "frechet_distance",
    "frechet_distance_from_stats",
    "fuse_image_features",
    "gap",
    "group_summary",
    "has_earlier_match",
    "impostor_threshold",
    "inter_class_noise",
    "intra_class_similarity",
    "kid",
    "leaked_identities",
    "mmd2_unbiased",
    "nearest_reference",
    "pair_distances",
    "pair_distributions",
    "percentile_interval",
    "precision_recall",
    "probe_scores",
    "rank_rates",
    "roc_curve",
    "roc_intervals",
    "sample_pairs",
    "score_stats",
    "score_stats_intervals",
    "separability_curve",
    "strict_tar_at_far",
    "tar_at_far",
    "template_features",
    "template_pair_scores",
    "tpir_at_fpir",
    "tradeoff",
    "vendi_by_identity",
    "vendi_score",
    "verification_intervals",
    "verify",
]
