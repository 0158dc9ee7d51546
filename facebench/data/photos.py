"""A folder of someone's own photos as identities, and its faces detected and aligned to the ArcFace crop.

``embed --align`` and ``generate --ref-images`` read the same two layouts (decided once, here):

- **identity folders**: ``PHOTOS/<identity>/<photo>``, every entry of ``PHOTOS`` a folder; each folder is
  one identity (its name is the identity's name) and its photos are averaged into one identity vector;
- **one identity per photo**: ``PHOTOS/<photo>``, every entry a photo; each photo is its own identity,
  named by the file name without its extension.

Identities are ordered by name, photos within an identity by name. A photo is a file with an image
extension (:data:`PHOTO_EXTENSIONS`, any case); names starting with a dot (``.DS_Store``) are ignored.
Anything else is refused in one line naming it, never skipped: a skipped photo would silently change the
identity its folder stands for. So are a folder holding both layouts, an empty identity, a folder inside an
identity folder, a symbolic link leading out of ``PHOTOS``, a file that is not a regular file, a file that
does not decode, and a photo in which the detector finds no face. Several faces in one photo are not an
error: :func:`facebench.data.detection.pick_face` takes the one the photo is of (the largest near the
centre) and the outcome records how many there were. Photos are decoded as a camera means them: the EXIF
orientation is applied (as OpenCV's ``imread``, which insightface's tools use, applies it).
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, FacebenchError, MissingFileError, first_line
from ..safe_load import resolves_inside, shown_name

#: Extensions of the files read as photos (compared lower-case).
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
#: Largest photo file read, in bytes: a phone's photo is a few MB; a "photo" of gigabytes is refused before
#: it is read into memory (the pixel count is checked separately, from the header).
MAX_PHOTO_BYTES = 256 << 20
#: The two layouts, as recorded.
IDENTITY_FOLDERS = "identity folders"
ONE_PER_PHOTO = "one identity per photo"


def _shown(path: str | os.PathLike) -> str:
    return shown_name(os.fspath(path))


@dataclass(frozen=True)
class Photo:
    """One photo: its path, its name relative to the folder (``alice/1.jpg``) and its identity's label."""

    path: Path
    name: str
    label: int


@dataclass(frozen=True)
class PhotoFolder:
    """The photos of a folder, grouped into identities (labels index ``identities``)."""

    root: Path
    layout: str
    identities: tuple[str, ...]
    photos: tuple[Photo, ...]

    def __len__(self) -> int:
        return len(self.photos)

    @property
    def labels(self) -> np.ndarray:
        return np.array([p.label for p in self.photos], dtype=np.int64)

    @classmethod
    def scan(cls, root: str | os.PathLike) -> PhotoFolder:
        """List ``root`` (see the module docstring); every refusal is one :class:`DataError` naming the
        entry at fault."""
        root = Path(root)
        if not root.exists():
            raise MissingFileError(_shown(root), "photo folder")
        if not root.is_dir():
            raise DataError(_shown(root), "is not a folder: expected a folder of photos (one sub-folder per "
                                          "identity, or one photo per identity)")
        entries = _entries(root, root)
        if not entries:
            raise DataError(_shown(root), "holds no photos")
        folders = [e for e in entries if e.is_dir()]
        files = [e for e in entries if not e.is_dir()]
        if folders and files:
            raise DataError(_shown(root), f"holds both identity folders ({_shown(folders[0].name)}) and photos "
                                          f"({_shown(files[0].name)}): use one layout, a folder per identity or "
                                          "one photo per identity")
        photos: list[Photo] = []
        if folders:
            names = tuple(f.name for f in folders)
            for label, folder in enumerate(folders):
                inner = _entries(folder, root)
                if not inner:
                    raise DataError(_shown(folder), "identity folder holds no photos")
                for entry in inner:
                    if entry.is_dir():
                        raise DataError(_shown(entry), "is a folder inside an identity folder: photos must sit "
                                                       "directly in their identity's folder")
                    photos.append(Photo(_photo(entry), f"{folder.name}/{entry.name}", label))
            return cls(root, IDENTITY_FOLDERS, names, tuple(photos))
        stems: dict[str, Path] = {}
        for entry in files:
            stem = Path(entry.name).stem
            if stem in stems:
                raise DataError(_shown(entry), f"has the same name as {_shown(stems[stem].name)}: with one "
                                               "photo per identity each file names its identity, so names "
                                               "without their extension must differ")
            stems[stem] = entry
            photos.append(Photo(_photo(entry), entry.name, len(photos)))
        return cls(root, ONE_PER_PHOTO, tuple(stems), tuple(photos))

    def hashes(self) -> list[str]:
        """The sha256 of every photo file, in photo order."""
        from ..provenance import sha256_file

        return [sha256_file(p.path) for p in self.photos]

    def record(self, hashes: list[str] | None = None) -> dict[str, Any]:
        """What a run records of the folder: its layout, one sha256 over every photo's name and content,
        and per identity its name and photos (file, sha256)."""
        hashes = self.hashes() if hashes is None else hashes
        digest = hashlib.sha256()
        for photo, sha in zip(self.photos, hashes):
            digest.update(photo.name.encode("utf-8", "surrogateescape") + b"\0" + sha.encode() + b"\n")
        identities = [{"name": name, "photos": []} for name in self.identities]
        for photo, sha in zip(self.photos, hashes):
            identities[photo.label]["photos"].append({"file": photo.name, "sha256": sha})
        return {"folder": self.root.name or str(self.root), "layout": self.layout, "photos": len(self.photos),
                "sha256": digest.hexdigest(), "identities": identities}


def _entries(folder: Path, root: Path) -> list[Path]:
    """The entries of ``folder`` not starting with a dot, sorted by name; a link leading out of ``root``
    or a broken link is refused."""
    try:
        names = sorted(n for n in os.listdir(folder) if not n.startswith("."))
    except OSError as exc:
        raise DataError(_shown(folder), f"cannot list the folder ({exc.strerror or exc})") from None
    out = []
    for name in names:
        path = folder / name
        if path.is_symlink():
            if not path.exists():
                raise DataError(_shown(path), "is a broken symbolic link")
            if not resolves_inside(path, root):
                raise DataError(_shown(path), f"is a symbolic link leading out of the photo folder {_shown(root)}")
        out.append(path)
    return out


def _photo(path: Path) -> Path:
    """``path`` when it names a regular file with a photo extension, else a one-line refusal."""
    if path.suffix.lower() not in PHOTO_EXTENSIONS:
        raise DataError(_shown(path), f"is not a photo (extension '{_shown(path.suffix) or 'none'}'; photos "
                                      f"are {', '.join(PHOTO_EXTENSIONS)}): remove it from the photo folder")
    try:
        info = os.stat(path)
    except OSError as exc:
        raise DataError(_shown(path), f"cannot read the photo ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise DataError(_shown(path), "is not a regular file")
    _check_size(path, info.st_size)
    return path


def _check_size(path: str | os.PathLike, size: int) -> None:
    if size > MAX_PHOTO_BYTES:
        raise DataError(_shown(path), f"photo file of {size:,} bytes is larger than the {MAX_PHOTO_BYTES:,} "
                                      "facebench reads")


def read_photo(path: str | os.PathLike) -> np.ndarray:
    """RGB ``uint8`` H x W x 3 of a photo file, its EXIF orientation applied; a file that is too large,
    unreadable or not an image (or a decompression bomb) is one :class:`DataError` naming it."""
    from PIL import ImageOps

    from .images import _opened

    shown = _shown(path)
    try:
        with open(path, "rb") as fh:
            _check_size(path, os.fstat(fh.fileno()).st_size)
            data = fh.read(MAX_PHOTO_BYTES + 1)
    except OSError as exc:
        raise DataError(shown, f"cannot read the photo ({exc.strerror or exc})") from None
    with _opened(data, shown, None) as img:
        img.load()
        try:
            img = ImageOps.exif_transpose(img)
        except (KeyError, TypeError, ValueError, ZeroDivisionError, OSError) as exc:  # a malformed EXIF block
            raise DataError(shown, f"unreadable EXIF orientation ({first_line(exc)})") from None
        return np.array(img.convert("RGB"), dtype=np.uint8)  # writable: a detector may work in place


# ------------------------------------------------------------------------------------ detection + alignment


def resolve_detector(name: str, weights: str | os.PathLike | None,
                     option: str = "--detector-weights") -> tuple[Path | None, dict[str, Any]]:
    """The weights file detector ``name`` is built with (given, else its declared default file in the
    weights directory; a folder for a detector that declares ``weights_dir``; a detector that needs weights
    and has none is refused naming ``option``; None for a detector that needs none, such as the tiny seeded
    ones) and its record: name, file name, sha256 (of a folder as a whole)."""
    from ..pluginmanager import registry
    from ..provenance import sha256_path
    from ..weights import needs_weights, resolve_weights, weights_dir

    spec = registry("detector").get(name)
    allow_dir = bool(spec.extras.get("weights_dir"))  # MTCNN: a folder of its three stage files
    path = None
    if weights:
        path = resolve_weights(weights, allow_dir=allow_dir)
    elif needs_weights(spec):
        default = spec.extras.get("weights")
        if default and ((weights_dir() / default).is_file() or (allow_dir and (weights_dir() / default).is_dir())):
            path = weights_dir() / default
        else:
            where = (f"its file {default} is not in the weights directory {weights_dir()}" if default
                     else "it has no default file")
            raise FacebenchError(f"detector '{name}' needs weights ({where}): pass {option} FILE")
    return path, {"name": name, "weights": path.name if path else None,
                  "sha256": sha256_path(path) if path else None}


def build_detector(name: str, weights: str | os.PathLike | None, device: Any = "cpu",
                   option: str = "--detector-weights") -> tuple[Any, dict[str, Any]]:
    """The registered detector ``name`` built with :func:`resolve_detector`'s weights, and its record."""
    from ..pluginmanager import registry

    path, record = resolve_detector(name, weights, option)
    return registry("detector").create(name, weights=str(path) if path else None, device=str(device)), record


@dataclass(frozen=True)
class AlignedFace:
    """What detection gave for one photo: how many faces, which one was used, its box and score."""

    faces: int
    face: int
    box: tuple[float, float, float, float]
    score: float

    def record(self) -> dict[str, Any]:
        return {"faces": self.faces, "face": self.face, "box": [round(v, 2) for v in self.box],
                "score": round(self.score, 4)}


def align_photo(detector: Any, photo: Photo, size: int, detector_name: str = "") -> tuple[np.ndarray, AlignedFace]:
    """The ArcFace crop (``size`` px) of the face a photo is of, and what detection gave; no face (or a
    face that cannot be aligned) is one :class:`DataError` naming the photo."""
    from .alignment import AlignmentError
    from .detection import NoFaceError, detect_and_align

    image = read_photo(photo.path)
    by = f" by detector '{detector_name}'" if detector_name else ""
    try:
        crop, detections, index = detect_and_align(detector, image, size=size)
    except NoFaceError:
        raise DataError(_shown(photo.path), f"no face found{by}: every photo must show its identity's face "
                                            "(remove or replace it)") from None
    except AlignmentError as exc:
        raise DataError(_shown(photo.path), f"the face found{by} cannot be aligned: {exc}") from None
    box = tuple(float(v) for v in detections.boxes[index])
    return crop, AlignedFace(len(detections), int(index), box, float(detections.scores[index]))


def align_folder(folder: PhotoFolder, detector: Any, size: int, *,
                 detector_name: str = "") -> tuple[np.ndarray, list[AlignedFace]]:
    """Every photo of ``folder`` detected and aligned, in photo order: ``(crops (N, size, size, 3) uint8,
    faces)``; the first photo without a face stops it (one error naming the photo)."""
    from ..console import make_progress

    crops = np.zeros((len(folder), size, size, 3), dtype=np.uint8)
    faces: list[AlignedFace] = []
    with make_progress(transient=True) as bar:
        task = bar.add_task("detecting faces", total=len(folder))
        for i, photo in enumerate(folder.photos):
            crops[i], face = align_photo(detector, photo, size, detector_name)
            faces.append(face)
            bar.advance(task)
    return crops, faces


class AlignedPhotos:
    """The aligned crops of a photo folder as a train reader (ARCHITECTURE.md contract), so they are embedded
    by the same path as any dataset: one record per photo, labelled with its identity."""

    def __init__(self, folder: PhotoFolder, crops: np.ndarray):
        self.folder = folder
        self.crops = crops
        self.path = str(folder.root)
        self._labels = folder.labels
        self.num_classes = len(folder.identities)

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def __len__(self) -> int:
        return len(self.crops)

    def label(self, i: int) -> int:
        return int(self._labels[i])

    def where(self, i: int) -> str:
        return f"photo {shown_name(self.folder.photos[i].name)}"

    def image(self, i: int) -> np.ndarray:
        return self.crops[i]

    def image_bytes(self, i: int) -> bytes:
        from .images import encode_image

        return encode_image(self.crops[i], "png")  # lossless: decoding gives the crop back exactly

    def close(self) -> None:
        pass


__all__ = ["IDENTITY_FOLDERS", "ONE_PER_PHOTO", "PHOTO_EXTENSIONS", "AlignedFace", "AlignedPhotos", "Photo",
           "PhotoFolder", "align_folder", "align_photo", "build_detector", "read_photo", "resolve_detector"]
