"""IJB-B / IJB-C in insightface's layout: ``loose_crop/`` images and the ``meta/`` files, read and checked.

``<root>/meta/<t>_face_tid_mid.txt`` (``image template media`` per image), ``<t>_name_5pts_score.txt``
(``image x1 y1 ... x5 y5 faceness``, same order), ``<t>_template_pair_label.txt`` (``template template
label``) and, for IJB-C 1:N, ``<t>_1N_gallery_G1.csv`` / ``_G2.csv`` / ``_1N_probe_mixed.csv`` (a header,
then ``TEMPLATE_ID,SUBJECT_ID,...``). ``<t>`` is ``ijbc`` or ``ijbb``.

A malformed line is one ``DataError`` naming the file and the line: a wrong field count (a landmark line
of the wrong length), a non-number, an integer beyond 64 bits, bytes that are not UTF-8, an image name that
leaves ``loose_crop/`` (absolute, ``..``) or is listed twice, an image whose landmark line names another
image, a negative detector score, a pair or a 1:N entry naming a template that has no images, a 1:N template
listed with two subjects, a 1:N list whose first line is not its header. The 15.6M-line pair file is parsed
by pandas' C reader; only when that fails is it scanned line by line to find the line to name. Pair lines
are scored as listed (a repeated pair counts twice, as in insightface's evaluation); the sha256 of every
file read goes into the result row, so an edited list shows.

Which target is read is always the caller's (the benchmark's) choice: an ``IJBB/meta`` folder that also
holds ``ijbc_*`` files is read as IJB-B when IJB-B is asked for; only a folder given without a target and
holding both is refused as ambiguous.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facebench.errors import DataError, MissingFileError
from facebench.safe_load import inside, numbered_lines

LANDMARK_VALUES = 10  # five (x, y) points
TARGETS = ("ijbc", "ijbb")
#: IJB-C's two 1:N galleries and its mixed-media probe list.
GALLERIES = ("G1", "G2")


def meta_file(root: Path, target: str, suffix: str) -> Path:
    return root / "meta" / f"{target}_{suffix}"


def detect_target(root: str | os.PathLike) -> str | None:
    """``ijbc`` or ``ijbb`` when ``root/meta`` holds that target's image list (and not the other's), else
    None; a folder holding both is refused: which one to score is the benchmark's choice, never a guess."""
    present = [t for t in TARGETS if meta_file(Path(root), t, "face_tid_mid.txt").is_file()]
    if len(present) > 1:
        raise DataError(Path(root) / "meta", f"holds the image lists of {' and '.join(present)}; name the "
                                             "target (evaluate locates it by its meta file, e.g. "
                                             "meta/ijbb_template_pair_label.txt)")
    return present[0] if present else None


def target_of(meta: str | os.PathLike) -> str:
    """The target a meta file belongs to, from its name (``ijbb_template_pair_label.txt`` -> ``ijbb``)."""
    target = Path(meta).name.split("_", 1)[0]
    if target not in TARGETS:
        prefixes = " or ".join(f"{t}_" for t in TARGETS)
        raise DataError(meta, f"not an IJB meta file: its name must start with {prefixes}")
    return target


def _scan(path: Path, kinds: str, *, header: bool = False, sep: str | None = None,
          more_ok: bool = False, layout: str = "", what: str = "IJB list") -> list[list]:
    """Every line of ``path`` split and converted by ``kinds`` (``s`` text, ``i`` integer, ``f`` float, one
    letter per field; ``more_ok``: further fields are allowed and ignored); the first bad line is the error.
    ``header``: the first line is a header, refused when it reads as an entry (a list without its header
    would otherwise lose its first entry)."""
    rows = []
    for number, line in numbered_lines(path, what=what):
        fields = line.strip().split(sep) if sep else line.split()
        if header and number == 1:
            if fields and _is_integer(fields[0].strip()):
                raise DataError(path, f"the first line must be the header ({layout}), found an entry", "line 1")
            continue
        if fields in ([], [""]):
            raise DataError(path, "empty line", f"line {number}")
        if len(fields) < len(kinds) or (len(fields) > len(kinds) and not more_ok):
            expected = f"at least {len(kinds)}" if more_ok else str(len(kinds))
            layout_text = f" ({layout})" if layout else ""
            raise DataError(path, f"{len(fields)} fields, expected {expected}{layout_text}", f"line {number}")
        rows.append([_convert(text.strip(), kind, path, number, k + 1)
                     for k, (text, kind) in enumerate(zip(fields, kinds))])
    return rows


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _is_integer(text: str) -> bool:
    """An optionally signed run of ASCII digits (``int()`` alone also takes ``1_000`` and other scripts' digits)."""
    body = text[1:] if text[:1] in "+-" else text
    return body.isascii() and body.isdigit()


def _shown(text: str, limit: int = 40) -> str:
    """A field quoted for an error line, cut short: a 1 MB field must not become a 1 MB message."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _convert(text: str, kind: str, path: Path, line: int, column: int):
    """One field as ``kind`` (see :func:`_scan`); integers must fit int64, numbers must be finite."""
    if kind == "i":
        if not _is_integer(text):
            raise DataError(path, f"field {column} ({_shown(text)}) is not an integer", f"line {line}")
        if len(text) > 20 or not INT64_MIN <= int(text) <= INT64_MAX:
            raise DataError(path, f"field {column} ({_shown(text)}) is beyond the 64-bit integer range",
                            f"line {line}")
        return int(text)
    if kind == "f":
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not np.isfinite(value) or abs(value) > FLOAT32_MAX:  # the values are kept as float32
            raise DataError(path, f"field {column} ({_shown(text)}) is not a finite number", f"line {line}")
        return value
    return text


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise MissingFileError(path, what)
    return path


def read_media_list(path: Path, images: Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image names, template ids, media ids)`` of ``*_face_tid_mid.txt``. Every name must stay inside
    ``images`` (default ``<root>/loose_crop``) and be listed once: a repeated image would count twice in
    its media's mean."""
    rows = _scan(_require(path, "IJB image list"), "sii", layout="image template media", what="IJB image list")
    if not rows:
        raise DataError(path, "holds no images")
    images = images if images is not None else path.parent.parent / "loose_crop"
    first: dict[str, int] = {}
    for number, row in enumerate(rows, 1):
        inside(images, row[0], file=path, where=f"line {number}")
        seen = first.setdefault(row[0], number)
        if seen != number:
            raise DataError(path, f"image '{row[0]}' is listed twice (first at line {seen})", f"line {number}")
    names = np.array([r[0] for r in rows])
    return names, np.array([r[1] for r in rows], np.int64), np.array([r[2] for r in rows], np.int64)


def read_landmarks(path: Path, names: np.ndarray, media_list: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(landmarks (N, 5, 2), faceness (N,))`` of ``*_name_5pts_score.txt``, line by line with the image list."""
    rows = _scan(_require(path, "IJB landmark list"), "s" + "f" * (LANDMARK_VALUES + 1),
                 layout="image, x1 y1 ... x5 y5, faceness", what="IJB landmark list")
    if len(rows) != names.size:
        raise DataError(path, f"has {len(rows)} lines but {media_list.name} lists {names.size} images")
    for number, (row, name) in enumerate(zip(rows, names), 1):
        if row[0] != str(name):
            raise DataError(path, f"names image '{row[0]}' where {media_list.name} has '{name}'", f"line {number}")
        if row[-1] < 0:
            raise DataError(path, f"detector score {row[-1]} is negative (it weights the image's feature)",
                            f"line {number}")
    values = np.array([r[1:] for r in rows], np.float32)
    return values[:, :LANDMARK_VALUES].reshape(-1, 5, 2), values[:, LANDMARK_VALUES]


def read_pairs(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(t1, t2, label)`` of ``*_template_pair_label.txt``: pandas' C reader, else a scan naming the line."""
    import pandas as pd

    _require(path, "IJB template pair list (template template label)")
    try:
        if not _plain_integers(path):  # pandas would also take 1.0 or 1e2 as integers
            raise ValueError("not only digits")
        frame = pd.read_csv(path, sep=" ", header=None, dtype=np.int64, skip_blank_lines=False, engine="c")
        if frame.shape[1] != 3:
            raise ValueError("field count")
        values = frame.to_numpy()
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError, OverflowError, UnicodeDecodeError):
        rows = _scan(path, "iii", layout="template template label", what="IJB template pair list")
        values = np.array(rows, np.int64).reshape(-1, 3)
    if values.shape[0] == 0:
        raise DataError(path, "holds no pairs")
    bad = ~np.isin(values[:, 2], (0, 1))
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(path, f"label {values[k, 2]} is not 0 or 1", f"line {k + 1}")
    return values[:, 0], values[:, 1], values[:, 2].astype(bool)


def _plain_integers(path: Path, block: int = 16 << 20) -> bool:
    """Whether ``path`` holds nothing but digits, signs, spaces and line ends (read in blocks: a C-speed
    check that lets the fast parser's result be trusted; anything else is left to :func:`_scan`)."""
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            if chunk.translate(None, b"0123456789+- \r\n"):  # what is left once those are deleted
                return False
    return True


def read_subject_list(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(template ids, subject ids)`` of a 1:N gallery or probe CSV (header line, then TEMPLATE_ID,SUBJECT_ID,...;
    a template listed on several lines, one per image, must name one subject)."""
    rows = _scan(path, "ii", header=True, sep=",", more_ok=True, layout="TEMPLATE_ID,SUBJECT_ID,...",
                 what="IJB 1:N template list")
    if not rows:
        raise DataError(path, "lists no templates")
    subject_of: dict[int, tuple[int, int]] = {}
    for number, (template, subject) in enumerate((r[0], r[1]) for r in rows):
        known, line = subject_of.setdefault(template, (subject, number + 2))
        if known != subject:
            raise DataError(path, f"template {template} is listed with subject {known} (line {line}) and "
                                  f"subject {subject}", f"line {number + 2}")
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
    """The image list and landmarks of an IJB root (pairs and 1:N lists are read when asked for), of
    ``target``; without one, of the only target the folder holds (both: refused, see :func:`detect_target`)."""
    root = Path(root)
    target = target or detect_target(root)
    if target not in TARGETS:
        raise MissingFileError(root / "meta" / "ijbc_face_tid_mid.txt", "IJB image list",
                               "expected <root>/meta/ijbc_* or ijbb_* files and <root>/loose_crop/")
    media = meta_file(root, target, "face_tid_mid.txt")
    names, templates, medias = read_media_list(media, root / "loose_crop")
    landmark_file = meta_file(root, target, "name_5pts_score.txt")
    landmarks, faceness = read_landmarks(landmark_file, names, media)
    if not (root / "loose_crop").is_dir():
        raise MissingFileError(root / "loose_crop", "IJB image folder")
    return IjbMeta(root=root, target=target, names=names, templates=templates, medias=medias, landmarks=landmarks,
                   faceness=faceness, files={"media": media, "landmarks": landmark_file})
