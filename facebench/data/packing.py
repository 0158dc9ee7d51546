"""The standard verification packs built from the original photos: LFW and CFP (FP or FF), in insightface's
``.bin`` layout and pair order (``facebench data pack lfw|cfp``).

The published ``lfw.bin`` and ``cfp_fp.bin`` hold 112 x 112 ArcFace crops of the distributed photos, two
per pair, pairs in the order of the official protocol files: ten folds, each its same-identity pairs then
its different-identity pairs, so that scoring the pairs as ten contiguous folds (``facebench.metrics``, as
insightface's ``verification.py``) is the benchmark's own 10-fold protocol. This module rebuilds such a pack
from the photos: every photo is detected (``facebench.load_detector``; the face a photo is of is picked
by :func:`facebench.data.detection.pick_face`) or given its five landmarks in a file, and aligned with
:func:`facebench.align` (insightface's ``norm_crop``).

Protocol files read:

- LFW: ``pairs.txt`` as distributed (a ``10 300`` header, then per fold 300 lines ``name n1 n2`` and 300
  lines ``name1 n1 name2 n2``); photos ``LFW_DIR/<name>/<name>_<nnnn>.jpg``.
- CFP (``cfp-dataset``): ``Protocol/Pair_list_F.txt`` and ``Protocol/Pair_list_P.txt`` (``<index> <path>``
  lines, paths relative to ``Protocol/``, ``../Data/Images/001/frontal/01.jpg``) and
  ``Protocol/Split/{FP,FF}/01..10/{same,diff}.txt`` (``<i>,<j>`` lines: frontal index, then profile index
  for FP, frontal for FF).

A landmarks file (``--landmarks``) has one line per photo, ``relative/path x1 y1 x2 y2 x3 y3 x4 y4 x5 y5``
(left eye, right eye, nose tip, left and right mouth corners, pixel coordinates of the photo; the path as
the pairs name it, relative to the dataset folder); blank lines and lines starting with ``#`` are skipped.
Every name read from a protocol or landmarks file stays inside the dataset folder (``safe_load.inside``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import DataError, FacebenchError, MissingFileError
from ..safe_load import inside, numbered_lines, resolves_inside, shown_name

#: Folds of both protocols (and of the scoring: ten contiguous folds).
FOLDS = 10
CFP_PROTOCOLS = ("FP", "FF")
ENCODINGS = ("jpg", "png")
PACK_SUFFIXES = (".bin", ".xz")


@dataclass(frozen=True)
class PackProtocol:
    """The pairs of a benchmark, as names of photos relative to ``root``, in the pack's order."""

    name: str  # lfw, cfp_fp, cfp_ff
    root: Path
    pairs: list[tuple[str, str]]
    issame: np.ndarray
    source: Path  # the protocol file (or folder) the pairs came from, for messages
    listed_at: dict[str, tuple[Path, int]] = field(default_factory=dict)  # name -> (list file, line)

    @property
    def photos(self) -> list[str]:
        """Every photo the pairs name, once, in the order the pairs first name it."""
        return list(dict.fromkeys(name for pair in self.pairs for name in pair))


def _folder(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise MissingFileError(path, what)
    if not path.is_dir():
        raise DataError(path, f"is a file, not the {what}")
    return path


def _file(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise MissingFileError(path, what)
    if not path.is_file():
        raise DataError(path, f"is a folder, not the {what}")
    return path


def _normal(name: str) -> str:
    """A relative name as the pairs and landmarks files are compared: forward slashes, no ``./``."""
    return PurePosixPath(name.replace("\\", "/")).as_posix()


# ----------------------------------------------------------------------------------------------------- LFW


def lfw_protocol(lfw_dir: str | os.PathLike, pairs_file: str | os.PathLike) -> PackProtocol:
    """LFW's 6000 pairs from its ``pairs.txt`` (read by the ``pairlist`` format's LFW dialect), checked
    to be in LFW's fold order."""
    from .formats import get_format

    root = _folder(lfw_dir, "LFW folder")
    pairs_file = _file(pairs_file, "LFW pairs file")
    if pairs_file.suffix.lower() == ".csv":
        raise DataError(pairs_file, "is a CSV pair list; data pack lfw reads LFW's pairs.txt ('name n1 n2' and "
                                    "'name1 n1 name2 n2' lines)")
    reader = get_format("pairlist").open(pairs_file, root=root)
    flags = np.asarray(reader.issame, dtype=bool)
    _check_lfw_order(flags, pairs_file)
    return PackProtocol("lfw", root, [(_normal(a), _normal(b)) for a, b in reader.paths], flags, pairs_file)


def _check_lfw_order(flags: np.ndarray, pairs_file: Path) -> None:
    """LFW's order: ten folds of ``n`` same pairs then ``n`` different pairs (the first line after the
    header that breaks it is named)."""
    n = len(flags) // (2 * FOLDS)
    if n == 0 or len(flags) != 2 * FOLDS * n:
        raise DataError(pairs_file, f"{len(flags)} pairs do not make LFW's {FOLDS} folds of equal same and "
                                    "different halves")
    expected = np.tile(np.repeat([True, False], n), FOLDS)
    wrong = np.flatnonzero(flags != expected)
    if len(wrong):
        k = int(wrong[0])
        found, wanted = ("a same", "a different") if flags[k] else ("a different", "a same")
        raise DataError(pairs_file, f"not in LFW's fold order ({FOLDS} folds of {n} same pairs, then {n} "
                                    f"different pairs): pair {k + 1} is {found} pair where {wanted} pair belongs")


# ----------------------------------------------------------------------------------------------------- CFP


def cfp_protocol(cfp_dir: str | os.PathLike, protocol: str) -> PackProtocol:
    """CFP's 7000 frontal-profile (``FP``) or frontal-frontal (``FF``) pairs from ``Protocol/``: fold by
    fold, the split's ``same.txt`` pairs then its ``diff.txt`` pairs."""
    protocol = protocol.upper()
    if protocol not in CFP_PROTOCOLS:
        raise FacebenchError(f"--protocol must be one of {', '.join(CFP_PROTOCOLS)}, got {protocol!r}")
    root = _folder(cfp_dir, "CFP folder")
    lists = {"F": Path("Protocol/Pair_list_F.txt"), "P": Path("Protocol/Pair_list_P.txt")}
    splits = [Path("Protocol/Split") / protocol / f"{k:02d}" / f"{part}.txt" for k in range(1, FOLDS + 1)
              for part in ("same", "diff")]
    needed = [lists["F"], *([lists["P"]] if protocol == "FP" else []), *splits]
    for rel in needed:
        if not (root / rel).is_file():
            raise DataError(root, f"not the CFP layout: {rel.as_posix()} is missing (expected cfp-dataset as "
                                  "distributed: Protocol/Pair_list_F.txt, Protocol/Pair_list_P.txt, "
                                  "Protocol/Split/FP|FF/01..10/same.txt and diff.txt, Data/Images/...)")
        if not resolves_inside(root / rel, root):
            raise DataError(shown_name(os.fspath(root / rel)), f"is a symbolic link leading out of {root}")
    listed_at: dict[str, tuple[Path, int]] = {}
    frontal = _cfp_list(root, root / lists["F"], listed_at)
    second = _cfp_list(root, root / lists["P"], listed_at) if protocol == "FP" else frontal
    second_name = lists["P" if protocol == "FP" else "F"].name
    pairs: list[tuple[str, str]] = []
    flags: list[bool] = []
    sizes = []
    for k in range(FOLDS):
        before = len(pairs)
        for same, rel in ((True, splits[2 * k]), (False, splits[2 * k + 1])):
            for a, b, line in _cfp_split(root / rel):
                if a not in frontal:
                    raise DataError(root / rel, f"index {a} is not in {lists['F'].name}", f"line {line}")
                if b not in second:
                    raise DataError(root / rel, f"index {b} is not in {second_name}", f"line {line}")
                pairs.append((frontal[a], second[b]))
                flags.append(same)
        sizes.append(len(pairs) - before)
    if len(set(sizes)) != 1 or sizes[0] == 0:
        k = next((i for i, s in enumerate(sizes) if s != sizes[0]), 0)
        raise DataError(root / splits[2 * k].parent, f"fold {k + 1:02d} holds {sizes[k]} pairs and fold 01 "
                                                     f"{sizes[0]}: the {FOLDS} folds must be of one size")
    return PackProtocol(f"cfp_{protocol.lower()}", root, pairs, np.asarray(flags, dtype=bool),
                        root / "Protocol", listed_at)


def _cfp_name(root: Path, path: str, list_file: Path, line: int) -> str:
    """A ``Pair_list`` path (relative to ``Protocol/``) as a name relative to the CFP folder: one leading
    ``../`` leads from ``Protocol/`` to the CFP folder; no other step may leave it."""
    text = path.replace("\\", "/")
    if text.startswith("../"):
        rel = text[3:]
    else:
        inside(root / "Protocol", text, file=list_file, where=f"line {line}")
        rel = f"Protocol/{text}"
    inside(root, rel, file=list_file, where=f"line {line}")
    return _normal(rel)


def _cfp_list(root: Path, list_file: Path, listed_at: dict[str, tuple[Path, int]]) -> dict[int, str]:
    """``Pair_list_*.txt``: index -> photo name (and where each name is listed, into ``listed_at``)."""
    out: dict[int, str] = {}
    for n, text in numbered_lines(list_file, what="CFP pair list"):
        fields = text.split()
        if not fields:
            continue
        if len(fields) != 2 or not (fields[0].isascii() and fields[0].isdigit()) or len(fields[0]) > 9:
            raise DataError(list_file, f"expected '<index> <path>', found {shown_name(text.strip()[:60])!r}",
                            f"line {n}")
        index = int(fields[0])
        if index in out:
            raise DataError(list_file, f"index {index} is listed twice", f"line {n}")
        out[index] = _cfp_name(root, fields[1], list_file, n)
        listed_at.setdefault(out[index], (list_file, n))
    if not out:
        raise DataError(list_file, "lists no photos")
    return out


def _cfp_split(split_file: Path) -> list[tuple[int, int, int]]:
    """``same.txt`` / ``diff.txt``: ``(i, j, line)`` per ``i,j`` line."""
    out = []
    for n, text in numbered_lines(split_file, what="CFP split file"):
        if not text.strip():
            continue
        fields = [f.strip() for f in text.split(",")]
        if len(fields) != 2 or not all(f.isascii() and f.isdigit() and len(f) <= 9 for f in fields):
            raise DataError(split_file, f"expected '<index>,<index>', found {shown_name(text.strip()[:60])!r}",
                            f"line {n}")
        out.append((int(fields[0]), int(fields[1]), n))
    return out


# ----------------------------------------------------------------------------------------------- landmarks


def read_landmarks(path: str | os.PathLike, root: Path) -> dict[str, tuple[np.ndarray, int]]:
    """A landmarks file: photo name -> ((5, 2) float32 landmarks, line number)."""
    path = _file(path, "landmarks file")
    out: dict[str, tuple[np.ndarray, int]] = {}
    for n, text in numbered_lines(path, what="landmarks file"):
        fields = text.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 11:
            raise DataError(path, f"expected 'relative/path x1 y1 ... x5 y5' (11 fields), found {len(fields)}",
                            f"line {n}")
        inside(root, fields[0], file=path, where=f"line {n}", what="photo")
        name = _normal(fields[0])
        try:
            values = [float(v) for v in fields[1:]]
        except ValueError:
            bad = next(v for v in fields[1:] if not _is_number(v))
            raise DataError(path, f"'{shown_name(bad[:30])}' is not a number", f"line {n}") from None
        if not all(math.isfinite(v) for v in values):
            raise DataError(path, "landmarks must be finite numbers", f"line {n}")
        if name in out:
            raise DataError(path, f"{shown_name(name)} is listed twice (first at line {out[name][1]})", f"line {n}")
        out[name] = (np.asarray(values, dtype=np.float32).reshape(5, 2), n)
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------------------------ the pack


@dataclass
class PackRequest:
    """What ``data pack`` builds: the protocol's pairs, where the faces come from, and the output."""

    protocol: PackProtocol
    out: Path
    detector: str | None = None
    weights: str | None = None
    detector_options: tuple[str, ...] = ()  # KEY=VALUE keyword options of the detector
    landmarks: Path | None = None
    size: int = 112
    encoding: str = "jpg"
    overwrite: bool = False
    device: str = "auto"


class _Faces:
    """Where each photo's crop comes from: a detector (the face the photo is of) or a landmarks file."""

    def __init__(self, request: PackRequest):
        self.request = request
        self.several = 0  # photos in which the detector found more than one face
        self.detector_record: dict[str, Any] | None = None  # name, weights file, sha256
        if request.landmarks is not None:
            self.landmarks = read_landmarks(request.landmarks, request.protocol.root)
            missing = [name for name in request.protocol.photos if name not in self.landmarks]
            if missing:
                raise DataError(request.landmarks, f"no landmarks for {shown_name(missing[0])} (and "
                                                   f"{len(missing) - 1} more): every photo of the pairs needs a "
                                                   "line 'relative/path x1 y1 ... x5 y5'")
            self.detector = None
            self.described = f"landmarks of {request.landmarks}"
        else:
            self.detector = self._detector()
            self.described = f"detector {request.detector}"

    def _detector(self) -> Any:
        from ..config import parse_override
        from ..pluginmanager import registry
        from ..runtime import choose_device
        from .photos import resolve_detector

        request = self.request
        weights, self.detector_record = resolve_detector(request.detector, request.weights, option="--weights")
        options = {".".join(keys): value for keys, value in map(parse_override, request.detector_options)}
        device = str(choose_device(request.device))
        return registry("detector").create(request.detector, weights=str(weights) if weights else None,
                                           device=device, **options)

    def crop(self, image: np.ndarray, name: str, path: Path) -> np.ndarray:
        from .alignment import AlignmentError, align_face
        from .detection import NoFaceError, detect_and_align

        size = self.request.size
        if self.detector is None:
            landmarks, line = self.landmarks[name]
            try:
                return align_face(image, landmarks, size)
            except AlignmentError as exc:
                raise DataError(self.request.landmarks, f"the landmarks of {shown_name(name)} cannot be aligned: "
                                                        f"{exc}", f"line {line}") from None
        by = f"detector '{self.request.detector}'"
        try:
            crop, detections, _ = detect_and_align(self.detector, image, size=size)
        except NoFaceError:
            raise DataError(shown_name(os.fspath(path)), f"no face found by {by}: a pack must hold every pair "
                                                         "(give this photo's five points with --landmarks FILE)"
                            ) from None
        except AlignmentError as exc:
            raise DataError(shown_name(os.fspath(path)), f"the face found by {by} cannot be aligned: {exc}") from None
        self.several += len(detections) > 1
        return crop


def _check_out(out: Path) -> None:
    """A pack is one ``.bin`` file (what is already there is for the rerun contract to judge)."""
    if out.suffix.lower() not in PACK_SUFFIXES:
        raise FacebenchError(f"--out {out}: a pack is a .bin file (or .xz, compressed)")
    if out.is_dir() and not out.is_symlink():
        raise FacebenchError(f"--out {out}: is a folder; a pack is a .bin file")


def _photos_sha256(paths: dict[str, Path]) -> str:
    """One digest of the photos a pack is made of: each name with its content's sha256, in pair order."""
    import hashlib

    from ..provenance import sha256_path

    digest = hashlib.sha256()
    for name, path in paths.items():
        digest.update(os.fsencode(name) + b"\0" + sha256_path(path).encode() + b"\n")
    return digest.hexdigest()


def pack_rerun(request: PackRequest, paths: dict[str, Path], faces: Any) -> Any:
    """The rerun contract of a pack (:mod:`facebench.rerun`): the benchmark, the crop's size and encoding,
    where the faces come from (the detector, its weights' sha256 and options, or the landmarks file's
    sha256), the protocol file's and every photo's sha256; its record is ``OUT.json`` beside it."""
    from ..rerun import Rerun, parameters

    config = {"benchmark": request.protocol.name, "size": request.size, "encoding": request.encoding,
              "detector": faces.detector_record, "detector_options": list(request.detector_options)}
    params = parameters(config, inputs={"protocol": request.protocol.source, "landmarks": request.landmarks},
                        photos_sha256=_photos_sha256(paths))
    return Rerun(request.out, command="data pack", params=params, what="pack", folder=False,
                 outputs=[request.out.name], overwrite=request.overwrite, resumable=False)


def _photo_path(protocol: PackProtocol, name: str) -> Path:
    """The photo a name stands for, when it is a file inside the dataset folder (links followed); else one
    error naming the file (and line) that lists it."""
    path = protocol.root / name
    source, line = protocol.listed_at.get(name, (protocol.source, None))
    where = f"line {line}" if line else None
    try:
        found = path.is_file()
    except OSError as exc:  # a name longer than the file system allows, a loop of links
        raise DataError(source, f"photo {shown_name(name[:80])} cannot be read ({exc.strerror or exc})",
                        where) from None
    if not found:
        raise DataError(source, f"photo {shown_name(name)} not found under {protocol.root}", where)
    if not resolves_inside(path, protocol.root):
        raise DataError(shown_name(os.fspath(path)), f"is a symbolic link leading out of {protocol.root}")
    return path


def build_pack(request: PackRequest) -> dict[str, Any]:
    """Detect (or read the landmarks of) and align every photo of the protocol once, and write the pack:
    both crops of every pair, the pairs in the protocol's order. Everything that can be checked before the
    first photo is (the output, every photo's file, every photo's landmarks, the detector and its weights);
    the pack appears under its name only when complete. Returns the summary (with ``already_complete``
    true when the same pack was there already: nothing is written)."""
    from ..console import track
    from ..provenance import provenance
    from ..rerun import FINISHED
    from ..safe_load import read_json
    from .formats import open_writer
    from .images import encode_image
    from .photos import read_photo

    protocol = request.protocol
    if request.encoding not in ENCODINGS:
        raise FacebenchError(f"--encoding must be one of {', '.join(ENCODINGS)}, got {request.encoding!r}")
    _check_out(request.out)
    photos = protocol.photos
    paths = {name: _photo_path(protocol, name) for name in photos}
    faces = _Faces(request)
    rerun = pack_rerun(request, paths, faces)
    if rerun.check() == FINISHED:
        done = read_json(rerun.record_path, what="run record").get("pack")
        if isinstance(done, dict):
            return {**done, "already_complete": True}
    with rerun.writing():
        crops: dict[str, bytes] = {}
        for name in track(photos, f"aligning {protocol.name} photos"):
            crop = faces.crop(read_photo(paths[name]), name, paths[name])
            crops[name] = encode_image(crop, request.encoding)
        with open_writer(request.out, "bin", overwrite=True) as writer:  # Rerun.check said it may be replaced
            for (a, b), same in zip(protocol.pairs, protocol.issame):
                writer.add(crops[a], crops[b], bool(same))
    same = int(protocol.issame.sum())
    summary = {"pack": str(request.out), "benchmark": protocol.name, "pairs": len(protocol.pairs), "same": same,
               "different": len(protocol.pairs) - same, "folds": FOLDS, "photos": len(photos), "size": request.size,
               "encoding": request.encoding, "faces": faces.described, "several_faces": faces.several}
    inputs = {"protocol": protocol.source, **({"landmarks": request.landmarks} if request.landmarks else {})}
    rerun.finish(record={**provenance(inputs=inputs, hashes=rerun.params["inputs"]), "pack": summary})
    return summary


def summary_line(summary: dict[str, Any]) -> str:
    """``wrote lfw.bin: 6000 pairs (3000 same, 3000 different) in 10 folds from 7701 photos ...`` (``lfw.bin:
    already complete (...)`` when the same pack was there)."""
    if summary.get("already_complete"):
        from ..rerun import already_complete

        return already_complete(summary["pack"], f"{summary['pairs']} pairs from {summary['photos']} photos")
    line = (f"wrote {summary['pack']}: {summary['pairs']} pairs ({summary['same']} same, {summary['different']} "
            f"different) in {summary['folds']} folds, from {summary['photos']} photos aligned to "
            f"{summary['size']} px by the {summary['faces']}")
    if summary["several_faces"]:
        line += (f"; {summary['several_faces']} photo(s) showed several faces (the largest near the centre was "
                 "used)")
    return line


__all__ = ["CFP_PROTOCOLS", "ENCODINGS", "FOLDS", "PackProtocol", "PackRequest", "build_pack", "cfp_protocol",
           "lfw_protocol", "read_landmarks", "summary_line"]
