"""The options of each built-in analysis, registered as the analysis's ``config=`` so that
``facebench analyze --set class-noise.intra_threshold=0.3`` is checked like every other config key.

Kept free of heavy imports (no torch): the registry reads these classes without importing the analyses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from facebench.metrics import identity, separability, vendi


@dataclass
class PairDistributionConfig:
    genuine: int = 100_000  # sampled genuine pairs (at most the pairs that exist)
    impostor: int = 100_000  # sampled impostor pairs
    ddof: int = 0  # of the genuine/impostor SDs and so of FDR (0: population SD, as numpy; 1: sample SD)
    bootstrap: int = 200  # resamples of the pairs for 95% intervals of the score statistics (0: none)


@dataclass
class VendiConfig:
    bootstrap: int = 200  # resamples of the identities for a 95% interval of the mean intra-class score (0: none)
    block: int = vendi.IDENTITY_BLOCK  # feature rows read and decomposed at a time


@dataclass
class ClassNoiseConfig:
    intra_threshold: float = identity.INTRA_THRESHOLD  # image-to-centre cosine below which an image is noise
    inter_threshold: float = identity.INTER_THRESHOLD  # centre-to-centre cosine above which a pair is noise
    block: int = identity.DEFAULT_BLOCK


@dataclass
class SeparabilityConfig:
    threshold: float = separability.DEFAULT_THRESHOLD  # separable: no earlier identity above it (Fig. 5)
    block: int = separability.DEFAULT_BLOCK


@dataclass
class LeakageConfig:
    threshold: float = identity.LEAKAGE_THRESHOLD  # centre cosine above which an identity matches a reference
    block: int = identity.DEFAULT_BLOCK
    fmr: float = 1e-4  # also count matches above the reference's own impostor threshold at this FMR
    impostor_pairs: int = 2_000_000  # most reference centre pairs sampled for that threshold
    pairs: int = 10  # closest synthetic/reference identity pairs kept (as images when the reference is a dataset)


@dataclass
class FidConfig:
    images: int = 10_000  # images drawn from each set


@dataclass
class FidelityConfig:
    images: int = 10_000  # images drawn from each set (the FID analysis's draw is reused when equal)
    kid_subsets: int = 100  # KID: random subsets (torch-fidelity's default)
    kid_subset_size: int = 1000  # KID: subset size (capped by the smaller set)
    pr_k: int = 3  # improved precision/recall: k of the k-NN balls
    dc_k: int = 5  # density/coverage: k of the k-NN balls


@dataclass
class CertaintyRatioConfig:
    bins: int = 50  # histogram bins
    eps: float = 1e-9  # CR-FIQA's epsilon


@dataclass
class PoseQualityConfig:
    images: int = 10_000  # images drawn for the histograms
    bins: int = 36


@dataclass
class IjbConfig:
    """insightface's IJB scoring switches (its defaults) and the cost cap of the 1:1 intervals."""

    flip_fusion: str = "add"  # add (F2) | concat (F1) | none: the image without its mirror
    keep_norm: bool = True  # N1: keep each image feature's norm (False: L2-normalise first, N0)
    detector_score: bool = True  # D1: weight each image by its faceness score (False: D0)
    bootstrap: int = 200  # most resamples for the 1:1 intervals (each is one pass over all pairs)


@dataclass
class TinyFaceConfig:
    ranks: list[int] = field(default_factory=lambda: [1, 5, 20])  # identification ranks reported
