"""The dataset-format API: readers, writers, and detection through the ``format`` registry.

A format plugin returns a *format object* (``name``, ``role``, ``detect``, ``open``, ``writer``). Readers
are random-access and picklable (file handles are reopened lazily in each process, so DataLoader
workers read in parallel); writers are context managers whose output appears only when the block
completes. The base classes here hold the behaviour every format shares.
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic
from ..errors import DataError, FacebenchError, MissingFileError, OutputError
from .identity import resolve_dataset_path
from .images import decode_image

TRAIN = "train"
PAIRS = "pairs"

class _ProcessFiles:
    """File handles opened lazily per process: a reader pickled into a DataLoader worker reopens them
    there instead of sharing one file position between processes."""

    _files: dict[str, Any]
    _files_pid: int

    def _file(self, name: str | os.PathLike) -> Any:
        if getattr(self, "_files_pid", None) != os.getpid():
            self._files, self._files_pid = {}, os.getpid()
        key = os.fspath(name)
        if key not in self._files:
            self._files[key] = open(key, "rb")  # noqa: SIM115 - kept open for random access, closed by close()
        return self._files[key]

    def close(self) -> None:
        """Release file handles (they are reopened on next use)."""
        if getattr(self, "_files_pid", None) == os.getpid():
            for fh in self._files.values():
                fh.close()
        self._files, self._files_pid = {}, os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_files", None)
        state.pop("_files_pid", None)
        return state


class TrainReader(_ProcessFiles, abc.ABC):
    """Base of labelled-image readers; subclasses set ``path``, ``labels`` and implement ``image_bytes``.

    ``labels`` is an int64 array (one per image), ``num_classes`` the identity count.
    """

    format_name = ""
    path: str
    num_classes: int
    #: The file an image's error names (``path`` unless the images live in one file inside it: RecordIO).
    image_file: str | None = None

    @property
    @abc.abstractmethod
    def labels(self) -> np.ndarray:
        """One int64 label per image."""

    def __len__(self) -> int:
        return len(self.labels)

    def label(self, i: int) -> int:
        return int(self.labels[i])

    @abc.abstractmethod
    def image_bytes(self, i: int) -> bytes:
        """The encoded (JPEG/PNG) bytes of image ``i``."""

    def where(self, i: int) -> str:
        """Where image ``i`` lives in the file (offset, key or path), for error messages."""
        return f"image {i}"

    def image(self, i: int) -> np.ndarray:
        return decode_image(self.image_bytes(i), path=self.image_file or self.path, where=self.where(i))

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self):
        for i in range(len(self)):
            yield self.image_bytes(i), self.label(i)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path!r}: {len(self)} images, {self.num_classes} identities>"


class PairsReader(_ProcessFiles, abc.ABC):
    """Base of verification-pair readers: pair ``k`` is images ``2k`` and ``2k+1``."""

    format_name = ""
    path: str
    issame: np.ndarray

    def __len__(self) -> int:
        return len(self.issame)

    @abc.abstractmethod
    def pair_bytes(self, k: int) -> tuple[bytes, bytes]:
        """The encoded bytes of both images of pair ``k``."""

    def where(self, k: int, side: int) -> str:
        return f"image {2 * k + side}"

    def pair_images(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.pair_bytes(k)
        return (
            decode_image(a, path=self.path, where=self.where(k, 0)),
            decode_image(b, path=self.path, where=self.where(k, 1)),
        )

    def images(self, indices: Any = None) -> np.ndarray:
        """All (or the given) images as one ``uint8`` (2N, H, W, 3) array, in pair order."""
        if indices is None:
            indices = range(2 * len(self))
        out = []
        for j in indices:
            a, b = self.pair_bytes(j // 2)
            out.append(decode_image(a if j % 2 == 0 else b, path=self.path, where=self.where(j // 2, j % 2)))
        return np.stack(out) if out else np.zeros((0, 0, 0, 3), np.uint8)

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self):
        for k in range(len(self)):
            a, b = self.pair_bytes(k)
            yield a, b, bool(self.issame[k])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path!r}: {len(self)} pairs>"


def _registry():
    from ..pluginmanager import registry

    return registry("format")


def get_format(name: str) -> Any:
    """The format object registered as ``name`` (unknown names list the registered ones)."""
    return _registry().create(name)


def format_names(role: str | None = None) -> list[str]:
    """Registered format names, optionally only those of one role (``"train"`` or ``"pairs"``)."""
    names = []
    for spec in _registry():
        if role is None or spec.create().role == role:
            names.append(spec.name)
    return names


def detect_format(path: str | os.PathLike, role: str | None = None) -> Any:
    """The first registered format (of ``role``) whose ``detect(path)`` accepts ``path``. A folder whose
    ``dataset.json`` names a set inside it is detected as that set (see :func:`resolve_dataset_path`)."""
    given = Path(path)
    if not given.exists():
        raise MissingFileError(given, "dataset")
    path = resolve_dataset_path(given)
    tried = []
    for spec in _registry():
        fmt = spec.create()
        if role is not None and fmt.role != role:
            continue
        tried.append(spec.name)
        if fmt.detect(path):
            return fmt
    what = {TRAIN: "training-set", PAIRS: "verification-pair", None: "dataset"}[role]
    hint = ""
    other = {TRAIN: PAIRS, PAIRS: TRAIN}.get(role)  # type: ignore[arg-type]
    if other is not None:
        for spec in _registry():
            fmt = spec.create()
            if fmt.role == other and fmt.detect(path):
                hint = ("; it is a verification pack (format " + fmt.name + "): training takes it with --val, "
                        "evaluation under --data-root" if other == PAIRS else
                        "; it is a labelled training set (format " + fmt.name + "), not verification pairs")
                break
    raise DataError(path, f"not a recognised {what} format (tried: {', '.join(tried) or 'none registered'}){hint}")


def _resolve(path: str | os.PathLike, format: str | None, role: str) -> tuple[Any, Path]:
    if format is None:
        return detect_format(path, role), resolve_dataset_path(path)
    fmt = get_format(format)
    if fmt.role != role:
        raise FacebenchError(f"format '{format}' holds {fmt.role} data, not {role} data")
    if not Path(path).exists():
        raise MissingFileError(path, "dataset")
    return fmt, resolve_dataset_path(path)


def open_dataset(path: str | os.PathLike, format: str | None = None, **options: Any) -> TrainReader:
    """A labelled training-set reader; the format is detected unless named. A ``generate`` run folder or a
    ``toyfaces build`` world opens as the set its ``dataset.json`` names (``reader.path`` says which)."""
    fmt, where = _resolve(path, format, TRAIN)
    return fmt.open(os.fspath(where), **options)


def open_pairs(path: str | os.PathLike, format: str | None = None, **options: Any) -> PairsReader:
    """A verification-pair reader (``.bin`` pack, pair list, ...); the format is detected unless named."""
    fmt, where = _resolve(path, format, PAIRS)
    return fmt.open(os.fspath(where), **options)


def open_any(path: str | os.PathLike, format: str | None = None, **options: Any) -> TrainReader | PairsReader:
    """A reader of either role: used by commands that accept both (``data info``, ``data check``)."""
    fmt = detect_format(path) if format is None else get_format(format)
    if not Path(path).exists():
        raise MissingFileError(path, "dataset")
    return fmt.open(os.fspath(resolve_dataset_path(path)), **options)


def open_writer(path: str | os.PathLike, format: str, **options: Any) -> Any:
    """A writer of the named format (a context manager with ``add``)."""
    return get_format(format).writer(os.fspath(path), **options)


class DatasetWriter(abc.ABC):
    """Base of writers: a context manager whose output appears under ``path`` only on success.

    Subclasses implement ``_start`` (open temporaries), ``add`` and ``_finish`` (rename into place);
    ``_abort`` removes temporaries after an exception. An existing output is refused unless
    ``overwrite=True``, checked before any work so a long conversion does not fail at the end.
    """

    def __init__(self, path: str | os.PathLike, *, overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        self.count = 0

    def __enter__(self):
        if self.path.exists() and not self.overwrite:
            raise FacebenchError(f"{self.path}: already exists (remove it or pass --overwrite)")
        self._start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self._finish()
            except Exception as error:  # a failed rename or flush: remove every temporary left
                self._abort_quietly()
                if isinstance(error, OSError):
                    self._raise_output_error(error)
                raise
        else:
            self._abort_quietly()
            if isinstance(exc, OSError):
                self._raise_output_error(exc)

    def _abort_quietly(self) -> None:
        """``_abort``, whose own failures (flushing into the full disk again) must not hide the first."""
        try:
            self._abort()
        except Exception:  # noqa: BLE001 - the original failure is the one to report
            pass

    def _raise_output_error(self, exc: OSError) -> None:
        """A full disk or a refused folder while writing becomes one error naming the dataset."""
        if not isinstance(exc, FacebenchError) and atomic.is_write_failure(exc, self.path):
            raise OutputError(self.path, "dataset", exc) from exc

    @abc.abstractmethod
    def _start(self) -> None:
        """Open the temporary output."""

    @abc.abstractmethod
    def _finish(self) -> None:
        """Flush and move the temporary output to ``path``."""

    @abc.abstractmethod
    def _abort(self) -> None:
        """Remove the temporary output."""
