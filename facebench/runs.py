"""Run directories: every command that produces results writes one.

A run directory holds ``config.toml`` (the resolved config), ``provenance.json`` (versions, device,
seed, command line, sha256 of every input, and the record of the rerun contract, :mod:`facebench.rerun`)
and the command's outputs, each written atomically.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import atomic
from .config import dump_toml
from .provenance import provenance

DEFAULT_RUNS_ROOT = Path("runs")

#: The files a run directory may hold, by the command that writes them; ``facebench report`` reads them.
CONFIG = "config.toml"  # every command: the resolved config
PROVENANCE = "provenance.json"  # every command: versions, device, seed, command line, input hashes
RESULTS = "results.json"  # evaluate (and results.csv)
ANALYSIS_SUMMARY = "analysis/summary.json"  # analyze
DATASET_CARD = "dataset.json"  # generate, toyfaces build: what the dataset is and how it was made
MODEL_CARD = "model.json"  # train-fr: what the model is and how it was trained


class Run:
    """A run directory being written; inputs are hashed as they are declared.

    ``Run.start(path, ...)`` creates the directory and writes ``config.toml`` and ``provenance.json``;
    the constructor alone writes nothing.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        config: Any = None,
        seed: int | None = None,
        device: str | None = None,
        command: list[str] | None = None,
        inputs: dict[str, str | os.PathLike] | None = None,
        extra: dict[str, Any] | None = None,
        rerun: Any = None,
    ):
        self.path = Path(path)
        self.config = config
        self.seed = seed
        self.device = device
        self.command = list(command) if command is not None else ["facebench", *sys.argv[1:]]
        self.inputs: dict[str, str | os.PathLike] = dict(inputs or {})
        self.extra: dict[str, Any] = dict(extra or {})
        self.rerun = rerun  # a facebench.rerun.Rerun: its record goes into provenance.json
        self._hashes: dict[str, str] = {}  # each input is hashed once per run, however often it is rewritten

    @classmethod
    def start(cls, path: str | os.PathLike, **fields: Any) -> Run:
        """Create the run directory and write its provenance (first: with a ``rerun`` record, it is what
        makes the folder this run's) and its ``config.toml`` (when there is a config)."""
        run = cls(path, **fields)
        run.path.mkdir(parents=True, exist_ok=True)
        run.write_provenance()
        if run.config is not None:
            atomic.write_text(run.path / CONFIG, dump_toml(run.config), "run config")
        return run

    def add_input(self, label: str, path: str | os.PathLike, *, sha256: str | None = None) -> None:
        """Declare an input file or folder: its sha256 (given, or computed now) goes into ``provenance.json``."""
        self.inputs[label] = path
        self._hashes.pop(label, None)
        if sha256 is not None:
            self._hashes[label] = sha256
        self.write_provenance()

    def input_hash(self, label: str) -> str:
        """The sha256 of a declared input (computed once)."""
        from .provenance import sha256_path

        if label not in self._hashes:
            self._hashes[label] = sha256_path(self.inputs[label])
        return self._hashes[label]

    def write_provenance(self) -> Path:
        hashes = {label: self.input_hash(label) for label in self.inputs}
        record = provenance(command=self.command, seed=self.seed, device=self.device, inputs=self.inputs,
                            extra=self.extra, hashes=hashes)
        if self.rerun is not None:
            from .rerun import KEY

            record[KEY] = self.rerun.entry()
        return atomic.write_json(self.path / PROVENANCE, record, "provenance")

    def provenance(self) -> dict[str, Any]:
        from .safe_load import read_json

        return read_json(self.path / PROVENANCE, what="provenance record")

    def file(self, name: str) -> Path:
        out = self.path / name
        out.parent.mkdir(parents=True, exist_ok=True)
        return out

    @contextmanager
    def atomic(self, name: str) -> Iterator[Path]:
        with atomic.atomic_path(self.file(name)) as tmp:
            yield tmp

    def write_json(self, name: str, data: Any) -> Path:
        return atomic.write_json(self.file(name), data)

    def write_text(self, name: str, text: str) -> Path:
        return atomic.write_text(self.file(name), text)


#: Files a run directory holds before it holds anything to resume from (``Run.start``, the training log,
#: and the identity vectors ``generate`` saves before its first shard: given or drawn again from the seed).
STARTED_ONLY = {CONFIG, PROVENANCE, "metrics.jsonl", "ids.npy"}

#: Shard manifests wherever a job keeps them: ``manifest.json``, ``manifest-rank1.json`` (generate,
#: evaluate, toyfaces build) and ``NAME.manifest.json`` / ``NAME.manifest-rank1.json`` (feature files, such
#: as ``evaluate``'s ``features/`` cache), each with its optional ``.journal``.
_MANIFEST = re.compile(r"(?:.+\.)?manifest(?:-rank\d+)?\.json(?:\.journal)?")


def _nothing_done(manifest: Path) -> bool:
    """Whether a shard manifest (and its journal) records no finished shard; unreadable counts as work."""
    from .errors import FacebenchError
    from .shards import read_manifest

    try:
        return not read_manifest(manifest).get("done")
    except (FacebenchError, OSError):
        return False


def _temporary(name: str) -> bool:
    """``.NAME.tmp-<random>[.old]``: an atomic write's temporary (left only by a kill -9)."""
    return name.startswith(".") and ".tmp-" in name


def holds_work(path: str | os.PathLike) -> bool:
    """Whether a run directory holds anything a rerun could resume from. Not work: the start files
    (:data:`STARTED_ONLY`), empty folders, the temporaries of atomic writes cut short by a kill, shard
    manifests anywhere in the tree that record no finished shard, and, when no manifest records one, the
    ``*.partial.npy`` arrays those shards would fill."""
    path = Path(path)
    for file in path.rglob("*"):
        if file.is_dir() and not file.is_symlink():
            continue  # a folder is judged by what it holds
        if _temporary(file.name) or any(_temporary(p.name) for p in file.relative_to(path).parents):
            continue
        rel = file.relative_to(path).as_posix()
        if rel in STARTED_ONLY:
            continue
        if _MANIFEST.fullmatch(file.name):
            manifest = file.with_name(file.name.removesuffix(".journal"))
            if manifest.is_file() and _nothing_done(manifest):
                continue
            return True
        if file.name.endswith(".partial.npy"):
            continue  # holds nothing unless a manifest records a finished shard (checked on its own)
        return True
    return False


@contextmanager
def discard_on_failure(path: str | os.PathLike) -> Iterator[Path]:
    """A run directory that the block creates is removed again when the block fails before the directory
    holds anything to resume from (:func:`holds_work`): a failed command leaves no half-made run folder
    behind (nor one kept alive only by a feature cache's empty manifest), while one that got far enough
    to resume keeps its state."""
    path = Path(path)
    existed = path.exists() or path.is_symlink()
    try:
        yield path
    except BaseException:
        if not existed and path.is_dir() and not path.is_symlink() and not holds_work(path):
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        raise


def run_path(out: str | os.PathLike | None, name: str, root: str | os.PathLike = DEFAULT_RUNS_ROOT) -> Path:
    """``--out`` when given, else ``runs/<name>``."""
    return Path(out) if out else Path(root) / name
