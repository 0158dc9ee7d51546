"""The released files, read as saved and strictly: a model folder holding the denoiser checkpoint and the
first-stage decoder.

``--weights DIR`` (the generator is registered with ``weights_dir=True``) holds:

* the denoiser: one ``*.ckpt`` file (IDiff-Face ``checkpoints/ema_averaged_model.ckpt`` or
  ``ema_averaged_model_<step>.ckpt``; UIFace's released checkpoint), or the file named by
  ``--generator-option checkpoint=NAME``. Both releases ``torch.save`` the EMA copy of their
  ``DenoisingDiffusionProbabilisticModel``'s ``state_dict()``: a flat dict of tensors, the UNet under
  ``eps_model.`` and the eight schedule tables (``betas`` ...) beside it. UIFace trained under Lightning
  1.5's Lite with DDP, where ``.module`` is the DDP wrapper, so its keys may carry ``module.`` in front
  (its ``sample.py`` strips ``eps_model.`` and ``module.`` and loads the rest non-strictly); a bare UNet
  state dict is accepted too. Here the prefix must be one of :data:`PREFIXES`, the same for every UNet
  key, and after it the keys and shapes must be exactly the UNet's (a learned ``empty_context_embedding``
  marks UIFace's variant); the schedule tables are all there or all absent.
* ``first_stage_decoder_state_dict.pt``: the decoder cut out of LDM's FFHQ-256 VQ model (see ``vq.py``),
  strict. (``first_stage_encoder_state_dict.pt``, used by the releases only for training and to compute
  the latent's shape, is not needed.)

Every file is read with ``weights_only=True`` (``facebench.safe_load``); every way it can be wrong is one
``DataError`` naming it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from facebench.errors import DataError, FacebenchError, MissingFileError
from facebench.safe_load import (
    load_checkpoint,
    resolves_inside,
    shown_name,
    state_dict_in,
    state_dict_mismatch,
)

from .sampling import BUFFERS
from .unet import IdentityUNet, UNetConfig
from .vq import DecoderConfig, LatentDecoder

DECODER_FILE = "first_stage_decoder_state_dict.pt"
CHECKPOINT_SUFFIXES = (".ckpt",)
#: Where the UNet's keys may sit in a denoiser checkpoint, as the releases save it: the DDPM module
#: (``eps_model.``), its DDP-wrapped copy (``module.eps_model.``), a bare UNet (``""``, ``module.``).
PREFIXES = ("eps_model.", "module.eps_model.", "", "module.")
_ANCHOR = "image_proj.weight"


@dataclass
class ModelFiles:
    root: Path
    checkpoint: Path
    decoder: Path


def resolve_files(model_dir: str | os.PathLike, checkpoint: str = "") -> ModelFiles:
    """The denoiser checkpoint and the decoder in ``model_dir`` (names confined to the folder)."""
    root = Path(model_dir)
    if not root.is_dir():
        if root.is_file():
            raise DataError(root, "is a file; --weights takes the model folder holding the denoiser checkpoint "
                                  f"(*.ckpt) and {DECODER_FILE}")
        raise MissingFileError(root, "IDiff-Face model folder")
    if checkpoint:
        if Path(checkpoint).name != checkpoint or checkpoint in (".", ".."):
            raise FacebenchError(f"idiff_face: checkpoint must be a file name inside {root}, got "
                                 f"'{shown_name(checkpoint)}'")
        ckpt = root / checkpoint
        if not ckpt.is_file():
            raise MissingFileError(ckpt, "denoiser checkpoint")
    else:
        found = sorted(p for p in root.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())
        if not found:
            raise MissingFileError(root / "ema_averaged_model.ckpt",
                                   "denoiser checkpoint (no *.ckpt file in the model folder)")
        if len(found) > 1:
            names = ", ".join(p.name for p in found[:4]) + (", ..." if len(found) > 4 else "")
            raise FacebenchError(f"{root}: holds {len(found)} denoiser checkpoints ({names}); choose one with "
                                 "--generator-option checkpoint=NAME")
        ckpt = found[0]
    decoder = root / DECODER_FILE
    if not decoder.is_file():
        raise MissingFileError(decoder, "first-stage decoder (LDM FFHQ-256 VQ, as IDiff-Face's README ships it)")
    for path in (ckpt, decoder):
        if not resolves_inside(path, root):
            raise DataError(path, f"links out of the model folder {root}; copy the file in (cp -L)")
    return ModelFiles(root=root, checkpoint=ckpt, decoder=decoder)


def _tensors(path: Path, obj: Any, what: str) -> dict[str, torch.Tensor]:
    state = state_dict_in(obj, path, what=what)
    if not state:
        raise DataError(path, f"{what}: the state dict is empty")
    for key, value in state.items():
        if not isinstance(key, str):
            raise DataError(path, f"{what}: keys must be strings, found {type(key).__name__}")
        if not value.is_floating_point():
            raise DataError(path, f"{what}: tensor is {str(value.dtype).removeprefix('torch.')}, expected floats",
                            shown_name(key))
        if not bool(torch.isfinite(value).all()):
            raise DataError(path, f"{what}: tensor holds NaN or infinite values", shown_name(key))
    return state


def _expected(module: torch.nn.Module) -> dict[str, Any]:
    return module.state_dict()


@dataclass
class Denoiser:
    state: dict[str, torch.Tensor]  # UNet keys without the prefix
    buffers: dict[str, torch.Tensor] | None  # the schedule tables, when saved
    config: UNetConfig
    prefix: str


def read_denoiser(path: Path, config: UNetConfig) -> Denoiser:
    """The denoiser checkpoint, checked against ``config`` (its empty-context variant taken from the file)."""
    state = _tensors(path, load_checkpoint(path, what="denoiser checkpoint"), "denoiser checkpoint")
    anchors = [k for k in state if k == _ANCHOR or k.endswith("." + _ANCHOR)]
    if len(anchors) != 1:
        problem = "no UNet (no key ending in image_proj.weight)" if not anchors else \
            f"{len(anchors)} UNets ({', '.join(map(shown_name, anchors[:3]))})"
        raise DataError(path, f"denoiser checkpoint: holds {problem}; expected the state dict of IDiff-Face's "
                              "DenoisingDiffusionProbabilisticModel (keys eps_model.*)")
    prefix = anchors[0][: -len(_ANCHOR)]
    if prefix not in PREFIXES:
        raise DataError(path, f"denoiser checkpoint: UNet keys under '{shown_name(prefix)}', expected one of "
                              + ", ".join(f"'{p}'" for p in PREFIXES))
    outer = prefix.removesuffix("eps_model.")
    unet: dict[str, torch.Tensor] = {}
    buffers: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(outer) and key[len(outer):] in BUFFERS:
            buffers[key[len(outer):]] = value
        elif key.startswith(prefix):
            unet[key[len(prefix):]] = value
        else:
            unet[key] = value  # reported as unexpected below
    variant = UNetConfig(**{**config.__dict__, "learned_empty_context": "empty_context_embedding" in unet})
    with torch.device("meta"):
        expected = _expected(IdentityUNet(variant))
    problem = state_dict_mismatch(expected, unet)
    if problem:
        raise DataError(path, f"does not match the IDiff-Face/UIFace denoiser ({len(expected)} tensors such as "
                              f"{prefix}image_proj.weight, {prefix}context_emb.weight): {problem}")
    if buffers:
        _check_buffers(path, buffers, outer)
    return Denoiser(state=unet, buffers=buffers or None, config=variant, prefix=prefix)


def _check_buffers(path: Path, buffers: dict[str, torch.Tensor], outer: str) -> None:
    missing = [outer + k for k in BUFFERS if k not in buffers]
    if missing:
        raise DataError(path, f"denoiser checkpoint: the schedule tables are incomplete ({len(missing)} missing: "
                              f"{', '.join(missing[:3])})")
    length = {tuple(v.shape) for v in buffers.values()}
    if len(length) != 1 or len(next(iter(length))) != 1 or next(iter(length))[0] < 2:
        raise DataError(path, "denoiser checkpoint: the schedule tables must be 1-d of one length >= 2, found "
                              + ", ".join(sorted(str(s) for s in length)))
    betas = buffers["betas"]
    if not bool(((betas > 0) & (betas < 1)).all()):
        raise DataError(path, "denoiser checkpoint: betas must lie in (0, 1)", outer + "betas")
    if not bool((buffers["alpha_bars"] > 0).all()):
        raise DataError(path, "denoiser checkpoint: alpha_bars must be positive", outer + "alpha_bars")


def build_denoiser(den: Denoiser) -> IdentityUNet:
    model = IdentityUNet(den.config)
    model.load_state_dict(den.state, strict=True)
    return model.eval().requires_grad_(False)


def read_decoder(path: Path, config: DecoderConfig) -> dict[str, torch.Tensor]:
    state = _tensors(path, load_checkpoint(path, what="first-stage decoder"), "first-stage decoder")
    with torch.device("meta"):
        expected = _expected(LatentDecoder(config))
    problem = state_dict_mismatch(expected, state)
    if problem:
        raise DataError(path, f"does not match the first-stage VQ decoder of LDM's FFHQ-256 model "
                              f"({len(expected)} tensors such as decoder.conv_in.weight, "
                              f"quantize.embedding.weight): {problem}")
    return state


def build_decoder(state: dict[str, torch.Tensor], config: DecoderConfig) -> LatentDecoder:
    model = LatentDecoder(config)
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)


__all__ = ["DECODER_FILE", "PREFIXES", "Denoiser", "ModelFiles", "build_decoder", "build_denoiser",
           "read_decoder", "read_denoiser", "resolve_files"]
