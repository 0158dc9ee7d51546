"""The identity-conditioned denoiser of IDiff-Face and UIFace: a UNet whose attention blocks attend to a
context built from the identity vector.

The released models are the cross-attention ("CA") variant of the release's ``ConditionalUNet`` (IDiff-Face
``configs/model/unet_cond_ca_cpd25.yaml`` and ``_cpd50``, UIFace ``unet_cond_ca_cpd25_uncond20.yaml``):
96 base channels, multipliers (1, 2, 2, 2), two blocks per level, attention on every level but the first,
32 channels per head, a 512-d identity vector projected to a 256-d context. Parameter names follow the
release's state dicts, so its checkpoints load strictly (``layout.py``); the code is facebench's.

How the context reaches the image (the facts the sampling depends on):

* ``context_emb`` (Linear 512 -> 256) maps the identity vector as given; the sampler normalises it first,
  as both releases' context files and ``sample.py`` do. No identity vector ("empty context") is not the
  projection of a zero vector: it replaces the projected context by ``empty_context_embedding``, a zero
  vector in IDiff-Face (``learn_empty_context: False``, not saved) and a learned 256-d parameter in UIFace
  (``learn_empty_context: True``, saved).
* each attention block expands the 256-d context into 32 tokens of 256 channels (``c_proj_in``: Linear
  256 -> 256 x 32, read as (256, 32), GroupNorm over the 256 channels), then runs self-attention over the
  image positions, cross-attention from the positions to the 32 context tokens and a feed-forward
  layer, all sharing one GroupNorm (``x_norm``), between a 1x1 projection in and a zero-initialised one out.
* the residual blocks see only the time embedding (adaptive group norm: ``(1 + scale) * norm(h) + shift``).
* context dropout (``context_dropout_probability`` 0.25 / 0.5, IDiff-Face's "CPD") is a ``Dropout`` on the
  projected context during training only; both releases sample in ``eval()`` mode, where it does nothing,
  so it has no counterpart here.

UIFace's sampler needs two things from a forward pass, both optional here: the attention logits of each
block (``capture``) and their injection into a second pass (``self_logits``: replace a block's
self-attention logits; ``cross_logits``: move the cross-attention logits' per-query mean and standard
deviation half-way to the given pass's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class UNetConfig:
    """The architecture of one released denoiser (the release's model config keys in brackets)."""

    input_channels: int = 3  # [input_channels]: the VQ latent's channels
    initial_channels: int = 96  # [initial_channels]
    channel_multipliers: tuple[int, ...] = (1, 2, 2, 2)  # [channel_multipliers]
    attention: tuple[bool, ...] = (False, True, True, True)  # [is_attention]
    head_channels: int = 32  # [attention_head_channels]; heads = channels // 32 [attention_heads: -1]
    blocks_per_level: int = 2  # [n_blocks_per_resolution]
    context_input: int = 512  # [context_input_channels]: the identity vector's width
    context_channels: int = 256  # [context_channels]
    learned_empty_context: bool = False  # [learn_empty_context]: UIFace True, IDiff-Face False

    def __post_init__(self) -> None:
        if len(self.channel_multipliers) != len(self.attention) or not self.channel_multipliers:
            raise ValueError("channel_multipliers and attention need one entry per level")


#: IDiff-Face's released denoisers (``unet_cond_ca_cpd25`` / ``_cpd50``: 216,341,187 parameters).
RELEASE = UNetConfig()
#: UIFace's (``unet_cond_ca_cpd25_uncond20``): the same network plus the learned empty context.
RELEASE_UIFACE = UNetConfig(learned_empty_context=True)
#: facebench's tiny configuration (CPU tests): the same code at 32/64 channels, one block per level.
TINY = UNetConfig(initial_channels=32, channel_multipliers=(1, 2), attention=(False, True), blocks_per_level=1,
                  context_channels=32, learned_empty_context=True)


class TimeEmbedding(nn.Module):
    """Sinusoidal features of the timestep (cosines first) through two linear layers."""

    def __init__(self, channels: int, max_period: float = 10000.0):
        super().__init__()
        width = channels // 4
        half = width // 2
        self.register_buffer("frequencies", torch.exp(-math.log(max_period) * torch.arange(half).float() / half),
                             persistent=False)
        self.lin1 = nn.Linear(width, channels)
        self.lin2 = nn.Linear(channels, channels)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t[:, None].float() * self.frequencies[None]
        return self.lin2(F.silu(self.lin1(torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1))))


class AdaptiveNorm(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.GroupNorm(32, channels)

    def forward(self, h: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        return (1 + scale) * self.norm(h) + shift


class ResBlock(nn.Module):
    """Two 3x3 convolutions; the time embedding scales and shifts the second group norm."""

    def __init__(self, cin: int, cout: int, time_channels: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(32, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb = nn.Sequential(nn.SiLU(), nn.Linear(time_channels, cout))
        self.scale_emb = nn.Linear(cout, cout)
        self.shift_emb = nn.Linear(cout, cout)
        self.norm2 = AdaptiveNorm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        emb = self.time_emb(temb)
        h = self.norm2(h, self.scale_emb(emb)[:, :, None, None], self.shift_emb(emb)[:, :, None, None])
        return self.conv2(F.silu(h)) + self.shortcut(x)


class Attention(nn.Module):
    """Multi-head attention on (B, C, L) sequences with 1x1 convolutions for q, k, v and the output.

    ``forward`` returns the output and this pass's logits (B * heads, Lq, Lk), so a sampler can inject
    them into another pass: ``replace`` uses the given logits instead of its own, ``blend`` moves its
    logits' per-query mean and (unbiased) standard deviation half-way to the given ones'."""

    def __init__(self, channels: int, heads: int, head_channels: int, kv_channels: int | None = None):
        super().__init__()
        inner = heads * head_channels
        self.heads = heads
        self.to_q = nn.Conv1d(channels, inner, 1)
        self.to_k = nn.Conv1d(kv_channels or channels, inner, 1)
        self.to_v = nn.Conv1d(kv_channels or channels, inner, 1)
        self.proj_out = nn.Conv1d(inner, channels, 1)

    def forward(self, x: torch.Tensor, c: torch.Tensor | None = None, *, replace: torch.Tensor | None = None,
                blend: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        c = x if c is None else c
        q, k, v = self.to_q(x), self.to_k(c), self.to_v(c)
        b, width, lq = q.shape
        per_head = width // self.heads
        q = q.reshape(b * self.heads, per_head, lq)
        k = k.reshape(b * self.heads, per_head, k.shape[-1])
        v = v.reshape(b * self.heads, per_head, v.shape[-1])
        scale = 1 / math.sqrt(math.sqrt(per_head))  # split over q and k: steadier in fp16
        logits = torch.einsum("bct,bcs->bts", q * scale, k * scale)
        used = logits
        if replace is not None:
            used = replace
        elif blend is not None:
            mean, std = logits.mean(dim=2, keepdim=True), logits.std(dim=2, keepdim=True)
            target_mean = 0.5 * blend.mean(dim=2, keepdim=True) + 0.5 * mean
            target_std = 0.5 * blend.std(dim=2, keepdim=True) + 0.5 * std
            used = (logits - mean) / std * target_std + target_mean
        weights = torch.softmax(used.float(), dim=-1).to(used.dtype)
        out = torch.einsum("bts,bcs->bct", weights, v).reshape(b, width, lq)
        return self.proj_out(out), logits


class ContextAttention(nn.Module):
    """Self-attention over positions, cross-attention to the identity context's tokens, feed-forward."""

    def __init__(self, channels: int, context_channels: int, head_channels: int):
        super().__init__()
        heads = channels // head_channels
        inner = heads * head_channels
        self.context_channels = context_channels
        self.tokens = head_channels
        self.x_proj_in = nn.Conv2d(channels, inner, 1)
        self.x_proj_out = nn.Conv2d(inner, channels, 1)
        self.self_attention = Attention(inner, heads, head_channels)
        self.c_proj_in = nn.Linear(context_channels, context_channels * head_channels)
        self.cross_attention = Attention(inner, heads, head_channels, kv_channels=context_channels)
        self.x_norm = nn.GroupNorm(32, inner)
        self.c_norm = nn.GroupNorm(32, context_channels)
        self.ff = nn.Sequential(nn.Linear(inner, inner * 4), nn.GELU(), nn.Linear(inner * 4, inner))

    def forward(self, x: torch.Tensor, c: torch.Tensor, inject: tuple[Any, Any] = (None, None)
                ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, _, h, w = x.shape
        skip = x
        x = self.x_proj_in(x).flatten(2)
        ctx = self.c_norm(self.c_proj_in(c).reshape(b, self.context_channels, self.tokens))
        out, self_logits = self.self_attention(self.x_norm(x), replace=inject[0])
        x = out + x
        out, cross_logits = self.cross_attention(self.x_norm(x), ctx, blend=inject[1])
        x = out + x
        x = self.ff(self.x_norm(x).transpose(1, 2)).transpose(1, 2) + x
        return self.x_proj_out(x.reshape(b, -1, h, w)) + skip, (self_logits, cross_logits)


class Block(nn.Module):
    """A residual block, then (on attention levels) a context attention block."""

    def __init__(self, cin: int, cout: int, cfg: UNetConfig, attention: bool):
        super().__init__()
        self.res = ResBlock(cin, cout, cfg.initial_channels * 4)
        self.attn = ContextAttention(cout, cfg.context_channels, cfg.head_channels) if attention else None

    def forward(self, x, temb, c, inject=(None, None)):
        x = self.res(x, temb)
        if self.attn is None:
            return x, None
        return self.attn(x, c, inject)


class Middle(nn.Module):
    def __init__(self, channels: int, cfg: UNetConfig):
        super().__init__()
        self.res1 = ResBlock(channels, channels, cfg.initial_channels * 4)
        self.attn = ContextAttention(channels, cfg.context_channels, cfg.head_channels)
        self.res2 = ResBlock(channels, channels, cfg.initial_channels * 4)

    def forward(self, x, temb, c, inject=(None, None)):
        x, logits = self.attn(self.res1(x, temb), c, inject)
        return self.res2(x, temb), logits


class Down(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Up(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class IdentityUNet(nn.Module):
    """eps(x_t, t, identity context): ``forward(x, t, context)``; ``context`` None is the empty context.

    ``condition`` (bool per sample) gives the empty context to the samples marked False (UIFace's first
    stage). With ``capture`` the result is ``(eps, logits)``: one (self, cross) pair of attention logits per
    residual block and the middle block, ``None`` for blocks without attention, in the order blocks run;
    ``inject`` takes such a list (self logits to replace, cross logits to blend with, either may be None).
    """

    def __init__(self, cfg: UNetConfig = RELEASE):
        super().__init__()
        self.cfg = cfg
        c0 = cfg.initial_channels
        self.image_proj = nn.Conv2d(cfg.input_channels, c0, 3, padding=1)
        self.time_emb = TimeEmbedding(c0 * 4)
        self.context_emb = nn.Linear(cfg.context_input, cfg.context_channels)
        if cfg.learned_empty_context:
            self.empty_context_embedding = nn.Parameter(torch.zeros(cfg.context_channels))
        else:
            self.register_buffer("empty_context_embedding", torch.zeros(cfg.context_channels), persistent=False)
        levels = len(cfg.channel_multipliers)
        down: list[nn.Module] = []
        cin = c0
        for level, mult in enumerate(cfg.channel_multipliers):
            cout = cin * mult
            for _ in range(cfg.blocks_per_level):
                down.append(Block(cin, cout, cfg, cfg.attention[level]))
                cin = cout
            if level < levels - 1:
                down.append(Down(cin))
        self.down = nn.ModuleList(down)
        self.middle = Middle(cin, cfg)
        up: list[nn.Module] = []
        for level in reversed(range(levels)):
            for _ in range(cfg.blocks_per_level):
                up.append(Block(cin + cin, cin, cfg, cfg.attention[level]))
            cout = cin // cfg.channel_multipliers[level]
            up.append(Block(cin + cout, cout, cfg, cfg.attention[level]))
            cin = cout
            if level > 0:
                up.append(Up(cin))
        self.up = nn.ModuleList(up)
        self.norm = nn.GroupNorm(32, c0)
        self.final = nn.Conv2d(cin, cfg.input_channels, 3, padding=1)

    def contexts(self, context: torch.Tensor | None, n: int, condition: torch.Tensor | None = None) -> torch.Tensor:
        """The (n, context_channels) context of each sample."""
        empty = self.empty_context_embedding
        if context is None:
            return empty[None].expand(n, -1).clone()
        c = self.context_emb(context)
        if condition is not None:
            c = torch.where(condition[:, None].to(c.device), c, empty.to(c.dtype)[None])
        return c

    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor | None = None, *,
                condition: torch.Tensor | None = None, inject: list | None = None, capture: bool = False):
        temb = self.time_emb(t)
        c = self.contexts(context, len(x), condition)
        x = self.image_proj(x)
        skips = [x]
        logits: list = []

        def run(block, h):
            pair = inject[len(logits)] if inject is not None else None
            h, got = block(h, temb, c, pair if pair is not None else (None, None))
            logits.append(got)
            return h

        for m in self.down:
            x = m(x) if isinstance(m, Down) else run(m, x)
            skips.append(x)
        x = run(self.middle, x)
        for m in self.up:
            x = m(x) if isinstance(m, Up) else run(m, torch.cat([x, skips.pop()], dim=1))
        eps = self.final(F.silu(self.norm(x)))
        return (eps, logits) if capture else eps


__all__ = ["RELEASE", "RELEASE_UIFACE", "TINY", "IdentityUNet", "UNetConfig"]
