"""Which model to evaluate: an FR training run directory, or a weights file plus a backbone name.

Both are built through the ``feature_extractor`` registry, which knows each model's preprocessing: a run
directory (``model.json`` + ``backbone.pt`` from ``facebench train-fr``) goes to the ``fr-run`` extractor
(or to ``--backbone NAME`` when given), a weights file to the extractor named by ``--backbone``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, FacebenchError
from .embed import TensorModel, as_tensor_model

MODEL_CARD = "model.json"
RUN_EXTRACTOR = "fr-run"
GENERIC_NAMES = {"train", "images", "data", "dataset", "imgs"}


@dataclass
class ResolvedModel:
    """The model to evaluate and the facts provenance needs."""

    model: TensorModel
    name: str  # the extractor name
    weights: Path  # the file whose hash identifies the model
    dataset: str  # what the model was trained on, when known (the row label of result tables)
    card: dict[str, Any] = field(default_factory=dict)


def _read_card(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MODEL_CARD
    if not path.is_file():
        raise FacebenchError(f"{run_dir}: not an FR run directory ({MODEL_CARD} not found); "
                             "pass a weights file with --backbone NAME instead")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON: {exc.msg}", f"line {exc.lineno}") from None
    if not isinstance(card, dict):
        raise DataError(path, "expected a JSON object")
    return card


def _dataset_label(card: dict[str, Any], fallback: str) -> str:
    dataset = card.get("dataset")
    if isinstance(dataset, dict):
        dataset = dataset.get("name") or dataset.get("path")
    if not dataset:
        return fallback
    path = Path(str(dataset))
    # "toy/train" says more than "train": keep the parent of generic folder names.
    return f"{path.parent.name}/{path.name}" if path.name in GENERIC_NAMES and path.parent.name else path.name


def build_extractor(name: str, weights: str | os.PathLike, device: str = "cpu") -> Any:
    """The feature extractor ``name`` with ``weights`` (unknown names list the registered ones)."""
    from ..pluginmanager import registry

    return registry("feature_extractor").create(name, weights=os.fspath(weights), device=device)


def resolve_model(model: str | os.PathLike, backbone: str | None = None, device: str = "cpu") -> ResolvedModel:
    """``--model RUN_DIR|WEIGHTS [--backbone NAME]`` -> a model ready for :func:`embed_pairs`."""
    from ..weights import resolve_weights

    path = Path(model).expanduser()
    if path.is_dir():
        card = _read_card(path)
        name = backbone or RUN_EXTRACTOR
        weights_file = path / str(card.get("weights", "backbone.pt"))
        if not weights_file.is_file():
            from ..errors import MissingFileError

            raise MissingFileError(weights_file, "backbone weights of the FR run")
        extractor = build_extractor(name, path, device)
        dataset = _dataset_label(card, path.name)
    else:
        weights_file = resolve_weights(path)
        if not backbone:
            raise FacebenchError(f"{weights_file}: a weights file needs --backbone NAME (or pass an FR run directory)")
        name, card, dataset = backbone, {}, weights_file.stem
        extractor = build_extractor(name, weights_file, device)
    label = name if name != RUN_EXTRACTOR else f"{RUN_EXTRACTOR}:{path.name}"
    return ResolvedModel(model=as_tensor_model(extractor, device, label), name=label, weights=weights_file,
                         dataset=dataset, card=card)
