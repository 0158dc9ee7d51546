"""insightface verification packs ``<name>.bin``: a pickle of ``(images, issame)`` (``.xz``: lzma-compressed).

``images`` is a list of 2N encoded images (pair ``k`` = images ``2k``, ``2k+1``), ``issame`` N flags. An
image is ``bytes``, or, in packs made with OpenCV, the uint8 array ``cv2.imencode`` returns (shape (N, 1);
any shape is read as its bytes in order). The packs come from the internet, and pickle can call any
importable function, so they are read with :class:`PackUnpickler`, which admits only the few globals the
format needs and refuses everything else *before* anything is called. numpy's own pickles of uint8 and bool
arrays (every protocol: ``_reconstruct`` and its state, protocol 5's in-band ``_frombuffer``) are rebuilt by
stand-ins for numpy's functions that accept only the calls numpy makes, only those two dtypes, and only a
shape that accounts for exactly the bytes the pickle holds, so a pickle cannot size an allocation.
"""

from __future__ import annotations

import io
import lzma
import math
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


class _Refused(pickle.UnpicklingError):
    """A global used in a way numpy's own pickles never use it: refused with this message as it is."""


#: The dtypes an array in a pack may have: encoded images are uint8 (``cv2.imencode`` returns an (N, 1)
#: uint8 array), flags bool.
DTYPES = {"u1": np.dtype(np.uint8), "b1": np.dtype(np.bool_)}
#: More axes than any image buffer or flag list has (numpy allows 64).
MAX_NDIM = 32


class _ArrayType:
    """What ``numpy.ndarray`` resolves to inside a pack: a token that numpy's pickles hand to
    ``_reconstruct`` and nothing can call (``ndarray((2**40,))`` called from a pickle would allocate)."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        raise _Refused("numpy.ndarray is admitted only as numpy's own pickles use it")


class _DType:
    """What ``numpy.dtype(...)`` gives inside a pack: uint8 or bool, nothing else; the state numpy sends
    after it (byte order, no fields, no sub-array) is checked and changes nothing for one-byte types."""

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[2:5] == (None, None, None)):
            raise _Refused("numpy.dtype state with fields or a sub-array is refused (a .bin pack holds uint8 "
                           "images and bool flags)")


def _dtype(name: Any, align: Any = False, copy: Any = True, *rest: Any) -> _DType:
    """``numpy.dtype`` as numpy pickles it, ``dtype('u1', False, True)``, for uint8 and bool only."""
    code = name.decode("ascii", "replace") if isinstance(name, bytes) else name
    if rest or align not in (False, 0) or copy not in (True, False, 0, 1) or not isinstance(code, str):
        raise _Refused("numpy.dtype is admitted only as numpy's own pickles call it")
    if code not in DTYPES:
        shown = code if len(code) <= 20 else code[:20] + "..."
        raise _Refused(f"numpy dtype '{shown}' refused: arrays in a .bin pack are uint8 images or bool flags")
    return _DType(DTYPES[code])


def _shape(shape: Any) -> tuple[int, ...]:
    if not (isinstance(shape, tuple) and len(shape) <= MAX_NDIM
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise _Refused("numpy array shape must be a tuple of non-negative whole numbers")
    return shape


def _array(data: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    """The array ``data`` holds, after checking that its shape accounts for exactly its bytes: the pickle
    declares the shape, the file supplies the bytes, so nothing is allocated beyond the file."""
    if not isinstance(dtype, _DType):
        raise _Refused("numpy array without a numpy.dtype")
    shape = _shape(shape)
    if not isinstance(data, (bytes, bytearray)):
        raise _Refused("numpy array data must be bytes")
    count = math.prod(shape)
    if count * dtype.dtype.itemsize != len(data):
        raise _Refused(f"numpy array of shape {shape} needs {count * dtype.dtype.itemsize} bytes, the pickle "
                       f"holds {len(data)}")
    return np.frombuffer(data, dtype=dtype.dtype, count=count).reshape(shape, order=order)


class _PickledArray:
    """What ``_reconstruct(ndarray, (0,), b'b')`` gives inside a pack: an empty shell that numpy's
    ``__setstate__`` tuple ``(version, shape, dtype, fortran, data)`` fills once; :func:`load_pack`
    takes the array out."""

    array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if self.array is not None or not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("numpy array state is admitted only as numpy's own pickles write it")
        if len(state) == 5:
            version, *state = state
            if not isinstance(version, int) or isinstance(version, bool):
                raise _Refused("numpy array state version must be a whole number")
        shape, dtype, fortran, data = state
        if fortran not in (True, False, 0, 1):
            raise _Refused("numpy array order flag must be a boolean")
        self.array = _array(data, dtype, shape, "F" if fortran else "C")


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> _PickledArray:
    """numpy's ``_reconstruct`` as its own pickles call it: ``(ndarray, (0,), b'b')`` (the array's shape
    and data come with ``__setstate__``), so no pickle sizes an allocation here."""
    if subtype is not _ArrayType or not isinstance(shape, tuple) or shape != (0,) or typecode not in (b"b", "b"):
        raise _Refused("numpy._reconstruct is admitted only as numpy's own pickles call it")
    return _PickledArray()


def _frombuffer(data: Any, dtype: Any, shape: Any, order: Any, axis_order: Any = None) -> np.ndarray:
    """numpy's ``_frombuffer`` as its protocol-5 pickles call it: the bytes in-band, then dtype, shape and
    order ('K' with the axis order of a strided array)."""
    if order not in ("C", "F", "K") or (axis_order is not None and order != "K"):
        raise _Refused("numpy._frombuffer is admitted only as numpy's own pickles call it")
    if order != "K" or axis_order is None:
        return _array(data, dtype, shape, "C" if order == "K" else order)
    array = _array(data, dtype, shape, "C")
    if not (isinstance(axis_order, tuple) and sorted(axis_order) == list(range(array.ndim))
            and all(isinstance(a, int) and not isinstance(a, bool) for a in axis_order)):
        raise _Refused("numpy._frombuffer axis order must be a permutation of the array's axes")
    return array.transpose(axis_order)


def _scalar(dtype: Any, data: Any) -> Any:
    """numpy's ``scalar`` as its pickles call it for a bool or uint8 value: ``scalar(dtype, one byte)``."""
    return _array(data, dtype, (), "C")[()]


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The globals numpy's own pickles of uint8 and bool arrays and scalars use, under numpy 1's and 2's
    module names, each admitting only the calls numpy makes: nothing else of numpy is reachable."""
    out: dict[tuple[str, str], Any] = {("numpy", "ndarray"): _ArrayType, ("numpy", "dtype"): _dtype}
    for core in ("numpy.core", "numpy._core"):
        out[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        out[(f"{core}.multiarray", "scalar")] = _scalar
        out[(f"{core}.numeric", "_frombuffer")] = _frombuffer
    return out


class PackUnpickler(pickle.Unpickler):
    """An unpickler for ``.bin`` packs: builtin containers, bytes, bools, numpy uint8 and bool arrays (the
    ``cv2.imencode`` output packs made with OpenCV hold; any pickle protocol); nothing else.

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
    except _Refused as exc:
        raise DataError(path, str(exc), f"offset {buf.tell()} of {len(data)}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            MemoryError, OverflowError, RecursionError) as exc:
        reason = "it declares an object larger than memory" if isinstance(exc, MemoryError) else first_line(exc)
        truncated = isinstance(exc, EOFError) or "truncated" in reason
        problem = "truncated pickle" if truncated else f"corrupt pickle ({reason})"
        raise DataError(path, problem, f"offset {buf.tell()} of {len(data)}") from None
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        found = f"{type_word(obj)} of {len(obj)}" if isinstance(obj, (tuple, list)) else type_word(obj)
        raise DataError(path, f"expected a pickled (images, issame) pair, found {found}")
    images_obj, flags_obj = (_unshelled(part, path, what) for part, what in zip(obj, ("images", "issame")))
    if not isinstance(images_obj, (list, tuple)):
        raise DataError(path, f"images must be a list, found {type_word(images_obj)}")
    images: list[bytes] = []
    copies: dict[int, bytes] = {}  # one copy per object: a pickle can list one large object a million times
    for j, item in enumerate(images_obj):
        item = _unshelled(item, path, f"image {j}")
        if isinstance(item, bytes):
            images.append(item)
        elif isinstance(item, bytearray) or (isinstance(item, np.ndarray) and item.dtype == np.uint8):
            if id(item) not in copies:  # any shape: the bytes in order ((N, 1) from cv2.imencode)
                copies[id(item)] = item.tobytes() if isinstance(item, np.ndarray) else bytes(item)
            images.append(copies[id(item)])
        elif isinstance(item, np.ndarray):
            raise DataError(path, f"image entry is a numpy {item.dtype} array, not encoded bytes (uint8)",
                            f"image {j}")
        else:
            raise DataError(path, f"image entry is {type_word(item)}, not encoded bytes", f"image {j}")
    flags = _flags(flags_obj, path)
    if len(images) != 2 * len(flags):
        raise DataError(path, f"unequal pair lists: {len(images)} images for {len(flags)} same/different flags "
                              "(need 2 images per flag)")
    return images, flags


def _unshelled(value: Any, path: str, where: str) -> Any:
    """A numpy array rebuilt from a pack in place of its shell (a shell never filled is refused)."""
    if isinstance(value, _PickledArray):
        if value.array is None:
            raise DataError(path, "numpy array without its data (numpy's pickles always send it)", where)
        return value.array
    return value


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
