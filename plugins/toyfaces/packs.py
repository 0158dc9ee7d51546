"""The toy verification packs: which nuisance separates the two photos of a pair, and how pairs are laid out.

Each pack mirrors a real benchmark's difficulty (see ``docs/toyfaces.md``). Layout follows the real sets:
10 folds, each fold ``pairs/10`` pairs with the same-identity half first, identities of a fold drawn
only from that fold's share of the pack's own identity pool (disjoint from the training identities,
which come from another generator stream).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from .params import Difficulty, Identity, Nuisance, sample_nuisance

FOLDS = 10
PairNuisance = Callable[[np.random.Generator, Identity, Identity, Difficulty], tuple[Nuisance, Nuisance]]


def _general(rng, ia, ib, d):
    return sample_nuisance(rng, ia, d), sample_nuisance(rng, ib, d)


def _sign(rng) -> float:
    return 1.0 if rng.uniform() < 0.5 else -1.0


def _frontal_profile(rng, ia, ib, d):
    a = replace(sample_nuisance(rng, ia, d), yaw=float(rng.normal(0, 4)))
    b = replace(sample_nuisance(rng, ib, d), yaw=_sign(rng) * float(rng.uniform(60, 80)))
    return (a, b) if rng.uniform() < 0.5 else (b, a)


def _cross_pose(rng, ia, ib, d):
    a = replace(sample_nuisance(rng, ia, d), yaw=_sign(rng) * float(rng.uniform(0, 25)))
    b = replace(sample_nuisance(rng, ib, d), yaw=_sign(rng) * float(rng.uniform(40, 70)))
    return a, b


def _age_gap(rng, ia, ib, d):
    young, old = float(rng.uniform(0.05, 0.3)), float(rng.uniform(0.6, 0.9))
    a = replace(sample_nuisance(rng, ia, d), age=young)
    b = replace(sample_nuisance(rng, ib, d), age=old)
    return (a, b) if rng.uniform() < 0.5 else (b, a)


def _facial_hair(rng, ia, ib, d):
    a = replace(sample_nuisance(rng, ia, d), beard=0.0, moustache=0.0, stubble=0.0)
    heavy = float(rng.uniform(0.7, 1.0))
    kind = rng.integers(3)
    b = replace(sample_nuisance(rng, ib, d), beard=heavy if kind != 1 else 0.0,
                moustache=heavy if kind != 0 else 0.0, stubble=float(rng.uniform(0.3, 0.8)))
    return (a, b) if rng.uniform() < 0.5 else (b, a)


def _exposure(rng, ia, ib, d):
    a = replace(sample_nuisance(rng, ia, d), gain=float(rng.uniform(0.35, 0.55)), gamma=float(rng.uniform(1.1, 1.3)))
    b = replace(sample_nuisance(rng, ib, d), gain=float(rng.uniform(1.6, 2.2)), gamma=float(rng.uniform(0.8, 0.95)))
    return (a, b) if rng.uniform() < 0.5 else (b, a)


@dataclass(frozen=True)
class PackSpec:
    name: str
    mirrors: str
    description: str
    nuisance: PairNuisance
    hard_negatives: bool = False


PACKS: dict[str, PackSpec] = {
    p.name: p
    for p in (
        PackSpec("toy_lfw", "LFW", "general: both photos from the training distribution", _general),
        PackSpec("toy_cfp_fp", "CFP-FP", "frontal (yaw ~0) against profile (|yaw| 60-80 deg)", _frontal_profile),
        PackSpec("toy_cplfw", "CPLFW", "cross-pose (|yaw| 0-25 vs 40-70 deg), similar-looking negatives",
                 _cross_pose, hard_negatives=True),
        PackSpec("toy_agedb_30", "AgeDB-30", "large age gap (age 0.05-0.3 vs 0.6-0.9)", _age_gap),
        PackSpec("toy_calfw", "CALFW", "large age gap, similar-looking negatives", _age_gap, hard_negatives=True),
        PackSpec("toy_hadrian", "Hadrian", "clean-shaven against heavy beard/moustache, similar-looking negatives",
                 _facial_hair, hard_negatives=True),
        PackSpec("toy_eclipse", "Eclipse", "under-exposed against over-exposed", _exposure),
    )
}


def check_pair_count(pairs: int) -> int:
    """Pair counts must fill 10 balanced folds: a positive multiple of 20."""
    if pairs < 20 or pairs % 20:
        raise ValueError(f"--pairs must be a positive multiple of 20 (10 folds, half same), got {pairs}")
    return pairs


def pack_identity_count(pairs: int) -> int:
    """Identities in a pack's pool: a quarter of the pairs (LFW has ~1 identity per pair), at least 4 per fold."""
    return max(4 * FOLDS, pairs // 4)


def plan_pairs(
    pairs: int, rng: np.random.Generator, features: np.ndarray, hard_negatives: bool
) -> list[tuple[int, int, bool]]:
    """``(identity_a, identity_b, same)`` per pair, fold by fold, same-identity half first.

    ``features`` (one row per pool identity) picks hard negatives: the closest of 8 random candidates.
    """
    n_ids = len(features)
    per_fold = pairs // FOLDS
    plan: list[tuple[int, int, bool]] = []
    for fold in range(FOLDS):
        pool = np.arange(fold, n_ids, FOLDS)
        for _ in range(per_fold // 2):
            i = int(rng.choice(pool))
            plan.append((i, i, True))
        for _ in range(per_fold // 2):
            i = int(rng.choice(pool))
            others = pool[pool != i]
            if hard_negatives:
                cands = rng.choice(others, size=min(8, len(others)), replace=False)
                j = int(cands[np.argmin(((features[cands] - features[i]) ** 2).sum(1))])
            else:
                j = int(rng.choice(others))
            plan.append((i, j, False))
    return plan
