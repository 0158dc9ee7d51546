"""Building a toy world: a training set in any registered format plus the seven ``.bin`` packs.

Rendering runs in a process pool, shard by shard; every image is keyed by ``(seed, stream, identity,
image)`` and shards are assembled in order, so the files are byte-identical for a seed whatever the
worker count, and an interrupted build resumes from its finished shards. The output directory appears
only when complete (``facebench.atomic.atomic_dir``) with its record of the rerun contract
(:mod:`facebench.rerun`): the same build again is a no-op, other settings are refused.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facebench import atomic
from facebench.console import console, make_progress
from facebench.data import encode_image, get_format, open_writer
from facebench.errors import ConfigError, DataError, MissingFileError, first_line
from facebench.provenance import sha256_path
from facebench.rerun import FINISHED, Rerun, parameters
from facebench.runs import DATASET_CARD, Run, discard_on_failure

from .packs import PACKS, check_pair_count, pack_identity_count, plan_pairs
from .params import Difficulty, identity_vector, rng_for, sample_identity, sample_nuisance, stream_key
from .render import render_face

TRAIN_STREAM = "train"


@dataclass
class ToyConfig:
    """Everything that determines the files of a toy world (the worker count does not)."""

    identities: int = 500
    images_per_identity: int = 20
    seed: int = 0
    size: int = 112
    format: str = "folder"
    pairs: int = 6000
    packs: list[str] = field(default_factory=lambda: list(PACKS))
    jpeg_quality: int = 95
    difficulty: Difficulty = field(default_factory=Difficulty)

    def validate(self) -> None:
        if self.identities < 2:
            raise ConfigError(f"identities must be at least 2, got {self.identities}")
        if self.images_per_identity < 1:
            raise ConfigError(f"images_per_identity must be at least 1, got {self.images_per_identity}")
        if not 16 <= self.size <= 512:
            raise ConfigError(f"size must be between 16 and 512 pixels, got {self.size}")
        try:
            check_pair_count(self.pairs)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        unknown = [p for p in self.packs if p not in PACKS]
        if unknown:
            raise ConfigError(f"unknown toyfaces pack(s) {', '.join(unknown)}; known: {', '.join(PACKS)}")
        fmt = get_format(self.format)
        if fmt.role != "train":
            raise ConfigError(f"format '{self.format}' is not a training-set format")


def train_path(out: str | os.PathLike, fmt: str) -> Path:
    """Where the training set of a world lives: ``OUT/train`` (``OUT/train.lmdb`` for LMDB)."""
    return Path(out) / ("train.lmdb" if fmt == "lmdb" else "train")


# ---- rendering (runs in worker processes) ---------------------------------------------------------

_CFG: ToyConfig | None = None


def _init_worker(cfg: ToyConfig) -> None:
    global _CFG
    _CFG = cfg
    _identity.cache_clear()


@functools.lru_cache(maxsize=4096)
def _identity(stream: str, index: int):
    assert _CFG is not None
    return sample_identity(rng_for(_CFG.seed, stream_key(stream), index), _CFG.difficulty.identity_spread)


def _encode(image: np.ndarray) -> bytes:
    assert _CFG is not None
    return encode_image(image, "jpg", quality=_CFG.jpeg_quality)


def _render_identity(index: int) -> list[bytes]:
    """All training images of one training identity."""
    cfg = _CFG
    assert cfg is not None
    ident = _identity(TRAIN_STREAM, index)
    key = stream_key(TRAIN_STREAM) + 1
    return [
        _encode(render_face(ident, sample_nuisance(rng_for(cfg.seed, key, index, j), ident, cfg.difficulty), cfg.size))
        for j in range(cfg.images_per_identity)
    ]


def _render_pairs(job: tuple[str, int, list[tuple[int, int, bool]]]) -> list[tuple[bytes, bytes, bool]]:
    """A run of consecutive pairs of one pack."""
    cfg = _CFG
    assert cfg is not None
    pack, start, plan = job
    spec = PACKS[pack]
    out = []
    for k, (i, j, same) in enumerate(plan, start):
        ia, ib = _identity(pack, i), _identity(pack, j)
        na, nb = spec.nuisance(rng_for(cfg.seed, stream_key(pack) + 1, k), ia, ib, cfg.difficulty)
        out.append((_encode(render_face(ia, na, cfg.size)), _encode(render_face(ib, nb, cfg.size)), same))
    return out


def pack_plan(cfg: ToyConfig, pack: str) -> list[tuple[int, int, bool]]:
    """The pairs of one pack (identity indices into the pack's pool and the same flag)."""
    n_ids = pack_identity_count(cfg.pairs)
    spread = cfg.difficulty.identity_spread
    features = np.stack([identity_vector(sample_identity(rng_for(cfg.seed, stream_key(pack), i), spread))
                         for i in range(n_ids)]) if PACKS[pack].hard_negatives else np.zeros((n_ids, 1))
    return plan_pairs(cfg.pairs, rng_for(cfg.seed, stream_key(pack) + 2), features, PACKS[pack].hard_negatives)


# ---- the build ------------------------------------------------------------------------------------


def _pool(cfg: ToyConfig, workers: int):
    if workers <= 1:
        _init_worker(cfg)
        return None
    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    return ctx.Pool(workers, initializer=_init_worker, initargs=(cfg,))


def _map(pool: Any, fn: Any, jobs: list[Any]):
    return pool.imap(fn, jobs) if pool is not None else map(fn, jobs)


#: Identities per training shard and pairs per pack shard: the unit of parallel work and of resuming.
TRAIN_SHARD = 32
PAIR_SHARD = 200


def _render_shard(job: tuple) -> bytes:
    """One shard as msgpack: ``[[image, label], ...]`` (training) or ``[[a, b, same], ...]`` (pack)."""
    import msgpack

    if job[0] == TRAIN_STREAM:
        _, first, stop = job
        rows = [[data, index] for index in range(first, stop) for data in _render_identity(index)]
    else:
        rows = [list(row) for row in _render_pairs(job)]
    return msgpack.packb(rows, use_bin_type=True)


def _read_shard(path: Path, kinds: tuple[type, ...]) -> list:
    """A rendered shard's rows, each of ``kinds`` (``(bytes, int)`` training, ``(bytes, bytes, bool)``
    pack); a truncated or reshaped file (a resumed build's folder may have been handled by others) is one
    error naming it."""
    import msgpack

    try:
        rows = msgpack.unpackb(path.read_bytes(), raw=False)
    except FileNotFoundError:
        raise MissingFileError(path, "rendered shard", "rerun the same command to render it again") from None
    except (ValueError, TypeError) as exc:  # msgpack's errors (truncated, extra data) are ValueErrors
        raise DataError(path, f"rendered shard is unreadable ({first_line(exc)}); delete it and rerun") from None
    if not isinstance(rows, list) or not all(
            isinstance(row, list) and len(row) == len(kinds) and all(type(v) is k for v, k in zip(row, kinds))
            for row in rows):
        raise DataError(path, "rendered shard holds other rows than the build writes; delete it and rerun")
    return rows


def _jobs(cfg: ToyConfig) -> list[tuple[str, tuple, int]]:
    """``(shard name, render job, images)`` for the whole world, in output order."""
    jobs = []
    for first in range(0, cfg.identities, TRAIN_SHARD):
        stop = min(first + TRAIN_SHARD, cfg.identities)
        jobs.append((f"train-{first:08d}", (TRAIN_STREAM, first, stop), (stop - first) * cfg.images_per_identity))
    for pack in cfg.packs:
        plan = pack_plan(cfg, pack)
        for start in range(0, len(plan), PAIR_SHARD):
            part = plan[start : start + PAIR_SHARD]
            jobs.append((f"{pack}-{start:08d}", (pack, start, part), 2 * len(part)))
    return jobs


@dataclass
class Built:
    """What :func:`build_world` did: the world's ``dataset.json`` record, and whether the world was
    already there (built earlier with the same settings: nothing was written)."""

    record: dict[str, Any]
    already_complete: bool = False


def world_rerun(out: str | os.PathLike, cfg: ToyConfig, *, overwrite: bool = False) -> Rerun:
    """The rerun contract of a toy world: its settings are the parameters (the worker count is not one);
    the training set, the packs and ``dataset.json`` are the outputs."""
    outputs = [train_path(Path("."), cfg.format).as_posix(), *(f"{p}.bin" for p in cfg.packs), DATASET_CARD]
    return Rerun(out, command="toyfaces build", params=parameters(cfg), what="toy world", outputs=outputs,
                 overwrite=overwrite)


def build_world(
    out: str | os.PathLike, cfg: ToyConfig | None = None, *, workers: int = 2, overwrite: bool = False,
    command: list[str] | None = None,
) -> Built:
    """Render the world described by ``cfg`` into ``out``, or find it there already.

    Rendered shards are kept in ``.<out>.partial/`` with a manifest, so a killed build resumes where it
    stopped; the final files are assembled into ``out`` atomically. A world already at ``out`` with the
    same settings is kept as it is; one with other settings is refused unless ``overwrite``
    (:mod:`facebench.rerun`).
    """
    from facebench.safe_load import read_json
    from facebench.shards import ShardManifest

    cfg = cfg or ToyConfig()
    cfg.validate()
    out = Path(out)
    # a fixed name the build reopens to resume: it must be the build's own folder, never a planted link
    partial = atomic.refuse_link(out.parent / f".{out.name}.partial", "toy world shards")
    rerun = world_rerun(out, cfg, overwrite=overwrite)
    state = rerun.check()
    if state == FINISHED:
        if partial.is_dir():  # left by a kill after the world was renamed into place: only its shards
            shutil.rmtree(partial, ignore_errors=True)
        return Built(read_json(out / DATASET_CARD, what="dataset card"), already_complete=True)
    with discard_on_failure(partial):  # failing before its first shard, it leaves no partial folder
        partial.mkdir(parents=True, exist_ok=True)
        manifest = ShardManifest(partial / "manifest.json", {"toyfaces": asdict(cfg)}, overwrite=overwrite)
        jobs = _jobs(cfg)
        images = {name: n for name, _, n in jobs}
        todo = [(name, job) for name, job, _ in jobs if not manifest.is_done(name)]
        if len(todo) < len(jobs):
            console.print(f"resuming {out}: {len(jobs) - len(todo)} of {len(jobs)} shards already rendered in "
                          f"{partial}")
        with make_progress() as progress:
            task = progress.add_task(f"toyfaces {out.name}", total=sum(images.values()),
                                     completed=sum(n for name, n in images.items() if manifest.is_done(name)))
            pool = _pool(cfg, workers) if todo else None
            try:
                rendered = _map(pool, _render_shard, [job for _, job in todo])
                for (name, _), blob in zip(todo, rendered):
                    atomic.write_bytes(partial / f"{name}.msgpack", blob, "rendered shard")
                    manifest.mark_done(name)
                    progress.advance(task, images[name])
            finally:
                if pool is not None:
                    pool.close()
                    pool.join()
    # what is at ``out`` now may be replaced (Rerun.check said so): an empty folder, a world whose files no
    # longer check out, or, with --overwrite, one of other settings
    record = _assemble(out, cfg, partial, [name for name, _, _ in jobs], True, command, rerun)
    shutil.rmtree(partial, ignore_errors=True)
    return Built(record)


def _assemble(out: Path, cfg: ToyConfig, partial: Path, names: list[str], overwrite: bool,
              command: list[str] | None, rerun: Rerun) -> dict[str, Any]:
    """Stream the rendered shards into the training-set writer and the pack writers."""
    with atomic.atomic_dir(out, overwrite=overwrite, what="toy world") as tmp:
        with open_writer(train_path(tmp, cfg.format), cfg.format) as writer:
            for name in names:
                if name.startswith(f"{TRAIN_STREAM}-"):
                    for data, label in _read_shard(partial / f"{name}.msgpack", (bytes, int)):
                        writer.add(data, label)
        packs = {}
        for pack in cfg.packs:
            with open_writer(tmp / f"{pack}.bin", "bin") as writer:
                for name in names:
                    if name.startswith(f"{pack}-"):
                        for a, b, same in _read_shard(partial / f"{name}.msgpack", (bytes, bytes, bool)):
                            writer.add(a, b, same)
            spec = PACKS[pack]
            packs[pack] = {"file": f"{pack}.bin", "pairs": cfg.pairs, "folds": 10, "mirrors": spec.mirrors,
                           "nuisance": spec.description, "identities": pack_identity_count(cfg.pairs)}
        record = {
            "generator": "toyfaces",
            "identities": cfg.identities,
            "images": cfg.identities * cfg.images_per_identity,
            "images_per_identity": cfg.images_per_identity,
            "size": cfg.size,
            "seed": cfg.seed,
            "format": cfg.format,
            "train": train_path(Path("."), cfg.format).as_posix(),
            # the training set's hash as train-fr records it: reports match models to this world by it
            "sha256": sha256_path(train_path(tmp, cfg.format)),
            "packs": packs,
            "settings": asdict(cfg),
        }
        atomic.write_json(tmp / DATASET_CARD, record)
        rerun.finish(Run.start(tmp, config=cfg, seed=cfg.seed, command=command, rerun=rerun))
    return record
