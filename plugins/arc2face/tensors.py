"""What a weights file holds, known before the model is allocated: names, dtypes and shapes.

A safetensors file starts with an 8-byte length and a JSON header listing every tensor's dtype, shape and
byte range; reading only that header tells whether the file fits the model its config describes, so a
config asking for a 4 TB model is refused without allocating it. The header is someone else's data too:
a length beyond the file, bytes that are not UTF-8, byte ranges that overlap, leave the data or disagree
with the shape are each one error naming the file. A ``.bin`` is read with ``torch.load(weights_only=True)``
(its tensors are then what the file holds, never more than its size).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facebench.errors import DataError
from facebench.safe_load import load_state_dict

from .configs import shown

#: safetensors dtype -> bytes per element.
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
#: The dtypes a floating-point parameter may be stored in (loading casts them to the model's dtype).
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
MAX_HEADER = 100 << 20  # the safetensors library's own limit


@dataclass(frozen=True)
class TensorInfo:
    """One stored tensor: its dtype (safetensors' name, or torch's) and shape."""

    dtype: str
    shape: tuple[int, ...]
    is_float: bool


def safetensors_header(path: str | os.PathLike, what: str) -> dict[str, TensorInfo]:
    """The tensors a safetensors file declares, every declaration checked against the file's size."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise DataError(path, f"cannot read {what}: not a safetensors file ({size} bytes, no header)")
        length = int.from_bytes(head, "little")
        if length > MAX_HEADER or 8 + length > size:
            raise DataError(path, f"cannot read {what}: safetensors header length {length} does not fit the file "
                                  f"({size} bytes; at most {MAX_HEADER})")
        raw = fh.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(path, f"cannot read {what}: safetensors header is not UTF-8",
                        f"byte {8 + exc.start}") from None
    except (ValueError, RecursionError):  # ValueError: invalid JSON or an integer of too many digits
        raise DataError(path, f"cannot read {what}: safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise DataError(path, f"cannot read {what}: safetensors header must be a JSON object")
    data_size = size - 8 - length
    tensors, spans = {}, []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end, info = _entry(path, what, name, entry, data_size)
        tensors[name] = info
        spans.append((begin, end, name))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            problem = "overlaps another" if begin < position else "leaves a gap before it"
            raise DataError(path, f"cannot read {what}: tensor {shown(name)} {problem} in the safetensors data")
        position = end
    if position != data_size:
        raise DataError(path, f"cannot read {what}: the safetensors header accounts for {position} of the file's "
                              f"{data_size} data bytes")
    return tensors


def _entry(path: Path, what: str, name: str, entry: Any, data_size: int) -> tuple[int, int, TensorInfo]:
    where = f"cannot read {what}: tensor {shown(name)}"
    if not isinstance(entry, dict):
        raise DataError(path, f"{where}: its header entry must be an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:  # a list or object is no dict key
        raise DataError(path, f"{where}: unknown dtype {shown(dtype)}")
    if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
        raise DataError(path, f"{where}: shape must be a list of sizes >= 0, found {shown(shape)}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
            and 0 <= offsets[0] <= offsets[1] <= data_size):
        raise DataError(path, f"{where}: data_offsets {shown(offsets)} leave the file's {data_size} data bytes")
    needed = math.prod(shape) * DTYPE_BYTES[dtype]
    if needed != offsets[1] - offsets[0]:
        raise DataError(path, f"{where}: shape {shown(shape)} of {dtype} needs {shown(needed)} bytes, "
                              f"its data_offsets hold {offsets[1] - offsets[0]}")
    return offsets[0], offsets[1], TensorInfo(dtype, tuple(shape), dtype in FLOAT_DTYPES)


def stored_tensors(path: Path, what: str) -> tuple[dict[str, TensorInfo], dict[str, Any] | None]:
    """``(infos, state)``: a safetensors file's header (``state`` None: read after the check), or a ``.bin``'s
    tensors read without running pickle code."""
    if path.suffix == ".safetensors":
        return safetensors_header(path, what), None
    state = load_state_dict(path, what=what)
    infos = {k: TensorInfo(str(v.dtype).removeprefix("torch."), tuple(v.shape), v.is_floating_point())
             for k, v in state.items()}
    return infos, state


def dtype_mismatch(expected: dict[str, Any], infos: dict[str, TensorInfo]) -> str | None:
    """The first stored tensor whose kind (floating point or integer) differs from the model's, or None:
    loading would cast it silently (int8 codes read as weights)."""
    for key, tensor in expected.items():
        info = infos.get(key)
        if info is not None and info.is_float != tensor.is_floating_point():
            wanted = f"floating point ({', '.join(FLOAT_DTYPES)})" if tensor.is_floating_point() else "integer"
            return f"tensor {shown(key)} is stored as {info.dtype}, the model needs {wanted}"
    return None
