"""SOTA-FR's prepared test folders: ``<name>/<name>.npy`` (the aligned images) and ``<name>/issame.txt``.

This is the layout in which SOTA-FR (github.com/HaiyuWu/SOTA-Face-Recognition-Train-and-Test, the repository
that distributes Hadrian, Eclipse and, under CVRL's agreement, the ND-Twins test set) feeds its test sets to
``test.py`` (``get_val_pair``): ``utils/prepare_test_images.py`` turns a distributed ``<name>.xz`` pack into

* ``<name>.npy``: uint8 images of shape (2N, 3, H, W), RGB, channels first (112 x 112 there); pair ``k`` is
  images ``2k`` and ``2k + 1``;
* ``issame.txt``: N lines, one same/different flag per pair (``1`` / ``0``, written by ``np.savetxt``; read by
  ``np.loadtxt``, so ``1.0`` / ``0.0`` are accepted too; blank lines are skipped as ``np.loadtxt`` skips them).

The ``.xz`` / ``.bin`` packs themselves are read by the ``bin`` format. The reader is strict: a missing file,
an array that is not uint8 (2N, 3, H, W), a flag other than 0/1 or a flag count other than N is one error
naming the file (and the line). The array is memory-mapped after its header and size are checked, so a
pickled or truncated ``.npy`` is refused before anything of it is used.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from facebench import atomic
from facebench.data.formats import PAIRS, DatasetWriter, PairsReader
from facebench.data.images import decode_image, encode_image
from facebench.errors import DataError, MissingFileError
from facebench.safe_load import npy_header, numbered_lines, resolves_inside

FLAGS_FILE = "issame.txt"
_FLAG_VALUES = {"1": True, "0": False, "1.0": True, "0.0": False}


def images_file(folder: Path) -> Path:
    """``<folder>/<folder name>.npy``, where ``test.py`` looks for the images."""
    return folder / f"{folder.name}.npy"


def _own_file(path: Path, what: str, hint: str) -> None:
    """``path`` is a regular file of its folder: a link leading out of the folder is refused (a folder handed
    over by someone else must not make facebench read files elsewhere)."""
    if path.is_symlink() and not resolves_inside(path, path.parent):
        raise DataError(path, f"{what} is a link leading out of its folder; refused")
    if path.exists() and not path.is_file():
        raise DataError(path, f"{what} is not a file")
    if not path.is_file():
        raise MissingFileError(path, what, hint)


def read_header(path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, dtype and data offset of a ``.npy`` file, checked against the file's size (a truncated or
    padded file is refused) without reading the data."""
    _own_file(path, "images file (<folder name>.npy) of the SOTA-FR test folder",
              f"expected beside {FLAGS_FILE}, named after the folder")
    shape, fortran, dtype, offset = npy_header(path, what="the images")
    if dtype != np.uint8 or dtype.hasobject:
        raise DataError(path, f"images must be uint8, found dtype {dtype}")
    if fortran:
        raise DataError(path, "images must be stored in C order (np.save of a C-contiguous array)")
    if len(shape) != 4 or shape[1] != 3 or shape[2] < 1 or shape[3] < 1:
        raise DataError(path, f"images must have shape (2N, 3, H, W) (RGB, channels first), found {tuple(shape)}")
    if shape[0] == 0 or shape[0] % 2:
        raise DataError(path, f"images must come in pairs (an even, non-zero count), found {shape[0]}")
    size = os.path.getsize(path)
    expected = offset + math.prod(shape)
    if size != expected:
        raise DataError(path, f"file holds {size - offset} bytes of image data, its header declares "
                              f"{expected - offset} ({'truncated' if size < expected else 'trailing bytes'})")
    return shape, dtype, offset


def read_flags(path: Path) -> np.ndarray:
    """The same/different flags of ``issame.txt``, one per non-blank line."""
    _own_file(path, "same/different list (issame.txt) of the SOTA-FR test folder",
              "one 1 or 0 per pair, beside the images")
    flags = []
    for line, text in numbered_lines(path, what="issame list"):
        value = text.strip()
        if not value:
            continue
        if value not in _FLAG_VALUES:
            shown = value if len(value) <= 20 else value[:17] + "..."
            raise DataError(path, f"expected one flag per line, 1 (same) or 0 (different), found '{shown}'",
                            f"line {line}")
        flags.append(_FLAG_VALUES[value])
    if not flags:
        raise DataError(path, "no pairs listed")
    return np.asarray(flags, dtype=bool)


class SotaFrReader(PairsReader):
    """Pairs of a SOTA-FR test folder; images are handed out PNG-encoded (lossless) like every pairs reader's.
    Pickling a reader (into a decoding worker) sends only its folder, never the mapped images."""

    format_name = "sotafr"

    def __init__(self, path: str | os.PathLike):
        folder = Path(path)
        if not folder.is_dir():
            raise DataError(folder, "a SOTA-FR test folder must be a directory holding <name>.npy and issame.txt")
        self.path = os.fspath(folder)
        self.images_path = images_file(folder)
        shape, _, offset = read_header(self.images_path)
        self.issame = read_flags(folder / FLAGS_FILE)
        if len(self.issame) * 2 != shape[0]:
            raise DataError(folder / FLAGS_FILE, f"lists {len(self.issame)} pairs but {self.images_path.name} holds "
                                                 f"{shape[0]} images (need 2 images per flag: {shape[0] // 2} flags)")
        self._images = np.memmap(self.images_path, dtype=np.uint8, mode="r", offset=offset, shape=shape)

    def where(self, k: int, side: int) -> str:
        return f"{self.images_path.name} image {2 * k + side}"

    def pair_bytes(self, k: int) -> tuple[bytes, bytes]:
        return (encode_image(np.transpose(self._images[2 * k], (1, 2, 0)), "png"),
                encode_image(np.transpose(self._images[2 * k + 1], (1, 2, 0)), "png"))

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])


class SotaFrWriter(DatasetWriter):
    """``<dir>/<dir name>.npy`` + ``<dir>/issame.txt`` as ``prepare_test_images.py`` writes them; every image
    must have the size of the first (the array is one block)."""

    def _start(self) -> None:
        self._images: list[np.ndarray] = []
        self._flags: list[bool] = []

    def add(self, bytes_a: bytes, bytes_b: bytes, same: bool) -> None:
        for side, data in enumerate((bytes_a, bytes_b)):
            image = decode_image(data, path=self.path, where=f"pair {self.count} image {side}")
            first = self._images[0].shape[1:] if self._images else image.shape[:2]
            if image.shape[:2] != first:
                raise DataError(self.path, f"image of {image.shape[1]}x{image.shape[0]} pixels; a SOTA-FR test "
                                           f"folder holds one size ({first[1]}x{first[0]}, the first image's)",
                                f"pair {self.count} image {side}")
            self._images.append(np.transpose(image, (2, 0, 1)))
        self._flags.append(bool(same))
        self.count += 1

    def _finish(self) -> None:
        if not self._flags:
            raise DataError(self.path, "no pairs to write")
        images = np.stack(self._images)
        with atomic.atomic_dir(self.path, overwrite=self.overwrite, what="SOTA-FR test folder") as tmp:
            with open(tmp / f"{self.path.name}.npy", "wb") as fh:
                np.save(fh, images, allow_pickle=False)
            (tmp / FLAGS_FILE).write_text("".join(f"{int(f)}\n" for f in self._flags), encoding="utf-8")

    def _abort(self) -> None:
        self._images, self._flags = [], []


class SotaFrFormat:
    name = "sotafr"
    role = PAIRS

    def detect(self, path: str | os.PathLike) -> bool:
        """A folder holding ``issame.txt`` or ``<folder name>.npy`` (either alone opens to an error naming the
        other)."""
        path = Path(path)
        return path.is_dir() and ((path / FLAGS_FILE).is_file() or images_file(path).is_file())

    def open(self, path: str | os.PathLike) -> SotaFrReader:
        return SotaFrReader(path)

    def writer(self, path: str | os.PathLike, *, overwrite: bool = False) -> SotaFrWriter:
        return SotaFrWriter(path, overwrite=overwrite)


__all__ = ["SotaFrFormat", "SotaFrReader", "SotaFrWriter", "read_flags", "read_header"]
