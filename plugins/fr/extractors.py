"""Feature extractors: a registered backbone + a weights file (or an FR run directory) + preprocessing.

Weights are read with ``weights_only=True``; a ``module.`` prefix (DDP checkpoints) is stripped and the
state dict must match the backbone exactly, otherwise the one-line error names the file, the keys that
differ and how many keys the backbone expects.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from facebench.errors import DataError
from facebench.evaluation.embed import embed_uint8
from facebench.pluginmanager import registry
from facebench.safe_load import load_checkpoint, state_dict_mismatch
from facebench.weights import resolve_weights

INPUT_MEAN = (0.5, 0.5, 0.5)
INPUT_STD = (0.5, 0.5, 0.5)


def _state_dict_from(obj: Any, path: Path, key: str | None) -> dict[str, torch.Tensor]:
    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            raise DataError(path, f"expected a dict with key '{key}'")
        obj = obj[key]
    if isinstance(obj, dict) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for candidate in ("state_dict", "backbone", "model"):
            inner = obj.get(candidate)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(path, f"expected a state dict of tensors, found {type(obj).__name__}")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def _preview(keys: list[str], n: int = 4) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > n else "")


def load_backbone_weights(model: torch.nn.Module, path: str | os.PathLike, *, key: str | None = None,
                          backbone: str = "backbone") -> None:
    """Load a weights file into ``model`` strictly, with a one-line error when the layout differs."""
    path = Path(path)
    state = _state_dict_from(load_checkpoint(path, what=f"{backbone} weights"), path, key)
    check_backbone_layout(model, state, path, backbone)
    model.load_state_dict(state, strict=True)


def check_backbone_layout(model: torch.nn.Module, state: dict[str, Any], path: str | os.PathLike,
                          backbone: str) -> None:
    """One error naming the weights file when ``state`` does not fit ``model`` (keys and shapes); ``model``
    may live on the meta device (nothing allocated)."""
    expected = model.state_dict()
    problem = state_dict_mismatch(expected, state)
    if problem:
        raise DataError(path, f"does not match backbone '{backbone}' (expects {len(expected)} keys such as "
                        f"{_preview(list(expected), 2)}): {problem}")


class FeatureExtractor:
    """A frozen backbone with its preprocessing contract (``input_size``, ``mean``, ``std``, ``flip_test``)."""

    def __init__(self, model: torch.nn.Module, *, name: str, input_size: int, device: Any = "cpu",
                 flip_test: bool = True, bgr: bool = False, batch_size: int = 64, weights: str | None = None):
        self.name = name
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.input_size = input_size
        self.mean = INPUT_MEAN
        self.std = INPUT_STD
        self.flip_test = flip_test
        self.bgr = bgr
        self.batch_size = batch_size
        self.weights = weights
        self.feature_dim = int(getattr(model, "num_features", 512))

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return x.flip(1) if self.bgr else x

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Raw embeddings of ``x`` (N,3,H,W) in [-1, 1]; differentiable with respect to ``x``."""
        return self.model(self._prepare(x.to(self.device)))

    def embed(self, images: np.ndarray, *, raw: bool = False, on_batch: Any = None) -> np.ndarray:
        """(N, D) float32 embeddings of ``uint8`` NHWC RGB images.

        Default: L2-normalised, flip test if set (the verification protocol). ``raw=True``: the model's
        output for the image alone, unnormalised, as the Vec2Face release extracts its identity features
        (a flip sum would double the norm the released generator was trained on).
        """
        return embed_uint8(_Prepared(self), images, input_size=self.input_size, device=self.device,
                           batch_size=self.batch_size, flip=self.flip_test and not raw, normalize=not raw,
                           on_batch=on_batch)


class _Prepared(torch.nn.Module):
    """The extractor's model behind its input preparation (resize, channel order), as one module."""

    def __init__(self, extractor: FeatureExtractor):
        super().__init__()
        self.model = extractor.model
        self.prepare = extractor._prepare
        self.train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.prepare(x))


def from_backbone(backbone: str, weights: str | os.PathLike | None = None, *, device: Any = "cpu",
                  input_size: int | None = None, flip_test: bool = True, bgr: bool = False, key: str | None = None,
                  batch_size: int = 64, **backbone_kwargs: Any) -> FeatureExtractor:
    """Any registered backbone + a weights file."""
    from facebench.errors import ConfigError

    if weights is None:
        raise ConfigError(f"feature extractor '{backbone}' needs a weights file (--weights FILE)")
    if input_size is not None:
        backbone_kwargs["input_size"] = input_size
    model = registry("backbone").create(backbone, **backbone_kwargs)
    path = resolve_weights(weights)
    load_backbone_weights(model, path, key=key, backbone=backbone)
    size = int(getattr(model, "input_size", input_size or 112))
    return FeatureExtractor(model, name=backbone, input_size=size, device=device, flip_test=flip_test, bgr=bgr,
                            batch_size=batch_size, weights=str(path))


def from_run(weights: str | os.PathLike | None = None, *, device: Any = "cpu", flip_test: bool = True,
             batch_size: int = 64, **_: Any) -> FeatureExtractor:
    """The backbone of a facebench FR training run directory (its ``model.json`` + ``backbone.pt``)."""
    from facebench.errors import ConfigError, UnknownComponentError, first_line
    from facebench.fr.model_card import BACKBONE, read_model_card
    from facebench.runs import MODEL_CARD

    if weights is None:
        raise ConfigError("the fr-run extractor needs --weights RUN_DIR (a facebench train-fr output)")
    run = Path(weights)
    if run.is_file() and run.name in (MODEL_CARD, BACKBONE):
        run = run.parent
    card = read_model_card(run)
    options = dict(card["backbone_options"])

    def build() -> torch.nn.Module:
        try:  # the card is data: a backbone or options that do not build are one error naming it
            return registry("backbone").create(card["backbone"], **options)
        except UnknownComponentError as exc:
            raise DataError(run / MODEL_CARD, f"backbone: {first_line(exc)}") from exc
        except (TypeError, ValueError, RuntimeError, NotImplementedError, ArithmeticError) as exc:  # width 0
            raise DataError(run / MODEL_CARD, f"backbone '{card['backbone']}' cannot be built from the card's "
                            f"backbone_options: {first_line(exc)}") from exc

    # The card's options are checked against the weights on the meta device first: a card asking for a
    # model far larger than its weights fails here, before any memory is allocated for it.
    weights_file = run / card.get("weights", BACKBONE)
    state = _state_dict_from(load_checkpoint(weights_file, what=f"{card['backbone']} weights"), weights_file, None)
    with torch.device("meta"):
        skeleton = build()
    check_backbone_layout(skeleton, state, weights_file, card["backbone"])
    model = build()
    model.load_state_dict(state, strict=True)
    extractor = FeatureExtractor(model, name=f"fr-run:{run.name}", input_size=int(card["input_size"]), device=device,
                                 flip_test=flip_test, batch_size=batch_size,
                                 weights=str(run / card.get("weights", BACKBONE)))
    extractor.card = card  # what the run says of itself (dataset, recipe, accuracies), for evaluate's labels
    return extractor
