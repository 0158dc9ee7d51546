"""The Vendi score: the effective number of distinct items in a set of embeddings (VariFace's "Face Vendi").

``VS = exp(-sum_i l_i log l_i)`` over the eigenvalues ``l`` of ``K / n``, ``K`` the cosine-similarity
kernel of the ``n`` unit embeddings (Friedman & Dieng, 2023). It is 1 for ``n`` copies of one embedding
and ``n`` for ``n`` orthogonal ones. With unit rows ``X`` (n x d), the non-zero eigenvalues of the Gram
matrix ``X X^T / n`` equal those of ``X^T X / n`` (d x d), so the score is computed from whichever is
smaller: 10k identity centres of 512 dimensions need one 512 x 512 eigendecomposition, not a 10k x 10k one.

Per identity (intra-class diversity) the images of one identity are scored alone; identities with the same
image count are decomposed together as one batch of small Gram matrices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .inputs import as_matrix, l2_normalise, labelled_rows
from .rows import take_rows

#: Rows read and decomposed at a time by :func:`vendi_by_identity` (16,384 x 512 float64 is 64 MB).
IDENTITY_BLOCK = 16384
#: What the score means, recorded with every result.
VENDI_DEFINITION = ("exp(-sum l log l) over the eigenvalues l of K/n, K the cosine kernel of the L2-normalised "
                    "embeddings (order q=1); from X X^T/n or X^T X/n, whichever is smaller")


def entropy_exp(eigenvalues: np.ndarray) -> np.ndarray:
    """``exp(-sum l log l)`` over the last axis; rounding's tiny negative eigenvalues count as 0 (0 log 0 = 0)."""
    lam = np.clip(eigenvalues, 0.0, None)
    logs = np.log(np.where(lam > 0, lam, 1.0))
    return np.exp(-np.sum(lam * logs, axis=-1))


def _unit_rows(embeddings: Any, name: str) -> np.ndarray:
    return l2_normalise(as_matrix(embeddings, name, dtype=np.float64), name)


def vendi_score(embeddings: Any) -> float:
    """The Vendi score of the rows of ``embeddings`` (n x d), normalised to unit length here."""
    x = _unit_rows(embeddings, "embeddings")
    n, d = x.shape
    kernel = (x @ x.T if n <= d else x.T @ x) / n
    return float(entropy_exp(np.linalg.eigvalsh(kernel)))


def _batch_scores(x: np.ndarray) -> np.ndarray:
    """Scores of a batch (k, m, d) of k identities of m unit rows each."""
    k, m, d = x.shape
    if m == 1:
        return np.ones(k)
    kernel = (np.einsum("kmd,knd->kmn", x, x) if m <= d else np.einsum("kmd,kme->kde", x, x)) / m
    return entropy_exp(np.linalg.eigvalsh(kernel))


def vendi_by_identity(features: Any, labels: Any, *, block: int = IDENTITY_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, scores)``: the Vendi score of each identity's own images (classes sorted, as ``np.unique``).

    ``features`` may be a memory map larger than RAM: identities are read ``block`` rows at a time."""
    features, labels = labelled_rows(features, labels)
    classes, index, counts = np.unique(labels, return_inverse=True, return_counts=True)
    order = np.argsort(index, kind="stable")  # rows identity by identity
    starts = np.r_[0, np.cumsum(counts)]
    scores = np.empty(classes.size)
    first = 0
    while first < classes.size:  # a run of whole identities of at most `block` rows (at least one identity)
        last = int(np.searchsorted(starts, starts[first] + max(block, 1), side="right")) - 1
        last = max(last, first + 1)
        rows = take_rows(features, order[starts[first]:starts[last]])
        unit = _unit_rows(rows, "features")
        local = counts[first:last]
        offsets = starts[first:last] - starts[first]
        for m in np.unique(local):
            which = np.flatnonzero(local == m)
            picks = offsets[which][:, None] + np.arange(m)[None, :]
            scores[first + which] = _batch_scores(unit[picks])
        first = last
    return classes, scores
