"""Does a trained generator keep identities? Compare, through a frozen FR extractor, each input feature
with the feature of the image generated from it (genuine) and with images generated from other
identities (unrelated). A generator that reconstructs identities scores genuine far above unrelated."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from facebench.data.tensors import to_uint8


def reconstruction_similarity(generator: Any, extractor: Any, features: np.ndarray, labels: np.ndarray, *,
                              batch_size: int = 32) -> dict[str, float]:
    """Mean and std of genuine and unrelated cosines (unrelated = input feature vs another label's image)."""
    feats = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels)
    # masks for all samples in one draw, so the figures do not depend on batch_size
    dropped, masked = generator.sample_masks(len(feats))
    embs = []
    for start in range(0, len(feats), batch_size):
        stop = start + batch_size
        images = generator.generate(torch.from_numpy(feats[start:stop]),
                                    masks=(dropped[start:stop], masked[start:stop]))
        embs.append(np.asarray(extractor.embed(to_uint8(images)), dtype=np.float64))
    return identity_stats(feats, np.concatenate(embs), labels)


def identity_stats(features: np.ndarray, embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The figures of :func:`reconstruction_similarity` from the input features and the FR embeddings of
    the images generated from them (row for row)."""
    feats = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels)
    emb = np.asarray(embeddings, dtype=np.float64)
    emb = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12)
    unit = feats.astype(np.float64) / (np.linalg.norm(feats, axis=1, keepdims=True) + 1e-12)
    sims = unit @ emb.T
    genuine = np.diag(sims)
    unrelated = sims[labels[:, None] != labels[None, :]]
    return {
        "samples": int(len(feats)),
        "genuine_mean": float(genuine.mean()),
        "genuine_std": float(genuine.std()),
        "unrelated_mean": float(unrelated.mean()) if unrelated.size else float("nan"),
        "unrelated_std": float(unrelated.std()) if unrelated.size else float("nan"),
        "unrelated_pairs": int(unrelated.size),
    }
