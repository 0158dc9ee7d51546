"""Image folders, ``root/<identity>/<image>.{jpg,jpeg,png}``: the torchvision ``ImageFolder`` layout.

Labels are the positions of the identity folders in sorted order, as ``ImageFolder`` assigns them, so a
folder written here trains identically with facebench and with arcface_torch's fallback loader.

A dataset's images are the files inside its folder: a symbolic link (identity folder or image) that
resolves inside the folder is read, one that leads outside it or nowhere is refused when the set is
opened, naming the link. Skipping it instead would silently change the counts; following it would let a
folder handed over by someone else pull images from elsewhere on the machine into contact sheets and reports.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from facebench import atomic
from facebench.data.formats import TRAIN, DatasetWriter, TrainReader
from facebench.data.images import IMAGE_EXTENSIONS, image_kind
from facebench.errors import DataError
from facebench.safe_load import resolves_inside, shown_name


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _scan(path: str, root: Path, where: str | None = None) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except OSError as exc:
        raise DataError(root, f"cannot list folder ({exc.strerror or exc})", where) from None


def _refuse_escape(entry: os.DirEntry, root: Path, rel: str) -> None:
    """Refuse a symbolic link that leads out of the dataset folder (or nowhere); plain entries and links
    inside pass. A dataset's images are the files inside its folder, so a folder handed over by someone
    else cannot make facebench read, train on or show (contact sheets, reports) images from elsewhere."""
    if not entry.is_symlink():
        return
    if not os.path.exists(entry.path):
        raise DataError(root, "broken symbolic link", shown_name(rel))
    if not resolves_inside(entry.path, root):
        raise DataError(root, f"symbolic link leads outside the dataset folder (to "
                              f"{shown_name(os.path.realpath(entry.path))}); a folder dataset's images must lie "
                              "inside it: copy them in", shown_name(rel))


def _identity_dirs(root: Path) -> list[os.DirEntry]:
    dirs = sorted((e for e in _scan(os.fspath(root), root) if not e.name.startswith(".") and e.is_dir()),
                  key=lambda e: e.name)
    for entry in dirs:
        _refuse_escape(entry, root, entry.name)
    return dirs


def _image_names(entry: os.DirEntry, root: Path) -> list[str]:
    """The image files of one identity folder, sorted (links that stay inside the dataset folder count)."""
    names = []
    for e in _scan(entry.path, root, f"folder {shown_name(entry.name)}"):
        if _is_image(e.name):
            _refuse_escape(e, root, f"{entry.name}/{e.name}")
            if e.is_file():
                names.append(e.name)
    return sorted(names)


class ImageFolderReader(TrainReader):
    """Lists every identity folder once at open; an empty identity folder is an error.

    File names are held in one byte buffer with an offset per image (numpy arrays, not a Python string
    per image): 15M images cost about 15 bytes each, and DataLoader workers forked from the reader share
    those pages instead of copying them as reference counts are touched. Names that are not UTF-8 are
    kept as the file system gives them (torchvision's ``ImageFolder`` sorts them the same way) and shown
    escaped in messages."""

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
            names = _image_names(entry, root)
            if not names:
                raise DataError(root, "empty identity (no .jpg/.jpeg/.png images)", f"folder {shown_name(entry.name)}")
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
        """``identity/name`` of image ``i``, relative to the root (as the file system spells it)."""
        name = os.fsdecode(self._names[self._offsets[i]:self._offsets[i + 1]].tobytes())
        return f"{self.identities[self._labels[i]]}/{name}"

    @property
    def files(self) -> list[str]:
        """Every image's ``identity/name`` (built on demand; the reader itself keeps none of these)."""
        return [self.file(i) for i in range(len(self))]

    def where(self, i: int) -> str:
        return shown_name(self.file(i))

    def image_bytes(self, i: int) -> bytes:
        rel = self.file(i)
        try:
            with open(os.path.join(self.path, rel), "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise DataError(self.path, f"cannot read image ({exc.strerror})", shown_name(rel)) from None


class ImageFolderWriter(DatasetWriter):
    """Writes ``<label:07d>/<n:08d>.<jpg|png>`` with the bytes unchanged (no re-encoding).

    Zero-padded names keep sorted order equal to label order, so reading back gives the same labels as
    long as no label in ``0..max`` is left without images (a folder cannot hold an empty identity).
    """

    def _start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = atomic.temp_dir(self.path)
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
        try:
            firsts = sorted((e for e in os.scandir(root) if not e.name.startswith(".") and e.is_dir()),
                            key=lambda e: e.name)[:3]
            return any(_is_image(e.name) and e.is_file() for entry in firsts for e in os.scandir(entry.path))
        except OSError:
            return False

    def open(self, path: str | os.PathLike) -> ImageFolderReader:
        return ImageFolderReader(path)

    def writer(self, path: str | os.PathLike, *, overwrite: bool = False) -> ImageFolderWriter:
        return ImageFolderWriter(path, overwrite=overwrite)
