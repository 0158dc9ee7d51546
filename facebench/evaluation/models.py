"""Which model to evaluate: an FR training run directory, or a weights file plus a backbone name.

Both are built through the ``feature_extractor`` registry, which knows each model's preprocessing: a run
directory (``model.json`` + ``backbone.pt`` from ``facebench train-fr``) goes to the ``fr-run`` extractor
(or to ``--backbone NAME`` when given), a weights file to the extractor named by ``--backbone``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FacebenchError
from ..runs import MODEL_CARD
from .embed import TensorModel, as_tensor_model

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
        if not (path / MODEL_CARD).is_file():
            raise FacebenchError(f"{path}: not an FR run directory ({MODEL_CARD} not found); "
                                 "pass a weights file with --backbone NAME instead")
        name = backbone or RUN_EXTRACTOR
        extractor = build_extractor(name, path, device)  # the fr-run extractor reads and checks the card
        card = dict(getattr(extractor, "card", None) or {})
        weights_file = Path(getattr(extractor, "weights", None) or path / "backbone.pt")
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
