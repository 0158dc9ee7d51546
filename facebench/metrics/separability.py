"""Identity separability: how many of the first n identities have no earlier identity too similar to them.

Vec2Face (paper Fig. 5) reports this for prefixes of 1000, 2000, ... identities by building the full cosine
matrix of every prefix: O(n^3) work and an n x n matrix. Whether identity i has an earlier identity above
the threshold does not depend on the prefix size, so one pass computing that flag per identity gives the
count for every prefix at once (a cumulative sum). The pass multiplies row blocks against all earlier
identities and keeps only each row's maximum, so memory is O(n x block), work is n^2/2 dot products and
the only extra pass over the products is one max-reduction. A row whose maximum lies within ``_MARGIN``
of the threshold is rechecked in float64, so float32 products never flip a decision.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .inputs import MetricInputError, as_matrix, l2_normalise

DEFAULT_THRESHOLD = 0.4
DEFAULT_BLOCK = 2048
#: Upper bound on the float32 product matrix of one block (the block shrinks for very large n).
DEFAULT_MEMORY_MB = 512
_MARGIN = 1e-5


def block_rows(n: int, block: int = DEFAULT_BLOCK, memory_mb: int = DEFAULT_MEMORY_MB) -> int:
    """Rows per block: ``block``, fewer when (rows x n) float32 products would exceed ``memory_mb``."""
    return int(max(1, min(block, (memory_mb << 20) // (4 * max(n, 1)))))


def _margin(device: Any) -> float:
    """How far a float32 product may be from the float64 one: wider when CUDA matmuls may use TF32."""
    import torch

    if str(device).startswith("cuda") and (torch.backends.cuda.matmul.allow_tf32
                                           or torch.get_float32_matmul_precision() != "highest"):
        return 5e-3
    return _MARGIN


def has_earlier_match(centers: Any, threshold: float = DEFAULT_THRESHOLD, *, block: int = DEFAULT_BLOCK,
                      device: str = "cpu", memory_mb: int = DEFAULT_MEMORY_MB) -> np.ndarray:
    """For each identity, whether some earlier identity has cosine similarity above ``threshold``."""
    import torch

    exact = l2_normalise(as_matrix(centers, "centers"), "centers")
    if block < 1:
        raise MetricInputError(f"block must be >= 1, got {block}")
    n = exact.shape[0]
    rows_per_block = block_rows(n, block, memory_mb)
    fast = torch.from_numpy(exact.astype(np.float32)).to(device)
    margin = _margin(device)
    flagged = np.zeros(n, dtype=bool)
    for start in range(0, n, rows_per_block):
        stop = min(start + rows_per_block, n)
        sims = fast[start:stop] @ fast[:stop].T  # (rows, columns up to the block's end)
        # Inside the diagonal block only columns j < i are earlier identities.
        own = torch.ones(stop - start, stop - start, dtype=torch.bool, device=sims.device).triu()
        sims[:, start:stop].masked_fill_(own, -float("inf"))
        best = sims.max(dim=1).values.cpu().numpy().astype(np.float64)
        hit = best > threshold + margin
        for r in np.flatnonzero(np.abs(best - threshold) <= margin):
            i = start + int(r)
            hit[r] = bool((exact[:i] @ exact[i] > threshold).any())
        flagged[start:stop] = hit
    return flagged


def separability_curve(centers: Any, threshold: float = DEFAULT_THRESHOLD, *, block: int = DEFAULT_BLOCK,
                       device: str = "cpu", memory_mb: int = DEFAULT_MEMORY_MB) -> np.ndarray:
    """``curve[n - 1]`` = how many of the first n identities have no earlier identity above ``threshold``.

    ``centers`` is (identities, dims), in generation order; rows are L2-normalised here.
    """
    flags = has_earlier_match(centers, threshold, block=block, device=device, memory_mb=memory_mb)
    return np.cumsum(~flags, dtype=np.int64)
