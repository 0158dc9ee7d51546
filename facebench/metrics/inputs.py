"""Input checks shared by the metrics: one-line errors instead of silent NaN results.

A NaN embedding or two lists of different lengths would otherwise give a plausible-looking accuracy,
so every metric validates its arrays here first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import FacebenchError


class MetricInputError(FacebenchError):
    """Arrays handed to a metric that it cannot score (empty, NaN, wrong shape, unequal lengths)."""


def as_matrix(values: Any, name: str, *, min_rows: int = 1, dtype: Any = np.float64) -> np.ndarray:
    """A finite 2-D float array with at least ``min_rows`` rows, or a one-line error naming ``name``."""
    arr = _to_numpy(values)
    if arr.ndim != 2:
        raise MetricInputError(f"{name}: expected a 2-D array (rows x dims), got shape {tuple(arr.shape)}")
    if arr.shape[0] < min_rows:
        raise MetricInputError(f"{name}: needs at least {min_rows} rows, got {arr.shape[0]}")
    if arr.shape[1] == 0:
        raise MetricInputError(f"{name}: has zero columns")
    arr = np.asarray(arr, dtype=dtype)
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise MetricInputError(f"{name}: {int(bad.any(axis=1).sum())} rows contain NaN or inf (first is row {row})")
    return arr


def as_flags(values: Any, name: str) -> np.ndarray:
    """A 1-D boolean array; 0/1 integers and floats are accepted, anything else is an error."""
    arr = _to_numpy(values)
    if arr.ndim != 1:
        raise MetricInputError(f"{name}: expected a 1-D array of same/different flags, got shape {tuple(arr.shape)}")
    if arr.dtype != bool:
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise MetricInputError(f"{name}: flags must be booleans or 0/1")
        arr = arr.astype(bool)
    return arr


def as_vector(values: Any, name: str) -> np.ndarray:
    """A finite 1-D float64 array."""
    arr = np.asarray(_to_numpy(values), dtype=np.float64)
    if arr.ndim != 1:
        raise MetricInputError(f"{name}: expected a 1-D array, got shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise MetricInputError(f"{name}: contains NaN or inf ({int((~np.isfinite(arr)).sum())} values)")
    return arr


def same_length(**arrays: np.ndarray) -> int:
    """The common length of the arrays, or an error listing every length."""
    lengths = {name: len(arr) for name, arr in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in lengths.items())
        raise MetricInputError(f"mismatched lengths: {listed}")
    return next(iter(lengths.values()))


def labelled_rows(features: Any, labels: Any) -> tuple[Any, np.ndarray]:
    """``(features, labels)`` checked as one row per label; a memory map (or any 2-D array) is kept as it is,
    so callers can read its rows in blocks, anything else is made a float64 matrix."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise MetricInputError(f"labels: expected a 1-D array, got shape {labels.shape}")
    shape = getattr(features, "shape", None)
    if shape is None or len(shape) != 2:
        features = as_matrix(features, "features", dtype=np.float64)
        shape = features.shape
    if shape[0] < 1 or shape[1] < 1:
        raise MetricInputError(f"features: expected a non-empty (rows x dims) matrix, got shape {tuple(shape)}")
    same_length(features=range(shape[0]), labels=labels)
    return features, labels


def l2_normalise(x: np.ndarray, name: str = "embeddings") -> np.ndarray:
    """Rows divided by their L2 norm; a zero row cannot be normalised and is an error."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    zero = norms == 0
    if zero.any():
        raise MetricInputError(f"{name}: {int(zero.sum())} rows are all zeros (first is row {int(np.argmax(zero))})")
    return x / norms[:, None]


def _to_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # a torch tensor, without importing torch
        values = values.detach().cpu().numpy()
    return np.asarray(values)
