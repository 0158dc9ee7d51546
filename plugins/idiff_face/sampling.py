"""The releases' noise schedule and samplers, written out step by step (their arithmetic, in their order).

Schedule (both releases' ``diffusion/ddpm.py``, config ``diffusion: ddpm``): T = 1000, ``linear``: betas
evenly spaced from 1e-4 to 0.02 in float32 (for another T both ends are scaled by 1000 / T);
``alpha_bars = exp(cumsum(log(1 - betas)))``; the DDPM model registers these and five derived tables as
buffers, so they are saved in its checkpoints under the names of :data:`BUFFERS`.

Samplers (all start from x_T ~ N(0, I) of the latent's shape):

* ``ddpm`` (IDiff-Face ``sample.py`` -> ``DenoisingDiffusionProbabilisticModel.sample``): every t from T-1
  down to 0, ``x <- (x - eps * beta_t / sqrt(1 - alpha_bar_t)) / sqrt(alpha_t) + sqrt(beta_t) z``; the
  variance is beta_t (not the posterior's), and fresh noise ``z`` is added only while t > 1 (the release's
  ``if i > 1``: the last two steps add none). With a negative context (NegFaceDiff ``sample_ddpm``) the
  model's output is ``(1 + w) eps(identity) - w eps(negative)``.
* ``ddim`` (UIFace ``sample_ddim_2stage``, NegFaceDiff ``sample_ddim``): every ``T // steps``-th t from
  below T down to 0; the "previous" alpha_bar of step t is ``alphas_prev[t - skip]`` with ``alphas_prev
  = [1, alpha_bars[:-1]]`` (so one index below t - skip, and 1 at and below 0), eta 0 by default.
* UIFace's two stages (:func:`uiface`): for t >= ``switch`` (500 of 1000) each step runs the empty
  context, then the identity context with the empty pass's self-attention logits and only for the samples
  whose cross-attention map has settled (the map of the step differs from the previous step's by less
  than ``threshold`` = 0.006 in mean absolute value per pixel; until then a sample keeps the empty
  context); below ``switch`` each step is classifier-free guided, ``(1 + g) eps(identity) - g eps(empty)``
  with g = 1, the identity pass taking the empty pass's self-attention logits and moving its
  cross-attention logits' statistics half-way to the empty pass's.

Noise comes from ``noise()``, called for x_T and then once per DDPM step that adds noise, each call
returning the next (N, C, H, W) draw (the generator draws it per image from the image's own seed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

#: The DDPM module's buffers, in its checkpoints under these names.
BUFFERS = ("betas", "alphas", "sigmas", "sqrt_alphas_inv", "alpha_bars", "sqrt_alpha_bars",
           "sqrt_one_minus_alpha_bars", "one_minus_alphas_over_sqrt_one_minus_alpha_bars")

Noise = Callable[[], torch.Tensor]


@dataclass
class Schedule:
    """The tables the samplers read (float32, length T)."""

    betas: torch.Tensor
    alphas: torch.Tensor
    sigmas: torch.Tensor
    sqrt_alphas_inv: torch.Tensor
    alpha_bars: torch.Tensor
    eps_coef: torch.Tensor  # beta_t / sqrt(1 - alpha_bar_t)
    source: str = "linear"

    @property
    def T(self) -> int:
        return int(self.betas.numel())

    @classmethod
    def linear(cls, T: int = 1000) -> Schedule:
        scale = 1000 / T
        return cls.from_betas(torch.linspace(scale * 0.0001, scale * 0.02, T, dtype=torch.float32),
                              f"linear, T={T}")

    @classmethod
    def from_betas(cls, betas: torch.Tensor, source: str) -> Schedule:
        alphas = 1 - betas
        alpha_bars = torch.cumsum(torch.log(alphas), dim=0).exp()
        return cls(betas=betas, alphas=alphas, sigmas=betas.sqrt(), sqrt_alphas_inv=1 / alphas.sqrt(),
                   alpha_bars=alpha_bars, eps_coef=(1 - alphas) / (1 - alpha_bars).sqrt(), source=source)

    @classmethod
    def from_buffers(cls, buffers: dict[str, torch.Tensor], source: str) -> Schedule:
        """The tables a checkpoint saved (the IDiff-Face release samples with these: its strict load
        overwrites the ones it computed)."""
        b = {k: v.float() for k, v in buffers.items()}
        return cls(betas=b["betas"], alphas=b["alphas"], sigmas=b["sigmas"], sqrt_alphas_inv=b["sqrt_alphas_inv"],
                   alpha_bars=b["alpha_bars"], eps_coef=b["one_minus_alphas_over_sqrt_one_minus_alpha_bars"],
                   source=source)

    def alpha_bar_prev(self, t: int) -> torch.Tensor:
        """The release's ``alphas_prev[t]`` for t >= 0 (``[1, alpha_bars[:-1]]``), 1 below 0."""
        if t <= 0:
            return torch.tensor(1.0)
        return self.alpha_bars[t - 1]

    def to(self, device) -> Schedule:
        fields = {k: getattr(self, k).to(device) for k in ("betas", "alphas", "sigmas", "sqrt_alphas_inv",
                                                           "alpha_bars", "eps_coef")}
        return Schedule(**fields, source=self.source)


def ddpm_step(sched: Schedule, x: torch.Tensor, eps: torch.Tensor, t: int, z: torch.Tensor | None) -> torch.Tensor:
    """x_{t-1} from x_t: the release's update; ``z`` None adds no noise (t <= 1)."""
    x = sched.sqrt_alphas_inv[t] * (x - eps * sched.eps_coef[t])
    return x if z is None else x + sched.sigmas[t] * z


def ddim_step(sched: Schedule, x: torch.Tensor, eps: torch.Tensor, t: int, skip: int, *, eta: float = 0.0,
              noise: Noise | None = None) -> torch.Tensor:
    """x_{t-skip} from x_t with the release's arithmetic (predicted x_0, the eps it implies, the direction)."""
    a_t = sched.alpha_bars[t]
    a_prev = sched.alpha_bar_prev(t - skip).to(x.device)
    b_t, b_prev = 1 - a_t, 1 - a_prev
    x0 = (x - b_t ** 0.5 * eps) / a_t ** 0.5
    std = eta * ((b_prev / b_t) * (1 - a_t / a_prev)) ** 0.5
    eps = (x - a_t ** 0.5 * x0) / b_t ** 0.5
    x = a_prev ** 0.5 * x0 + (1 - a_prev - std ** 2) ** 0.5 * eps
    if eta > 0:
        x = x + std * noise()
    return x


def _t(i: int, n: int, device) -> torch.Tensor:
    return torch.full((n,), i, dtype=torch.long, device=device)


def ddpm(model, sched: Schedule, context: torch.Tensor, noise: Noise, *, negative: torch.Tensor | None = None,
         weight: float = 0.0, progress: Callable[[], None] | None = None) -> torch.Tensor:
    """Ancestral sampling over every one of the T steps (IDiff-Face; NegFaceDiff with ``negative``)."""
    x = noise()
    n = len(x)
    for i in reversed(range(sched.T)):
        z = noise() if i > 1 else None
        t = _t(i, n, x.device)
        eps = model(x, t, context)
        if negative is not None:
            eps = (1 + weight) * eps - weight * model(x, t, negative)
        x = ddpm_step(sched, x, eps, i, z)
        if progress is not None:
            progress()
    return x


def ddim(model, sched: Schedule, context: torch.Tensor, noise: Noise, *, steps: int = 50, eta: float = 0.0,
         negative: torch.Tensor | None = None, weight: float = 0.0) -> torch.Tensor:
    """Plain DDIM (NegFaceDiff's ``sample_ddim``) over every ``T // steps``-th step."""
    x = noise()
    skip = sched.T // steps
    for i in reversed(range(0, sched.T, skip)):
        t = _t(i, len(x), x.device)
        eps = model(x, t, context)
        if negative is not None:
            eps = (1 + weight) * eps - weight * model(x, t, negative)
        x = ddim_step(sched, x, eps, i, skip, eta=eta, noise=noise)
    return x


def attention_map(cross: list, n: int, size: int = 32) -> torch.Tensor:
    """UIFace's summary of where the identity context is attended to: per block, the cross-attention
    logits softmaxed over the image positions, averaged over context tokens and heads, divided by their
    maximum, resized (bilinear) to ``size`` x ``size``; averaged over blocks, then scaled to [0, 1] per
    sample. (n, size, size)."""
    maps = []
    for logits in cross:
        if logits is None:
            continue
        _, lq, lk = logits.shape
        side = int(lq ** 0.5)
        m = torch.softmax(logits.reshape(n, -1, lq, lk), dim=-2).mean(dim=-1).mean(dim=1)
        m = m / m.max(dim=1, keepdim=True)[0]
        m = F.interpolate(m.reshape(n, 1, side, side), size=(size, size), mode="bilinear", align_corners=False)
        maps.append(m.squeeze(1).clamp(0, 1))
    mean = torch.stack(maps, dim=1).mean(dim=1)
    low = mean.reshape(n, -1).min(dim=-1)[0][:, None, None]
    high = mean.reshape(n, -1).max(dim=-1)[0][:, None, None]
    return (mean - low) / (high - low)


@dataclass
class UIFaceTrace:
    """What the two-stage sampler decided (for tests and the record): the step at which each sample took
    its identity context in the first stage (None: only at ``switch``)."""

    switched_at: list[int | None]


def uiface(model, sched: Schedule, context: torch.Tensor, noise: Noise, *, steps: int = 50, switch: int = 500,
           threshold: float = 0.006, guidance: float = 1.0, eta: float = 0.0, map_size: int = 32,
           trace: UIFaceTrace | None = None) -> torch.Tensor:
    """UIFace's two-stage DDIM (``sample_ddim_2stage`` with ``sample_ddim_config.yaml``'s settings)."""
    x = noise()
    n = len(x)
    skip = sched.T // steps
    condition = torch.zeros(n, dtype=torch.bool, device=x.device)
    previous = None
    for i in reversed(range(0, sched.T, skip)):
        t = _t(i, n, x.device)
        eps_empty, empty_logits = model(x, t, None, capture=True)
        if i < switch:  # second stage: guided by the identity, attention injected from the empty pass
            eps_id = model(x, t, context, inject=empty_logits)
            eps = (1 + guidance) * eps_id - guidance * eps_empty
        else:  # first stage: the empty context until a sample's attention map settles
            inject = [None if p is None else (p[0], None) for p in empty_logits]
            eps, logits = model(x, t, context, condition=condition, inject=inject, capture=True)
            current = attention_map([None if p is None else p[1] for p in logits], n, map_size)
            if previous is not None:
                settled = (previous - current).pow(2).sqrt().mean(dim=(1, 2)) < threshold
                if trace is not None:
                    for k in torch.nonzero(settled & ~condition).flatten().tolist():
                        trace.switched_at[k] = i
                condition = condition | settled
            previous = current
        x = ddim_step(sched, x, eps, i, skip, eta=eta, noise=noise)
    return x


__all__ = ["BUFFERS", "Schedule", "UIFaceTrace", "attention_map", "ddim", "ddim_step", "ddpm", "ddpm_step",
           "uiface"]
