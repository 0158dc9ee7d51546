"""Which model to evaluate: an FR training run directory, or a weights file plus a backbone name.

An FR run directory holds ``model.json`` (its ``backbone`` name and backbone keyword arguments) and
``backbone.pt``. The model is built through the ``feature_extractor`` registry when a feature extractor
of that name exists (it knows its own preprocessing); otherwise a registered backbone is created and the
state dict loaded strictly, so any backbone plugin can be evaluated.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, FacebenchError, MissingFileError
from .embed import TensorModel, as_tensor_model

MODEL_CARD = "model.json"
RUN_WEIGHTS = ("backbone.pt", "backbone.pth")


@dataclass
class ResolvedModel:
    """The model to evaluate and the facts provenance needs."""

    model: TensorModel
    name: str  # the backbone or extractor name
    weights: Path
    dataset: str  # what the model was trained on, when known (the row label of result tables)
    card: dict[str, Any] = field(default_factory=dict)


def read_model_card(run_dir: Path) -> dict[str, Any]:
    card_path = run_dir / MODEL_CARD
    if not card_path.is_file():
        raise MissingFileError(card_path, "model card", "pass a weights file with --backbone NAME instead")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(card_path, f"invalid JSON: {exc.msg}", f"line {exc.lineno}") from None
    if not isinstance(card, dict):
        raise DataError(card_path, "expected a JSON object")
    return card


def _dataset_label(card: dict[str, Any], fallback: str) -> str:
    dataset = card.get("dataset")
    if isinstance(dataset, dict):
        dataset = dataset.get("name") or dataset.get("path")
    return Path(str(dataset)).name if dataset else fallback


class BackboneExtractor:
    """A registered backbone with strictly loaded weights, used when no feature extractor has its name."""

    def __init__(self, name: str, weights: Path, device: str = "cpu", **kwargs: Any):
        import torch

        from .. import create_backbone
        from ..safe_load import load_state_dict

        self.module = create_backbone(name, **kwargs)
        state = load_state_dict(weights, what=f"{name} weights")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        result = self.module.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            parts = []
            if result.missing_keys:
                parts.append(f"missing {len(result.missing_keys)} keys (first '{result.missing_keys[0]}')")
            if result.unexpected_keys:
                parts.append(f"unexpected {len(result.unexpected_keys)} keys (first '{result.unexpected_keys[0]}')")
            raise DataError(weights, f"does not fit backbone '{name}': {', '.join(parts)}")
        self.module.to(device).eval()
        self.input_size = int(kwargs.get("input_size", 112))
        self.device = device
        self._torch = torch

    def forward_tensor(self, x: Any) -> Any:
        return self.module(x)

    def embed(self, images: Any) -> Any:
        from .embed import embed_arrays

        raw = embed_arrays(as_tensor_model(self, self.device), images, flip_test=False)
        return raw / (raw**2).sum(axis=1, keepdims=True) ** 0.5


def build_extractor(name: str, weights: Path, device: str = "cpu", **kwargs: Any) -> Any:
    """A feature extractor called ``name`` (registry first, then a bare backbone of that name)."""
    from ..pluginmanager import registry

    extractors = registry("feature_extractor")
    if name in extractors:
        return extractors.create(name, weights=os.fspath(weights), device=device, **kwargs)
    backbones = registry("backbone")
    if name in backbones:
        return BackboneExtractor(name, weights, device=device, **kwargs)
    known = sorted(set(extractors.names()) | set(backbones.names()))
    raise FacebenchError(f"unknown model '{name}': no feature extractor or backbone has that name "
                         f"(available: {', '.join(known) or 'none registered'})")


def resolve_model(model: str | os.PathLike, backbone: str | None = None, device: str = "cpu") -> ResolvedModel:
    """``--model RUN_DIR|WEIGHTS [--backbone NAME]`` -> a model ready for :func:`embed_pairs`."""
    path = Path(model).expanduser()
    card: dict[str, Any] = {}
    if path.is_dir():
        card = read_model_card(path)
        name = backbone or card.get("backbone")
        if not isinstance(name, str) or not name:
            raise DataError(path / MODEL_CARD, "has no 'backbone' name; pass --backbone NAME")
        weights = next((path / w for w in RUN_WEIGHTS if (path / w).is_file()), None)
        if weights is None:
            raise MissingFileError(path / RUN_WEIGHTS[0], "backbone weights of the FR run")
        kwargs = card.get("backbone_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise DataError(path / MODEL_CARD, "'backbone_kwargs' must be an object")
        dataset = _dataset_label(card, path.name)
    else:
        from ..weights import resolve_weights

        weights = resolve_weights(path)
        if not backbone:
            raise FacebenchError(f"{weights}: a weights file needs --backbone NAME (or pass an FR run directory)")
        name, kwargs, dataset = backbone, {}, weights.stem
    extractor = build_extractor(name, weights, device=device, **kwargs)
    return ResolvedModel(model=as_tensor_model(extractor, device, name), name=name, weights=weights,
                         dataset=dataset, card=card)
