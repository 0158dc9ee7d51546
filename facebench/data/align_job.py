"""``facebench data align``: a folder of raw photos to an aligned face dataset, sharded and resumable.

The source is read as every command that takes a folder of photos reads it
(:class:`~facebench.data.photos.PhotoFolder`: ``SRC/<identity>/<photo>``, one sub-folder per identity, as
LFW, CASIA-WebFace or VGGFace2 are distributed; or ``SRC/<photo>``, one identity per photo), with one choice
made explicit: a folder of photos is taken as one identity per photo only with ``--flat``, since it may as
well be one person's photos, and the command does not guess. Whatever that module refuses (a folder holding
both layouts, a folder inside an identity folder, a file that is not a photo, an empty identity, a symbolic
link leading out of ``SRC``) is refused here in the same line. Each photo is decoded (the checks of the image
codec: decompression bombs, truncated and foreign data; its EXIF orientation applied), given to the
detector, and gets exactly one outcome in ``outcomes.csv``:

- ``aligned``: one face, aligned (``facebench.align``) and kept;
- ``several_faces``: several faces; the one :func:`~facebench.data.detection.pick_face` picks (the
  largest near the centre) is aligned and kept;
- ``no_face``: no face; the photo is left out;
- ``unalignable``: the picked face's landmarks cannot be aligned (degenerate); left out, the reason
  recorded;
- ``unreadable`` (only with ``skip_unreadable``): the photo cannot be decoded; left out, the reason
  recorded. Without it, an undecodable photo is a one-line error naming it.

Labels are the identities that keep at least one crop, numbered in sorted order (an identity whose every
photo failed would be an empty label, which a folder dataset cannot hold and a trainer does not want);
``outcomes.csv`` says which label (and which image of the set) each photo became.

The run folder, as ``generate`` writes one: ``config.toml`` and ``provenance.json``, ``manifest.json``
(a :class:`~facebench.shards.ShardManifest` of finished shards of ``photos_per_shard`` photos),
``shards/shard-NNNNN.msgpack`` (the outcomes and encoded crops of a finished shard, written atomically),
then, once every shard is done, ``dataset.<format>`` through the format's writer, ``outcomes.csv`` and
``dataset.json`` (written last: its presence claims a finished run). Detection and alignment are
deterministic, so a run killed at any point and rerun gives the bytes of an uninterrupted run. The rerun
contract (:mod:`facebench.rerun`, its record in ``provenance.json``) makes a finished run rerun with the
same parameters a no-op and refuses other parameters, naming them; a finished-looking run whose card
does not match what is on disk is re-assembled from kept shards, or refused naming the file.

``generation/sharded.py`` is not reused: the data layer may not import the generation layer, its staged
record is (labels, images, numeric stats) over identity ranges where this one is a per-photo outcome over
photo ranges, and its assembly is bound to the generation job's card. What both share lives below them
and is used here: :class:`~facebench.shards.ShardManifest` (journaled), :class:`~facebench.rerun.Rerun`,
``runs.Run``/``discard_on_failure``, :mod:`facebench.atomic` and the format writers.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import inspect
import json
import os
import shutil
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic
from ..config import plain_name
from ..errors import ConfigError, DataError, FacebenchError, first_line
from ..provenance import sha256_file
from ..runs import CONFIG, DATASET_CARD, PROVENANCE
from ..safe_load import expect, read_json, resolves_inside, shown_name
from ..shards import ShardManifest, read_manifest
from .images import encode_image

SHARD_DIR = "shards"
MANIFEST = "manifest.json"
OUTCOMES = "outcomes.csv"
JOB = "data align"
#: The run folder's own entries: the dataset may not take one of these names.
RUN_FILES = (CONFIG, PROVENANCE, DATASET_CARD, OUTCOMES, SHARD_DIR, "manifest*")

ALIGNED, SEVERAL, NO_FACE, UNALIGNABLE, UNREADABLE = "aligned", "several_faces", "no_face", "unalignable", "unreadable"
#: Every outcome, in the order the summary names them; those in KEEPS_CROP keep a crop.
OUTCOME_NAMES = (ALIGNED, NO_FACE, SEVERAL, UNALIGNABLE, UNREADABLE)
KEEPS_CROP = (ALIGNED, SEVERAL)
CSV_COLUMNS = ("photo", "identity", "outcome", "faces", "label", "index", "score", "x1", "y1", "x2", "y2",
               "landmarks", "sha256", "note")


@dataclass
class AlignConfig:
    """How photos become the aligned set; everything but ``keep_shards`` and ``skip_unreadable`` is part
    of the resume check (neither changes a photo that was processed)."""

    size: int = 112
    format: str = "folder"
    flat: bool = False
    photos_per_shard: int = 256
    image_encoding: str = "jpg"  # "jpg" (quality jpeg_quality, insightface's choice) or "png" (lossless)
    jpeg_quality: int = 95
    keep_shards: bool = False
    skip_unreadable: bool = False

    def __post_init__(self) -> None:
        if self.photos_per_shard < 1:
            raise ConfigError(f"photos_per_shard must be >= 1, got {self.photos_per_shard}")
        if not 16 <= self.size <= 1024:
            raise ConfigError(f"size must be between 16 and 1024 pixels, got {self.size}")
        if self.image_encoding not in ("jpg", "png"):
            raise ConfigError(f"image_encoding must be 'jpg' or 'png', got '{self.image_encoding}'")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")

    @property
    def dataset_name(self) -> str:
        return f"dataset.{self.format}"


# ------------------------------------------------------------------------------------------ the source


def list_photos(src: str | os.PathLike, *, flat: bool = False) -> Any:
    """The photos of ``src`` (:class:`~facebench.data.photos.PhotoFolder`: the layouts and what each refuses
    are decided there, for every command that reads photos), with the choice of layout made explicit: a
    folder of photos is taken as one identity per photo only with ``flat`` (it may as well be one person's
    photos), and ``flat`` on identity folders is refused."""
    from .photos import IDENTITY_FOLDERS, ONE_PER_PHOTO, PhotoFolder

    folder = PhotoFolder.scan(src)
    shown = shown_name(os.fspath(src))
    if folder.layout == ONE_PER_PHOTO and not flat:
        raise DataError(shown, "holds photos but no identity folders: put each identity's photos in a sub-folder "
                               "SRC/<identity>/, or pass --flat to make each photo its own identity")
    if folder.layout == IDENTITY_FOLDERS and flat:
        raise DataError(shown, f"holds identity folders ({shown_name(folder.identities[0])}, ...): --flat takes a "
                               "folder of photos, one per identity; drop --flat to take each folder as an identity")
    return folder


def listing_record(folder: Any) -> dict[str, Any]:
    """What a resume must find again: the layout and a digest of every photo's name and size (stat only;
    each photo's content sha256 is recorded in ``outcomes.csv`` as it is read)."""
    digest = hashlib.sha256(folder.layout.encode() + b"\n")
    for photo in folder.photos:
        try:
            size = os.stat(photo.path).st_size
        except OSError as exc:
            raise DataError(shown_name(os.fspath(photo.path)), f"cannot read the photo ({exc.strerror or exc})") from None
        digest.update(os.fsencode(photo.name) + b"\0" + str(size).encode() + b"\n")
    return {"layout": folder.layout, "photos": len(folder), "identities": len(folder.identities),
            "listing_sha256": digest.hexdigest()}


# -------------------------------------------------------------------------------------- one photo


def confined(root: Path, photo: Any) -> Path:
    """The photo's path when it still resolves inside ``root``: a link swapped since the listing is refused."""
    if not resolves_inside(photo.path, root):
        raise DataError(shown_name(os.fspath(photo.path)), "is a symbolic link leading out of the photo folder "
                                                           "(changed since it was listed)")
    return photo.path


def detections_of(detector: Any, image: np.ndarray, *, name: str, photo: str) -> Any:
    """The detector's faces of one photo as :class:`~facebench.data.detection.Detections` (validated and
    sorted by score). A detector may return a ``Detections``, any object with ``boxes``, ``scores`` and
    ``landmarks``, or that triple; anything malformed (wrong shapes, values that are not finite) is one
    error naming the photo and the detector: a detector giving NaN is broken (its weights?), and going on
    would silently leave out every face it breaks on."""
    from .detection import Detections

    try:
        found = detector.detect(image)
    except ValueError as exc:  # the detector's own Detections refused what it computed (NaN, shapes)
        raise FacebenchError(f"{photo}: detector '{name}' gave no usable detections ({first_line(exc)})") from exc
    try:
        if isinstance(found, Detections):
            return found
        if isinstance(found, tuple | list) and len(found) == 3:
            return Detections(*found)
        return Detections(found.boxes, found.scores, found.landmarks)
    except (ValueError, TypeError, AttributeError) as exc:
        raise FacebenchError(f"{photo}: detector '{name}' gave no usable detections ({first_line(exc)})") from exc


@dataclass
class Outcome:
    """What became of one photo (one row of ``outcomes.csv`` before labels are known)."""

    outcome: str
    faces: int = 0
    sha256: str = ""
    note: str = ""
    score: float | None = None
    box: list[float] = field(default_factory=list)
    landmarks: list[float] = field(default_factory=list)

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


def photo_outcome(detector: Any, image: np.ndarray, size: int, *, name: str,
                  photo: str) -> tuple[Outcome, np.ndarray | None]:
    """Detect, pick the face the photo means, align it: (outcome, crop or None)."""
    from .alignment import AlignmentError, align_face
    from .detection import pick_face

    found = detections_of(detector, image, name=name, photo=photo)
    index = pick_face(found, image.shape)
    if index is None:
        return Outcome(NO_FACE, faces=len(found)), None
    kept = Outcome(ALIGNED if len(found) == 1 else SEVERAL, faces=len(found), score=float(found.scores[index]),
                   box=[float(v) for v in found.boxes[index]],
                   landmarks=[float(v) for v in found.landmarks[index].reshape(-1)])
    try:
        crop = align_face(image, found.landmarks[index], size=size)
    except AlignmentError as exc:
        kept.outcome, kept.note = UNALIGNABLE, first_line(exc)
        return kept, None
    return kept, crop


# ------------------------------------------------------------------------------------------- the job


@dataclass
class StagedShard:
    first: int
    records: list[dict[str, Any]]
    crops: list[bytes]


@dataclass
class AlignJob:
    """One ``data align`` run folder and everything that must stay equal across resumes."""

    out: Path
    config: AlignConfig
    photos: Any  # the PhotoFolder
    listing: dict[str, Any]  # listing_record(photos)
    detector: str
    detector_info: dict[str, Any]

    @property
    def num_photos(self) -> int:
        return len(self.photos)

    @property
    def num_shards(self) -> int:
        return -(-self.num_photos // self.config.photos_per_shard)

    @property
    def dataset_path(self) -> Path:
        return self.out / self.config.dataset_name

    @property
    def card_path(self) -> Path:
        return self.out / DATASET_CARD

    def shard_range(self, shard: int) -> range:
        first = shard * self.config.photos_per_shard
        return range(first, min(first + self.config.photos_per_shard, self.num_photos))

    def shard_path(self, shard: int) -> Path:
        return self.out / SHARD_DIR / f"shard-{shard:05d}.msgpack"

    def params(self) -> dict[str, Any]:
        config = {k: v for k, v in asdict(self.config).items() if k not in ("keep_shards", "skip_unreadable")}
        return {"job": JOB, "detector": self.detector, "detector_info": self.detector_info,
                "source": self.listing, "config": config}

    def normalised_params(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.params(), default=str))

    def is_finished(self) -> bool:
        """``dataset.json`` is written last: its presence (any entry) claims a finished run."""
        return os.path.lexists(self.card_path)


def _read_manifest(path: Path) -> dict[str, Any]:
    """A manifest of the run, read strictly (params an object, done keyed by shard numbers)."""
    saved = read_manifest(path)
    expect(path, saved.get("params"), dict, "params")
    done = expect(path, saved.get("done"), dict, "done")
    bad = [k for k in done if not (isinstance(k, str) and k.isascii() and k.isdigit())]
    if bad:
        raise DataError(path, f"done must list shard numbers, found '{shown_name(str(bad[0]))}'")
    return {"params": saved["params"], "done": {int(k) for k in done}}


def check_out(out: Path, src: Path, config: AlignConfig, *, overwrite: bool = False) -> None:
    """``--out`` must be a folder of its own: not the source, not inside it, not holding it (the listing or
    the output would change under the other), and, unless ``overwrite`` (which replaces it), not a file
    and, when it exists, empty or a ``data align`` run (a folder holding anything else is refused rather
    than mixed into)."""
    target, source = os.path.realpath(out), os.path.realpath(src)
    if target == source:
        raise FacebenchError(f"{out}: is the photo folder being aligned; choose another --out")
    if target.startswith(source.rstrip(os.sep) + os.sep):
        raise FacebenchError(f"{out}: lies inside the photo folder being aligned ({src}); choose an --out outside it")
    if source.startswith(target.rstrip(os.sep) + os.sep):
        raise FacebenchError(f"{out}: holds the photo folder being aligned ({src}); choose another --out")
    if not os.path.lexists(out) or overwrite:
        return
    if not out.is_dir():
        raise FacebenchError(f"{out}: exists and is not a folder; choose another --out")
    manifest = out / MANIFEST
    if os.path.lexists(manifest):
        job = _read_manifest(manifest)["params"].get("job")
        if job != JOB:
            raise FacebenchError(f"{out}: holds a run of another command (its {MANIFEST} is not a data align "
                                 "run's); choose another --out")
        return
    own = {CONFIG, PROVENANCE, DATASET_CARD, OUTCOMES, SHARD_DIR, config.dataset_name}
    foreign = sorted(p.name for p in out.iterdir() if p.name not in own and not p.name.startswith("."))
    if foreign:
        shown = ", ".join(shown_name(n) for n in foreign[:2]) + (", ..." if len(foreign) > 2 else "")
        raise FacebenchError(f"{out}: exists and holds other files ({shown}) but no data align run "
                             "(no manifest.json); choose another --out or empty it")


def done_shards(job: AlignJob) -> set[int]:
    """Shards the manifest records as done with these parameters whose staged file exists."""
    path = job.out / MANIFEST
    if not path.is_file():
        return set()
    saved = _read_manifest(path)
    if saved["params"] != job.normalised_params():
        return set()  # ShardManifest names the differing keys
    return {k for k in saved["done"] if job.shard_path(k).is_file()}


def _prefetched(fn: Callable[[Any], Any], items: Iterable[Any], pool: ThreadPoolExecutor, window: int) -> Iterator[Any]:
    """``fn(item)`` for each item in order, at most ``window`` computed ahead on ``pool`` (reading and
    decoding release the GIL while the detector runs)."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) > window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def align_shard(job: AlignJob, detector: Any, shard: int, *, pool: ThreadPoolExecutor,
                on_photo: Callable[[], None] | None = None) -> StagedShard:
    """The outcomes and encoded crops of one shard's photos."""
    root, cfg = job.photos.root, job.config

    def load(index: int) -> tuple[Any, np.ndarray | None, str, str]:
        from .photos import read_photo

        photo = job.photos.photos[index]
        path = confined(root, photo)  # always an error: the photos are the folder's own
        try:
            digest = sha256_file(path)
        except OSError as exc:
            digest = ""
            problem = f"cannot read the photo ({exc.strerror or exc})"
        else:
            try:
                return photo, read_photo(path), digest, ""
            except DataError as exc:
                problem = exc.problem
        if not cfg.skip_unreadable:
            raise DataError(shown_name(os.fspath(path)), f"{problem}; remove or replace it, or pass --skip-unreadable "
                                                         "to record it and go on (finished shards are kept)")
        return photo, None, digest, problem

    records, crops = [], []
    span = job.shard_range(shard)
    for photo, image, digest, problem in _prefetched(load, span, pool, window=4):
        if image is None:
            outcome, crop = Outcome(UNREADABLE, note=problem), None
        else:
            outcome, crop = photo_outcome(detector, image, cfg.size, name=job.detector,
                                          photo=shown_name(os.fspath(photo.path)))
        outcome.sha256 = digest
        records.append(outcome.as_record())
        if crop is not None:
            crops.append(encode_image(crop, cfg.image_encoding, cfg.jpeg_quality))
        if on_photo is not None:
            on_photo()
    return StagedShard(first=span.start, records=records, crops=crops)


def write_staged(path: Path, staged: StagedShard) -> None:
    import msgpack

    payload = msgpack.packb({"first": staged.first, "records": staged.records, "crops": staged.crops},
                            use_bin_type=True)
    atomic.write_bytes(path, payload, "aligned shard")


_REDO = "delete it and rerun the same command to redo it"
_RECORD_TYPES = {"outcome": str, "faces": int, "sha256": str, "note": str, "score": (float, type(None)),
                 "box": list, "landmarks": list}


def read_staged(path: Path, first: int, count: int) -> StagedShard:
    """A staged shard, checked: msgpack holds data only, but a truncated file or one of another shape is one
    error naming it."""
    import msgpack

    try:
        data = msgpack.unpackb(path.read_bytes(), raw=False)
    except FileNotFoundError:
        raise DataError(path, "staged shard is missing; rerun the same command to redo it") from None
    except (ValueError, TypeError) as exc:
        raise DataError(path, f"staged shard is unreadable ({first_line(exc)}); {_REDO}") from None
    expect(path, data, dict, "staged shard")
    records = expect(path, data.get("records"), list, "records")
    crops = expect(path, data.get("crops"), list, "crops")
    if data.get("first") != first or len(records) != count:
        raise DataError(path, f"staged shard holds other photos than photos {first}..{first + count - 1}; {_REDO}")
    kept = 0
    for k, record in enumerate(records):
        expect(path, record, dict, f"records[{k}]")
        for key, types in _RECORD_TYPES.items():
            value = record.get(key)
            if not isinstance(value, types) or isinstance(value, bool):
                raise DataError(path, f"staged shard's record {k} has no valid {key}; {_REDO}")
        if record["outcome"] not in OUTCOME_NAMES or record["faces"] < 0 or len(record["box"]) not in (0, 4) \
                or len(record["landmarks"]) not in (0, 10) or (record["outcome"] in KEEPS_CROP and not record["box"]) \
                or not all(isinstance(v, float) and np.isfinite(v) for v in [*record["box"], *record["landmarks"]]):
            raise DataError(path, f"staged shard's record {k} is malformed; {_REDO}")
        kept += record["outcome"] in KEEPS_CROP
    if kept != len(crops) or not all(isinstance(c, bytes) for c in crops):
        raise DataError(path, f"staged shard holds {len(crops)} crops for {kept} kept faces; {_REDO}")
    return StagedShard(first=first, records=records, crops=crops)


def run_shards(job: AlignJob, detector: Any, *, progress: Any = None) -> list[int]:
    """Align the unfinished shards; returns the shards aligned in this call."""
    done = done_shards(job)  # first: the manifest is read strictly (one line if tampered)
    manifest = ShardManifest(job.out / MANIFEST, job.params())
    todo = [s for s in range(job.num_shards) if s not in done]
    task = None
    if progress is not None:
        task = progress.add_task("aligning", total=job.num_photos)
        progress.advance(task, job.num_photos - sum(len(job.shard_range(s)) for s in todo))
    if todo:
        atomic.refuse_link(job.out / SHARD_DIR, "aligned shards")
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for shard in todo:
            staged = align_shard(job, detector, shard, pool=pool,
                                 on_photo=(lambda: progress.advance(task, 1)) if task is not None else None)
            write_staged(job.shard_path(shard), staged)
            counts = {name: sum(r["outcome"] == name for r in staged.records) for name in OUTCOME_NAMES}
            manifest.mark_done(shard, {"photos": len(staged.records), **counts})
    return todo


def _staged(job: AlignJob, shard: int) -> StagedShard:
    span = job.shard_range(shard)
    return read_staged(job.shard_path(shard), span.start, len(span))


def _number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _rows(job: AlignJob, labels: dict[int, int]) -> Iterator[tuple[list[Any], str, bytes | None, int | None]]:
    """Every photo's ``outcomes.csv`` row, outcome, crop and label, in order, read from the staged shards;
    ``index`` counts the crops kept so far (a crop's position in the dataset)."""
    photos, written = job.photos.photos, 0
    for shard in range(job.num_shards):
        staged = _staged(job, shard)
        crops = iter(staged.crops)
        for k, record in enumerate(staged.records):
            photo = photos[staged.first + k]
            identity = photo.label
            outcome, crop, label, index = record["outcome"], None, None, None
            if outcome in KEEPS_CROP:
                crop, label, index = next(crops), labels[identity], written
                written += 1
            box = record["box"] or [None] * 4
            row = [shown_name(photo.name), shown_name(job.photos.identities[identity]), outcome, record["faces"],
                   "" if label is None else label, "" if index is None else index, _number(record["score"], 4),
                   *(_number(v, 2) for v in box), " ".join(f"{v:.3f}" for v in record["landmarks"]),
                   record["sha256"], shown_name(record["note"])]
            yield row, outcome, crop, label


@contextlib.contextmanager
def _outcomes_table(job: AlignJob) -> Iterator[Any]:
    """A csv writer of ``outcomes.csv`` (header written) that appears when the block completes."""
    with atomic.atomic_path(atomic.refuse_link(job.out / OUTCOMES, "outcomes"), "outcomes") as tmp, \
            open(tmp, "w", encoding="utf-8", newline="") as fh:
        table = csv.writer(fh, lineterminator="\n")
        table.writerow(CSV_COLUMNS)
        yield table


def assemble(job: AlignJob, format_obj: Any, *, progress: Any = None) -> dict[str, Any]:
    """Write the kept crops, in order, through the format's writer with ``outcomes.csv`` beside them, then,
    last, ``dataset.json``. Two passes over the staged shards: the first finds the identities that keep a
    crop (their labels), the second writes."""
    missing = [s for s in range(job.num_shards) if not job.shard_path(s).is_file()]
    if missing:
        raise FacebenchError(f"{job.out}: shards {missing[:5]} are not aligned yet; rerun to finish them")
    atomic.refuse_link(job.dataset_path, "dataset")
    photos = job.photos.photos
    keeping: set[int] = set()
    for shard in range(job.num_shards):
        staged = _staged(job, shard)
        keeping |= {photos[staged.first + k].label for k, r in enumerate(staged.records) if r["outcome"] in KEEPS_CROP}
    labels = {identity: label for label, identity in enumerate(sorted(keeping))}
    if not labels:  # the outcomes say why; there is no set to write
        with _outcomes_table(job) as table:
            for row, *_ in _rows(job, labels):
                table.writerow(row)
        raise FacebenchError(f"{shown_name(os.fspath(job.photos.root))}: no face was kept from any of its {job.num_photos} photos; "
                             f"{job.out / OUTCOMES} lists each photo's outcome")
    if os.path.lexists(job.dataset_path):  # left by a run killed after writing the dataset, before its card
        if job.dataset_path.is_dir():
            shutil.rmtree(job.dataset_path)
        else:
            job.dataset_path.unlink()
    options: dict[str, Any] = {}
    if "overwrite" in inspect.signature(format_obj.writer).parameters:
        options["overwrite"] = True  # side files of an interrupted assembly (a .idx) are ours
    counts = dict.fromkeys(OUTCOME_NAMES, 0)
    written = 0
    task = progress.add_task("writing dataset", total=job.num_photos) if progress is not None else None
    with _outcomes_table(job) as table, format_obj.writer(job.dataset_path, **options) as writer:
        for row, outcome, crop, label in _rows(job, labels):
            counts[outcome] += 1
            if crop is not None:
                writer.add(crop, label)
                written += 1
            table.writerow(row)
            if task is not None:
                progress.advance(task, 1)
    if callable(getattr(format_obj, "detect", None)) and not format_obj.detect(job.dataset_path):
        raise FacebenchError(f"{job.dataset_path}: format '{job.config.format}' does not recognise what it wrote "
                             "under this name")
    from ..provenance import sha256_file, sha256_path

    summary = {
        "dataset": job.dataset_path.name,
        "sha256": sha256_path(job.dataset_path),  # as train-fr records it: reports match models to it
        "format": job.config.format,
        "identities": len(labels),
        "images": written,
        "size": job.config.size,
        "aligned_by": JOB,
        "detector": job.detector,
        "detector_info": job.detector_info,
        "source": job.listing,
        "outcomes": counts,
        "identities_without_face": len(job.photos.identities) - len(labels),
        "outcomes_file": OUTCOMES,
        "outcomes_sha256": sha256_file(job.out / OUTCOMES),
        "settings": {k: v for k, v in asdict(job.config).items() if k not in ("keep_shards", "skip_unreadable")},
    }
    atomic.write_json(job.card_path, summary, "dataset card")
    if not job.config.keep_shards:
        shutil.rmtree(job.out / SHARD_DIR, ignore_errors=True)
    return summary


def card_problem(job: AlignJob, format_obj: Any) -> DataError | None:
    """Why a finished-looking run is not complete, as an error naming the file at fault, or None: the card
    must be readable and describe this run's set and outcomes as they are on disk, and the manifest must
    record every shard as done."""
    from ..provenance import sha256_file, sha256_path

    path = job.card_path
    try:
        card = read_json(path, what="dataset card")
        name = expect(path, card.get("dataset"), str, "dataset")
        if name != job.dataset_path.name:
            return DataError(path, f"names the set '{shown_name(name)}', this run's is '{job.dataset_path.name}'")
        if not job.dataset_path.exists():
            return DataError(path, f"the set it names, {name}, is missing")
        for key in ("images", "identities"):
            expect(path, card.get(key), int, key)
        reader = format_obj.open(job.dataset_path)
        try:
            on_disk = (len(reader), int(reader.num_classes))
        finally:
            getattr(reader, "close", lambda: None)()
        if on_disk != (card["images"], card["identities"]):
            return DataError(path, f"{name} holds {on_disk[0]} images of {on_disk[1]} identities on disk, the card "
                                   f"says {card['images']} of {card['identities']}")
        if sha256_path(job.dataset_path) != expect(path, card.get("sha256"), str, "sha256"):
            return DataError(path, f"{name} on disk no longer has the sha256 the card records (it changed after "
                                   "it was written)")
        outcomes = job.out / OUTCOMES
        if not outcomes.is_file() or sha256_file(outcomes) != expect(path, card.get("outcomes_sha256"), str,
                                                                     "outcomes_sha256"):
            return DataError(path, f"{OUTCOMES} is missing or no longer has the sha256 the card records")
        manifest = job.out / MANIFEST
        if not manifest.is_file():
            return DataError(manifest, f"is missing, though {DATASET_CARD} says the dataset is complete")
        recorded = _read_manifest(manifest)["done"]
    except DataError as exc:
        return exc
    missing = sorted(set(range(job.num_shards)) - recorded)
    if missing:
        return DataError(manifest, f"does not record shard {missing[0]} as done, though {DATASET_CARD} says the "
                                   "dataset is complete")
    return None


# ------------------------------------------------------------------------------------- one command


@dataclass
class AlignRequest:
    """What to align and with what: the command line's choices that are not config keys."""

    src: Path
    out: Path
    detector: str
    weights: str | None = None
    detector_options: tuple[str, ...] = ()  # KEY=VALUE keyword options of the detector
    untrained: bool = False
    device: str = "auto"
    overwrite: bool = False  # replace an --out made with other parameters (facebench.rerun)


@dataclass
class AlignOutcome:
    job: AlignJob
    summary: dict[str, Any]
    aligned: list[int]  # shards aligned in this call
    already_complete: bool = False


def _refuse_or_reassemble(job: AlignJob, problem: DataError) -> None:
    """A finished-looking run whose card does not check out: re-assembled from its staged shards when they
    are all there (the card removed first), else refused naming the file."""
    from ..console import warn

    card = job.card_path
    if card.is_dir() and not card.is_symlink():
        raise DataError(problem.path, f"{problem.problem}; remove the folder {card} (the run writes its dataset card "
                                      "there)", problem.where)
    staged = len(done_shards(job) & set(range(job.num_shards)))
    if staged < job.num_shards:
        left = f"only {staged} of {job.num_shards} staged shards are left" if staged else "the staged shards are gone"
        raise DataError(problem.path, f"{problem.problem}; {left}, so the dataset cannot be re-assembled: delete "
                                      f"{card.name} and {job.dataset_path.name} to align again, or choose another "
                                      "--out", problem.where)
    warn(f"{problem}; re-assembling the dataset from the staged shards")
    card.unlink(missing_ok=True)


def run_align(request: AlignRequest, config: AlignConfig, *, progress: Any = None) -> AlignOutcome:
    """Align (or resume, or confirm) the dataset the request and config describe. Every check that can
    come first does (the source's layout, ``--out``, the format, the detector and its weights) before the
    run folder is made; a run that fails before its first shard leaves no folder behind."""
    from ..config import parse_override
    from ..pluginmanager import registry
    from ..rerun import FINISHED, Rerun
    from ..runs import Run, discard_on_failure
    from ..runtime import choose_device
    from .photos import resolve_detector

    photos = list_photos(request.src, flat=config.flat)
    check_out(request.out, request.src, config, overwrite=request.overwrite)
    format_obj = registry("format").get(config.format).create()
    if getattr(format_obj, "role", "train") != "train":
        raise FacebenchError(f"--format {config.format}: writes {format_obj.role} sets, not labelled training sets "
                             f"(see: facebench plugins --kind format)")
    plain_name(config.dataset_name, "--format", reserved=RUN_FILES)  # a format named like a run file
    weights, record = resolve_detector(request.detector, request.weights, option="--weights")
    options = {".".join(keys): value for keys, value in map(parse_override, request.detector_options)}
    if options:
        record["options"] = options
    listing = listing_record(photos)
    device = str(choose_device(request.device))
    detector = registry("detector").create(request.detector, weights=str(weights) if weights else None,
                                           device=device, **options)
    job = AlignJob(out=request.out, config=config, photos=photos, listing=listing, detector=request.detector,
                   detector_info=record)
    atomic.refuse_link(job.out / SHARD_DIR, "aligned shards")
    atomic.refuse_link(job.dataset_path, "dataset")
    rerun = Rerun(job.out, command="data align", params=job.params(), what="dataset",
                  outputs=[DATASET_CARD, job.dataset_path.name, OUTCOMES], overwrite=request.overwrite)
    if rerun.check() == FINISHED:
        return AlignOutcome(job, read_json(job.card_path, what="dataset card"), [], already_complete=True)
    inputs = {"weights": weights} if weights else {}
    start = {"config": config, "device": device, "inputs": inputs, "rerun": rerun,
             "extra": {"source": {"path": shown_name(os.fspath(request.src)), **job.listing}}}
    if job.is_finished():  # a card written, its record not finished (a kill), or its files changed since
        problem = card_problem(job, format_obj)
        if problem is None:  # the dataset checks out: only the record was left to write
            rerun.finish(Run.start(request.out, **start))
            return AlignOutcome(job, read_json(job.card_path, what="dataset card"), [])
        _refuse_or_reassemble(job, problem)
    with discard_on_failure(request.out):  # failing before its first shard, it leaves no run folder
        request.out.mkdir(parents=True, exist_ok=True)
        run = Run.start(request.out, **start)
        aligned = run_shards(job, detector, progress=progress)
    summary = assemble(job, format_obj, progress=progress)
    rerun.finish(run)
    return AlignOutcome(job, summary, aligned)


def summary_line(counts: dict[str, int]) -> str:
    """``aligned N, no face M, several faces K (kept the largest near the centre)`` (and the rarer outcomes
    when there are any)."""
    line = (f"aligned {counts.get(ALIGNED, 0)}, no face {counts.get(NO_FACE, 0)}, several faces "
            f"{counts.get(SEVERAL, 0)} (kept the largest near the centre)")
    if counts.get(UNALIGNABLE):
        line += f", unalignable {counts[UNALIGNABLE]} (degenerate landmarks)"
    if counts.get(UNREADABLE):
        line += f", unreadable {counts[UNREADABLE]} (skipped)"
    return line


__all__ = ["AlignConfig", "AlignJob", "AlignOutcome", "AlignRequest", "detections_of", "list_photos",
           "listing_record", "photo_outcome", "run_align", "summary_line"]
