"""Pair-list test sets (Hadrian, Eclipse, SLLFW, DoppelVer and the like): an image root plus a pairs file.

Two pairs-file dialects are read:

* LFW ``pairs.txt``: an optional first line ``<folds> <pairs per half-fold>`` (or a total), then
  ``name n1 n2`` (same person) or ``name1 n1 name2 n2`` (different) per line; images are
  ``<root>/<name>/<name>_<nnnn>.jpg`` (``.png``/``.jpeg`` also found).
* CSV ``path_a,path_b,same`` (header optional; ``same`` is 1/0, true/false, same/different), paths
  relative to the root.

The root is the pairs file's folder. Writing produces ``pairs.csv`` and ``images/`` with the bytes
unchanged, so a ``.bin`` converted to a pair list and back is identical.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
from pathlib import Path

import numpy as np

from facebench import atomic
from facebench.data.formats import PAIRS, DatasetWriter, PairsReader
from facebench.data.images import image_kind
from facebench.errors import DataError

PAIRS_FILES = ("pairs.csv", "pairs.txt")
_TRUE = {"1", "true", "yes", "same", "genuine", "match"}
_FALSE = {"0", "false", "no", "different", "diff", "impostor", "mismatch"}


def find_pairs_file(path: str | os.PathLike) -> Path | None:
    path = Path(path)
    if path.is_file():
        return path
    for name in PAIRS_FILES:
        if (path / name).is_file():
            return path / name
    return None


def _lfw_image(root: Path, name: str, number: str, pairs_file: Path, line: int) -> str:
    try:
        n = int(number)
    except ValueError:
        raise DataError(pairs_file, f"image number {number!r} is not an integer", f"line {line}") from None
    for ext in (".jpg", ".png", ".jpeg"):
        rel = f"{name}/{name}_{n:04d}{ext}"
        if (root / rel).is_file():
            return rel
    raise DataError(pairs_file, f"image {name}/{name}_{n:04d}.jpg not found under {root}", f"line {line}")


def parse_lfw_pairs(pairs_file: Path, root: Path) -> tuple[list[tuple[str, str]], list[bool]]:
    paths: list[tuple[str, str]] = []
    flags: list[bool] = []
    declared: int | None = None
    with open(pairs_file, encoding="utf-8", errors="replace") as fh:
        lines = [(n, line.split()) for n, line in enumerate(fh, 1) if line.strip()]
    if lines and all(f.isdigit() for f in lines[0][1]) and len(lines[0][1]) in (1, 2):
        head = [int(f) for f in lines[0][1]]
        declared = head[0] if len(head) == 1 else 2 * head[0] * head[1]
        lines = lines[1:]
    for n, fields in lines:
        if len(fields) == 3:
            name, a, b = fields
            paths.append((_lfw_image(root, name, a, pairs_file, n), _lfw_image(root, name, b, pairs_file, n)))
            flags.append(True)
        elif len(fields) == 4:
            paths.append((_lfw_image(root, fields[0], fields[1], pairs_file, n),
                          _lfw_image(root, fields[2], fields[3], pairs_file, n)))
            flags.append(False)
        else:
            raise DataError(pairs_file, f"expected 'name n1 n2' or 'name1 n1 name2 n2', found {len(fields)} fields",
                            f"line {n}")
    if declared is not None and declared != len(flags):
        raise DataError(pairs_file, f"header declares {declared} pairs but {len(flags)} follow")
    return paths, flags


def parse_csv_pairs(pairs_file: Path, root: Path) -> tuple[list[tuple[str, str]], list[bool]]:
    paths: list[tuple[str, str]] = []
    flags: list[bool] = []
    with open(pairs_file, newline="", encoding="utf-8", errors="replace") as fh:
        for n, row in enumerate(csv.reader(fh), 1):
            if not row or not "".join(row).strip():
                continue
            if n == 1 and row[-1].strip().lower() in ("same", "issame", "label", "is_same"):
                continue
            if len(row) != 3:
                raise DataError(pairs_file, f"expected path_a,path_b,same, found {len(row)} columns", f"line {n}")
            a, b, same = (c.strip() for c in row)
            if same.lower() in _TRUE:
                flags.append(True)
            elif same.lower() in _FALSE:
                flags.append(False)
            else:
                raise DataError(pairs_file, f"same flag {same!r} is not 1/0/true/false", f"line {n}")
            for rel in (a, b):
                if not (root / rel).is_file():
                    raise DataError(pairs_file, f"image {rel} not found under {root}", f"line {n}")
            paths.append((a, b))
    return paths, flags


class PairListReader(PairsReader):
    format_name = "pairlist"

    def __init__(self, path: str | os.PathLike, root: str | os.PathLike | None = None):
        self.path = os.fspath(path)
        pairs_file = find_pairs_file(path)
        if pairs_file is None:
            raise DataError(path, f"no pairs file ({' or '.join(PAIRS_FILES)})")
        self.pairs_file = pairs_file
        self.root = Path(root) if root is not None else pairs_file.parent
        parse = parse_csv_pairs if pairs_file.suffix.lower() == ".csv" else parse_lfw_pairs
        self.paths, flags = parse(pairs_file, self.root)
        if not flags:
            raise DataError(pairs_file, "no pairs listed")
        self.issame = np.asarray(flags, dtype=bool)

    def where(self, k: int, side: int) -> str:
        return self.paths[k][side]

    def pair_bytes(self, k: int) -> tuple[bytes, bytes]:
        out = []
        for rel in self.paths[k]:
            try:
                out.append((self.root / rel).read_bytes())
            except OSError as exc:
                raise DataError(self.root, f"cannot read image ({exc.strerror})", rel) from None
        return out[0], out[1]


class PairListWriter(DatasetWriter):
    """``<dir>/pairs.csv`` + ``<dir>/images/<k>_a.jpg``, bytes unchanged."""

    def _start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = atomic.temp_dir(self.path)
        (self._tmp / "images").mkdir()
        self._csv_fh = open(self._tmp / "pairs.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._csv = csv.writer(self._csv_fh)
        self._csv.writerow(["path_a", "path_b", "same"])

    def add(self, bytes_a: bytes, bytes_b: bytes, same: bool) -> None:
        names = []
        for side, data in (("a", bytes_a), ("b", bytes_b)):
            name = f"images/{self.count:06d}_{side}.{image_kind(data) or 'jpg'}"
            (self._tmp / name).write_bytes(data)
            names.append(name)
        self._csv.writerow([*names, int(bool(same))])
        self.count += 1

    def _finish(self) -> None:
        self._csv_fh.close()
        if self.path.exists():
            shutil.rmtree(self.path)
        os.replace(self._tmp, self.path)

    def _abort(self) -> None:
        with contextlib.suppress(OSError):  # flushing into a full disk fails again: the temporaries go anyway
            self._csv_fh.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


class PairListFormat:
    name = "pairlist"
    role = PAIRS

    def detect(self, path: str | os.PathLike) -> bool:
        path = Path(path)
        if path.is_dir():
            return find_pairs_file(path) is not None
        return path.is_file() and path.suffix.lower() in (".csv", ".txt")

    def open(self, path: str | os.PathLike, root: str | os.PathLike | None = None) -> PairListReader:
        return PairListReader(path, root=root)

    def writer(self, path: str | os.PathLike, *, overwrite: bool = False) -> PairListWriter:
        return PairListWriter(path, overwrite=overwrite)
