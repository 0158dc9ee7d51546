"""The (image, identity feature) pairs Vec2Face trains on, and the feature scale recorded beside the weights.

The release trains on RAW features (ArcFace-R100 output, never L2-normalised; norm about 22), so facebench
takes features as given: from ``--features``, from the dataset's own records (the official
generator-training LMDB) or from an extractor with ``raw=True``. The median norm goes into
``generator.pth`` so ``generate`` can check identity vectors against it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facebench.data.tensors import to_model_input
from facebench.errors import DataError, FacebenchError
from facebench.safe_load import load_array

#: Rows whose norms give the recorded median when features are read record by record from a dataset.
SCALE_SAMPLE = 4096


class FeaturePairs:
    """(image in [-1, 1] at the model's size, its identity feature) for every image of a train reader.

    Features come from an array (``--features`` or extracted up front) or, when ``features`` is None,
    from the reader itself record by record (the official generator-training LMDB stores them).
    """

    def __init__(self, reader: Any, features: np.ndarray | None, image_size: int):
        if features is not None and (features.ndim != 2 or features.shape[0] != len(reader)):
            raise DataError(getattr(reader, "path", "dataset"),
                            f"{len(reader)} images but features of shape {tuple(features.shape)}")
        self.reader = reader
        self.features = None if features is None else np.ascontiguousarray(features, dtype=np.float32)
        self.image_size = image_size

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[1]) if self.features is not None else int(self.feature(0).shape[0])

    def feature(self, index: int) -> np.ndarray:
        if self.features is not None:
            return self.features[index]
        return np.asarray(self.reader.feature(index), dtype=np.float32).reshape(-1)

    def __len__(self) -> int:
        return len(self.reader)

    def record(self, index: int) -> tuple[torch.Tensor, ...]:
        """(image, feature) of record ``index``; a broken record raises its one-line error."""
        image = to_model_input(np.array(self.reader.image(index)), self.image_size)[0]
        return image, torch.from_numpy(np.array(self.feature(index)))

    def __getitem__(self, key: tuple[int, int] | int) -> Any:
        """What the loader draws: :meth:`record`, or a broken record's error as a :class:`CarriedError`."""
        index = key[1] if isinstance(key, tuple) else key
        try:
            return self.record(index)
        except FacebenchError as exc:
            return CarriedError(exc)


class CarriedError:
    """A user's error met while loading a record (maybe in a DataLoader worker), carried to the main process
    as a value: torch re-raises a worker's exception as ``type(exc)(message)`` with its traceback in the
    message, which a :class:`DataError` cannot even be built from, so the one-line error naming the file and
    the record would become a traceback."""

    def __init__(self, exc: FacebenchError):
        self.fields = (exc.path, exc.problem, exc.where) if isinstance(exc, DataError) else None
        self.text = str(exc)

    def error(self) -> FacebenchError:
        return DataError(*self.fields) if self.fields else FacebenchError(self.text)


def collate_records(items: list[Any]) -> Any:
    """``default_collate`` of a batch's records, or the first :class:`CarriedError` among them (the trainer
    raises it)."""
    from torch.utils.data import default_collate

    failed = next((x for x in items if isinstance(x, CarriedError)), None)
    return failed if failed is not None else default_collate(items)


def reader_has_features(reader: Any) -> bool:
    """Whether the dataset stores a feature per image (the official generator-training LMDB does)."""
    if not callable(getattr(reader, "feature", None)):
        return False
    has = getattr(reader, "has_features", None)
    return bool(has()) if callable(has) else True


def require_landmarks(reader: Any) -> None:
    """Vec2Face+'s pose model trains on records with a landmark image ([image, feature, label, landmark
    image], ``WebFace4M_with_landmarks.lmdb``): any other dataset is one error naming it."""
    has = getattr(reader, "has_landmarks", None)
    if not (callable(has) and has()) or not callable(getattr(reader, "landmark_image", None)):
        raise DataError(getattr(reader, "path", "dataset"),
                        "holds no landmark images: the Vec2Face+ pose model trains on records of image, feature, "
                        "label and landmark image (an LMDB in the layout of WebFace4M_with_landmarks.lmdb)")


def load_features(path: str | os.PathLike, expected_rows: int) -> np.ndarray:
    """A (N, D) float ``.npy`` (never unpickled) with one row per image."""
    feats = load_array(path, what="features")
    if feats.ndim != 2 or feats.shape[0] != expected_rows or not np.issubdtype(feats.dtype, np.floating):
        raise DataError(path, f"expected float features of shape ({expected_rows}, D), got "
                              f"{feats.dtype} {tuple(feats.shape)}")
    if not np.isfinite(feats).all():
        raise DataError(path, "features contain NaN or infinity")
    return feats.astype(np.float32)


def extract_features(reader: Any, extractor: Any, out: Path, *, name: str | None, weights: str | None,
                     device: Any, batch_size: int = 64, shard_size: int | None = None) -> np.ndarray:
    """Raw features of every image of ``reader`` (the image alone, no flip sum, not normalised: the scale
    the release trains on), written to ``out`` by the evaluation layer's resumable feature writer.

    Under ``torchrun`` the process group is made first and every rank embeds its share of the shards
    into the one memory-mapped file (a rank never extracts the whole dataset on its own); a rerun with
    ``--resume`` reuses finished shards, or the finished file, when extractor and weights are the same."""
    from facebench.evaluation.features import extractor_features
    from facebench.runtime import init_distributed

    ctx = init_distributed(device)  # the trainer joins the same group afterwards
    feats = extractor_features(extractor, name or "", reader, out, raw=True, batch_size=batch_size, device=device,
                               ctx=ctx, shard_size=shard_size, weights=weights)
    if not np.isfinite(np.asarray(feats[: min(len(reader), SCALE_SAMPLE)])).all():
        raise DataError(out, "the extractor produced NaN or infinite features")
    return feats


def median_norm(features: np.ndarray) -> float:
    return float(np.median(np.linalg.norm(np.asarray(features, dtype=np.float64), axis=1)))


def feature_scale(data: FeaturePairs, source: str, extractor: str | None) -> dict[str, Any]:
    """What ``generator.pth`` records under ``FEATURE_SCALE_KEY``: the median feature norm (over every row
    of an array, over ``SCALE_SAMPLE`` evenly spread records of a dataset), where the features came from,
    and whether they are raw (False when the median norm is within 1e-3 of 1: unit-length features)."""
    if data.features is not None:
        norm = median_norm(data.features)
    else:
        n = len(data)
        idx = np.unique(np.linspace(0, n - 1, num=min(n, SCALE_SAMPLE)).round().astype(int))
        norm = median_norm(np.stack([data.feature(int(i)) for i in idx]))
    return {"median_norm": norm, "extractor": extractor, "source": source, "raw": abs(norm - 1.0) > 1e-3}
