"""Rows of a feature matrix that may be a memory map larger than RAM (15M x 512 float32 is 31 GB).

Reading a memory map through numpy maps every page it touches into the process, and Linux counts those
pages as resident (with fault-around, 64 KB for each row touched) until memory runs short: streaming a
whole feature file "in blocks", or picking 200k random rows, still ends with most of the file resident.
For a memory-mapped ``.npy`` these helpers read the rows with ``pread`` instead (through the page cache,
never mapped), so the resident set is one block; other arrays are indexed as usual.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

#: Rows per block: 16,384 x 512 float64 is 64 MB (a pass holds a few such copies: the raw rows, their
#: float64 copy and what the caller derives from them).
BLOCK_ROWS = 16384


def _backing_file(matrix: Any) -> tuple[str, int] | None:
    """``(file, byte offset of row 0)`` of a C-ordered ``np.load(..., mmap_mode=...)`` array, else None."""
    if not isinstance(matrix, np.memmap) or not isinstance(getattr(matrix, "base", None), mmap.mmap):
        return None
    if matrix.filename is None or not matrix.flags.c_contiguous or matrix.ndim != 2:
        return None
    return os.fspath(matrix.filename), int(matrix.offset)


def row_blocks(matrix: Any, block: int = BLOCK_ROWS, dtype: Any = np.float64) -> Iterator[tuple[int, np.ndarray]]:
    """``(start, rows)`` for consecutive blocks of ``matrix``, each copied to ``dtype``."""
    backing = _backing_file(matrix)
    row_bytes = matrix.shape[1] * matrix.dtype.itemsize
    fd = os.open(backing[0], os.O_RDONLY) if backing else None
    try:
        for start in range(0, matrix.shape[0], block):
            stop = min(start + block, matrix.shape[0])
            if fd is None:
                yield start, np.array(matrix[start:stop], dtype=dtype)
                continue
            raw = bytearray((stop - start) * row_bytes)
            view, got = memoryview(raw), 0
            while got < len(raw):
                n = os.preadv(fd, [view[got:]], backing[1] + start * row_bytes + got)
                if n == 0:
                    raise EOFError(f"{backing[0]}: ends before row {stop}")
                got += n
            rows = np.frombuffer(raw, dtype=matrix.dtype).reshape(stop - start, matrix.shape[1])
            yield start, rows.astype(dtype)
    finally:
        if fd is not None:
            os.close(fd)


def take_rows(matrix: Any, indices: Any, dtype: Any = np.float64) -> np.ndarray:
    """``matrix[indices]`` as a new ``dtype`` array (for a memory-mapped file: one ``pread`` per row, in
    file order; 400k rows of 2 KB take about a second)."""
    indices = np.asarray(indices, dtype=np.int64)
    backing = _backing_file(matrix)
    if backing is None:
        return np.array(matrix[indices], dtype=dtype)
    if indices.size and (indices.min() < 0 or indices.max() >= matrix.shape[0]):
        raise IndexError(f"row index out of range for {matrix.shape[0]} rows")
    row_bytes = matrix.shape[1] * matrix.dtype.itemsize
    order = np.argsort(indices, kind="stable")
    raw = bytearray(indices.size * row_bytes)
    view = memoryview(raw)
    fd = os.open(backing[0], os.O_RDONLY)
    try:
        for k, row in zip(order.tolist(), indices[order].tolist()):
            if os.preadv(fd, [view[k * row_bytes:(k + 1) * row_bytes]], backing[1] + row * row_bytes) != row_bytes:
                raise EOFError(f"{backing[0]}: ends before row {row}")
    finally:
        os.close(fd)
    return np.frombuffer(raw, dtype=matrix.dtype).reshape(indices.size, matrix.shape[1]).astype(dtype)
