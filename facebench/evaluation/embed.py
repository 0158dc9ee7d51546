"""Images -> embeddings, with insightface's flip test: the one embedding path of facebench.

Feature extractors, the FR trainer's validation, ``evaluate``, ``analyze`` and ``embed`` all embed here.

insightface embeds every test image and its mirror image separately, sums the two raw (not normalised)
embeddings, then L2-normalises the sum; ``verify`` does the normalising. Embeddings are computed batch by
batch from encoded bytes, so a 12,000-image pack never sits decoded in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..console import make_progress
from ..data.images import decode_image
from ..data.tensors import to_model_input
from ..errors import DataError


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


@dataclass
class TensorModel:
    """What evaluation needs from a model: ``forward`` maps (N,3,S,S) in [-1,1] to raw (N,D) embeddings."""

    forward: Callable[[Any], Any]
    input_size: int = 112
    device: str = "cpu"
    name: str = ""
    outputs: tuple[str, ...] | None = None  # names of the output columns, for attribute models (pose)


def as_tensor_model(extractor: Any, device: str = "cpu", name: str = "") -> TensorModel:
    """Adapt a feature extractor (ARCHITECTURE.md contract) or a bare ``torch.nn.Module``."""
    size = getattr(extractor, "input_size", 112)
    if isinstance(size, Sequence):
        size = int(size[-1])
    forward = getattr(extractor, "forward_tensor", None) or extractor
    if not callable(forward):
        raise TypeError(f"{type(extractor).__name__} has neither forward_tensor() nor __call__")
    outputs = getattr(extractor, "outputs", None)
    return TensorModel(forward=forward, input_size=int(size), device=device, name=name,
                       outputs=tuple(outputs) if outputs else None)


def embed_arrays(model: TensorModel, images: np.ndarray, *, flip_test: bool = True) -> np.ndarray:
    """Raw float32 embeddings of one batch of ``uint8`` NHWC RGB images (plus their mirrors)."""
    import torch

    x = to_model_input(images, model.input_size).to(model.device)
    with torch.no_grad():
        emb = embed_tensor(model.forward, x, flip=flip_test)
    return emb.detach().float().cpu().numpy()


def embed_encoded(
    model: TensorModel,
    items: Iterable[tuple[bytes, str]],
    count: int,
    *,
    path: str,
    batch_size: int = 64,
    flip_test: bool = True,
    description: str = "embedding",
) -> np.ndarray:
    """Embeddings of ``count`` encoded images given as ``(bytes, where)``; NaN output is a DataError."""
    out: np.ndarray | None = None
    batch: list[np.ndarray] = []
    done = 0
    with make_progress(transient=True) as progress:
        task = progress.add_task(description, total=count)

        def flush() -> None:
            nonlocal out, done
            emb = embed_arrays(model, np.stack(batch), flip_test=flip_test)
            if out is None:
                out = np.empty((count, emb.shape[1]), dtype=np.float32)
            out[done : done + len(batch)] = emb
            done += len(batch)
            batch.clear()
            progress.advance(task, emb.shape[0])

        for data, where in items:
            batch.append(decode_image(data, path=path, where=where))
            if len(batch) == batch_size:
                flush()
        if batch:
            flush()
    if out is None:
        raise DataError(path, "no images to embed")
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        raise DataError(path, f"the model produced NaN or inf embeddings for {int(bad.sum())} images",
                        f"image {int(np.argmax(bad))}")
    return out


def embed_pairs(model: TensorModel, reader: Any, *, batch_size: int = 64, flip_test: bool = True,
                description: str = "embedding pairs") -> tuple[np.ndarray, np.ndarray]:
    """``(emb_a, emb_b)`` for every pair of a pairs reader (pair k = images 2k and 2k+1)."""
    n = len(reader)
    if n == 0:
        raise DataError(reader.path, "the pack holds zero pairs")

    def items():
        for k in range(n):
            a, b = reader.pair_bytes(k)
            yield a, reader.where(k, 0)
            yield b, reader.where(k, 1)

    emb = embed_encoded(model, items(), 2 * n, path=reader.path, batch_size=batch_size, flip_test=flip_test,
                        description=description)
    return emb[0::2], emb[1::2]
