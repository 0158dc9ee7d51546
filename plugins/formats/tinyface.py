"""TinyFace's 1:N test set (QMUL release): ``Probe/``, ``Gallery_Match/`` and ``Gallery_Distractor/``.

Probe and gallery-match images are named ``<identity>_<n>.<ext>``; distractors carry no identity (they are
labelled -1). A probe or match whose name has no identity prefix of ASCII digits (``face.jpg``, ``x_1.jpg``),
a negative one (``-1_0.jpg`` would match every distractor), one beyond 64 bits, or a probe whose identity has
no gallery match, is one ``DataError`` naming the file (there are no meta files: the names are the labels).
Hidden files and files in hidden folders are not part of the set. There is no list whose names could lead
out of the folders; a symbolic link inside them is followed (a large set is often spread over disks so).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facebench.data.images import IMAGE_EXTENSIONS
from facebench.errors import DataError, MissingFileError

FOLDERS = ("Probe", "Gallery_Match", "Gallery_Distractor")
DISTRACTOR = -1


def is_tinyface(root: str | os.PathLike) -> bool:
    return all((Path(root) / name).is_dir() for name in FOLDERS)


def _images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.rglob("*")
                   if p.name.lower().endswith(IMAGE_EXTENSIONS)
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts) and p.is_file())
    for path in files:
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8, kept by Python as lone surrogates
            shown = os.fsencode(path).decode("utf-8", "backslashreplace")
            raise DataError(shown, "file name is not UTF-8 (rename the file)") from None
    return files


def identity_of(path: Path) -> int:
    """The identity of ``<identity>_<n>.<ext>``: ASCII digits that fit int64 (-1 is the distractors')."""
    head, sep, _ = path.stem.partition("_")
    if sep and head[:1] == "-" and head[1:].isascii() and head[1:].isdigit():
        note = " (-1 is the label of the distractors)" if int(head) == DISTRACTOR else ""
        raise DataError(path, f"identity {head} in the file name is not a non-negative integer{note}")
    if not (sep and head.isascii() and head.isdigit()):
        raise DataError(path, "file name does not start with an integer identity ('<identity>_<n>.jpg')")
    if int(head) > np.iinfo(np.int64).max:  # a file name has at most 255 bytes: int() is cheap
        raise DataError(path, f"identity {head[:24]}{'...' if len(head) > 24 else ''} in the file name is "
                              "beyond the 64-bit integer range")
    return int(head)


@dataclass
class TinyFaceSet:
    """Image paths and identities; the gallery is the matches followed by the distractors (identity -1)."""

    root: Path
    probes: list[Path]
    probe_ids: np.ndarray
    gallery: list[Path]
    gallery_ids: np.ndarray
    matches: int


def read_tinyface(root: str | os.PathLike) -> TinyFaceSet:
    root = Path(root)
    for name in FOLDERS:
        if not (root / name).is_dir():
            raise MissingFileError(root / name, "TinyFace folder", f"TinyFace needs {', '.join(FOLDERS)} under {root}")
    probes = _images(root / "Probe")
    matches = _images(root / "Gallery_Match")
    distractors = _images(root / "Gallery_Distractor")
    for folder, files in (("Probe", probes), ("Gallery_Match", matches)):
        if not files:
            raise DataError(root / folder, "holds no images")
    probe_ids = np.array([identity_of(p) for p in probes], np.int64)
    match_ids = np.array([identity_of(p) for p in matches], np.int64)
    unmatched = ~np.isin(probe_ids, match_ids)
    if unmatched.any():
        k = int(np.argmax(unmatched))
        raise DataError(probes[k], f"identity {probe_ids[k]} has no image in Gallery_Match")
    gallery_ids = np.r_[match_ids, np.full(len(distractors), DISTRACTOR, np.int64)]
    return TinyFaceSet(root=root, probes=probes, probe_ids=probe_ids, gallery=matches + distractors,
                       gallery_ids=gallery_ids, matches=len(matches))
