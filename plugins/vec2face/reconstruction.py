"""Does a trained generator keep identities? Compare, through a frozen FR extractor, each input feature
with the feature of the image generated from it (genuine) and with images generated from other
identities (unrelated). A generator that reconstructs identities scores genuine far above unrelated."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N,3,H,W) in [-1, 1] -> uint8 NHWC RGB, the pixel mapping of the official inference scripts."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def reconstruction_similarity(generator: Any, extractor: Any, features: np.ndarray, labels: np.ndarray, *,
                              batch_size: int = 32) -> dict[str, float]:
    """Mean and std of genuine and unrelated cosines (unrelated = input feature vs another label's image)."""
    feats = np.asarray(features, dtype=np.float32)
    labels = np.asarray(labels)
    embs = []
    for start in range(0, len(feats), batch_size):
        images = generator.generate(torch.from_numpy(feats[start:start + batch_size]))
        embs.append(np.asarray(extractor.embed(to_uint8(images)), dtype=np.float64))
    emb = np.concatenate(embs)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12
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
