"""Face data: the format API (readers, writers, detection) and the torch datasets built on it.

Importing this package does not import torch; the torch side (``FaceDataset``, ``IterableFaceDataset``,
``IdentitySampler``) loads on first use.
"""

from __future__ import annotations

from typing import Any

from .formats import (
    PAIRS,
    TRAIN,
    PairsReader,
    TrainReader,
    detect_format,
    format_names,
    get_format,
    open_any,
    open_dataset,
    open_pairs,
    open_writer,
)
from .images import IMAGE_EXTENSIONS, decode_image, encode_image, image_kind, image_size
from .sharding import epoch_order, identity_epoch, rank_slice, shard_indices
from .transforms import FRTransform, eval_transform, normalize, train_transform

_TORCH_NAMES = {"FaceDataset", "IterableFaceDataset", "IdentitySampler"}

__all__ = [
    "IMAGE_EXTENSIONS",
    "PAIRS",
    "TRAIN",
    "FRTransform",
    "FaceDataset",
    "IdentitySampler",
    "IterableFaceDataset",
    "PairsReader",
    "TrainReader",
    "decode_image",
    "detect_format",
    "encode_image",
    "epoch_order",
    "eval_transform",
    "format_names",
    "get_format",
    "identity_epoch",
    "image_kind",
    "image_size",
    "normalize",
    "open_any",
    "open_dataset",
    "open_pairs",
    "open_writer",
    "rank_slice",
    "shard_indices",
    "train_transform",
]


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        from . import datasets

        return getattr(datasets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
