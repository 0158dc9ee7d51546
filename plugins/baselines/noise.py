"""``noise_projection``: the simplest class-conditional generator, a lower bound for real generators.

An identity vector is mapped by a fixed random matrix (drawn from ``seed``) to a coarse colour
pattern, upsampled to the image size, plus a little per-image noise. Vectors that are close (the
perturbed samples of one identity) give similar images and distant ones different images, so an FR
model can learn to separate its classes; but nothing about the images looks like a face, so what it
learns should transfer poorly to real (or toyfaces) test pairs. A generator that does not clearly
beat this baseline is not adding face knowledge.

Config-free weights: the projection is a function of (seed, feature_dim, grid); ``weights`` may name a
``.pt`` file holding ``{"projection": tensor (feature_dim, 3*grid*grid)}`` to pin one explicitly.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from facebench.errors import ConfigError, DataError, FacebenchError
from facebench.safe_load import load_state_dict

from .config import NoiseProjectionConfig


class NoiseProjectionGenerator:
    """``generate(vectors, *, masks=None)`` -> (N, 3, image_size, image_size) in [-1, 1]."""

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu", **kwargs):
        unknown = set(kwargs) - set(NoiseProjectionConfig.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"noise_projection: unknown option(s) {', '.join(sorted(unknown))}")
        self.config = NoiseProjectionConfig(**kwargs)
        cfg = self.config
        if cfg.grid < 1 or cfg.image_size < cfg.grid or cfg.feature_dim < 1:
            raise ConfigError(f"noise_projection: need 1 <= grid <= image_size and feature_dim >= 1, got {cfg}")
        self.device = torch.device(device)
        self.feature_dim = cfg.feature_dim
        self.image_size = cfg.image_size
        shape = (cfg.feature_dim, 3 * cfg.grid * cfg.grid)
        if weights is not None:
            state = load_state_dict(weights, what="noise_projection weights")
            if "projection" not in state or tuple(state["projection"].shape) != shape:
                found = {k: tuple(v.shape) for k, v in state.items()}
                raise DataError(weights, f"expected key 'projection' of shape {shape}, found {found}")
            projection = state["projection"].float()
        else:
            rng = torch.Generator().manual_seed(cfg.seed)
            projection = torch.randn(shape, generator=rng) / cfg.feature_dim**0.5
        self.projection = projection.to(self.device)
        self._noise_rng = torch.Generator(device="cpu").manual_seed(cfg.seed + 1)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"projection": self.projection.cpu()}

    @torch.inference_mode()
    def generate(self, vectors: torch.Tensor, *, masks=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """``masks`` is accepted for interface compatibility and ignored: there is nothing to mask.
        ``generator`` (a CPU ``torch.Generator``, which ``facebench generate`` seeds per shard) draws the
        per-image noise; without it the generator's own RNG does."""
        x = torch.as_tensor(vectors, dtype=torch.float32, device=self.device)
        if x.ndim != 2 or x.shape[1] != self.feature_dim:
            raise FacebenchError(
                f"noise_projection: vectors of shape {tuple(x.shape)}, expected (N, {self.feature_dim}); "
                "set feature_dim to the width of your identity features"
            )
        g = self.config.grid
        coarse = torch.tanh(self.config.gain * (F.normalize(x, dim=1) @ self.projection)).view(-1, 3, g, g)
        images = coarse
        if self.image_size != g:
            images = F.interpolate(coarse, size=(self.image_size, self.image_size), mode="bilinear",
                                   align_corners=False)
        if self.config.noise > 0:
            noise = torch.randn(images.shape, generator=generator or self._noise_rng).to(self.device)
            images = images + self.config.noise * noise
        return images.clamp(-1.0, 1.0)
