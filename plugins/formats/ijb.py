"""IJB-B / IJB-C in insightface's layout: ``loose_crop/`` images and the ``meta/`` files, read and checked.

``<root>/meta/<t>_face_tid_mid.txt`` (``image template media`` per image), ``<t>_name_5pts_score.txt``
(``image x1 y1 ... x5 y5 faceness``, same order), ``<t>_template_pair_label.txt`` (``template template
label``) and, for IJB-C 1:N, ``<t>_1N_gallery_G1.csv`` / ``_G2.csv`` / ``_1N_probe_mixed.csv`` (a header,
then ``TEMPLATE_ID,SUBJECT_ID,...``). ``<t>`` is ``ijbc`` or ``ijbb``.

A malformed line is one ``DataError`` naming the file and the line: a wrong field count (a landmark line
of the wrong length), a non-number, an image whose landmark line names another image, a pair or a 1:N
entry naming a template that has no images. The 15.6M-line pair file is parsed by pandas' C reader; only
when that fails is it scanned line by line to find the line to name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facebench.errors import DataError, MissingFileError

LANDMARK_VALUES = 10  # five (x, y) points
TARGETS = ("ijbc", "ijbb")
#: IJB-C's two 1:N galleries and its mixed-media probe list.
GALLERIES = ("G1", "G2")


def meta_file(root: Path, target: str, suffix: str) -> Path:
    return root / "meta" / f"{target}_{suffix}"


def detect_target(root: str | os.PathLike) -> str | None:
    """``ijbc`` or ``ijbb`` when ``root/meta`` holds that target's image list, else None."""
    for target in TARGETS:
        if meta_file(Path(root), target, "face_tid_mid.txt").is_file():
            return target
    return None


def _scan(path: Path, kinds: str, *, header: bool = False, sep: str | None = None,
          more_ok: bool = False, layout: str = "") -> list[list]:
    """Every line of ``path`` split and converted by ``kinds`` (``s`` text, ``i`` integer, ``f`` float, one
    letter per field; ``more_ok``: further fields are allowed and ignored); the first bad line is the error."""
    rows = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            if header and number == 1:
                continue
            fields = line.strip().split(sep) if sep else line.split()
            if fields in ([], [""]):
                raise DataError(path, "empty line", f"line {number}")
            if len(fields) < len(kinds) or (len(fields) > len(kinds) and not more_ok):
                expected = f"at least {len(kinds)}" if more_ok else str(len(kinds))
                layout_text = f" ({layout})" if layout else ""
                raise DataError(path, f"{len(fields)} fields, expected {expected}{layout_text}", f"line {number}")
            rows.append([_convert(text, kind, path, number, k + 1)
                         for k, (text, kind) in enumerate(zip(fields, kinds))])
    return rows


def _convert(text: str, kind: str, path: Path, line: int, column: int):
    try:
        if kind == "i":
            return int(text)
        if kind == "f":
            value = float(text)
            if not np.isfinite(value):
                raise ValueError
            return value
        return text
    except ValueError:
        what = "an integer" if kind == "i" else "a finite number"
        raise DataError(path, f"field {column} ({text!r}) is not {what}", f"line {line}") from None


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise MissingFileError(path, what)
    return path


def read_media_list(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image names, template ids, media ids)`` of ``*_face_tid_mid.txt``."""
    rows = _scan(_require(path, "IJB image list"), "sii", layout="image template media")
    if not rows:
        raise DataError(path, "holds no images")
    names = np.array([r[0] for r in rows])
    return names, np.array([r[1] for r in rows], np.int64), np.array([r[2] for r in rows], np.int64)


def read_landmarks(path: Path, names: np.ndarray, media_list: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(landmarks (N, 5, 2), faceness (N,))`` of ``*_name_5pts_score.txt``, line by line with the image list."""
    rows = _scan(_require(path, "IJB landmark list"), "s" + "f" * (LANDMARK_VALUES + 1),
                 layout="image, x1 y1 ... x5 y5, faceness")
    if len(rows) != names.size:
        raise DataError(path, f"has {len(rows)} lines but {media_list.name} lists {names.size} images")
    for number, (row, name) in enumerate(zip(rows, names), 1):
        if row[0] != name:
            raise DataError(path, f"names image {row[0]!r} where {media_list.name} has {name!r}", f"line {number}")
    values = np.array([r[1:] for r in rows], np.float32)
    return values[:, :LANDMARK_VALUES].reshape(-1, 5, 2), values[:, LANDMARK_VALUES]


def read_pairs(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(t1, t2, label)`` of ``*_template_pair_label.txt``: pandas' C reader, else a scan naming the line."""
    import pandas as pd

    _require(path, "IJB template pair list (template template label)")
    try:
        frame = pd.read_csv(path, sep=" ", header=None, dtype=np.int64, skip_blank_lines=False, engine="c")
        if frame.shape[1] != 3:
            raise ValueError("field count")
        values = frame.to_numpy()
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, OverflowError):
        rows = _scan(path, "iii", layout="template template label")
        values = np.array(rows, np.int64).reshape(-1, 3)
    if values.shape[0] == 0:
        raise DataError(path, "holds no pairs")
    bad = ~np.isin(values[:, 2], (0, 1))
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(path, f"label {values[k, 2]} is not 0 or 1", f"line {k + 1}")
    return values[:, 0], values[:, 1], values[:, 2].astype(bool)


def read_subject_list(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(template ids, subject ids)`` of a 1:N gallery or probe CSV (header line, then TEMPLATE_ID,SUBJECT_ID,...)."""
    rows = _scan(path, "ii", header=True, sep=",", more_ok=True, layout="TEMPLATE_ID,SUBJECT_ID,...")
    if not rows:
        raise DataError(path, "lists no templates")
    return np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.int64)


def _check_templates(path: Path, ids: np.ndarray, known: np.ndarray, media_list: Path, *, line_offset: int,
                     what: str) -> None:
    missing = ~np.isin(ids, known)
    if missing.any():
        k = int(np.argmax(missing))
        raise DataError(path, f"{what} names template {ids[k]}, which has no images in {media_list.name}",
                        f"line {k + 1 + line_offset}")


@dataclass
class IjbSubjects:
    """A 1:N template list: one subject id per template (a template listed on several lines counts once)."""

    templates: np.ndarray
    subjects: np.ndarray


@dataclass
class IjbMeta:
    """Everything the IJB protocols need from the meta files, checked against each other."""

    root: Path
    target: str
    names: np.ndarray
    templates: np.ndarray
    medias: np.ndarray
    landmarks: np.ndarray
    faceness: np.ndarray
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def images(self) -> Path:
        return self.root / "loose_crop"

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The 1:1 pairs; every template they name must have images."""
        path = meta_file(self.root, self.target, "template_pair_label.txt")
        t1, t2, label = read_pairs(path)
        known = np.unique(self.templates)
        for ids in (t1, t2):
            _check_templates(path, ids, known, self.files["media"], line_offset=0, what="the pair")
        self.files["pairs"] = path
        return t1, t2, label

    def has_identification(self) -> bool:
        return all(meta_file(self.root, self.target, f"1N_gallery_{g}.csv").is_file() for g in GALLERIES) and \
            meta_file(self.root, self.target, "1N_probe_mixed.csv").is_file()

    def subject_list(self, suffix: str) -> IjbSubjects:
        path = meta_file(self.root, self.target, suffix)
        templates, subjects = read_subject_list(_require(path, "IJB 1:N template list"))
        _check_templates(path, templates, np.unique(self.templates), self.files["media"], line_offset=1,
                         what="the entry")
        unique, first = np.unique(templates, return_index=True)
        self.files[suffix] = path
        return IjbSubjects(templates=unique, subjects=subjects[first])

    def image_path(self, i: int) -> Path:
        return self.images / str(self.names[i])


def read_ijb(root: str | os.PathLike, target: str | None = None) -> IjbMeta:
    """The image list and landmarks of an IJB root (pairs and 1:N lists are read when asked for)."""
    root = Path(root)
    target = target or detect_target(root)
    if target not in TARGETS:
        raise MissingFileError(root / "meta" / "ijbc_face_tid_mid.txt", "IJB image list",
                               "expected <root>/meta/ijbc_* or ijbb_* files and <root>/loose_crop/")
    media = meta_file(root, target, "face_tid_mid.txt")
    names, templates, medias = read_media_list(media)
    landmark_file = meta_file(root, target, "name_5pts_score.txt")
    landmarks, faceness = read_landmarks(landmark_file, names, media)
    if not (root / "loose_crop").is_dir():
        raise MissingFileError(root / "loose_crop", "IJB image folder")
    return IjbMeta(root=root, target=target, names=names, templates=templates, medias=medias, landmarks=landmarks,
                   faceness=faceness, files={"media": media, "landmarks": landmark_file})
