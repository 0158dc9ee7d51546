"""Sharded, resumable dataset generation from identity vectors with any registered generator.

A generation run directory holds ``ids.npy`` (the identity vectors), one staged file per finished shard
(``shards/shard-NNNNN.msgpack``, written atomically and recorded in ``manifest.json`` through
:class:`facebench.shards.ShardManifest`), and, once every shard is done, the dataset written through the
registered format's writer plus ``dataset.json``. Every shard draws its randomness from (seed, shard)
alone, so a run killed at any point and resumed produces the same bytes as an uninterrupted one. Under
torchrun each rank takes every world-size-th shard and keeps its own manifest; rank 0 assembles,
reading the next shard while it writes one (the format writers write one file, so this step is serial).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic
from ..config import plain_name
from ..data.images import encode_image
from ..data.tensors import to_uint8
from ..errors import ConfigError, DataError, FacebenchError, first_line
from ..provenance import sha256_path
from ..runs import CONFIG, DATASET_CARD, PROVENANCE
from ..safe_load import expect, read_json
from ..shards import ShardManifest, read_manifest
from .perturbation import PerturbConfig, perturb, sigma_plan
from .pose import ASSIGNMENT, pose_indices

SHARD_DIR = "shards"
IDS_FILE = "ids.npy"
MANIFEST = "manifest.json"
#: The run folder's own files (``manifest*``: every rank's manifest and its journal): a dataset may not
#: take one of these names.
RUN_FILES = (CONFIG, PROVENANCE, DATASET_CARD, IDS_FILE, SHARD_DIR, "manifest*")


@dataclass
class GenerationConfig:
    """How a dataset is generated; everything here is part of the resume check."""

    images_per_id: int = 50
    ids_per_shard: int = 100
    batch_size: int = 50
    seed: int = 0
    format: str = "folder"
    dataset_name: str = ""  # default "dataset.<format>", e.g. dataset.folder, dataset.lmdb
    image_encoding: str = "jpg"  # "jpg" or "png"
    jpeg_quality: int = 95
    keep_shards: bool = False
    rescale_ids: bool = False  # scale identity vectors to the generator's input norm instead of refusing
    perturb: PerturbConfig = field(default_factory=PerturbConfig)

    def __post_init__(self) -> None:
        for key in ("images_per_id", "ids_per_shard", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"generation: {key} must be >= 1, got {getattr(self, key)}")
        if self.image_encoding not in ("jpg", "png"):
            raise ConfigError(f"generation: image_encoding must be 'jpg' or 'png', got '{self.image_encoding}'")
        if not 1 <= self.jpeg_quality <= 100:
            raise ConfigError(f"generation: jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        # the dataset's name inside the run folder (given, or derived from the format): checked before
        # anything is written, so it can neither leave the folder nor replace one of the run's own files
        key = "generation.dataset_name" if self.dataset_name else "generation.format"
        plain_name(self.dataset_name or f"dataset.{self.format}", key, reserved=RUN_FILES)


def shard_seed(seed: int, shard: int) -> int:
    """A 63-bit seed that depends only on (seed, shard), so any shard can be redone alone."""
    state = np.random.SeedSequence([int(seed), int(shard)]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def seed_shard(generator: Any, seed: int) -> Any:
    """Seed every random source a generator may draw from, so a shard depends only on (seed, shard):
    Python's, numpy's and torch's global RNGs (CPU and every CUDA device), and the generator's own
    (``reseed``, ``manual_seed`` or an ``rng`` attribute) when it has one. Returns a ``torch.Generator``
    seeded the same way, for generators whose ``generate`` accepts ``generator=``."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if callable(getattr(generator, "reseed", None)):
        generator.reseed(seed)
    elif callable(getattr(generator, "manual_seed", None)):
        generator.manual_seed(seed)
    elif isinstance(getattr(generator, "rng", None), torch.Generator):
        generator.rng.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def accepts_generator(generator: Any) -> bool:
    """Whether ``generator.generate`` names a ``generator=`` keyword (a per-shard torch RNG)."""
    try:
        params = inspect.signature(generator.generate).parameters
    except (TypeError, ValueError):
        return False
    return "generator" in params


def load_identity_vectors(path: str | os.PathLike, feature_dim: int | None = None) -> np.ndarray:
    """Identity vectors from a ``.npy`` (N, D) file, checked against the generator's input width."""
    from .sampling import load_feature_matrix

    ids = load_feature_matrix(path, what="identity vectors")
    if feature_dim is not None and ids.shape[1] != feature_dim:
        raise DataError(path, f"identity vectors have {ids.shape[1]} dimensions, the generator expects {feature_dim}")
    zero = np.flatnonzero(np.linalg.norm(ids, axis=1) == 0)
    if zero.size:
        raise DataError(path, "identity vector is all zeros", f"row {int(zero[0])}")
    return ids.astype(np.float32)


def identity_scale(identities: np.ndarray, expected: dict[str, Any] | None, *, rescale: bool,
                   source: str) -> tuple[float, dict[str, Any]]:
    """The factor the identity vectors are multiplied by before generation, and the record of the check.

    A generator trained on one feature scale gets faint or broken faces from another (the released
    Vec2Face saw raw ArcFace features of norm ~22; unit vectors are 20x too small). ``expected`` is the
    generator's ``input_scale`` (``median_norm``, ``low``, ``high``, ``source``), or None when it has no
    such contract. Out of range is an error naming both norms unless ``rescale``, which scales every
    vector by one factor to the generator's median norm (their directions, hence identities, are kept).
    """
    norms = np.linalg.norm(np.asarray(identities, dtype=np.float64), axis=1)
    median = float(np.median(norms)) if len(norms) else float("nan")
    record: dict[str, Any] = {"ids_median_norm": round(median, 6), "generator": expected, "factor": 1.0}
    if expected is None or expected["low"] <= median <= expected["high"]:
        return 1.0, record
    target = float(expected["median_norm"])
    if not rescale:
        raise FacebenchError(
            f"{source}: identity vectors have median norm {median:.4g} but the generator expects norm "
            f"{target:.4g} (range {expected['low']:.4g} to {expected['high']:.4g}; {expected['source']}); "
            f"use features of the same scale (facebench embed --raw gives raw features) or pass --rescale-ids "
            f"to scale them by {target / median:.4g}")
    record["factor"] = target / median
    return target / median, record


def array_sha256(array: np.ndarray) -> str:
    a = np.ascontiguousarray(array)
    digest = hashlib.sha256(str((a.dtype.str, a.shape)).encode())
    digest.update(a.tobytes())
    return digest.hexdigest()


@dataclass
class ShardResult:
    labels: list[int]
    images: list[bytes]
    stats: dict[str, Any]


def generate_shard(
    generator: Any,
    identities: np.ndarray,
    first_label: int,
    shard: int,
    config: GenerationConfig,
    *,
    attrop: Any = None,
    prepass: Any = None,
    device: str = "cpu",
    sigmas: np.ndarray | None = None,
    on_images: Callable[[int], None] | None = None,
    landmarks: Any = None,
) -> ShardResult:
    """Images of one shard: the identity pre-pass (optional, as the release runs it: AttrOP on the identity
    vectors themselves), perturb (``sigmas``: this shard's slice of the whole set's sigma plan), optionally
    AttrOP, generate in batches, encode. ``landmarks``: the run's P landmark images as the generator takes
    them; each image gets the one :func:`~facebench.generation.pose.pose_indices` assigns to its index."""
    import torch

    s_seed = shard_seed(config.seed, shard)
    rng = np.random.default_rng(s_seed)
    m = config.images_per_id
    stats: dict[str, Any] = {}
    if prepass is not None:
        seed_shard(generator, s_seed ^ 0x1D1D)
        identities, stats["prepass"] = prepass.apply(generator, identities, identities, 1, rng, device=device)
    pert = perturb(identities, m, rng, config.perturb, sigmas=sigmas)
    vectors = pert.vectors
    stats["perturb"] = pert.summary()
    if attrop is not None:
        seed_shard(generator, s_seed ^ 0x5EED)
        vectors, attrop_stats = attrop.apply(generator, identities, vectors, m, rng, device=device)
        stats["attrop"] = attrop_stats
    torch_rng = seed_shard(generator, s_seed)
    options = {"generator": torch_rng} if accepts_generator(generator) else {}
    labels = np.repeat(np.arange(first_label, first_label + len(identities)), m)
    # Encoding runs on a thread pool (the codecs release the GIL) while the device makes the next batch.
    pending: list[Any] = []
    with ThreadPoolExecutor(max_workers=encode_workers()) as pool:
        for start in range(0, len(vectors), config.batch_size):
            batch = torch.from_numpy(vectors[start:start + config.batch_size]).to(device)
            if landmarks is not None:
                index = pose_indices(first_label * m + start, len(batch), len(landmarks))
                options["landmarks"] = landmarks[torch.from_numpy(index)].to(device)
            with torch.no_grad():
                images = generator.generate(batch, **options)
            pixels = to_uint8(images)
            pending += [pool.submit(encode_image, p, config.image_encoding, config.jpeg_quality) for p in pixels]
            if on_images is not None:
                on_images(len(pixels))
        encoded = [f.result() for f in pending]
    return ShardResult(labels=[int(x) for x in labels], images=encoded, stats=stats)


def encode_workers() -> int:
    """Threads that encode generated images (``FACEBENCH_ENCODE_THREADS``, default up to 8)."""
    text = os.environ.get("FACEBENCH_ENCODE_THREADS", "")
    return max(1, int(text)) if text.strip().isdigit() else min(8, os.cpu_count() or 1)


def _shard_path(out: Path, shard: int) -> Path:
    return out / SHARD_DIR / f"shard-{shard:05d}.msgpack"


def write_shard(path: Path, result: ShardResult) -> None:
    import msgpack

    payload = msgpack.packb({"labels": result.labels, "images": result.images, "stats": result.stats},
                            use_bin_type=True)
    atomic.write_bytes(path, payload, "generated shard")


_REDO = "delete it and rerun the same command to regenerate it"


def read_shard(path: Path, labels: list[int] | None = None) -> ShardResult:
    """A staged shard, checked: msgpack holds data only, but a truncated file or one of another shape
    (wrong types, another count) is one error naming it. ``labels``: what the shard must hold."""
    import msgpack

    try:
        data = msgpack.unpackb(path.read_bytes(), raw=False)
    except FileNotFoundError:
        raise DataError(path, "staged shard is missing; rerun the same command to regenerate it") from None
    except (ValueError, TypeError) as exc:  # msgpack's errors (truncated, extra data, bad format) are ValueErrors
        raise DataError(path, f"staged shard is unreadable ({first_line(exc)}); {_REDO}") from None
    expect(path, data, dict, "staged shard")
    missing = [k for k in ("labels", "images", "stats") if k not in data]
    if missing:
        raise DataError(path, f"staged shard has no {', '.join(missing)}; {_REDO}")
    found, images, stats = (expect(path, data[k], t, k) for k, t in (("labels", list), ("images", list),
                                                                    ("stats", dict)))
    if not all(type(x) is int for x in found) or not all(isinstance(x, bytes) for x in images):
        raise DataError(path, f"staged shard must hold integer labels and encoded images (bytes); {_REDO}")
    if not all(isinstance(v, dict) and all(isinstance(x, int | float) and not isinstance(x, bool)
                                           for x in v.values()) for v in stats.values()):
        raise DataError(path, f"staged shard's stats must be tables of numbers; {_REDO}")
    if len(found) != len(images):
        raise DataError(path, f"staged shard has {len(found)} labels for {len(images)} images; {_REDO}")
    if labels is not None and found != labels:
        raise DataError(path, f"staged shard holds {len(found)} images of other labels than its "
                              f"{len(labels)} (identities {labels[0]}..{labels[-1]}); {_REDO}")
    return ShardResult(labels=found, images=images, stats=stats)


def _manifest_name(rank: int, world: int) -> str:
    return MANIFEST if world == 1 else f"manifest-rank{rank}.json"


def _read_manifest(path: Path) -> dict[str, Any]:
    """A shard manifest of the run (``params`` and ``done`` by shard number), read strictly: besides what
    :func:`~facebench.shards.read_manifest` refuses (not UTF-8 JSON, ``params`` or ``done`` not objects),
    a manifest without ``params`` or whose ``done`` names something other than a shard number is one error
    naming it (never skipped: the run's state is in it)."""
    saved = read_manifest(path)
    expect(path, saved.get("params"), dict, "params")
    done = expect(path, saved.get("done"), dict, "done")
    bad = [k for k in done if not (isinstance(k, str) and k.isascii() and k.isdigit())]
    if bad:
        raise DataError(path, f"done must list shard numbers, found '{bad[0]}'")
    return {"params": saved["params"], "done": {int(k): v for k, v in done.items()}}


def _manifests(out: Path) -> list[Path]:
    return sorted(out.glob("manifest*.json"))


def _done_shards(out: Path, params: dict[str, Any]) -> set[int]:
    """Shards recorded as done by any manifest in ``out`` (any earlier world size) whose file exists."""
    normalised = json.loads(json.dumps(params, default=str))
    done: set[int] = set()
    for path in _manifests(out):
        saved = _read_manifest(path)
        if saved["params"] != normalised:
            continue  # the owning rank's ShardManifest names the differing keys
        done |= {k for k in saved["done"] if _shard_path(out, k).is_file()}
    return done


@dataclass
class GenerationJob:
    """One generation run directory and everything that must stay equal across resumes."""

    out: Path
    config: GenerationConfig
    generator_name: str
    generator_info: dict[str, Any]
    identities: np.ndarray
    ids_source: dict[str, Any]
    attrop_info: dict[str, Any] | None = None
    input_scale: float = 1.0  # factor applied to every identity vector (see identity_scale)
    scale_info: dict[str, Any] | None = None
    #: the landmark images of a pose-conditioned run (``--pose-landmarks``; see facebench.generation.pose)
    pose: Any = field(default=None, repr=False, compare=False)
    _sigma_plan: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    _pose_record: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def num_ids(self) -> int:
        return int(len(self.identities))

    @property
    def num_shards(self) -> int:
        return -(-self.num_ids // self.config.ids_per_shard)

    @property
    def dataset_path(self) -> Path:
        return self.out / (self.config.dataset_name or f"dataset.{self.config.format}")

    def pose_record(self) -> dict[str, Any] | None:
        """What ``dataset.json`` records of the landmark images: where they came from, each pose (its
        sha256, its points when drawn) and the rule that assigns them (None without ``--pose-landmarks``)."""
        if self.pose is None:
            return None
        if self._pose_record is None:
            self._pose_record = {**self.pose.record(), "count": len(self.pose), "assignment": ASSIGNMENT}
        return self._pose_record

    def params(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        cfg.pop("keep_shards")
        params = {
            "generator": self.generator_name,
            "generator_info": self.generator_info,
            "ids_sha256": array_sha256(self.identities),
            "ids_source": self.ids_source,
            "input_scale": self.input_scale,
            "config": cfg,
            "attrop": self.attrop_info,
        }
        if self.pose is not None:  # only then: runs without poses keep the parameters they always had
            params["pose_landmarks"] = self.pose_record()
        return params

    def shard_ids(self, shard: int) -> tuple[np.ndarray, int]:
        """The identity vectors of one shard (times ``input_scale``) and the label of the first."""
        first = shard * self.config.ids_per_shard
        ids = self.identities[first:first + self.config.ids_per_shard]
        return (ids * np.float32(self.input_scale) if self.input_scale != 1.0 else ids), first

    def shard_sigmas(self, shard: int) -> np.ndarray:
        """This shard's slice of the sigma plan of the whole set (drawn once from the run's seed alone,
        so every shard, on any rank and after any resume, sees the same plan)."""
        if self._sigma_plan is None:
            rng = np.random.default_rng(np.random.SeedSequence([int(self.config.seed), 0x5161A]))
            self._sigma_plan = sigma_plan(self.num_ids * self.config.images_per_id, self.config.perturb, rng)
        ids, first = self.shard_ids(shard)
        m = self.config.images_per_id
        return self._sigma_plan[first * m:(first + len(ids)) * m]

    @property
    def card_path(self) -> Path:
        return self.out / DATASET_CARD

    def is_finished(self) -> bool:
        """Whether the run says it is finished: ``dataset.json`` is written last, so its presence (any
        file, a link or a folder too) claims a complete dataset; :meth:`card_problem` checks the claim."""
        return os.path.lexists(self.card_path)

    def finished_shards(self) -> set[int]:
        """Shards a manifest in the run directory records as done with these parameters."""
        return _done_shards(self.out, self.params())

    def refuse_links(self) -> None:
        """The fixed names this run reopens or replaces (the staged shards' folder, the dataset) must be
        its own, never symbolic links planted to send its writes elsewhere (the manifests' journals are
        refused by :class:`~facebench.shards.ShardManifest` itself)."""
        atomic.refuse_link(self.out / SHARD_DIR, "generated shards")
        atomic.refuse_link(self.dataset_path, "dataset")

    def card_problem(self, format_obj: Any) -> DataError | None:
        """Why the finished-looking run is not complete, as an error naming the file at fault, or None.

        ``dataset.json`` must be readable (UTF-8 JSON, fields of the right types) and describe this run's
        dataset: the set it names exists, and that set on disk, opened with the format, has the card's
        image and identity counts and sha256; the manifests record every shard as done."""
        card_path = self.card_path
        try:
            card = read_json(card_path, what="dataset card")
            name = expect(card_path, card.get("dataset"), str, "dataset")
            if name != self.dataset_path.name:
                return DataError(card_path, f"names the set '{name}', this run's is '{self.dataset_path.name}'")
            if not self.dataset_path.exists():
                return DataError(card_path, f"the set it names, {name}, is missing")
            wanted = {"format": self.config.format, "identities": self.num_ids,
                      "images": self.num_ids * self.config.images_per_id, "ids_sha256": array_sha256(self.identities)}
            for key, value in wanted.items():
                if expect(card_path, card.get(key), type(value), key) != value:
                    return DataError(card_path, f"{key} is {card[key]}, this run's is {value}")
            recorded = expect(card_path, card.get("sha256"), str, "sha256")
            reader = format_obj.open(self.dataset_path)
            try:
                on_disk = (len(reader), int(reader.num_classes))
            finally:
                getattr(reader, "close", lambda: None)()
            if on_disk != (wanted["images"], wanted["identities"]):
                return DataError(card_path, f"{name} holds {on_disk[0]} images of {on_disk[1]} identities on "
                                            f"disk, the card says {wanted['images']} of {wanted['identities']}")
            if sha256_path(self.dataset_path) != recorded:
                return DataError(card_path, f"{name} on disk no longer has the sha256 the card records (it "
                                            "changed after it was written)")
            manifests = _manifests(self.out)
            if not manifests:
                return DataError(self.out / MANIFEST, f"is missing, though {DATASET_CARD} says the dataset is "
                                                      "complete")
            params = json.loads(json.dumps(self.params(), default=str))
            # the staged files may be gone (removed once the dataset is assembled): the record is what counts
            recorded = {k for path in manifests for saved in [_read_manifest(path)]
                        if saved["params"] == params for k in saved["done"]}
        except DataError as exc:
            return exc
        missing = sorted(set(range(self.num_shards)) - recorded)
        if missing:
            return DataError(manifests[0], f"does not record shard {missing[0]} as done, though {DATASET_CARD} "
                                           "says the dataset is complete")
        return None



def save_ids(out: Path, identities: np.ndarray) -> Path:
    path = out / IDS_FILE
    with atomic.atomic_path(path, "identity vectors") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(identities, dtype=np.float32), allow_pickle=False)
    return path


def run_shards(job: GenerationJob, generator: Any, *, attrop: Any = None, prepass: Any = None,
               device: str = "cpu", rank: int = 0, world: int = 1, progress: Any = None) -> list[int]:
    """Generate this rank's unfinished shards; returns the shards it generated."""
    params = job.params()
    done = _done_shards(job.out, params)  # first: every manifest is read strictly (one line if tampered)
    manifest = ShardManifest(job.out / _manifest_name(rank, world), params)
    mine = [s for s in range(job.num_shards) if s % world == rank]
    todo = [s for s in mine if s not in done]
    per_shard = job.config.images_per_id
    task = None
    if progress is not None:
        total = sum(len(job.shard_ids(s)[0]) for s in mine) * per_shard
        task = progress.add_task(f"generating (rank {rank})" if world > 1 else "generating", total=total)
        progress.advance(task, total - sum(len(job.shard_ids(s)[0]) for s in todo) * per_shard)
    if todo:
        atomic.refuse_link(job.out / SHARD_DIR, "generated shards")
    landmarks = job.pose.model_input() if (job.pose is not None and todo) else None
    for shard in todo:
        ids, first = job.shard_ids(shard)
        extra = {"landmarks": landmarks} if landmarks is not None else {}
        result = generate_shard(
            generator, ids, first, shard, job.config, attrop=attrop, prepass=prepass, device=device,
            sigmas=job.shard_sigmas(shard), on_images=(lambda k: progress.advance(task, k)) if task is not None else None,
            **extra,
        )
        write_shard(_shard_path(job.out, shard), result)
        manifest.mark_done(shard, {"images": len(result.images), **_flat_stats(result.stats)})
    return todo


def _flat_stats(stats: dict[str, Any]) -> dict[str, Any]:
    return {f"{group}.{k}": v for group, values in stats.items() for k, v in values.items()}


def _combine_stats(shard_stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals across shards: counts add up, minima take the minimum, means are image-weighted."""
    out: dict[str, dict[str, Any]] = {}
    weights: dict[str, float] = {}
    for stats in shard_stats:
        for group, values in stats.items():
            acc = out.setdefault(group, {})
            n = values.get("images", 0)
            weights[group] = weights.get(group, 0) + n
            for key, value in values.items():
                if key.startswith("min"):
                    acc[key] = min(acc.get(key, value), value)
                elif key.startswith("max"):
                    acc[key] = max(acc.get(key, value), value)
                elif key.startswith("mean"):
                    acc[key] = acc.get(key, 0.0) + value * n
                else:
                    acc[key] = acc.get(key, 0) + value
    for group, acc in out.items():
        for key in acc:
            if key.startswith("mean"):
                acc[key] = acc[key] / weights[group] if weights[group] else float("nan")
    return out


def assemble(job: GenerationJob, format_obj: Any, *, writer_options: dict[str, Any] | None = None,
             progress: Any = None) -> dict[str, Any]:
    """Write the staged shards, in order, through the format's writer; then ``dataset.json``."""
    missing = [s for s in range(job.num_shards) if not _shard_path(job.out, s).is_file()]
    if missing:
        raise FacebenchError(f"{job.out}: shards {missing[:5]} are not generated yet; rerun to finish them")
    atomic.refuse_link(job.dataset_path, "dataset")
    if job.dataset_path.exists():
        # Left by a run killed after writing the dataset but before dataset.json: rebuild it.
        if job.dataset_path.is_dir():
            shutil.rmtree(job.dataset_path)
        else:
            job.dataset_path.unlink()
    options = dict(writer_options or {})
    if "overwrite" in inspect.signature(format_obj.writer).parameters:
        options.setdefault("overwrite", True)  # side files of an interrupted assembly (e.g. a .idx) are ours
    task = progress.add_task("writing dataset", total=job.num_ids * job.config.images_per_id) if progress else None
    shard_stats = []
    count = 0
    def staged(shard: int) -> ShardResult:
        ids, first = job.shard_ids(shard)
        labels = np.repeat(np.arange(first, first + len(ids)), job.config.images_per_id).tolist()
        return read_shard(_shard_path(job.out, shard), labels)

    with format_obj.writer(job.dataset_path, **options) as writer, ThreadPoolExecutor(max_workers=1) as reader:
        # The next shard is read while this one is written (both are file I/O that release the GIL).
        ahead = reader.submit(staged, 0) if job.num_shards else None
        for shard in range(job.num_shards):
            result = ahead.result()
            if shard + 1 < job.num_shards:
                ahead = reader.submit(staged, shard + 1)
            for data, label in zip(result.images, result.labels):
                writer.add(data, label)
            count += len(result.images)
            shard_stats.append(result.stats)
            if task is not None:
                progress.advance(task, len(result.images))
    expected = job.num_ids * job.config.images_per_id
    if count != expected:
        raise FacebenchError(f"{job.out}: staged shards hold {count} images, expected {expected}")
    if callable(getattr(format_obj, "detect", None)) and not format_obj.detect(job.dataset_path):
        raise FacebenchError(f"{job.dataset_path}: format '{job.config.format}' does not recognise what it wrote "
                             "under this name; choose one it detects with --set generation.dataset_name=NAME")
    summary = {
        "dataset": job.dataset_path.name,
        "sha256": sha256_path(job.dataset_path),  # as train-fr records it: reports match models to it
        "format": job.config.format,
        "identities": job.num_ids,
        "images": count,
        "images_per_id": job.config.images_per_id,
        "generator": job.generator_name,
        "generator_info": job.generator_info,
        "ids": IDS_FILE,
        "ids_sha256": array_sha256(job.identities),
        "ids_source": job.ids_source,
        "ids_scale": job.scale_info,
        "settings": {k: v for k, v in asdict(job.config).items() if k != "keep_shards"},
        "attrop": job.attrop_info,
        **({"pose_landmarks": job.pose_record()} if job.pose is not None else {}),
        "stats": _combine_stats(shard_stats),
    }
    atomic.write_json(job.out / DATASET_CARD, summary, "dataset card")
    if not job.config.keep_shards:
        shutil.rmtree(job.out / SHARD_DIR, ignore_errors=True)
    return summary
