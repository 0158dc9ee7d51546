"""Pretrained weight files: where facebench looks for them and what each one is for.

facebench never downloads weights. The user places files they already have in the weights directory
(``--weights-dir``, ``$FACEBENCH_WEIGHTS``, default ``~/.cache/facebench/weights``) or passes a path;
a missing file is a one-line error naming it and what it is for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import FacebenchError, MissingFileError

DEFAULT_WEIGHTS_DIR = Path("~/.cache/facebench/weights")


@dataclass(frozen=True)
class KnownWeights:
    """A weights file a component loads, as its plugin declares it (``weight_files=`` on ``register``,
    timm's ``pretrained_cfg`` idea): the file name, what it is for, where a user gets it, and who uses it."""

    filename: str
    purpose: str
    source: str
    component: str = ""


def declared_weights() -> list[KnownWeights]:
    """Every weights file the registered components declare (``extras["weight_files"]``: tuples of
    file name, purpose, source), once per file in registry order."""
    from .pluginmanager import get_plugin_set

    seen: dict[str, KnownWeights] = {}
    for kind, registry in get_plugin_set().registries().items():
        for spec in registry:
            for filename, purpose, source in spec.extras.get("weight_files", ()):
                seen.setdefault(filename, KnownWeights(filename, purpose, source, f"{kind} {spec.name}"))
    return list(seen.values())


def weights_dir(override: str | os.PathLike | None = None) -> Path:
    raw = override or os.environ.get("FACEBENCH_WEIGHTS") or DEFAULT_WEIGHTS_DIR
    return Path(raw).expanduser()


def known(filename: str) -> KnownWeights | None:
    return next((k for k in declared_weights() if k.filename == filename), None)


def resolve_weights(path_or_name: str | os.PathLike, *, weights_root: str | os.PathLike | None = None,
                    allow_dir: bool = False) -> Path:
    """An existing weights file: ``path_or_name`` as given, else looked up in the weights directory.
    ``allow_dir``: a model directory (a diffusers-style layout) is accepted too; its owner checks it."""
    candidate = Path(path_or_name).expanduser()
    if candidate.is_file() or (allow_dir and candidate.is_dir()):
        return candidate
    in_dir = weights_dir(weights_root) / candidate.name
    if in_dir.is_file() or (allow_dir and in_dir.is_dir()):
        return in_dir
    if candidate.exists():
        if (candidate / "model.json").is_file() and (candidate / "backbone.pt").is_file():  # a train-fr run
            raise FacebenchError(f"{candidate}: a train-fr run folder, not a weights file: the feature extractor "
                                 f"for a run folder is fr-run (it reads model.json), or pass its weights file "
                                 f"{candidate / 'backbone.pt'}")
        raise FacebenchError(f"{candidate}: is a directory, expected a weights file")
    entry = known(candidate.name)
    hint = f"{entry.purpose}; from the {entry.source}" if entry else f"also looked in {weights_dir(weights_root)}"
    raise MissingFileError(candidate, "weights file", hint)


def present(weights_root: str | os.PathLike | None = None) -> list[tuple[KnownWeights, Path | None]]:
    """Each declared file with its path in the weights directory, or None when absent."""
    root = weights_dir(weights_root)
    return [(k, (root / k.filename) if (root / k.filename).is_file() else None) for k in declared_weights()]


def needs_weights(spec: Any) -> bool:
    """Whether a registered component is a trained model: its spec declares a default weights file
    (``weights="FILE"``) or ``weights_required=True``. Procedural components (baselines) declare neither."""
    extras = getattr(spec, "extras", {}) or {}
    return bool(extras.get("weights") or extras.get("weights_required"))


def component_weights(spec: Any, weights: str | os.PathLike | None, *, untrained: bool = False,
                      option: str = "--weights", allow_dir: bool = False) -> Path | None:
    """The weights file a component is built with: the one given, else its declared default file in the
    weights directory; None for procedural components, or with ``untrained`` (random weights, which the
    caller records). A trained model never silently runs with random weights."""
    if weights:
        return resolve_weights(weights, allow_dir=allow_dir)
    if not needs_weights(spec) or untrained:
        return None
    what = f"{spec.kind.replace('_', ' ')} '{spec.name}'"
    default = spec.extras.get("weights")
    if default and ((weights_dir() / default).is_file() or (allow_dir and (weights_dir() / default).is_dir())):
        return weights_dir() / default
    where = f"its file {default} is not in the weights directory {weights_dir()}" if default else "none given"
    raise FacebenchError(f"{what} needs weights ({where}): pass {option} FILE, or --untrained to run it "
                         "with random weights")
