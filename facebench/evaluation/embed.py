"""Images -> embeddings, with insightface's flip test: the one embedding path of facebench.

Feature extractors, the FR trainer's validation, ``evaluate``, ``analyze`` and ``embed`` all embed here.

insightface embeds every test image and its mirror image separately, sums the two raw (not normalised)
embeddings, then L2-normalises the sum; ``verify`` does the normalising. Embeddings are computed batch by
batch from encoded bytes, so a 12,000-image pack never sits decoded in memory: DataLoader workers decode
to ``uint8``, the device normalises and runs the model under autocast, and results stay on the device
until the call ends. :func:`embed_images` also shards the work over the ranks of a ``torchrun`` job and
gathers the rows (FR validation; any per-image feature extraction).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..console import make_progress
from ..data.images import decode_image
from ..data.tensors import to_model_input, uint8_to_input
from ..errors import DataError, FacebenchError, first_line


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
    """What evaluation needs from a model: ``forward`` maps (N,3,S,S) in [-1,1] to raw (N,D) embeddings.

    ``amp``: run it under fp16 autocast on CUDA (FR embeddings, as the reference test scripts do;
    attribute models and the FID Inception network keep fp32)."""

    forward: Callable[[Any], Any]
    input_size: int = 112
    device: str = "cpu"
    name: str = ""
    outputs: tuple[str, ...] | None = None  # names of the output columns, for attribute models (pose)
    amp: bool = True


def as_tensor_model(extractor: Any, device: str = "cpu", name: str = "") -> TensorModel:
    """Adapt a feature extractor (ARCHITECTURE.md contract) or a bare ``torch.nn.Module``."""
    size = getattr(extractor, "input_size", 112)
    if isinstance(size, Sequence):
        size = int(size[-1])
    forward = getattr(extractor, "forward_tensor", None) or extractor
    if not callable(forward):
        raise TypeError(f"{type(extractor).__name__} has neither forward_tensor() nor __call__")
    outputs = getattr(extractor, "outputs", None)
    amp = getattr(extractor, "amp", None)
    return TensorModel(forward=forward, input_size=int(size), device=device, name=name,
                       outputs=tuple(outputs) if outputs else None,
                       amp=bool(amp) if amp is not None else not outputs)


def embed_arrays(model: TensorModel, images: np.ndarray, *, flip_test: bool = True) -> np.ndarray:
    """Raw float32 embeddings of one batch of ``uint8`` NHWC RGB images (plus their mirrors)."""
    acc = _Embeddings(model, flip_test)
    acc.add(np.asarray(images, dtype=np.uint8))
    return acc.result(path="images")


class _Embeddings:
    """Embeds ``uint8`` batches on the model's device (normalised there, under autocast) and keeps the
    results on the device until :meth:`result`: one host copy per call, not one sync per batch."""

    def __init__(self, model: TensorModel, flip_test: bool):
        self.model = model
        self.flip_test = flip_test
        self.chunks: list[Any] = []

    def add(self, batch: Any) -> int:
        import torch

        from ..runtime import autocast

        model = self.model
        parts = batch if isinstance(batch, list) else [batch]
        outs = []
        for part in parts:  # a list holds images of different sizes, converted one by one
            part = part if isinstance(part, torch.Tensor) else _tensor(part)
            if part.ndim == 3:
                part = part[None]
            x = uint8_to_input(part.to(model.device, non_blocking=True), model.input_size)
            with torch.no_grad(), autocast(model.device, model.amp):
                outs.append(embed_tensor(model.forward, x, flip=self.flip_test).float())
        self.chunks.append(outs[0] if len(outs) == 1 else torch.cat(outs))
        return sum(int(p.shape[0]) if getattr(p, "ndim", 3) == 4 else 1 for p in parts)

    def result(self, *, path: str, first: int = 0) -> np.ndarray:
        import torch

        if not self.chunks:
            raise DataError(path, "no images to embed")
        out = torch.cat(self.chunks).cpu().numpy().astype(np.float32, copy=False)
        bad = ~np.isfinite(out).all(axis=1)
        if bad.any():
            raise DataError(path, f"the model produced NaN or inf embeddings for {int(bad.sum())} images",
                            f"image {first + int(np.argmax(bad))}")
        return out


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
    """Embeddings of ``count`` encoded images given as ``(bytes, where)``, decoded in this process (for
    an iterator of items; :func:`embed_images` decodes indexed images in DataLoader workers)."""
    acc = _Embeddings(model, flip_test)
    batch: list[np.ndarray] = []
    with make_progress(transient=True) as progress:
        task = progress.add_task(description, total=count)
        for data, where in items:
            batch.append(decode_image(data, path=path, where=where))
            if len(batch) == batch_size:
                progress.advance(task, acc.add(_collate(batch)))
                batch = []
        if batch:
            progress.advance(task, acc.add(_collate(batch)))
    return acc.result(path=path)


# ------------------------------------------------------------------ indexed images through a DataLoader


class TrainImages:
    """The images of a train reader as an indexed source (picklable, for DataLoader workers)."""

    def __init__(self, reader: Any):
        self.reader = reader
        self.path = reader.path

    def __len__(self) -> int:
        return len(self.reader)

    def encoded(self, i: int) -> tuple[bytes, str]:
        return self.reader.image_bytes(i), self.reader.where(i)


class PairImages:
    """The *distinct* images of a pairs reader and which two each pair compares (``index``, (pairs, 2)).

    A reader that knows its images (a pair list naming files: ``pair_index``, ``image_bytes(j)``,
    ``image_where(j)``) lists each file once, however many pairs use it: an IJB-C-size list of 15.6M
    pairs over 469k images is 469k forward passes, not 31M. Other readers (``.bin``: every pair stores
    its own copies) give images ``2k`` and ``2k+1`` for pair ``k``."""

    def __init__(self, reader: Any):
        self.reader = reader
        self.path = reader.path
        index = getattr(reader, "pair_index", None)
        self.shared = index is not None
        n = len(reader)
        self.index = np.asarray(index, dtype=np.int64) if index is not None else np.arange(2 * n).reshape(n, 2)
        self.count = int(reader.image_count) if self.shared else 2 * n

    def __len__(self) -> int:
        return self.count

    def encoded(self, j: int) -> tuple[bytes, str]:
        if self.shared:
            return self.reader.image_bytes(j), self.reader.image_where(j)
        k, side = divmod(j, 2)
        return self.reader.pair_bytes(k)[side], self.reader.where(k, side)


class _Decoded:
    """Torch-style dataset: position -> the decoded ``uint8`` HWC image of ``source.encoded(indices[pos])``
    (decoded in the worker; uint8 crosses the process boundary)."""

    def __init__(self, source: Any, indices: np.ndarray):
        self.source = source
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, pos: int) -> Any:
        try:
            data, where = self.source.encoded(int(self.indices[pos]))
            return _tensor(decode_image(data, path=self.source.path, where=where))
        except FacebenchError as exc:  # crosses to the main process as a value (see _Failed)
            return _Failed(exc)
        except OSError as exc:  # an image that is a folder, or unreadable
            return _Failed(DataError(exc.filename or self.source.path,
                                     f"cannot read image ({exc.strerror or first_line(exc)})"))


class _Failed:
    """A user's error met in a DataLoader worker, carried to the main process as a plain value: torch
    re-raises a worker's exception as ``type(exc)(message)`` with its traceback in the message, which a
    :class:`DataError` cannot even be built from, so the one-line error would become a RuntimeError
    traceback on every GPU run."""

    def __init__(self, exc: FacebenchError):
        self.fields = (exc.path, exc.problem, exc.where) if isinstance(exc, DataError) else None
        self.text = str(exc)

    def error(self) -> FacebenchError:
        return DataError(*self.fields) if self.fields else FacebenchError(self.text)


def _tensor(image: np.ndarray) -> Any:
    """A torch view of a decoded image (copied when it is a read-only buffer, which torch refuses)."""
    import torch

    image = np.ascontiguousarray(image)
    return torch.from_numpy(image if image.flags.writeable else image.copy())


def _collate(items: list[Any]) -> Any:
    """One ``uint8`` (N,H,W,3) batch, or a list when the images differ in size (converted one by one)."""
    import torch

    failed = next((x for x in items if isinstance(x, _Failed)), None)
    if failed is not None:
        return failed
    items = [x if isinstance(x, torch.Tensor) else _tensor(x) for x in items]
    if all(x.shape == items[0].shape for x in items):
        return torch.stack(items)
    return items


def default_workers(device: Any) -> int:
    """Decoding processes for embedding: on a GPU the decoder, not the model, is the bottleneck."""
    from ..runtime import device_type

    return min(8, max(1, (os.cpu_count() or 2) - 1)) if device_type(device) == "cuda" else 0


def shard_slice(count: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous share of ``count`` items (the first ``count % world`` get one more)."""
    base, extra = divmod(count, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def embed_images(
    model: TensorModel,
    source: Any,
    indices: Any = None,
    *,
    batch_size: int = 64,
    flip_test: bool = True,
    workers: int | None = None,
    ctx: Any = None,
    description: str = "embedding",
) -> np.ndarray:
    """Raw float32 embeddings of ``source``'s images (all, or ``indices``), in that order.

    Images are decoded in DataLoader workers (``workers``, default :func:`default_workers`) and sent as
    ``uint8`` through pinned memory; the model runs under autocast on CUDA. With a distributed ``ctx``
    (every rank calls this) each rank embeds a contiguous share and every rank gets all rows back.
    """
    import torch

    from ..runtime import device_type, gather_objects

    indices = np.arange(len(source)) if indices is None else np.asarray(indices, dtype=np.int64)
    if indices.size == 0:
        raise DataError(source.path, "no images to embed")
    share = indices
    first = 0
    if ctx is not None and ctx.distributed:
        part = shard_slice(indices.size, ctx.rank, ctx.world_size)
        share, first = indices[part], part.start
    workers = default_workers(model.device) if workers is None else workers
    loader = torch.utils.data.DataLoader(
        _Decoded(source, share), batch_size=batch_size, shuffle=False, num_workers=workers,
        collate_fn=_collate, pin_memory=device_type(model.device) == "cuda",
        prefetch_factor=4 if workers else None)
    acc = _Embeddings(model, flip_test)
    with make_progress(transient=True) as progress:
        task = progress.add_task(description, total=len(share))
        for batch in loader:
            if isinstance(batch, _Failed):
                raise batch.error()
            progress.advance(task, acc.add(batch))
    local = acc.result(path=source.path, first=first) if len(share) else None
    if ctx is None or not ctx.distributed:
        return local
    parts = [p for p in gather_objects(ctx, local) if p is not None]
    return np.concatenate(parts)


def embed_pairs(model: TensorModel, reader: Any, *, batch_size: int = 64, flip_test: bool = True,
                description: str = "embedding pairs", workers: int | None = None,
                ctx: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """``(emb_a, emb_b)`` for every pair of a pairs reader, each distinct image embedded once."""
    if len(reader) == 0:
        raise DataError(reader.path, "the pack holds zero pairs")
    source = PairImages(reader)
    emb = embed_images(model, source, batch_size=batch_size, flip_test=flip_test, workers=workers, ctx=ctx,
                       description=description)
    return emb[source.index[:, 0]], emb[source.index[:, 1]]
