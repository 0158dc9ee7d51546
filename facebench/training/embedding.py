"""Embedding images with a backbone the way verification protocols expect.

Shared by the trainer's validation and by feature extractors: uint8 RGB in, the model's input size and
[-1, 1] range, optional flip test (sum of the image's and the mirror image's embeddings, the insightface
protocol), L2-normalised float32 out, in batches under ``torch.no_grad``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from .data import to_model_input


def embed_tensor(model: Any, x: Any, *, flip: bool) -> Any:
    """Raw (unnormalised) embeddings of a float batch in [-1, 1], flip-summed when ``flip``."""
    out = model(x)
    if flip:
        out = out + model(x.flip(-1))
    return out


def embed_uint8(
    model: Any,
    images: np.ndarray | Iterable[np.ndarray],
    *,
    input_size: int,
    device: Any = "cpu",
    batch_size: int = 64,
    flip: bool = True,
    channels_last: bool = False,
    normalize: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(N, D) float32 embeddings of ``uint8`` NHWC RGB images (an array or an iterable of HWC images)."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    chunks: list[np.ndarray] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        x = to_model_input(np.stack(batch), input_size).to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        emb = embed_tensor(model, x, flip=flip).float()
        if normalize:
            emb = F.normalize(emb, dim=1)
        chunks.append(emb.cpu().numpy())
        if on_batch is not None:
            on_batch(len(batch))
        batch.clear()

    try:
        with torch.no_grad():
            for img in images:
                batch.append(np.asarray(img, dtype=np.uint8))
                if len(batch) == batch_size:
                    flush()
            if batch:
                flush()
    finally:
        model.train(was_training)
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)
