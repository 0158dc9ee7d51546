"""The release's training-checkpoint layout, so runs move between facebench and the release's code.

The release saves ``{model_vec2face, model_disc, model_ema, optimizer_vec2face, optimizer_disc, epoch,
scaler, args}`` (``epoch`` = the last finished epoch; it resumes at ``epoch + 1``; ``args`` is its
``argparse.Namespace``). An optimizer state dict names parameters by position, so it is interchangeable
only when both optimisers list the same parameters in the same order: :func:`release_parameters` gives
facebench's model parameters in the order the release's model registers them.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from torch import nn

from facebench.errors import DataError
from facebench.safe_load import expect, load_checkpoint
from facebench.training import load_like

from .generator import POSE_KEY, STATE_KEY

DISC_KEY = "model_disc"
OPTIMIZER_KEY = "optimizer_vec2face"
DISC_OPTIMIZER_KEY = "optimizer_disc"
#: Version of facebench's own keys beside the release's (1: before the release's layout; not resumable).
TRAINING_FORMAT = 2
#: The keys every release training checkpoint has (``model_ema`` and ``args`` are not needed to continue).
RELEASE_KEYS = (STATE_KEY, DISC_KEY, OPTIMIZER_KEY, DISC_OPTIMIZER_KEY, "epoch")
#: Vec2Face+'s pose training (``pose_training.py``) saves ``{epoch, model_vec2face, pose_model, optimizer,
#: args}``: the whole generator with its adapters, the pose model, one AdamW over the pose model's and the
#: adapters' parameters (in that order), no scaler and no scheduler state.
POSE_OPTIMIZER_KEY = "optimizer"
POSE_RELEASE_KEYS = (STATE_KEY, POSE_KEY, POSE_OPTIMIZER_KEY, "epoch")

#: The release's ``MaskedGenerativeEncoderViT`` creates its submodules in this order; its one direct
#: parameter, ``decoder_pos_embed_learned``, comes first in ``named_parameters()`` (a module's own
#: parameters precede its children's). The released state dict lists its tensors in the same order.
RELEASE_MODULE_ORDER = ("decoder_pos_embed_learned", "token_emb", "latent_prior_proj_f", "feature_token",
                        "center_token", "im_decoder", "im_decoder_proj", "patch_embed", "blocks", "norm",
                        "decoder_embed", "decoder_blocks", "decoder_norm")


def release_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """``model.named_parameters()`` reordered by top-level module as the release registers them (the
    order inside each module is already the release's), so ``AdamW`` state dicts are interchangeable."""
    rank = {name: i for i, name in enumerate(RELEASE_MODULE_ORDER)}
    named = list(model.named_parameters())
    unknown = sorted({n.split(".")[0] for n, _ in named} - set(rank))
    if unknown:
        raise ValueError(f"parameters outside the release's layout: {', '.join(unknown)}")
    return sorted(named, key=lambda item: rank[item[0].split(".")[0]])  # stable: keeps the inner order


def read_training_checkpoint(path: str | os.PathLike, keys: tuple[str, ...] = RELEASE_KEYS,
                             what: str = "Vec2Face training checkpoint") -> dict[str, Any]:
    """A training checkpoint of facebench or of the release (with ``keys``: :data:`RELEASE_KEYS`, or
    :data:`POSE_RELEASE_KEYS` for the pose model's), loaded with ``weights_only=True``; the only class
    allowed beyond tensors and plain values is ``argparse.Namespace`` (the release's ``args``)."""
    data = read_checkpoint_dict(path, what)
    return check_training_checkpoint(data, path, keys, what)


def read_checkpoint_dict(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A checkpoint file that must hold a dict, read safely (``argparse.Namespace`` allowed)."""
    import torch

    with torch.serialization.safe_globals([argparse.Namespace]):
        data = load_checkpoint(path, what=what)
    if not isinstance(data, dict):
        raise DataError(path, f"not a {what} (a {type(data).__name__}, not a dict)")
    return data


def check_training_checkpoint(data: dict[str, Any], path: str | os.PathLike, keys: tuple[str, ...] = RELEASE_KEYS,
                              what: str = "Vec2Face training checkpoint") -> dict[str, Any]:
    """``data`` when it has the training ``keys``, a facebench format this version reads and a valid epoch."""
    if data.get("training_format", TRAINING_FORMAT) != TRAINING_FORMAT:
        raise DataError(path, f"written by an older facebench (training format {data['training_format']}, "
                              f"now {TRAINING_FORMAT}); start a new run")
    missing = [k for k in keys if k not in data]
    if missing:
        found = ", ".join(sorted(map(str, data))[:8])
        raise DataError(path, f"not a {what}: no {', '.join(missing)} (found {found})")
    # the last finished epoch, as the release counts: -1 when saved inside the first epoch
    if expect(path, data["epoch"], int, "epoch") < -1:
        raise DataError(path, f"epoch must be at least -1 (the last finished epoch), found {data['epoch']}")
    return data


def load_scaler_state(scaler: Any, state: dict[str, Any] | None, path: str | os.PathLike = "checkpoint") -> None:
    """A GradScaler state from either side: a disabled scaler saves ``{}`` and ignores what it is given,
    so an empty state leaves an enabled scaler at its initial scale instead of failing. A state of another
    shape than the scaler's own is an error naming ``path``."""
    if state:
        load_like(scaler, state, path, "scaler")
