"""A tiny random-weight model folder in the releases' layout, for CPU tests and pipeline checks.

The same files, keys and prefixes as the released ones (``layout.py``): the denoiser as the DDPM module's
state dict (``eps_model.*`` plus the schedule tables of a linear T = 50 schedule, computed as the release
computes them for T != 1000) in ``ema_averaged_model_0.ckpt``, and ``first_stage_decoder_state_dict.pt``;
``facebench_tiny.json`` marks the folder as untrained, so datasets made from it are marked as pipeline
checks. Every tensor is random (none zero-initialised, so every path matters), seeded (:func:`random_state`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .generator import TINY_MARKER
from .layout import DECODER_FILE
from .unet import TINY as TINY_UNET
from .vq import TINY as TINY_DECODER

#: The tiny latent side: 14 -> a 56 px image (facebench's tiny size) through the x4 tiny decoder.
TINY_LATENT = 14
TINY_T = 50
CHECKPOINT = "ema_averaged_model_0.ckpt"


def random_state(module, seed: int) -> dict:
    """``module``'s state dict drawn at random, seeded, at scales that keep a random network's activations
    O(1) so that every path moves the output: weights N(0, 1/fan_in); the identity projection's
    (``context_emb``) and the learned empty context N(0, 1), the identity vector being a unit vector
    (with every weight at std 0.05, each layer's output was its bias and the identity context moved a
    sampled latent by less than float32's rounding); biases N(0, 0.05^2); norm weights 1 + N(0, 0.05^2)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in module.state_dict().items():
        noise = torch.randn(value.shape, generator=g)
        if key.endswith("context_emb.weight") or key.endswith("empty_context_embedding"):
            state[key] = noise
        elif value.ndim >= 2:
            state[key] = noise / value[0].numel() ** 0.5
        else:
            state[key] = (1 + 0.05 * noise) if key.endswith("weight") else 0.05 * noise
    return state


def denoiser_state(seed: int = 0, prefix: str = "eps_model.", *, timesteps: int = TINY_T, unet=TINY_UNET) -> dict:
    """A release-layout denoiser state dict: UNet keys under ``prefix`` plus the schedule tables."""
    from .sampling import BUFFERS, Schedule
    from .unet import IdentityUNet

    state = {prefix + k: v for k, v in random_state(IdentityUNet(unet), seed).items()}
    sched = Schedule.linear(timesteps)
    tables = {"betas": sched.betas, "alphas": sched.alphas, "sigmas": sched.sigmas,
              "sqrt_alphas_inv": sched.sqrt_alphas_inv, "alpha_bars": sched.alpha_bars,
              "sqrt_alpha_bars": sched.alpha_bars.sqrt(), "sqrt_one_minus_alpha_bars": (1 - sched.alpha_bars).sqrt(),
              "one_minus_alphas_over_sqrt_one_minus_alpha_bars": sched.eps_coef}
    outer = prefix.removesuffix("eps_model.")
    state.update({outer + k: tables[k].clone() for k in BUFFERS})
    return state


def decoder_state(seed: int = 1, decoder=TINY_DECODER) -> dict:
    from .vq import LatentDecoder

    return random_state(LatentDecoder(decoder), seed)


def make_tiny(out: str | os.PathLike, *, seed: int = 0, overwrite: bool = False) -> Path:
    """Write the tiny model folder to ``out`` and return it: written beside it under a temporary name and
    renamed when complete (:func:`facebench.atomic.atomic_dir`), so a killed call leaves no half-written
    model; an existing ``out`` is replaced only with ``overwrite``."""
    import torch

    from facebench import atomic

    out = Path(out)
    with atomic.atomic_dir(out, overwrite=overwrite, what="tiny model folder") as tmp:
        torch.save(denoiser_state(seed), tmp / CHECKPOINT)
        torch.save(decoder_state(seed + 1), tmp / DECODER_FILE)
        marker = {"untrained": True, "pipeline_check": True, "seed": seed, "latent": TINY_LATENT,
                  "timesteps": TINY_T}
        (tmp / TINY_MARKER).write_text(json.dumps(marker, indent=2))
    return out


__all__ = ["CHECKPOINT", "TINY_DECODER", "TINY_LATENT", "TINY_T", "TINY_UNET", "decoder_state", "denoiser_state",
           "make_tiny", "random_state"]
