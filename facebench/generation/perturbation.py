"""Perturbing identity vectors into per-image vectors that keep the identity.

As the release does it: every image vector is its identity vector plus N(0, sigma) noise per coordinate,
rescaled to the identity vector's norm. The sigmas come from a mix ({0.3, 0.5, 0.7} at {40, 40, 20}% in
the paper, Table 5) whose shares are counted over the whole set and shuffled over it (:func:`sigma_plan`),
so one identity may get more sigma-0.7 images than another, exactly as in the release's
``sample_nearby_vectors``. The sigmas are calibrated for raw ArcFace-scale vectors (norm ~22 in 512-d):
sigma 0.3 then keeps a cosine of about 0.96, sigma 0.7 about 0.81.

The paper also states a minimum similarity of 0.5 to the identity vector, which the released code does
not check; it stays here as the recorded option ``min_cos`` (``-1`` switches it off). A vector below it is
redrawn; after ``max_attempts`` its noise is halved until it passes, so the loop always ends. At the
paper's sigmas on raw-scale vectors nothing is redrawn or shrunk; both counts are reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, FacebenchError

#: The scale the paper's sigmas were set for: raw ArcFace-R100 features, median norm about 22 in 512-d.
PAPER_NORM, PAPER_DIM = 22.0, 512


def matching_sigmas(norm: float, dim: int, sigmas: Sequence[float] | None = None) -> list[float]:
    """Sigmas that keep, for vectors of median ``norm`` in ``dim`` dimensions, the cosines the paper's
    sigmas keep at its scale: a perturbed vector's cosine to its identity is about
    ``1 / sqrt(1 + dim * sigma**2 / norm**2)``, so sigma scales with ``norm / sqrt(dim)``."""
    base = PerturbConfig().sigmas if sigmas is None else sigmas
    factor = (norm / PAPER_NORM) * (PAPER_DIM / dim) ** 0.5
    return [float(f"{s * factor:.3g}") for s in base]


@dataclass
class PerturbConfig:
    """Sigma mix and identity-preservation bound of the per-image perturbation."""

    sigmas: list[float] = field(default_factory=lambda: [0.3, 0.5, 0.7])
    shares: list[float] = field(default_factory=lambda: [0.4, 0.4, 0.2])
    min_cos: float = 0.5  # the paper's floor; -1 disables it (the release has none)
    max_attempts: int = 100

    def __post_init__(self) -> None:
        if not self.sigmas or len(self.sigmas) != len(self.shares):
            raise ConfigError(f"perturb: sigmas {self.sigmas} and shares {self.shares} must have the same length")
        if any(s < 0 for s in self.sigmas):
            raise ConfigError(f"perturb: sigmas must be >= 0, got {self.sigmas}")
        if any(s < 0 for s in self.shares) or abs(sum(self.shares) - 1.0) > 1e-6:
            raise ConfigError(f"perturb: shares must be >= 0 and sum to 1, got {self.shares}")
        if not -1.0 <= self.min_cos < 1.0:
            raise ConfigError(f"perturb: min_cos must be in [-1, 1), got {self.min_cos}")
        if self.max_attempts < 1:
            raise ConfigError(f"perturb: max_attempts must be >= 1, got {self.max_attempts}")


def split_counts(total: int, shares: list[float]) -> list[int]:
    """``total`` split by ``shares`` with largest remainders, so the counts always sum to ``total``."""
    raw = np.asarray(shares, dtype=np.float64) * total
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: total - int(counts.sum())]] += 1
    return [int(c) for c in counts]


@dataclass
class PerturbResult:
    """Per-image vectors (identity-major) with the sigma each used and the bookkeeping of the bound."""

    vectors: np.ndarray  # (n_ids * per_id, D) float32
    sigmas: np.ndarray  # (n_ids * per_id,) float32
    cosines: np.ndarray  # (n_ids * per_id,) float64, cosine to the identity vector
    resampled: int  # draws thrown away because the cosine was below min_cos
    shrunk: int  # vectors whose noise had to be halved after max_attempts

    def summary(self) -> dict[str, float | int]:
        return {
            "images": int(len(self.vectors)),
            "resampled": int(self.resampled),
            "shrunk": int(self.shrunk),
            "min_cos": float(self.cosines.min()) if len(self.cosines) else float("nan"),
            "mean_cos": float(self.cosines.mean()) if len(self.cosines) else float("nan"),
        }


def sigma_plan(total: int, config: PerturbConfig, rng: np.random.Generator) -> np.ndarray:
    """The sigma of each of ``total`` images: ``shares`` of the whole set, shuffled over the whole set."""
    counts = split_counts(total, config.shares)
    return rng.permutation(np.repeat(np.asarray(config.sigmas, dtype=np.float32), counts))


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)).clip(1e-300)


def perturb(identities: np.ndarray, per_id: int, rng: np.random.Generator,
            config: PerturbConfig | None = None, *, sigmas: np.ndarray | None = None) -> PerturbResult:
    """``per_id`` perturbed vectors for every identity vector (identity-major), each with cosine >=
    ``config.min_cos``. ``sigmas`` is this call's slice of a whole-set :func:`sigma_plan`; without it
    the plan is drawn over the identities given, as the release draws it over its whole run."""
    cfg = config or PerturbConfig()
    ids = np.asarray(identities, dtype=np.float64)
    n, d = ids.shape
    zero = np.flatnonzero(np.linalg.norm(ids, axis=1) == 0)
    if zero.size:
        raise FacebenchError(f"identity vector {int(zero[0])} is all zeros: it has no direction to keep")
    # A hair above the bound, so that the float32 result still passes it; -1 means no floor at all.
    floor = cfg.min_cos + 1e-6 if cfg.min_cos > -1 else -np.inf
    if sigmas is None:
        sigmas = sigma_plan(n * per_id, cfg, rng)
    if len(sigmas) != n * per_id:
        raise FacebenchError(f"perturbation needs one sigma per image: got {len(sigmas)} for {n * per_id} images")
    sigma = np.asarray(sigmas, dtype=np.float64)
    centre = np.repeat(ids, per_id, axis=0)
    norms = np.linalg.norm(centre, axis=1, keepdims=True)
    noise = rng.standard_normal((len(centre), d)) * sigma[:, None]
    out = centre + noise
    cos = _cos(out, centre)
    resampled = 0
    for _ in range(cfg.max_attempts - 1):
        bad = np.flatnonzero(cos < floor)
        if bad.size == 0:
            break
        resampled += int(bad.size)
        noise[bad] = rng.standard_normal((bad.size, d)) * sigma[bad, None]
        out[bad] = centre[bad] + noise[bad]
        cos[bad] = _cos(out[bad], centre[bad])
    bad = np.flatnonzero(cos < floor)
    shrunk = int(bad.size)
    while bad.size:  # halving the noise drives the cosine to 1, so this ends
        noise[bad] *= 0.5
        out[bad] = centre[bad] + noise[bad]
        cos[bad] = _cos(out[bad], centre[bad])
        bad = bad[cos[bad] < floor]
    out *= norms / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-300)
    return PerturbResult(vectors=out.astype(np.float32), sigmas=sigma.astype(np.float32),
                         cosines=_cos(out, centre), resampled=resampled, shrunk=shrunk)
