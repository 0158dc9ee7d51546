"""The two samplers DCFace's release runs, with its arithmetic.

* :class:`DDIM`: the DDIM scheduler of the diffusers version the release vendors (``src/diffusers``, from
  before 0.4), as ``DDIMPipeline`` drives it in ``sample_visual.render_condition``: a linear beta schedule
  in float32, ``alphas_cumprod`` a float32 cumulative product, timesteps ``arange(steps) * (1000 //
  steps)`` reversed, the predicted x0 clipped to [-1, 1] (``clip_sample`` defaults to True), the final
  "previous" alpha product 1 (kept in float64, as the release's scheduler converts ``np.array(1.0)``), and
  with ``eta`` > 0 noise of scale ``eta * sqrt(variance)`` added after the deterministic update. The
  release draws that noise, and the starting noise, from torch's global generator; here a ``noise``
  callable supplies it, so each image can have its own seeded stream (the parity script passes the
  global one).
* :class:`SpacedDDPM`: guided-diffusion's ``SpacedDiffusion`` as the first stage samples (``p_sample_loop``,
  ``timestep_respacing="100"`` of a 1000-step linear schedule, learned-range variance, x0 clipped):
  constants in float64 numpy, taken per step as float32; the network sees the original timestep index.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

Noise = Callable[[tuple[int, ...]], torch.Tensor]


class DDIM:
    """The release's DDIM (``eta`` 1.0 and 50 steps as ``render_condition`` calls it)."""

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.0001, beta_end: float = 0.02,
                 clip_sample: bool = True):
        self.num_train_timesteps = int(num_train_timesteps)
        betas = np.linspace(beta_start, beta_end, self.num_train_timesteps, dtype=np.float32)
        self.alphas_cumprod = torch.from_numpy(np.cumprod(1.0 - betas, axis=0))
        self.final_alpha_cumprod = torch.from_numpy(np.array(1.0))
        self.clip_sample = clip_sample
        self.steps = 0
        self.timesteps = torch.empty(0, dtype=torch.int64)

    def set_timesteps(self, steps: int) -> torch.Tensor:
        if not 1 <= steps <= self.num_train_timesteps:
            raise ValueError(f"DDIM steps must be in 1..{self.num_train_timesteps}, got {steps}")
        self.steps = int(steps)
        ratio = self.num_train_timesteps // self.steps
        self.timesteps = torch.from_numpy((np.arange(0, self.steps) * ratio).round()[::-1].copy())
        return self.timesteps

    def _alphas(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        prev = t - self.num_train_timesteps // self.steps
        return self.alphas_cumprod[t], (self.alphas_cumprod[prev] if prev >= 0 else self.final_alpha_cumprod)

    def variance(self, t: int) -> torch.Tensor:
        alpha_t, alpha_prev = self._alphas(t)
        return ((1 - alpha_prev) / (1 - alpha_t)) * (1 - alpha_t / alpha_prev)

    def step(self, eps: torch.Tensor, t: int, sample: torch.Tensor, eta: float = 1.0,
             noise: Noise | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_{t-1}, predicted x0)."""
        alpha_t, alpha_prev = self._alphas(int(t))
        beta_t = 1 - alpha_t
        x0 = (sample - beta_t ** 0.5 * eps) / alpha_t ** 0.5
        if self.clip_sample:
            x0 = torch.clamp(x0, -1, 1)
        std = eta * self.variance(int(t)) ** 0.5
        prev = alpha_prev ** 0.5 * x0 + (1 - alpha_prev - std ** 2) ** 0.5 * eps
        if eta > 0:
            if noise is None:
                raise ValueError("DDIM with eta > 0 needs a noise source")
            prev = prev + self.variance(int(t)) ** 0.5 * eta * noise(tuple(eps.shape)).to(eps.device)
        return prev, x0

    def sample(self, eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape: tuple[int, ...],
               noise: Noise, steps: int = 50, eta: float = 1.0, device: Any = "cpu") -> torch.Tensor:
        """The pipeline: x_T from ``noise``, ``steps`` updates; returns x_0 in [-1, 1] (unclamped: the
        release clamps after mapping to [0, 1], the same thing)."""
        x = noise(shape).to(device)
        for t in self.set_timesteps(steps):
            x, _ = self.step(eps_fn(x, t), int(t), x, eta, noise)
        return x


def space_timesteps(num_timesteps: int, count: int) -> list[int]:
    """guided-diffusion's ``space_timesteps(num_timesteps, str(count))``: ``count`` evenly strided steps."""
    if not 1 <= count <= num_timesteps:
        raise ValueError(f"respacing must take 1..{num_timesteps} steps, got {count}")
    stride = 1 if count <= 1 else (num_timesteps - 1) / (count - 1)
    steps, cur = [], 0.0
    for _ in range(count):
        steps.append(round(cur))
        cur += stride
    return sorted(set(steps))


class SpacedDDPM:
    """Ancestral sampling on a respaced linear schedule with a learned-range variance (the first stage)."""

    def __init__(self, num_timesteps: int = 1000, respacing: int = 100, beta_start: float = 0.0001,
                 beta_end: float = 0.02):
        scale = 1000 / num_timesteps
        base = np.linspace(scale * beta_start, scale * beta_end, num_timesteps, dtype=np.float64)
        base_cumprod = np.cumprod(1.0 - base, axis=0)
        self.timestep_map = space_timesteps(num_timesteps, respacing)
        last, betas = 1.0, []
        for i, acp in enumerate(base_cumprod):
            if i in set(self.timestep_map):
                betas.append(1 - acp / last)
                last = acp
        self.betas = betas = np.array(betas, dtype=np.float64)
        acp = np.cumprod(1.0 - betas, axis=0)
        acp_prev = np.append(1.0, acp[:-1])
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / acp)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / acp - 1)
        posterior_variance = betas * (1.0 - acp_prev) / (1.0 - acp)
        self.posterior_log_variance_clipped = np.log(np.append(posterior_variance[1], posterior_variance[1:]))
        self.posterior_mean_coef1 = betas * np.sqrt(acp_prev) / (1.0 - acp)
        self.posterior_mean_coef2 = (1.0 - acp_prev) * np.sqrt(1.0 - betas) / (1.0 - acp)
        self.log_betas = np.log(betas)

    @property
    def num_steps(self) -> int:
        return len(self.betas)

    @staticmethod
    def _at(values: np.ndarray, i: int, like: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(values).to(like.device)[torch.full((like.shape[0],), i, dtype=torch.int64,
                                                                   device=like.device)].float()[:, None, None, None]

    def step(self, out: torch.Tensor, i: int, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x at respaced step ``i - 1`` from the network output (B, 6, H, W) at step ``i``."""
        c = x.shape[1]
        eps, var = out[:, :c], out[:, c:]
        min_log = self._at(self.posterior_log_variance_clipped, i, x)
        max_log = self._at(self.log_betas, i, x)
        frac = (var + 1) / 2
        log_variance = frac * max_log + (1 - frac) * min_log
        x0 = (self._at(self.sqrt_recip_alphas_cumprod, i, x) * x
              - self._at(self.sqrt_recipm1_alphas_cumprod, i, x) * eps).clamp(-1, 1)
        mean = self._at(self.posterior_mean_coef1, i, x) * x0 + self._at(self.posterior_mean_coef2, i, x) * x
        nonzero = float(i != 0)
        return mean + nonzero * torch.exp(0.5 * log_variance) * noise

    def sample(self, model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape: tuple[int, ...],
               noise: Noise, device: Any = "cpu") -> torch.Tensor:
        x = noise(shape).to(device)
        for i in reversed(range(self.num_steps)):
            t = torch.full((shape[0],), self.timestep_map[i], dtype=torch.int64, device=device)
            x = self.step(model(x, t), i, x, noise(shape).to(device))
        return x
