"""Evaluation protocols beyond pair verification (IJB templates, 1:N identification) as components.

A benchmark names its protocol (:attr:`~facebench.evaluation.suites.Benchmark.protocol`). ``verification``
is the insightface pairs protocol the runner scores itself; any other name is an ``evaluator`` component
registered with ``kind="protocol"`` whose ``factory(options)`` returns an object with
``evaluate(ctx: ProtocolContext) -> list[dict]`` (result rows, the same tidy rows ``results.json`` holds).
Options are the registry's ``config=`` dataclass, set with ``facebench evaluate --set NAME.KEY=VALUE``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import build_config
from ..errors import FacebenchError
from .embed import TensorModel
from .options import component_options

VERIFICATION = "verification"
PROTOCOL = "protocol"


@dataclass
class ProtocolContext:
    """What a protocol gets for one benchmark: the model, where the benchmark's files are, the run."""

    model: TensorModel
    path: Path  # the located benchmark (a folder for IJB and TinyFace)
    bench: Any  # the Benchmark
    suite: str
    dataset: str  # the row label: what the model was trained on
    model_name: str
    weights_sha256: str
    workdir: Path | None  # the run directory; caches such as image features live under it
    batch_size: int = 64
    flip_test: bool = True
    bootstrap: int = 0  # resamples for confidence intervals (0: none)
    seed: int = 0


def registered_protocols() -> dict[str, Any]:
    from ..pluginmanager import registry

    return {spec.name: spec for spec in registry("evaluator") if spec.extras.get("kind") == PROTOCOL}


def protocol_options(overrides: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``--set PROTOCOL.OPTION=VALUE`` -> every protocol's full option set (checked like analysis options)."""
    return component_options(overrides, registered_protocols(), "protocol", "protocols")


def build_protocol(name: str, options: dict[str, Any] | None = None) -> Any:
    """The protocol component ``name`` built with its options (defaults for those not given)."""
    specs = registered_protocols()
    if name not in specs:
        raise FacebenchError(f"no evaluation protocol '{name}' is registered (protocols: "
                             f"{', '.join(specs) or 'none'}; `facebench plugins --kind evaluator` lists them)")
    spec = specs[name]
    if spec.config is None:
        return spec.create()
    return spec.create(build_config(spec.config, (options or {}).get(name, {})))


def benchmark_files(path: str | os.PathLike, files: Iterable[str | os.PathLike] = ()) -> dict[str, str]:
    """``{name: sha256}`` of the files a benchmark was read from, for its result row: the pack itself (a
    file, or a folder hashed whole), or the listed files of a protocol benchmark (files or folders), each
    named relative to the folder holding them all (``ijbb_template_pair_label.txt``, ``Gallery_Match``)."""
    from ..provenance import sha256_path

    files = [Path(f) for f in files]
    if not files:
        return {Path(path).name: sha256_path(path)}
    base = os.path.commonpath([os.path.abspath(f.parent) for f in files])
    return {Path(os.path.relpath(os.path.abspath(f), base)).as_posix(): sha256_path(f) for f in sorted(files)}


def benchmark_digest(path: str | os.PathLike, files: Iterable[str | os.PathLike] = ()) -> str:
    """sha256 identifying a benchmark: its pack file, or the listed files of a folder benchmark (their
    names and hashes, see :func:`benchmark_files`)."""
    import hashlib

    from ..provenance import sha256_path

    files = list(files)
    if not files:
        return sha256_path(path)
    digest = hashlib.sha256()
    for name, sha in sorted(benchmark_files(path, files).items()):
        digest.update(name.encode())
        digest.update(sha.encode())
    return digest.hexdigest()
