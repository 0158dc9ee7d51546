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


@dataclass
class ResolvedModel:
    """The model to evaluate and the facts provenance needs."""

    model: TensorModel
    name: str  # the extractor name
    weights: Path  # the file whose hash identifies the model
    dataset: str  # what the model was trained on, when known (the row label of result tables)
    card: dict[str, Any] = field(default_factory=dict)


def _dataset_label(card: dict[str, Any], fallback: str) -> str:
    """The name of the set a model card says the model was trained on (see :mod:`facebench.data.identity`)."""
    from ..data.identity import identify, plain_name

    dataset = card.get("dataset")
    if isinstance(dataset, dict):
        if isinstance(dataset.get("name"), str) and dataset["name"]:
            return dataset["name"]
        dataset = dataset.get("path")
    if not dataset:
        return fallback
    if Path(str(dataset)).exists():
        try:
            return identify(str(dataset)).name
        except FacebenchError:
            pass  # only the row label: a training set whose own card is unreadable is named by its path
    return plain_name(str(dataset))


def _not_a_model(path: Path) -> str:
    """What a folder given as a model is instead, and what to do (the words of the one-line error)."""
    from ..runs import CONFIG, DATASET_CARD, RESULTS

    if (path / "checkpoint.pt").is_file():
        return (f"a train-fr run folder that has no model yet ({MODEL_CARD} and backbone.pt are written when "
                f"training finishes); wait for it, or if it stopped, continue it with facebench train-fr ... "
                f"--out {path} --resume")
    if (path / DATASET_CARD).is_file():
        return (f"a dataset folder ({DATASET_CARD}), not a model; train one on it with facebench train-fr "
                f"--recipe NAME --data {path}")
    if (path / RESULTS).is_file():
        return "an evaluation run folder, not a model; pass the train-fr run folder it evaluated"
    if (path / CONFIG).is_file():
        return (f"a run folder that has no model yet ({MODEL_CARD} is written when training finishes, and it "
                f"has no checkpoint either): wait for it, or if it stopped, start it again")
    return (f"not an FR run directory ({MODEL_CARD} not found); pass a train-fr run folder, or a weights file "
            "with --backbone NAME")


def build_extractor(name: str, weights: str | os.PathLike, device: str = "cpu") -> Any:
    """The feature extractor ``name`` with ``weights`` (unknown names list the registered ones)."""
    from ..pluginmanager import registry

    return registry("feature_extractor").create(name, weights=os.fspath(weights), device=device)


def resolve_model(model: str | os.PathLike, backbone: str | None = None, device: str = "cpu") -> ResolvedModel:
    """``--model RUN_DIR|WEIGHTS [--backbone NAME]`` -> a model ready for :func:`embed_pairs`."""
    from ..weights import known, resolve_weights, weights_dir

    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / MODEL_CARD).exists():
            raise FacebenchError(f"{path}: {_not_a_model(path)}")
        name = backbone or RUN_EXTRACTOR
        extractor = build_extractor(name, path, device)  # the fr-run extractor reads and checks the card
        card = dict(getattr(extractor, "card", None) or {})
        weights_file = Path(getattr(extractor, "weights", None) or path / "backbone.pt")
        dataset = _dataset_label(card, path.name)
    else:
        if not path.exists() and not (weights_dir() / path.name).is_file() and known(path.name) is None:
            raise FacebenchError(f"{path}: not found: neither a train-fr run folder nor a weights file (also "
                                 f"looked in the weights directory {weights_dir()})")
        weights_file = resolve_weights(path)
        if not backbone:
            raise FacebenchError(f"{weights_file}: a weights file needs --backbone NAME (or pass an FR run directory)")
        name, card, dataset = backbone, {}, weights_file.stem
        extractor = build_extractor(name, weights_file, device)
    label = name if name != RUN_EXTRACTOR else f"{RUN_EXTRACTOR}:{path.name}"
    return ResolvedModel(model=as_tensor_model(extractor, device, label), name=label, weights=weights_file,
                         dataset=dataset, card=card)
