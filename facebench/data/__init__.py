"""Face data: the format API (readers, writers, detection), the one image codec (:mod:`.images`) and the one
conversion to model input (:mod:`.tensors`). Importing this package does not import torch.
"""

from __future__ import annotations

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
from .identity import DatasetIdentity, identify, resolve_dataset_path
from .images import IMAGE_EXTENSIONS, decode_image, encode_image, image_kind, image_size

__all__ = [
    "DatasetIdentity",
    "IMAGE_EXTENSIONS",
    "PAIRS",
    "TRAIN",
    "PairsReader",
    "TrainReader",
    "decode_image",
    "detect_format",
    "encode_image",
    "format_names",
    "get_format",
    "identify",
    "image_kind",
    "image_size",
    "open_any",
    "open_dataset",
    "open_pairs",
    "open_writer",
    "resolve_dataset_path",
]
