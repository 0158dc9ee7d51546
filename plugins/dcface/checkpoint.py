"""Reading a pytorch-lightning ``.ckpt`` (torch's zip format) without running anything in it.

The released DCFace checkpoints hold ``state_dict`` (tensors) and ``hyper_parameters``: the training
config as Lightning saved it, an ``AttributeDict`` of omegaconf ``DictConfig`` objects and
``functools.partial`` objects of the release's own classes. ``torch.load(weights_only=True)`` refuses such a
file (those are Python objects), and loading it any other way would let the file call any importable
function. So facebench reads the archive itself with :class:`CheckpointUnpickler`:

* tensors are admitted as torch saves them (``_rebuild_tensor_v2``, ``_rebuild_parameter``, the storage
  classes); each becomes a :class:`TensorRef` (dtype, shape, strides, its storage record) checked against the
  bytes the archive holds, and is read only when asked for (:meth:`LightningCheckpoint.tensor`), so a
  layout can be compared with a model built on the meta device before anything is allocated;
* ``OrderedDict``, ``defaultdict`` (its factory dropped), ``set``, ``frozenset`` are rebuilt as plain data;
* every other global (omegaconf's classes, ``functools.partial``, a release class, ``os.system``) becomes
  an :class:`Inert` record: its name and the data the pickle handed it, never called, never imported.

:func:`plain` turns the records of omegaconf containers (``_content`` of nodes holding ``_val``),
``AttributeDict`` and ``partial`` into dicts, lists and scalars; anything else stays a marker naming its
class. The file is never unpickled by Python's or torch's own loaders.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facebench.errors import DataError, MissingFileError, first_line
from facebench.safe_load import shown_name

#: torch storage class -> (dtype name, bytes per element).
STORAGES = {"FloatStorage": ("float32", 4), "DoubleStorage": ("float64", 8), "HalfStorage": ("float16", 2),
            "BFloat16Storage": ("bfloat16", 2), "LongStorage": ("int64", 8), "IntStorage": ("int32", 4),
            "ShortStorage": ("int16", 2), "CharStorage": ("int8", 1), "ByteStorage": ("uint8", 1),
            "BoolStorage": ("bool", 1)}
FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")
MAX_PICKLE = 256 << 20  # a checkpoint's object tree (not its tensors) is a few MB at most
MAX_NDIM = 16


class Inert:
    """An object of a class facebench does not load: the class's name and what the pickle gave it."""

    module = "?"
    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items, obj.values = args, kwargs, None, {}, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls the class: nothing happens
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> Inert:
        """A record called by a REDUCE (``getattr(cls, name)(...)`` pickles so): another record, nothing runs."""
        return _inert_class(self.module, f"{self.qualname}()")(*args, **kwargs)

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.values.append(value)

    def extend(self, values: Any) -> None:
        self.values.extend(values)

    @property
    def name(self) -> str:
        return f"{self.module}.{self.qualname}"

    def __repr__(self) -> str:
        return f"<{self.name}>"


_INERT: dict[tuple[str, str], type] = {}


def _inert_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _INERT:
        _INERT[key] = type(f"Inert[{name}]", (Inert,), {"module": module, "qualname": name})
    return _INERT[key]


class _Refused(pickle.UnpicklingError):
    pass


@dataclass(frozen=True)
class StorageRef:
    key: str
    dtype: str
    itemsize: int
    numel: int


@dataclass(frozen=True)
class TensorRef:
    """A tensor as the archive declares it: read by :meth:`LightningCheckpoint.tensor`."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def dtype(self) -> str:
        return self.storage.dtype

    @property
    def is_float(self) -> bool:
        return self.storage.dtype in FLOAT_DTYPES


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not (isinstance(value, tuple) and len(value) <= MAX_NDIM and all(type(v) is int and v >= 0 for v in value)):
        raise _Refused(f"tensor {what} must be a tuple of at most {MAX_NDIM} sizes >= 0")
    return value


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> TensorRef:
    """``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, meta])``:
    a reference whose every element lies inside its storage."""
    if not isinstance(storage, StorageRef) or type(offset) is not int or offset < 0:
        raise _Refused("_rebuild_tensor_v2 is admitted only as torch saves tensors")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise _Refused("tensor size and stride differ in length")
    if math.prod(size):
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.numel:
            raise _Refused(f"a tensor reaches element {last} of a storage of {storage.numel}")
    return TensorRef(storage, offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, hooks: Any = None, *rest: Any) -> TensorRef:
    if not isinstance(data, TensorRef):
        raise _Refused("_rebuild_parameter is admitted only on a saved tensor")
    return data


def _defaultdict(*args: Any) -> dict:
    return {}  # the factory is never kept (it could be any callable)


def _ordered_dict(*args: Any) -> dict:
    if args:
        raise _Refused("OrderedDict is admitted only as pickle builds it (empty, then items)")
    return collections.OrderedDict()


def _reconstructor(cls: Any, base: Any, state: Any = None) -> Any:
    """``copyreg._reconstructor`` (objects pickled by protocols 0 and 1): an inert record only."""
    if isinstance(cls, type) and issubclass(cls, Inert):
        return cls(state)
    raise _Refused("copyreg._reconstructor is admitted only for records of other classes")


def _set(items: Any = ()) -> set:
    return set(items) if isinstance(items, list | tuple) else set()


def _frozenset(items: Any = ()) -> frozenset:
    return frozenset(items) if isinstance(items, list | tuple) else frozenset()


ADMITTED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): _ordered_dict,
    ("collections", "defaultdict"): _defaultdict,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("builtins", "set"): _set, ("__builtin__", "set"): _set,
    ("builtins", "frozenset"): _frozenset, ("__builtin__", "frozenset"): _frozenset,
}


class _StorageType:
    def __init__(self, name: str):
        self.dtype, self.itemsize = STORAGES[name]


class CheckpointUnpickler(pickle.Unpickler):
    """Python's unpickler with every global replaced: admitted stand-ins, storage types, inert records."""

    def __init__(self, data: bytes, records: dict[str, int]):
        super().__init__(io.BytesIO(data))
        self.records = records  # storage key -> bytes in the archive
        self.storages: dict[str, StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGES:
            return _StorageType(name)
        if (module, name) in ADMITTED:
            return ADMITTED[(module, name)]
        return _inert_class(module, name)

    def persistent_load(self, pid: Any) -> StorageRef:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and type(pid[4]) is int):
            raise _Refused("a persistent id other than torch's storage record")
        kind, key, numel = pid[1], pid[2], pid[4]
        if key not in self.records:
            raise _Refused(f"storage {shown_name(key)} is not in the archive")
        if self.records[key] != numel * kind.itemsize:
            raise _Refused(f"storage {shown_name(key)} declares {numel} {kind.dtype} elements, the archive holds "
                           f"{self.records[key]} bytes")
        ref = self.storages.get(key)
        if ref is not None and ref.dtype != kind.dtype:
            raise _Refused(f"storage {shown_name(key)} is read as two dtypes")
        ref = self.storages[key] = StorageRef(key, kind.dtype, kind.itemsize, numel)
        return ref


class LightningCheckpoint:
    """The parts of a ``.ckpt``: ``infos`` (name -> :class:`TensorRef` of ``state_dict``), ``hparams``
    (plain data), and :meth:`tensor` / :meth:`tensors` to read the data of the tensors asked for."""

    def __init__(self, path: Path, prefix: str, state: dict[str, TensorRef], hparams: dict[str, Any],
                 top: dict[str, Any]):
        self.path, self.prefix, self.infos, self.hparams, self.top = path, prefix, state, hparams, top
        self._cache: dict[str, Any] = {}
        self._archive: zipfile.ZipFile | None = None

    def _storage(self, ref: StorageRef) -> Any:
        import torch

        if ref.key not in self._cache:
            if self._archive is None:
                self._archive = zipfile.ZipFile(self.path)
            raw = bytearray(self._archive.read(f"{self.prefix}data/{ref.key}"))
            dtype = getattr(torch, ref.dtype)
            self._cache[ref.key] = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return self._cache[ref.key]

    def tensor(self, name: str) -> Any:
        ref = self.infos[name]
        flat = self._storage(ref.storage)
        return flat.as_strided(ref.shape, ref.stride, ref.offset).clone()

    def tensors(self, prefix: str) -> dict[str, Any]:
        """Every tensor under ``prefix`` (the prefix removed), read now; storages are dropped after."""
        try:
            with_prefix = [k for k in self.infos if k.startswith(prefix)]
            return {k[len(prefix):]: self.tensor(k) for k in with_prefix}
        except (zipfile.BadZipFile, OSError, RuntimeError, ValueError, KeyError) as exc:
            raise DataError(self.path, f"cannot read its tensors: {first_line(exc)}") from None
        finally:
            self._cache.clear()
            if self._archive is not None:
                self._archive.close()
                self._archive = None


def read_checkpoint(path: str | os.PathLike, what: str = "DCFace checkpoint") -> LightningCheckpoint:
    """The checkpoint's layout and hyper-parameters; every way the archive can be wrong is one error."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, what)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
            if len(pkl) != 1:
                raise DataError(path, f"cannot read {what}: not a torch zip checkpoint (no single */data.pkl; "
                                      "files saved by torch < 1.6 are not read)")
            prefix = pkl[0][: -len("data.pkl")]
            order = f"{prefix}byteorder"
            if order in names and archive.read(order).strip() not in (b"little", b""):
                raise DataError(path, f"cannot read {what}: big-endian tensors are not read")
            info = archive.getinfo(pkl[0])
            if info.file_size > MAX_PICKLE:
                raise DataError(path, f"cannot read {what}: its object tree is {info.file_size} bytes "
                                      f"(at most {MAX_PICKLE})")
            records = {n[len(prefix) + 5:]: archive.getinfo(n).file_size for n in names
                       if n.startswith(f"{prefix}data/")}
            data = archive.read(pkl[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as exc:
        raise DataError(path, f"cannot read {what}: not a readable zip archive ({first_line(exc)})") from None
    unpickler = CheckpointUnpickler(data, records)
    try:
        top = unpickler.load()
    except _Refused as exc:
        raise DataError(path, f"refused to load {what}: {exc}") from None
    except RecursionError:
        raise DataError(path, f"cannot read {what}: its object tree is nested too deeply") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            MemoryError, OverflowError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read {what}: malformed object tree ({type(exc).__name__}: "
                              f"{shown_name(first_line(exc))[:120]})") from None
    if not isinstance(top, dict):
        raise DataError(path, f"{what}: expected a dict with state_dict and hyper_parameters, found "
                              f"{_kind(top)}")
    state = top.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, TensorRef)
                                              for k, v in state.items()):
        raise DataError(path, f"{what}: 'state_dict' must map names to tensors, found {_kind(state)}")
    hparams = plain(top.get("hyper_parameters", {}))
    if not isinstance(hparams, dict):
        raise DataError(path, f"{what}: 'hyper_parameters' must be a table, found {_kind(hparams)}")
    return LightningCheckpoint(path, prefix, state, hparams, {k: v for k, v in top.items() if k != "state_dict"})


def _kind(value: Any) -> str:
    if isinstance(value, Inert):
        return f"an object of {shown_name(value.name)}"
    return type(value).__name__


#: Inert records whose data :func:`plain` reads (omegaconf's containers and nodes, Lightning's
#: AttributeDict, functools.partial): anything else becomes ``{"__object__": "module.Class"}``.
CONTAINERS = ("omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig")
MAX_DEPTH = 64


def plain(value: Any, depth: int = 0) -> Any:
    """Dicts, lists, strings, numbers, booleans and None from a hyper-parameter tree."""
    if depth > MAX_DEPTH:
        return {"__object__": "nested too deeply"}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, TensorRef):
        return {"__tensor__": list(value.shape)}
    if isinstance(value, Inert):
        state = value.state if isinstance(value.state, dict) else {}
        if value.name in CONTAINERS:
            content = state.get("_content")
            return plain(content, depth + 1) if isinstance(content, dict | list) else None
        if "_val" in state and value.module == "omegaconf.nodes":
            return plain(state["_val"], depth + 1)
        if value.name == "functools.partial":  # state (func, args, keywords, dict)
            parts = value.state if isinstance(value.state, tuple) and len(value.state) == 4 else (None, (), {}, None)
            func = (f"{parts[0].module}.{parts[0].qualname}" if isinstance(parts[0], type) and issubclass(parts[0], Inert)
                    else None)
            return {"__partial__": func, "keywords": plain(parts[2] or {}, depth + 1)}
        if value.items:  # a dict subclass (AttributeDict)
            return {str(k): plain(v, depth + 1) for k, v in value.items.items()}
        return {"__object__": value.name}
    if isinstance(value, type) and issubclass(value, Inert):
        return {"__class__": f"{value.module}.{value.qualname}"}
    return {"__object__": type(value).__name__}


__all__ = ["CheckpointUnpickler", "Inert", "LightningCheckpoint", "TensorRef", "plain", "read_checkpoint"]
