"""MXNet ``.params`` files (``mx.nd.save`` / ``save_checkpoint``), read and written without MXNet.

The layout, from MXNet's ``NDArray::Save``/``Load`` (src/ndarray/ndarray.cc), all little-endian:

- list header: uint64 ``0x112``, uint64 reserved (0); uint64 count, then ``count`` arrays; uint64 count of
  names, then each name as uint64 length + bytes (``arg:NAME`` for parameters, ``aux:NAME`` for the
  BatchNorm moving statistics; no names at all is allowed for an unnamed list).
- one array, three generations: a uint32 magic ``0xF993FAC9`` (V2) or ``0xF993FACA`` (V3, NumPy shapes)
  followed by int32 storage type (0 = dense) and the shape as int32 ndim + int64 dims; ``0xF993FAC8`` (V1):
  int32 ndim + int64 dims; anything else is the legacy layout where that first uint32 *is* ndim, followed by
  uint32 dims. Then (unless the shape is empty) the context, int32 device type + int32 device id, an int32
  type flag (mshadow: 0 float32, 1 float64, 2 float16, 3 uint8, 4 int32, 5 int8, 6 int64, ...), and the
  elements, C order.

Every count, dimension and length is checked against the bytes that remain before anything is allocated;
the file names the offset of what is wrong.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from facebench.errors import DataError, MissingFileError
from facebench.safe_load import shown_name

LIST_MAGIC = 0x112
V1_MAGIC, V2_MAGIC, V3_MAGIC = 0xF993FAC8, 0xF993FAC9, 0xF993FACA
#: mshadow type flags this reader converts to float32 (weights are floats)
FLOAT_FLAGS = {0: "<f4", 1: "<f8", 2: "<f2"}
TYPE_NAMES = {0: "float32", 1: "float64", 2: "float16", 3: "uint8", 4: "int32", 5: "int8", 6: "int64",
              7: "bool", 8: "int16", 9: "uint16", 10: "uint32", 11: "uint64", 12: "bfloat16"}
MAX_DIMS = 8
MAX_NAME = 4096


class _Reader:
    def __init__(self, path: Path, data: bytes):
        self.path, self.data, self.pos = path, data, 0

    def fail(self, problem: str, at: int | None = None) -> DataError:
        return DataError(self.path, problem, f"byte {self.pos if at is None else at}")

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise self.fail(f"the file ends inside {what} ({size} bytes needed, "
                            f"{len(self.data) - self.pos} left)")
        chunk = self.data[self.pos:self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def left(self) -> int:
        return len(self.data) - self.pos


def read_params(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{name: float32 array}`` of a ``.params`` file, with the ``arg:``/``aux:`` prefixes removed."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "MXNet parameter file")
    r = _Reader(path, path.read_bytes())
    if len(r.data) < 16:
        raise r.fail("not an MXNet .params file (shorter than its 16-byte header)", 0)
    magic, _reserved = r.unpack("QQ", "the header")
    if magic != LIST_MAGIC:
        raise r.fail(f"not an MXNet .params file (magic {magic:#x}, expected {LIST_MAGIC:#x})", 0)
    (count,) = r.unpack("Q", "the array count")
    if count > r.left() // 8:  # every array takes at least 8 bytes: a count beyond the file is a lie
        raise r.fail(f"declares {count} arrays, more than the file can hold", r.pos - 8)
    arrays = [_array(r, i) for i in range(count)]
    (names_count,) = r.unpack("Q", "the name count")
    if names_count not in (0, count):
        raise r.fail(f"holds {count} arrays but {names_count} names", r.pos - 8)
    names = []
    for i in range(names_count):
        start = r.pos
        (length,) = r.unpack("Q", f"the length of name {i}")
        if length > min(MAX_NAME, r.left()):
            raise r.fail(f"name {i} declares {length} bytes", start)
        raw = r.take(length, f"name {i}")
        try:
            names.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise r.fail(f"name {i} ('{shown_name(raw)}') is not UTF-8", start + 8) from None
    if r.left():
        raise r.fail(f"{r.left()} bytes follow the last name (not a .params file, or a damaged one)")
    if not names:
        names = [f"{i}" for i in range(count)]
    out: dict[str, np.ndarray] = {}
    for name, array in zip(names, arrays):
        key = name.split(":", 1)[1] if name.startswith(("arg:", "aux:")) else name
        if key in out:
            raise DataError(path, f"the parameter '{shown_name(key)}' is stored twice")
        out[key] = array
    return out


def _array(r: _Reader, index: int) -> np.ndarray:
    what = f"array {index}"
    start = r.pos
    (magic,) = r.unpack("I", what)
    if magic in (V2_MAGIC, V3_MAGIC):
        (stype,) = r.unpack("i", what)
        if stype != 0:
            raise r.fail(f"{what} is a sparse array (storage type {stype}); weights are dense", start + 4)
        shape = _shape(r, what, "q")
    elif magic == V1_MAGIC:
        shape = _shape(r, what, "q")
    else:  # legacy: the magic is ndim, dims are uint32
        r.pos -= 4
        shape = _shape(r, what, "I", unsigned=True)
    if not shape:
        raise r.fail(f"{what} is empty (no shape)", start)
    r.unpack("ii", f"the context of {what}")
    flag_at = r.pos
    (flag,) = r.unpack("i", f"the type of {what}")
    if flag not in FLOAT_FLAGS:
        raise r.fail(f"{what} holds {TYPE_NAMES.get(flag, f'unknown type {flag}')} values; weights must be "
                     "float32, float64 or float16", flag_at)
    dtype = np.dtype(FLOAT_FLAGS[flag])
    count = int(np.prod(shape, dtype=object))
    if count * dtype.itemsize > r.left():
        raise r.fail(f"{what} declares shape {list(shape)} ({count * dtype.itemsize} bytes), beyond the end of "
                     f"the file ({r.left()} bytes left)", start)
    return np.frombuffer(r.take(count * dtype.itemsize, what), dtype=dtype).astype(np.float32).reshape(shape)


def _shape(r: _Reader, what: str, fmt: str, *, unsigned: bool = False) -> tuple[int, ...]:
    at = r.pos
    (ndim,) = r.unpack("I" if unsigned else "i", f"the shape of {what}")
    if ndim < 0 or ndim > MAX_DIMS:
        raise r.fail(f"{what} declares {ndim} dimensions", at)
    dims = r.unpack(fmt * ndim, f"the shape of {what}") if ndim else ()
    if any(d < 0 for d in dims):
        raise r.fail(f"{what} declares a negative dimension {list(dims)}", at)
    return tuple(int(d) for d in dims)


def save_params(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` (names with their ``arg:``/``aux:`` prefixes) in the V2 layout MXNet 1.x writes."""
    out = [struct.pack("<QQQ", LIST_MAGIC, 0, len(arrays))]
    for array in arrays.values():
        array = np.ascontiguousarray(array)
        flag = {np.dtype("float32"): 0, np.dtype("float64"): 1, np.dtype("float16"): 2}[array.dtype]
        out.append(struct.pack(f"<Iii{array.ndim}q", V2_MAGIC, 0, array.ndim, *array.shape))
        out.append(struct.pack("<iii", 1, 0, flag))  # context: cpu(0); the type flag
        out.append(array.astype(array.dtype.newbyteorder("<")).tobytes())
    out.append(struct.pack("<Q", len(arrays)))
    for name in arrays:
        raw = name.encode("utf-8")
        out.append(struct.pack("<Q", len(raw)) + raw)
    Path(path).write_bytes(b"".join(out))
