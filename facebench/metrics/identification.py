"""1:N identification: closed-set rank-k rates and open-set TPIR at FPIR (IJB-C 1:N, TinyFace).

A probe is compared by cosine with every gallery entry. Closed set: the rank of a mated probe is one plus
the number of non-mated gallery entries scoring strictly above its best mated entry; rank-k is the share
of mated probes with rank <= k. Open set (NIST's definition, as IJB-C 1:N reports it): at a threshold t,
FPIR is the share of non-mated probes whose best score reaches t, TPIR the share of mated probes whose
mated entry is ranked first and reaches t; t is set on the non-mated probes so that FPIR does not exceed
the target.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .inputs import MetricInputError, as_matrix, l2_normalise, same_length
from .roc import impostor_threshold

#: Probes per block of the probe x gallery similarity matrix.
PROBE_BLOCK = 2048


@dataclass(frozen=True)
class ProbeScores:
    """Per probe: best mated score, best non-mated score, and the rank of the best mated entry (0 = none)."""

    mated: np.ndarray  # -inf where the probe has no mated entry in the gallery
    nonmated: np.ndarray  # -inf where the gallery holds only the probe's identity
    rank: np.ndarray  # 1-based; 0 for probes with no mated entry

    @property
    def is_mated(self) -> np.ndarray:
        return self.rank > 0


def probe_scores(probe_feats: Any, probe_ids: Any, gallery_feats: Any, gallery_ids: Any, *,
                 block: int = PROBE_BLOCK) -> ProbeScores:
    """Cosine of every probe with every gallery entry, reduced per probe (blocked over probes)."""
    probes = l2_normalise(as_matrix(probe_feats, "probe features"), "probe features")
    gallery = l2_normalise(as_matrix(gallery_feats, "gallery features"), "gallery features")
    if probes.shape[1] != gallery.shape[1]:
        raise MetricInputError(f"probes have {probes.shape[1]} dimensions but the gallery has {gallery.shape[1]}")
    probe_ids, gallery_ids = np.asarray(probe_ids), np.asarray(gallery_ids)
    same_length(probe_feats=probes, probe_ids=probe_ids)
    same_length(gallery_feats=gallery, gallery_ids=gallery_ids)
    n = probes.shape[0]
    mated = np.full(n, -np.inf)
    nonmated = np.full(n, -np.inf)
    rank = np.zeros(n, dtype=np.int64)
    for start in range(0, n, block):
        stop = min(start + block, n)
        sims = probes[start:stop] @ gallery.T
        same = probe_ids[start:stop, None] == gallery_ids[None, :]
        best_mated = np.where(same, sims, -np.inf).max(axis=1)
        other = np.where(same, -np.inf, sims)
        mated[start:stop] = best_mated
        nonmated[start:stop] = other.max(axis=1)
        has = same.any(axis=1)
        rank[start:stop] = np.where(has, 1 + (other > best_mated[:, None]).sum(axis=1), 0)
    return ProbeScores(mated=mated, nonmated=nonmated, rank=rank)


def rank_rates(scores: ProbeScores, ranks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Closed-set identification rate at each rank, over the mated probes."""
    mated = scores.rank[scores.is_mated]
    if mated.size == 0:
        raise MetricInputError("no probe has a mated entry in the gallery")
    return {int(k): float((mated <= k).mean()) for k in ranks}


def tpir_at_fpir(scores: ProbeScores, fpirs: Sequence[float] = (1e-2, 1e-1)) -> dict[float, float]:
    """Open-set TPIR at each FPIR target: the threshold admits at most ``floor(fpir x non-mated)`` false
    alarms (non-mated probes whose best score is strictly above the threshold)."""
    nonmated = scores.nonmated[~scores.is_mated]
    if nonmated.size == 0:
        raise MetricInputError("open-set TPIR needs non-mated probes (probes whose identity is not enrolled)")
    first = scores.is_mated & (scores.rank == 1)
    mated_count = int(scores.is_mated.sum())
    if mated_count == 0:
        raise MetricInputError("no probe has a mated entry in the gallery")
    out = {}
    for fpir in fpirs:
        threshold = impostor_threshold(nonmated, float(fpir))
        out[float(fpir)] = float((first & (scores.mated > threshold)).sum() / mated_count)
    return out
