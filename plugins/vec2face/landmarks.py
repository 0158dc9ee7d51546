"""Vec2Face+ landmark images: read as the release lists them, drawn as its data preparation draws them.

The pose model sees a 112 x 112 RGB image of the face's five landmarks. The release ships no drawing
code, only its training set (a landmark JPEG per face) and two examples
(``landmarks/images/2758_{0,1}.jpg``); the drawing is read off those files:

* black 112 x 112 RGB; each landmark a filled disc of radius 3 at its integer pixel centre, OpenCV's
  ``circle(..., thickness=-1)`` with 8-connected lines, which lights exactly the pixels within distance 3
  of the centre (x^2 + y^2 <= 9: rows of 1, 5, 5, 7, 5, 5, 1 pixels);
* eyes red (255, 0, 0), nose green (0, 255, 0), mouth corners blue (0, 0, 255), drawn in the five-point
  order (left eye, right eye, nose, left mouth corner, right mouth corner; a later disc covers an earlier);
* saved as JPEG, quality 95, 4:2:0 chroma subsampling (``cv2.imwrite``'s defaults), and decoded to RGB.

Drawing ``release-2758_1`` (its centres fitted to the example) this way gives the release's
``2758_1.jpg`` byte for byte (sha256 in tests/test_vec2face_plus.py). The release's landmark detector
gives sub-pixel points; OpenCV takes integer centres, and the release's conversion is not shipped:
facebench truncates (``int(x)``, as ``numpy.astype(int)`` does) and records the points as given.

Named target poses are facebench's: the ArcFace template's five points placed in 3-D (eyes and mouth
corners in one plane, the nose tip :data:`NOSE_DEPTH` px in front of it), turned by the yaw angle about
the vertical axis, projected orthographically and aligned back to the template with the least-squares
similarity every aligned face gets (:func:`facebench.data.alignment.similarity_matrix`). Positive yaw moves
the nose toward the image's right, as toyfaces renders it. The nose depth (24 px, 0.68 of the template's
eye distance) is the value that fits the release's two examples best (both about 82 degrees from frontal).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from facebench.errors import DataError, MissingFileError

#: Side of a landmark image (the release's crop size) and the disc radius and colours it draws with.
SIZE = 112
RADIUS = 3
EYE, NOSE, MOUTH = (255, 0, 0), (0, 255, 0), (0, 0, 255)
COLOURS = (EYE, EYE, NOSE, MOUTH, MOUTH)
JPEG_QUALITY = 95
#: The most landmark sets one run cycles through, and the largest landmark image file read.
MAX_POSES = 10_000
MAX_IMAGE_BYTES = 16 << 20
#: Depth of the nose tip in front of the eyes' and mouth corners' plane, in template pixels.
NOSE_DEPTH = 24.0
RENDERING = (f"filled discs of radius {RADIUS} (OpenCV circle, 8-connected) at integer (truncated) centres on "
             f"black {SIZE} x {SIZE} RGB: eyes red, nose green, mouth corners blue; JPEG quality "
             f"{JPEG_QUALITY}, 4:2:0, decoded")

#: The release's two examples (landmarks/images/2758_0.jpg and 2758_1.jpg), their centres fitted to the
#: files: drawn as above, 2758_1 reproduces its file byte for byte; 2758_0 was saved again by another
#: program (it carries EXIF and other JPEG tables), so it matches only up to that JPEG's noise.
RELEASE_EXAMPLES = {
    "release-2758_0": ((55, 48), (51, 49), (39, 65), (56, 82), (53, 83)),
    "release-2758_1": ((56, 48), (60, 49), (72, 65), (55, 82), (58, 83)),
}
YAWS = tuple(range(-90, 91, 15))
GROUPS = {
    "release-examples": tuple(RELEASE_EXAMPLES),
    "yaw-sweep": tuple(("frontal" if y == 0 else f"yaw{y:+d}") for y in YAWS),
}


# --------------------------------------------------------------------------------------------- drawing

def disc_half_widths(radius: int) -> dict[int, int]:
    """Row offset -> half width of OpenCV's filled circle, by its integer midpoint walk over one octant.

    ``e = dx^2 + dy^2 - r^2`` is kept exactly; each step down a row moves ``dx`` in by one when ``e`` turns
    positive. Every (dx, dy) visited fills the rows ``+-dy`` to ``+-dx`` and the rows ``+-dx`` to ``+-dy``.
    """
    rows: dict[int, int] = {}
    dx, dy, e = radius, 0, 0
    while dx >= dy:
        for row, half in ((dy, dx), (dx, dy)):
            for r in (row, -row):
                rows[r] = max(rows.get(r, -1), half)
        e += 2 * dy + 1
        dy += 1
        if e > 0:
            e -= 2 * dx - 1
            dx -= 1
    return rows


def _pixel_centre(value: float) -> int:
    return int(math.trunc(value))


def draw_landmarks(points: Any, size: int = SIZE, radius: int = RADIUS) -> np.ndarray:
    """The landmark drawing (uint8 size x size x 3) of five ``(x, y)`` points, before JPEG."""
    pts = np.asarray(points, dtype=np.float64).reshape(5, 2)
    image = np.zeros((size, size, 3), dtype=np.uint8)
    rows = disc_half_widths(radius)
    for (x, y), colour in zip(pts, COLOURS):
        cx, cy = _pixel_centre(x), _pixel_centre(y)
        for off, half in rows.items():
            row = cy + off
            if 0 <= row < size:
                lo, hi = max(cx - half, 0), min(cx + half, size - 1)
                if lo <= hi:
                    image[row, lo:hi + 1] = colour
    return image


def encode_landmarks(image: np.ndarray) -> bytes:
    """JPEG quality 95 with 4:2:0 chroma subsampling (``cv2.imwrite``'s defaults), through Pillow."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB").save(
        buf, format="JPEG", quality=JPEG_QUALITY, subsampling=2)
    return buf.getvalue()


def render_landmarks(points: Any, size: int = SIZE) -> tuple[bytes, np.ndarray]:
    """(JPEG bytes, decoded RGB pixels) of the landmark image of five points, as the release stores them."""
    from facebench.data.images import decode_image

    data = encode_landmarks(draw_landmarks(points, size))
    return data, decode_image(data)


# ----------------------------------------------------------------------------------------- named poses

def posed_points(yaw: float, size: int = SIZE) -> np.ndarray:
    """Five points of a face turned by ``yaw`` degrees, aligned to the ArcFace template (see the module)."""
    from facebench.data.alignment import similarity_matrix, template

    ref = template(SIZE).astype(np.float64)
    centred = ref - ref.mean(axis=0)
    depth = np.array([0.0, 0.0, NOSE_DEPTH, 0.0, 0.0])
    t = math.radians(yaw)
    projected = np.stack([centred[:, 0] * math.cos(t) + depth * math.sin(t), centred[:, 1]], axis=1)
    m = similarity_matrix(projected.astype(np.float32)).astype(np.float64)
    return (projected @ m[:, :2].T + m[:, 2]) * (size / SIZE)


def named_poses() -> dict[str, tuple[np.ndarray, float | None]]:
    """Every named pose: ``frontal``, ``yaw-90`` .. ``yaw+90`` in steps of 15 (points to 1/100 px, as they
    are drawn and recorded), and the release's examples."""
    poses: dict[str, tuple[np.ndarray, float | None]] = {}
    for yaw in YAWS:
        poses["frontal" if yaw == 0 else f"yaw{yaw:+d}"] = (np.round(posed_points(yaw), 2), float(yaw))
    for name, pts in RELEASE_EXAMPLES.items():
        poses[name] = (np.asarray(pts, dtype=np.float64), None)
    return poses


def known_names() -> str:
    return (f"frontal, yaw-90 .. yaw+90 in steps of 15, {', '.join(RELEASE_EXAMPLES)}; groups "
            f"{', '.join(GROUPS)}")


# --------------------------------------------------------------------------------------------- a set

@dataclass
class PoseEntry:
    """One landmark image: its pixels (size x size x 3) and what it was made from."""

    name: str
    pixels: np.ndarray = field(repr=False)
    sha256: str  # of the JPEG bytes (drawn) or of the file (listed)
    points: list[list[float]] | None = None
    file: str | None = None
    yaw: float | None = None

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "sha256": self.sha256}
        for key in ("points", "file", "yaw"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass
class PoseSet:
    """The landmark images a run cycles through (the release's 112 x 112), and the record ``dataset.json``
    keeps of them. ``input_size``: the pose model's input side, when it is not 112 (a facebench-trained tiny
    pose model may take smaller images: they are resized as its training resized its landmark images)."""

    entries: list[PoseEntry]
    source: dict[str, Any]
    input_size: int = SIZE

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def images(self) -> np.ndarray:
        return np.stack([e.pixels for e in self.entries])

    def model_input(self) -> Any:
        """(P, 3, S, S) float32 in [-1, 1]: at 112 px computed as the release's ``ToTensor`` +
        ``Normalize(0.5, 0.5)``; at another input size through :func:`facebench.data.tensors.to_model_input`
        (bilinear, antialiased), as facebench's pose training feeds them."""
        if self.input_size == SIZE:
            return landmark_tensor(self.images)
        from facebench.data.tensors import to_model_input

        return to_model_input(self.images, self.input_size)

    def record(self) -> dict[str, Any]:
        rendering = {} if self.source.get("kind") == "images" else {"rendering": RENDERING}
        resized = {} if self.input_size == SIZE else {"resized_to": self.input_size}
        return {"source": self.source, **rendering, "size": SIZE, **resized,
                "poses": [e.record() for e in self.entries]}


def landmark_tensor(images: Any) -> Any:
    """uint8 (N, S, S, 3) -> float32 (N, 3, S, S): ``x / 255``, then ``(x - 0.5) / 0.5``, op for op."""
    import torch

    x = torch.as_tensor(np.ascontiguousarray(images))
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"landmark images must be uint8 (N, S, S, 3), got {x.dtype} {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).contiguous().float().div(255).sub(0.5).div(0.5)


def _drawn(name: str, points: np.ndarray, **extra: Any) -> PoseEntry:
    data, pixels = render_landmarks(points)
    return PoseEntry(name, pixels, hashlib.sha256(data).hexdigest(),
                     points=[[float(x), float(y)] for x, y in points], **extra)


def _file_record(path: Path, kind: str) -> dict[str, Any]:
    from facebench.provenance import sha256_file

    return {"kind": kind, "file": path.name, "sha256": sha256_file(path)}


def load_pose_set(value: str, input_size: int = SIZE) -> PoseSet:
    """The landmark images ``--pose-landmarks VALUE`` names: comma-separated named poses (or groups), or a
    file: a list of landmark images (the release's ``landmark_examples.txt``), or 5-point coordinates in
    the 112 x 112 landmark image (text lines of ten numbers, optionally after a name; or a ``.npy`` of shape
    (P, 5, 2) or (P, 10)). ``input_size``: the pose model's input side (see :class:`PoseSet`)."""
    text = str(value).strip()
    names = [n.strip() for n in text.split(",")]
    poses = named_poses()
    if text and all(n in poses or n in GROUPS for n in names):
        chosen = [m for n in names for m in (GROUPS.get(n) or (n,))]
        entries = [_drawn(n, poses[n][0], yaw=poses[n][1]) for n in chosen]
        return PoseSet(entries, {"kind": "named", "names": names}, input_size)
    path = Path(text)
    if not os.path.lexists(path):
        unknown = next((n for n in names if n not in poses and n not in GROUPS), text)
        raise MissingFileError(path, "pose landmarks file",
                               f"and {unknown!r} is not a named pose; named poses: {known_names()}")
    if path.is_dir():
        raise DataError(path, "is a folder: --pose-landmarks takes a list of landmark images, a file of 5-point "
                              "coordinates (.txt, .csv, .npy) or named poses")
    if not path.is_file():
        raise DataError(path, "is not a regular file (a FIFO or a device?): --pose-landmarks reads a file")
    pose = _from_array(path) if path.suffix.lower() == ".npy" else _from_text(path)
    pose.input_size = input_size
    return pose


def _from_array(path: Path, size: int = SIZE) -> PoseSet:
    from facebench.safe_load import load_array

    arr = load_array(path, what="pose landmarks")
    if arr.dtype.kind not in "fiu" or arr.ndim not in (2, 3) or arr.shape[1:] not in ((5, 2), (10,)):
        raise DataError(path, f"pose landmarks must be numbers of shape (P, 5, 2) or (P, 10), found {arr.dtype} "
                              f"{tuple(arr.shape)}")
    points = np.asarray(arr, dtype=np.float64).reshape(-1, 5, 2)
    _check_count(path, len(points))
    entries = []
    for i, pts in enumerate(points):
        _check_points(path, pts, size, f"row {i}")
        entries.append(_drawn(f"{path.stem}[{i}]", pts))
    return PoseSet(entries, _file_record(path, "coordinates"))


def _check_count(path: Path, count: int) -> None:
    if count == 0:
        raise DataError(path, "lists no landmark images or coordinates")
    if count > MAX_POSES:
        raise DataError(path, f"lists more than {MAX_POSES:,} landmark sets (a run cycles through a few poses)")


def _check_points(path: Path, pts: np.ndarray, size: int, where: str) -> None:
    bad = np.flatnonzero(~np.isfinite(pts.reshape(-1)))
    if bad.size:
        raise DataError(path, f"coordinate {int(bad[0]) + 1} is not a finite number", where)
    outside = np.flatnonzero(((pts < 0) | (pts >= size)).any(axis=1))
    if outside.size:
        k = int(outside[0])
        raise DataError(path, f"point {k + 1} ({pts[k, 0]:g}, {pts[k, 1]:g}) lies outside the {size} x {size} "
                              "landmark image", where)


def _number(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def _content_lines(path: Path) -> list[tuple[int, str]]:
    from facebench.safe_load import numbered_lines

    lines = []
    for number, raw in numbered_lines(path, what="pose landmarks file"):
        line = raw.strip()
        if line and not line.startswith("#"):
            lines.append((number, line))
            if len(lines) > MAX_POSES:
                _check_count(path, len(lines))
    _check_count(path, len(lines))
    return lines


def _tokens(line: str) -> list[str]:
    return line.replace(",", " ").split()


def _is_coordinates(line: str) -> bool:
    """All numbers, or a name then numbers: a coordinates line (whatever its count); else an image path."""
    tokens = _tokens(line)
    numeric = [_number(t) is not None for t in tokens]
    return all(numeric) or (len(tokens) > 1 and not numeric[0] and all(numeric[1:]))


def _from_text(path: Path, size: int = SIZE) -> PoseSet:
    lines = _content_lines(path)
    if _is_coordinates(lines[0][1]):
        entries = []
        for number, line in lines:
            tokens = _tokens(line)
            name = None
            if tokens and _number(tokens[0]) is None:
                name, tokens = tokens[0], tokens[1:]
            values = [_number(t) for t in tokens]
            where = f"line {number}"
            if any(v is None for v in values):
                from facebench.safe_load import shown_name

                bad = tokens[values.index(None)]
                raise DataError(path, f"{shown_name(bad)[:40]!r} is not a number (a coordinates line holds ten "
                                      "numbers: x y of the eyes, the nose and the mouth corners)", where)
            if len(values) != 10:
                raise DataError(path, f"expected 10 numbers (x y of the 5 points: eyes, nose, mouth corners), "
                                      f"found {len(values)}", where)
            pts = np.asarray(values, dtype=np.float64).reshape(5, 2)
            _check_points(path, pts, size, where)
            entries.append(_drawn(name or f"{path.name}:{number}", pts))
        return PoseSet(entries, _file_record(path, "coordinates"))
    return PoseSet([_listed_image(path, number, line, size) for number, line in lines],
                   _file_record(path, "images"))


def _listed_path(listing: Path, number: int, name: str) -> Path:
    """Where a listed name points: relative to the list's folder and inside it. The release writes its
    names from the repository root (``./landmarks/images/x.jpg`` in ``landmarks/landmark_examples.txt``):
    a name that is not found in the folder and begins with the folder's own name is read from the
    folder's parent, and must still lie inside the folder."""
    from facebench.safe_load import inside, resolves_inside, shown_name

    folder = listing.parent
    where = f"line {number}"
    candidate = inside(folder, name, file=listing, where=where, what="landmark image")
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p != "."]
    top = folder.resolve().name
    if not os.path.lexists(candidate) and len(parts) > 1 and parts[0] == top:
        candidate = folder / Path(*parts[1:])
    if not os.path.lexists(candidate):
        raise DataError(listing, f"landmark image {shown_name(name)!r} not found in {folder}", where)
    if not resolves_inside(candidate, folder):
        raise DataError(listing, f"landmark image {shown_name(name)!r} leads out of the folder {folder} (a link)",
                        where)
    return candidate


def _listed_image(listing: Path, number: int, name: str, size: int) -> PoseEntry:
    from facebench.data.images import decode_image
    from facebench.safe_load import shown_name

    where = f"line {number}"
    shown = shown_name(name)
    path = _listed_path(listing, number, name)
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise DataError(listing, f"landmark image {shown!r} is not a regular file", where)
        if st.st_size > MAX_IMAGE_BYTES:
            raise DataError(listing, f"landmark image {shown!r} is {st.st_size:,} bytes, more than the "
                                     f"{MAX_IMAGE_BYTES:,} a {size} x {size} landmark image needs", where)
        with open(path, "rb") as fh:
            data = fh.read(MAX_IMAGE_BYTES + 1)
    except OSError as exc:
        raise DataError(listing, f"cannot read landmark image {shown!r}: {exc.strerror or exc}", where) from None
    try:
        pixels = decode_image(data, path=path)
    except DataError as exc:
        raise DataError(listing, f"landmark image {shown!r}: {exc.problem}", where) from None
    if pixels.shape[:2] != (size, size):
        raise DataError(listing, f"landmark image {shown!r} is {pixels.shape[1]} x {pixels.shape[0]}, landmark "
                                 f"images are {size} x {size} (the release's; it does not resize them)", where)
    return PoseEntry(shown, pixels, hashlib.sha256(data).hexdigest(), file=shown)


__all__ = ["PoseSet", "PoseEntry", "load_pose_set", "render_landmarks", "draw_landmarks", "named_poses",
           "landmark_tensor"]
