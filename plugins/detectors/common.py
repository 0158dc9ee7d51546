"""What the detectors share: their options checked against a dataclass, released state dicts loaded
strictly (with the one renaming the releases need), seeded random weights for the tiny variants and
the parity script, and the device."""

from __future__ import annotations

import os
import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from facebench.config import build_config
from facebench.errors import ConfigError, DataError, FacebenchError
from facebench.safe_load import load_state_dict, state_dict_mismatch


def build_options(cls: type, options: dict[str, Any], name: str) -> Any:
    """The detector's options dataclass from keyword options: an unknown option or a value of the wrong
    type or range is one error naming the detector and the option."""
    try:
        return build_config(cls, options)
    except ConfigError as exc:
        text = re.sub(r"^config '\w+': ", "", str(exc)).replace("config key", "option")
        raise ConfigError(f"detector '{name}': {text}") from None


def check_seed(seed: Any, name: str) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"detector '{name}': option 'seed' expects int, got {type(seed).__name__} {seed!r}")
    return seed


def device_of(device: Any) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, ``"auto"`` or a ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if not isinstance(device, str):
        raise FacebenchError(f"detector device must be a name such as 'cpu' or 'cuda', got {type(device).__name__}")
    from facebench.runtime.device import select_device

    return select_device(device)


def release_state(path: str | os.PathLike, model: nn.Module, what: str) -> dict[str, torch.Tensor]:
    """The state dict of ``path`` in ``model``'s layout, or a one-line error naming the file.

    Read as the releases are written: a plain state dict, every key optionally prefixed ``module.``
    (saved from ``DataParallel``; the references strip it when loading), and BatchNorm's
    ``num_batches_tracked`` counters optional (files saved before torch 0.4.1 lack them; inference never
    reads them). Anything else (a missing, unexpected or wrongly shaped tensor, a dtype of the wrong
    kind, a value that is not finite) is refused; nothing is skipped silently.
    """
    state = load_state_dict(path, what=what)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    expected = model.state_dict()
    for key, value in expected.items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = value.clone()
    problem = state_dict_mismatch(expected, state)
    if problem:
        raise DataError(path, f"{what} do not match the {type(model).__name__} layout: {problem}")
    for key, value in state.items():
        want = expected[key]
        if value.dtype.is_floating_point != want.dtype.is_floating_point or value.is_complex() \
                or value.dtype == torch.bool:
            raise DataError(path, f"{what}: tensor {key} has dtype {str(value.dtype).removeprefix('torch.')}, "
                                  f"expected {str(want.dtype).removeprefix('torch.')}")
        if value.dtype.is_floating_point and not bool(torch.isfinite(value).all()):
            raise DataError(path, f"{what}: tensor {key} holds values that are not finite")
    return state


def load_release(model: nn.Module, path: str | os.PathLike, what: str) -> nn.Module:
    model.load_state_dict(release_state(path, model, what), strict=True)
    return model


def seeded(build, seed: int) -> nn.Module:
    """``build()`` with torch's RNG seeded and restored afterwards: the same random weights every time,
    without disturbing anyone else's random stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, inputs: torch.Tensor) -> nn.Module:
    """Set every BatchNorm's running statistics to those of ``inputs`` (one pass in training mode,
    cumulative averages), so a network with random weights keeps activations of unit scale through its
    depth instead of vanishing or exploding: random detectors then give spread-out, untied scores."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    model(inputs)
    for m in norms:
        m.momentum = 0.1
    return model.eval()


def smooth_noise(count: int, size: int) -> torch.Tensor:
    """``count`` random images (N, 3, size, size) in [0, 255] with a photo's neighbouring-pixel correlation
    (coarse random grids upsampled, plus fine grain): what random weights are calibrated on, since white
    noise has far less low-frequency energy than a photo and calibrates deep layers to the wrong scale."""
    coarse = [F.interpolate(torch.rand(count, 3, g, g), size=(size, size), mode="bicubic", align_corners=False)
              for g in (2, 4, 8, 16)]
    image = sum(coarse) / len(coarse) + 0.05 * torch.randn(count, 3, size, size)
    return (image.clamp(0, 1) * 255).contiguous()
