"""TinyFace's 1:N test set (QMUL release): ``Probe/``, ``Gallery_Match/`` and ``Gallery_Distractor/``.

Probe and gallery-match images are named ``<identity>_<n>.<ext>``; distractors carry no identity. A probe or
match whose name has no integer identity prefix, or a probe whose identity has no gallery match, is one
``DataError`` naming the file (there are no meta files: the names are the labels).
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
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(IMAGE_EXTENSIONS))


def identity_of(path: Path) -> int:
    """The identity of ``<identity>_<n>.<ext>``."""
    head, sep, _ = path.stem.partition("_")
    try:
        if not sep:
            raise ValueError
        return int(head)
    except ValueError:
        raise DataError(path, "file name does not start with an integer identity ('<identity>_<n>.jpg')") from None


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
