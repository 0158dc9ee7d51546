"""Identity separability: how many of the first n identities have no earlier identity too similar to them.

Vec2Face (paper Fig. 5) reports this for prefixes of 1000, 2000, ... identities by building the full cosine
matrix of every prefix: O(n^3) work and an n x n matrix. Whether identity i has an earlier identity above
the threshold does not depend on the prefix size, so one pass computing that flag per identity gives the
count for every prefix at once (a cumulative sum). The pass visits row blocks against all earlier
identities, so memory is O(n x block) and work n^2/2 dot products. Similarities within ``margin`` of the
threshold are recomputed in float64 so the float32 matrix products never flip a decision.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .inputs import MetricInputError, as_matrix, l2_normalise

DEFAULT_THRESHOLD = 0.4
DEFAULT_BLOCK = 2048
_MARGIN = 1e-5


def has_earlier_match(
    centers: Any, threshold: float = DEFAULT_THRESHOLD, *, block: int = DEFAULT_BLOCK, device: str = "cpu"
) -> np.ndarray:
    """For each identity, whether some earlier identity has cosine similarity above ``threshold``."""
    import torch

    exact = l2_normalise(as_matrix(centers, "centers"), "centers")
    if block < 1:
        raise MetricInputError(f"block must be >= 1, got {block}")
    n = exact.shape[0]
    fast = torch.from_numpy(exact.astype(np.float32)).to(device)
    flagged = np.zeros(n, dtype=bool)
    for start in range(0, n, block):
        stop = min(start + block, n)
        sims = fast[start:stop] @ fast[:stop].T  # (rows, earlier-or-same columns)
        rows = torch.arange(start, stop, device=sims.device)[:, None]
        earlier = torch.arange(stop, device=sims.device)[None, :] < rows
        sure = (sims > threshold + _MARGIN) & earlier
        close = ((sims - threshold).abs() <= _MARGIN) & earlier
        hit = sure.any(dim=1).cpu().numpy()
        if bool(close.any()):
            r, c = (idx.cpu().numpy() for idx in torch.nonzero(close, as_tuple=True))
            r = r + start
            exact_sims = np.einsum("ij,ij->i", exact[r], exact[c])
            above = exact_sims > threshold
            hit[np.unique(r[above]) - start] = True
        flagged[start:stop] = hit
    return flagged


def separability_curve(
    centers: Any, threshold: float = DEFAULT_THRESHOLD, *, block: int = DEFAULT_BLOCK, device: str = "cpu"
) -> np.ndarray:
    """``curve[n - 1]`` = how many of the first n identities have no earlier identity above ``threshold``.

    ``centers`` is (identities, dims), in generation order; rows are L2-normalised here.
    """
    return np.cumsum(~has_earlier_match(centers, threshold, block=block, device=device), dtype=np.int64)
