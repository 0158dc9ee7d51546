"""Pair-list test sets (Hadrian, Eclipse, SLLFW, DoppelVer and the like): an image root plus a pairs file.

Two pairs-file dialects are read:

* LFW ``pairs.txt``: an optional first line ``<folds> <pairs per half-fold>`` (or a total), then
  ``name n1 n2`` (same person) or ``name1 n1 name2 n2`` (different) per line; images are
  ``<root>/<name>/<name>_<nnnn>.jpg`` (``.png``/``.jpeg`` also found).
* CSV ``path_a,path_b,same`` (header optional; ``same`` is 1/0, true/false, same/different), paths
  relative to the root.

The root is the pairs file's folder. Every image a list names must stay under it: an absolute path or a
``..`` step is refused naming the pairs file and the line, before anything is read. The list must be UTF-8
(refused by line otherwise), CSV errors (a field beyond csv's size limit, a runaway quote) are one error
naming the line, and blank lines are skipped. Pairs are scored as listed: a repeated line counts twice
(the row records the pack's sha256, so an edited list shows).

Writing produces ``pairs.csv`` and ``images/`` with the bytes unchanged, so a ``.bin`` converted to a pair
list and back is identical.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
from array import array
from pathlib import Path

import numpy as np

from facebench import atomic
from facebench.data.formats import PAIRS, DatasetWriter, PairsReader
from facebench.data.images import image_kind
from facebench.errors import DataError
from facebench.safe_load import inside, numbered_lines

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


class _Images:
    """The distinct image paths of a pairs file, each stored once, with a pair -> image index.

    Paths are interned while parsing (an IJB-C-size list names 469k images in 15.6M pairs) and nothing
    is stat-ed: a missing file is reported when it is read, naming the file. Each distinct path is checked
    once to stay under the root (naming the pairs file and the line that first lists it)."""

    def __init__(self, root: Path, pairs_file: Path) -> None:
        self.root = root
        self.pairs_file = pairs_file
        self.paths: list[str] = []
        self.position: dict[str, int] = {}
        self.pairs = array("q")  # 8 bytes per entry, not a Python int object each

    def add(self, a: str, b: str, line: int) -> None:
        for rel in (a, b):
            j = self.position.get(rel)
            if j is None:
                inside(self.root, rel, file=self.pairs_file, where=f"line {line}")
                j = self.position[rel] = len(self.paths)
                self.paths.append(rel)
            self.pairs.append(j)


class _LfwNames:
    """``name n`` -> ``name/name_nnnn.<ext>``, listing each identity folder once to find the extension."""

    def __init__(self, root: Path, pairs_file: Path):
        self.root = root
        self.pairs_file = pairs_file
        self.listed: dict[str, set[str]] = {}

    def __call__(self, name: str, number: str, line: int) -> str:
        if not (number.isascii() and number.isdigit() and len(number) <= 18):
            raise DataError(self.pairs_file, f"image number {number!r} is not a non-negative integer", f"line {line}")
        n = int(number)
        if name not in self.listed:
            folder = inside(self.root, name, file=self.pairs_file, where=f"line {line}", what="identity folder")
            try:
                self.listed[name] = set(os.listdir(folder))
            except OSError:
                self.listed[name] = set()
        for ext in (".jpg", ".png", ".jpeg"):
            if f"{name}_{n:04d}{ext}" in self.listed[name]:
                return f"{name}/{name}_{n:04d}{ext}"
        raise DataError(self.pairs_file, f"image {name}/{name}_{n:04d}.jpg not found under {self.root}",
                        f"line {line}")


def parse_lfw_pairs(pairs_file: Path, root: Path) -> tuple[_Images, list[bool]]:
    images = _Images(root, pairs_file)
    flags: list[bool] = []
    declared: int | None = None
    image = _LfwNames(root, pairs_file)
    lines = [(n, line.split()) for n, line in numbered_lines(pairs_file, what="pairs file") if line.strip()]
    if lines and all(f.isascii() and f.isdigit() for f in lines[0][1]) and len(lines[0][1]) in (1, 2):
        head = [int(f) for f in lines[0][1]]
        declared = head[0] if len(head) == 1 else 2 * head[0] * head[1]
        lines = lines[1:]
    for n, fields in lines:
        if len(fields) == 3:
            name, a, b = fields
            images.add(image(name, a, n), image(name, b, n), n)
            flags.append(True)
        elif len(fields) == 4:
            images.add(image(fields[0], fields[1], n), image(fields[2], fields[3], n), n)
            flags.append(False)
        else:
            raise DataError(pairs_file, f"expected 'name n1 n2' or 'name1 n1 name2 n2', found {len(fields)} fields",
                            f"line {n}")
    if declared is not None and declared != len(flags):
        raise DataError(pairs_file, f"header declares {declared} pairs but {len(flags)} follow")
    return images, flags


def parse_csv_pairs(pairs_file: Path, root: Path) -> tuple[_Images, list[bool]]:
    images = _Images(root, pairs_file)
    flags: list[bool] = []
    first_line = 0
    rows = csv.reader(line for _, line in numbered_lines(pairs_file, what="pairs file"))
    while True:
        n = rows.line_num + 1  # where the row starts (a quoted field may run over several lines)
        try:
            row = next(rows)
        except StopIteration:
            break
        except csv.Error as exc:
            raise DataError(pairs_file, f"invalid CSV: {exc}", f"line {n}") from None
        if not row or not "".join(row).strip():
            continue
        if n == 1 and row[-1].strip().lower() in ("same", "issame", "label", "is_same"):
            continue
        if len(row) != 3:
            runs_on = (f" (the row runs on to line {rows.line_num}: a quote left open?)"
                       if rows.line_num != n else "")
            raise DataError(pairs_file, f"expected path_a,path_b,same, found {len(row)} columns{runs_on}",
                            f"line {n}")
        a, b, same = (c.strip() for c in row)
        if same.lower() in _TRUE:
            flags.append(True)
        elif same.lower() in _FALSE:
            flags.append(False)
        else:
            shown = same if len(same) <= 40 else same[:40] + "..."
            raise DataError(pairs_file, f"same flag {shown!r} is not 1/0/true/false", f"line {n}")
        images.add(a, b, n)
        first_line = first_line or n
    if images.paths and not (root / images.paths[0]).is_file():  # one stat: a wrong root fails now
        raise DataError(pairs_file, f"image {images.paths[0]} not found under {root}", f"line {first_line}")
    return images, flags


class PairListReader(PairsReader):
    """Pairs over a folder of images. Besides the pairs API it lists its distinct images
    (``image_count``, ``pair_index``, ``image_bytes(j)``), so evaluation embeds each file once."""

    format_name = "pairlist"

    def __init__(self, path: str | os.PathLike, root: str | os.PathLike | None = None):
        self.path = os.fspath(path)
        pairs_file = find_pairs_file(path)
        if pairs_file is None:
            raise DataError(path, f"no pairs file ({' or '.join(PAIRS_FILES)})")
        self.pairs_file = pairs_file
        self.root = Path(root) if root is not None else pairs_file.parent
        parse = parse_csv_pairs if pairs_file.suffix.lower() == ".csv" else parse_lfw_pairs
        images, flags = parse(pairs_file, self.root)
        if not flags:
            raise DataError(pairs_file, "no pairs listed")
        self.images = np.asarray(images.paths, dtype=object)
        self.pair_index = np.frombuffer(images.pairs, dtype=np.int64).reshape(-1, 2)
        self.issame = np.asarray(flags, dtype=bool)

    @property
    def image_count(self) -> int:
        return len(self.images)

    @property
    def paths(self) -> list[tuple[str, str]]:
        """``(path_a, path_b)`` of every pair, relative to the root."""
        return [(self.images[a], self.images[b]) for a, b in self.pair_index]

    def image_where(self, j: int) -> str:
        return str(self.images[j])

    def where(self, k: int, side: int) -> str:
        return self.image_where(int(self.pair_index[k, side]))

    def image_bytes(self, j: int) -> bytes:
        rel = str(self.images[j])
        try:
            return (self.root / rel).read_bytes()
        except OSError as exc:
            raise DataError(self.root, f"cannot read image ({exc.strerror})", rel) from None

    def pair_bytes(self, k: int) -> tuple[bytes, bytes]:
        a, b = self.pair_index[k]
        return self.image_bytes(int(a)), self.image_bytes(int(b))


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
