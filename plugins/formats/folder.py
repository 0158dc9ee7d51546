"""Image folders, ``root/<identity>/<image>.{jpg,jpeg,png}``: the torchvision ``ImageFolder`` layout.

Labels are the positions of the identity folders in sorted order, as ``ImageFolder`` assigns them, so a
folder written here trains identically with facebench and with arcface_torch's fallback loader.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from facebench.data.formats import TRAIN, DatasetWriter, TrainReader
from facebench.data.images import IMAGE_EXTENSIONS, image_kind
from facebench.errors import DataError


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _identity_dirs(root: Path) -> list[os.DirEntry]:
    return sorted((e for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")), key=lambda e: e.name)


class ImageFolderReader(TrainReader):
    """Lists every identity folder once at open; an empty identity folder is an error.

    File names are held in one byte buffer with an offset per image (numpy arrays, not a Python string
    per image): 15M images cost about 15 bytes each, and DataLoader workers forked from the reader share
    those pages instead of copying them as reference counts are touched."""

    format_name = "folder"

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        root = Path(path)
        dirs = _identity_dirs(root)
        if not dirs:
            raise DataError(root, "no identity folders (expected root/<identity>/<image>.jpg)")
        chunks: list[bytes] = []
        lengths: list[np.ndarray] = []
        counts: list[int] = []
        self.identities: list[str] = []
        for entry in dirs:
            names = sorted(e.name for e in os.scandir(entry.path) if e.is_file() and _is_image(e.name))
            if not names:
                raise DataError(root, "empty identity (no .jpg/.jpeg/.png images)", f"folder {entry.name}")
            self.identities.append(entry.name)
            encoded = [os.fsencode(n) for n in names]
            chunks.append(b"".join(encoded))
            lengths.append(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)))
            counts.append(len(names))
        self._names = np.frombuffer(b"".join(chunks), dtype=np.uint8)
        self._offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64)
        self._labels = np.repeat(np.arange(len(dirs), dtype=np.int64), counts)
        self.num_classes = len(dirs)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def file(self, i: int) -> str:
        """``identity/name`` of image ``i``, relative to the root."""
        name = os.fsdecode(self._names[self._offsets[i]:self._offsets[i + 1]].tobytes())
        return f"{self.identities[self._labels[i]]}/{name}"

    @property
    def files(self) -> list[str]:
        """Every image's ``identity/name`` (built on demand; the reader itself keeps none of these)."""
        return [self.file(i) for i in range(len(self))]

    def where(self, i: int) -> str:
        return self.file(i)

    def image_bytes(self, i: int) -> bytes:
        rel = self.file(i)
        try:
            with open(os.path.join(self.path, rel), "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise DataError(self.path, f"cannot read image ({exc.strerror})", rel) from None


class ImageFolderWriter(DatasetWriter):
    """Writes ``<label:07d>/<n:08d>.<jpg|png>`` with the bytes unchanged (no re-encoding).

    Zero-padded names keep sorted order equal to label order, so reading back gives the same labels as
    long as no label in ``0..max`` is left without images (a folder cannot hold an empty identity).
    """

    def _start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.tmp-", dir=self.path.parent))
        self._made: set[int] = set()

    def add(self, image_bytes: bytes, label: int) -> None:
        label = int(label)
        if label < 0:
            raise ValueError(f"labels must be non-negative, got {label}")
        kind = image_kind(image_bytes) or "jpg"
        folder = self._tmp / f"{label:07d}"
        if label not in self._made:
            folder.mkdir(exist_ok=True)
            self._made.add(label)
        with open(folder / f"{self.count:08d}.{kind}", "wb") as fh:
            fh.write(image_bytes)
        self.count += 1

    def _finish(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self._tmp, self.path)

    def _abort(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)


class ImageFolderFormat:
    name = "folder"
    role = TRAIN

    def detect(self, path: str | os.PathLike) -> bool:
        """A directory with an identity sub-folder holding images (and no RecordIO/LMDB/pairs files)."""
        root = Path(path)
        if not root.is_dir() or any((root / n).exists() for n in ("train.rec", "data.mdb", "pairs.txt", "pairs.csv")):
            return False
        for entry in _identity_dirs(root)[:3]:
            if any(_is_image(e.name) for e in os.scandir(entry.path) if e.is_file()):
                return True
        return False

    def open(self, path: str | os.PathLike) -> ImageFolderReader:
        return ImageFolderReader(path)

    def writer(self, path: str | os.PathLike, *, overwrite: bool = False) -> ImageFolderWriter:
        return ImageFolderWriter(path, overwrite=overwrite)
