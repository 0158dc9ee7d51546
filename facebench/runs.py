"""Run directories: every command that produces results writes one.

A run directory holds ``config.toml`` (the resolved config), ``provenance.json`` (versions, device,
seed, command line, sha256 of every input) and the command's outputs, each written atomically.
"""

from __future__ import annotations

import json
import os
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
    ):
        self.path = Path(path)
        self.config = config
        self.seed = seed
        self.device = device
        self.command = list(command) if command is not None else ["facebench", *sys.argv[1:]]
        self.inputs: dict[str, str | os.PathLike] = dict(inputs or {})
        self.extra: dict[str, Any] = dict(extra or {})
        self._hashes: dict[str, str] = {}  # each input is hashed once per run, however often it is rewritten

    @classmethod
    def start(cls, path: str | os.PathLike, **fields: Any) -> Run:
        """Create the run directory and write its ``config.toml`` (when there is a config) and provenance."""
        run = cls(path, **fields)
        run.path.mkdir(parents=True, exist_ok=True)
        if run.config is not None:
            atomic.write_text(run.path / CONFIG, dump_toml(run.config), "run config")
        run.write_provenance()
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
        return atomic.write_json(self.path / PROVENANCE, record, "provenance")

    def provenance(self) -> dict[str, Any]:
        return json.loads((self.path / PROVENANCE).read_text())

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


def run_path(out: str | os.PathLike | None, name: str, root: str | os.PathLike = DEFAULT_RUNS_ROOT) -> Path:
    """``--out`` when given, else ``runs/<name>``."""
    return Path(out) if out else Path(root) / name
