"""Certainty-ratio face-image quality (CR-FIQA, Boutros et al. 2023) from a labelled set's own centres.

CR = CCS / (NNCCS + 1 + eps): CCS is the cosine of a sample to its own class centre, NNCCS the highest
cosine to any other class centre. A high CR means the sample sits firmly in its identity; for a synthetic
set, low-CR images are the ones a trainer learns little from (or wrong). CR-FIQA takes the centres from a
trained margin head; a generated set has no head, so its centres are the renormalised means of its own
L2-normalised features.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .inputs import MetricInputError, as_matrix, l2_normalise, same_length

#: CR-FIQA's epsilon in the denominator.
EPS = 1e-9
#: Images per block of the image x centre similarity matrix.
BLOCK = 4096


def certainty_ratio(features: Any, labels: Any, *, eps: float = EPS, block: int = BLOCK) -> np.ndarray:
    """CR of every image (needs at least two identities)."""
    feats = as_matrix(features, "features", dtype=np.float32)
    labels = np.asarray(labels)
    same_length(features=feats, labels=labels)
    classes, index = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        raise MetricInputError("the certainty ratio needs at least two identities")
    centres = np.zeros((classes.size, feats.shape[1]))
    for start in range(0, feats.shape[0], block):
        stop = min(start + block, feats.shape[0])
        np.add.at(centres, index[start:stop], l2_normalise(np.asarray(feats[start:stop], np.float64)))
    centres = l2_normalise(centres, "class centres")
    out = np.empty(feats.shape[0])
    for start in range(0, feats.shape[0], block):
        stop = min(start + block, feats.shape[0])
        sims = l2_normalise(np.asarray(feats[start:stop], np.float64)) @ centres.T
        rows = np.arange(stop - start)
        own = sims[rows, index[start:stop]].copy()
        sims[rows, index[start:stop]] = -np.inf
        out[start:stop] = own / (sims.max(axis=1) + 1.0 + eps)
    return out
