"""insightface verification packs ``<name>.bin``: a pickle of ``(images, issame)`` (``.xz``: lzma-compressed).

``images`` is a list of 2N encoded images (pair ``k`` = images ``2k``, ``2k+1``), ``issame`` N flags. The
packs come from the internet, and pickle can call any importable function, so they are read with
:class:`PackUnpickler`, which admits only the few globals the format needs and refuses everything else
*before* anything is called.
"""

from __future__ import annotations

import io
import lzma
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from facebench import atomic
from facebench.data.formats import PAIRS, DatasetWriter, PairsReader
from facebench.errors import DataError, first_line
from facebench.safe_load import type_word


def _latin1_encode(text: Any, encoding: str = "utf-8", *rest: Any) -> bytes:
    """``_codecs.encode`` as pickle protocol 2 uses it for ``bytes``; nothing else is allowed."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or rest:
        raise pickle.UnpicklingError("_codecs.encode is admitted only as str.encode('latin1') for bytes")
    return text.encode("latin1")


class _ArrayType:
    """What ``numpy.ndarray`` resolves to inside a pack: a token that numpy's pickles hand to
    ``_reconstruct`` and nothing can call (``ndarray((2**40,))`` called from a pickle would allocate)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise pickle.UnpicklingError("numpy.ndarray is admitted only as numpy's own pickles use it")


def _multiarray() -> Any:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's ``_reconstruct`` as its own pickles call it: ``(ndarray, (0,), b'b')`` (the array's data
    comes with ``__setstate__`` and must match its shape there), so no pickle sizes an allocation."""
    if subtype is not _ArrayType or not isinstance(shape, tuple) or shape != (0,):
        raise pickle.UnpicklingError("numpy._reconstruct is admitted only as numpy's own pickles call it")
    return _multiarray()._reconstruct(np.ndarray, (0,), dtype)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """numpy's array-reconstruction globals (issame lists saved as numpy bool arrays use them)."""
    out: dict[tuple[str, str], Any] = {("numpy", "ndarray"): _ArrayType, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(module, "_reconstruct")] = _reconstruct
        out[(module, "scalar")] = _multiarray().scalar
    return out


class PackUnpickler(pickle.Unpickler):
    """An unpickler for ``.bin`` packs: builtin containers, bytes, bools, numpy bool arrays; nothing else.

    Any other global (``os.system``, ``builtins.eval``, a class with ``__reduce__``) raises before it is
    resolved, so no code from the file runs.
    """

    def __init__(self, fh: Any, path: str):
        super().__init__(fh, encoding="bytes")
        self._fh = fh
        self._path = path
        self._allowed = {("_codecs", "encode"): _latin1_encode, **_numpy_globals()}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise DataError(
                self._path,
                f"refused to load pickle global '{module}.{name}': a .bin pack may only hold images and "
                "same/different flags (nothing from the file was executed)",
                f"offset {self._fh.tell()}",
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(self._path, "refused pickle persistent id (not part of the .bin format)",
                        f"offset {self._fh.tell()}")


#: An ``.xz`` pack may expand to this many bytes plus this many times its own size: encoded images barely
#: compress (real packs expand about 1.1-fold), so a stream that expands further is a decompression bomb
#: and is refused before it fills the memory.
XZ_BASE, XZ_RATIO = 64 << 20, 32


def _decompress(data: bytes, path: str) -> bytes:
    """The payload of an ``.xz`` pack (concatenated streams joined, as ``xz -d`` does), refused once it
    outgrows :data:`XZ_BASE` + :data:`XZ_RATIO` x the file's size."""
    limit = XZ_BASE + XZ_RATIO * len(data)
    parts: list[bytes] = []
    size, rest = 0, data
    while rest:
        stream = lzma.LZMADecompressor()
        try:
            part = stream.decompress(rest, max_length=limit + 1 - size)
        except lzma.LZMAError as exc:
            raise DataError(path, f"corrupt or truncated xz stream ({first_line(exc)})",
                            f"byte {len(data) - len(rest)}") from None
        size += len(part)
        parts.append(part)
        if size > limit:
            raise DataError(path, f"xz stream expands beyond {limit:,} bytes ({XZ_RATIO} times its size): "
                                  "a decompression bomb? refused")
        if not stream.eof:
            raise DataError(path, "corrupt or truncated xz stream (the file ends before the stream's end marker)")
        rest = stream.unused_data
    return b"".join(parts)


def load_pack(path: str | os.PathLike) -> tuple[list[bytes], np.ndarray]:
    """``(images, issame)`` from a ``.bin`` pack, validated: 2 images per flag, bytes images, 0/1 flags."""
    path = os.fspath(path)
    with open(path, "rb") as fh:
        data = fh.read()
    if path.lower().endswith(".xz"):  # SOTA-FR ships the same payload lzma-compressed as <name>.xz
        data = _decompress(data, path)
    buf = io.BytesIO(data)
    try:
        obj = PackUnpickler(buf, path).load()
    except DataError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError, RecursionError) as exc:
        reason = "it declares an object larger than memory" if isinstance(exc, MemoryError) else first_line(exc)
        truncated = isinstance(exc, EOFError) or "truncated" in reason
        problem = "truncated pickle" if truncated else f"corrupt pickle ({reason})"
        raise DataError(path, problem, f"offset {buf.tell()} of {len(data)}") from None
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        found = f"{type_word(obj)} of {len(obj)}" if isinstance(obj, (tuple, list)) else type_word(obj)
        raise DataError(path, f"expected a pickled (images, issame) pair, found {found}")
    images_obj, flags_obj = obj
    if not isinstance(images_obj, (list, tuple)):
        raise DataError(path, f"images must be a list, found {type_word(images_obj)}")
    images: list[bytes] = []
    copies: dict[int, bytes] = {}  # one copy per object: a pickle can list one large object a million times
    for j, item in enumerate(images_obj):
        if isinstance(item, bytes):
            images.append(item)
        elif isinstance(item, bytearray) or (isinstance(item, np.ndarray) and item.dtype == np.uint8
                                             and item.ndim == 1):
            if id(item) not in copies:
                copies[id(item)] = bytes(item)
            images.append(copies[id(item)])
        else:
            raise DataError(path, f"image entry is {type_word(item)}, not encoded bytes", f"image {j}")
    flags = _flags(flags_obj, path)
    if len(images) != 2 * len(flags):
        raise DataError(path, f"unequal pair lists: {len(images)} images for {len(flags)} same/different flags "
                              "(need 2 images per flag)")
    return images, flags


def _flags(value: Any, path: str) -> np.ndarray:
    """The same/different flags as a bool array: a flat list (or numpy array) of booleans or 0/1."""
    if not isinstance(value, (list, tuple, np.ndarray)):
        raise DataError(path, f"issame must be a list of booleans (or 0/1), found {type_word(value)}")
    try:
        flags = np.asarray(value)
    except (TypeError, ValueError, RecursionError):
        flags = np.asarray([], dtype=object)
    if flags.ndim == 1 and flags.size == 0:  # an empty pack pickles its flags as a plain empty list
        flags = flags.astype(bool)
    if flags.ndim != 1 or flags.dtype.kind not in "biu":
        raise DataError(path, "issame must be a flat list of booleans (or 0/1)")
    bad = np.flatnonzero((flags != 0) & (flags != 1)) if flags.dtype.kind != "b" else []
    if len(bad):
        raise DataError(path, f"issame holds {int(flags[bad[0]])}, not a boolean (or 0/1)", f"flag {int(bad[0])}")
    return flags.astype(bool)


class BinPackReader(PairsReader):
    """The whole pack is held in memory (as insightface does); pickling a reader sends only its path."""

    format_name = "bin"

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._images, self.issame = load_pack(self.path)

    def pair_bytes(self, k: int) -> tuple[bytes, bytes]:
        return self._images[2 * k], self._images[2 * k + 1]

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])


class BinPackWriter(DatasetWriter):
    """Collects the pairs and pickles ``(list of bytes, list of bool)`` as insightface's packers do."""

    def _start(self) -> None:
        self._images: list[bytes] = []
        self._flags: list[bool] = []

    def add(self, bytes_a: bytes, bytes_b: bytes, same: bool) -> None:
        self._images += [bytes(bytes_a), bytes(bytes_b)]
        self._flags.append(bool(same))
        self.count += 1

    def _finish(self) -> None:
        payload = pickle.dumps((self._images, self._flags), protocol=4)
        if self.path.suffix.lower() == ".xz":
            payload = lzma.compress(payload)
        atomic.write_bytes(self.path, payload, "verification pack")

    def _abort(self) -> None:
        self._images, self._flags = [], []


class BinPackFormat:
    name = "bin"
    role = PAIRS

    def detect(self, path: str | os.PathLike) -> bool:
        path = Path(path)
        return path.is_file() and path.suffix.lower() in (".bin", ".xz")

    def open(self, path: str | os.PathLike) -> BinPackReader:
        return BinPackReader(path)

    def writer(self, path: str | os.PathLike, *, overwrite: bool = False) -> BinPackWriter:
        return BinPackWriter(path, overwrite=overwrite)
