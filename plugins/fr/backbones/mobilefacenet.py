"""MobileFaceNet with insightface ``arcface_torch`` module names (``get_mbf`` / ``get_mbf_large``), so the
released ``mbf`` checkpoints load with ``strict=True``, plus the MXNet zoo's ``model-y1-test2`` size.

Layout facts (docs/fr.md): ``layers`` is a list: a 3x3 stride-2 ``ConvBlock`` (conv, BN, PReLU), then a
grouped 3x3 ``ConvBlock`` (or a ``Residual`` when the first stage has several blocks), then four stages, each
a stride-2 ``DepthWise`` (1x1 ConvBlock to the expansion width, depthwise 3x3 ConvBlock, 1x1 ``LinearBlock``:
conv + BN, no activation) followed by a ``Residual`` of stride-1 DepthWise blocks that add their input.
``conv_sep`` is a 1x1 ConvBlock to 512; ``features`` (GDC) is a depthwise ``LinearBlock`` whose kernel
covers the whole map (7x7 at 112 px), a flatten, a ``Linear`` without bias and a BatchNorm1d.

The expansion widths are absolute in arcface_torch (64, 128, 128, 256, 512, 256 at any ``scale``); ``base``
(64 in every released model) scales all of them and the 512-wide head at once, for the tiny CPU variant.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Module):
    """Conv (no bias) -> BatchNorm2d -> PReLU, as ``layers.0/1/2``."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.PReLU(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LinearBlock(nn.Module):
    """Conv (no bias) -> BatchNorm2d, no activation (the projection of a depthwise block)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0, groups: int = 1):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DepthWise(nn.Module):
    """Expand (1x1), depthwise 3x3 (the stride), project (1x1, linear); adds its input when ``residual``."""

    def __init__(self, cin: int, cout: int, expansion: int, *, stride: int = 2, residual: bool = False):
        super().__init__()
        self.residual = residual
        self.layers = nn.Sequential(
            ConvBlock(cin, expansion),
            ConvBlock(expansion, expansion, 3, stride, 1, groups=expansion),
            LinearBlock(expansion, cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return out + x if self.residual else out


class Residual(nn.Module):
    """``blocks`` stride-1 residual DepthWise blocks of ``channels`` channels."""

    def __init__(self, channels: int, blocks: int, expansion: int):
        super().__init__()
        self.layers = nn.Sequential(*[DepthWise(channels, channels, expansion, stride=1, residual=True)
                                      for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GDC(nn.Module):
    """Global depthwise conv over the whole map, flatten, bias-free Linear, BatchNorm1d: the embedding."""

    def __init__(self, channels: int, side: int, num_features: int):
        super().__init__()
        self.layers = nn.Sequential(
            LinearBlock(channels, channels, side, groups=channels),
            nn.Flatten(),
            nn.Linear(channels, num_features, bias=False),
            nn.BatchNorm1d(num_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _side_after(size: int, downsamplings: int = 4) -> int:
    for _ in range(downsamplings):
        size = (size - 1) // 2 + 1  # 3x3 conv, stride 2, padding 1
    return size


class MobileFaceNet(nn.Module):
    """MobileFaceNet; images (N,3,S,S) in [-1,1] -> embeddings (N, num_features), not normalised.

    ``scale`` multiplies the trunk widths (64/128 channels x scale), ``blocks`` are the residual blocks per
    stage, ``input_size`` fixes the GDC kernel (112 -> 7x7) and ``base`` the expansion and head widths.
    """

    def __init__(self, *, num_features: int = 512, blocks: tuple[int, ...] | list[int] = (1, 4, 6, 2),
                 scale: int = 2, input_size: int = 112, base: int = 64):
        super().__init__()
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"MobileFaceNet needs 4 stages of at least one block, got blocks={list(blocks)}")
        self.input_size = input_size
        self.num_features = num_features
        low, high = base * scale, 2 * base * scale
        self.layers = nn.ModuleList([ConvBlock(3, low, 3, 2, 1)])
        if blocks[0] == 1:
            self.layers.append(ConvBlock(low, low, 3, 1, 1, groups=base))
        else:
            self.layers.append(Residual(low, blocks[0], 2 * base))
        self.layers.extend([
            DepthWise(low, low, 2 * base),
            Residual(low, blocks[1], 2 * base),
            DepthWise(low, high, 4 * base),
            Residual(high, blocks[2], 4 * base),
            DepthWise(high, high, 8 * base),
            Residual(high, blocks[3], 4 * base),
        ])
        self.conv_sep = ConvBlock(high, 8 * base)
        self.features = GDC(8 * base, _side_after(input_size), num_features)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        # The head runs in fp32 even under autocast, as arcface_torch's fp16 mode does from conv_sep on.
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.features(self.conv_sep(x.float()))


def mbf(**kwargs) -> MobileFaceNet:
    """arcface_torch ``get_mbf``: MobileFaceNet, scale 2, blocks (1, 4, 6, 2), 512-d."""
    return MobileFaceNet(**kwargs)


def mbf_large(**kwargs) -> MobileFaceNet:
    """arcface_torch ``get_mbf_large``: MobileFaceNet, scale 4, blocks (2, 8, 12, 4), 512-d."""
    kwargs.setdefault("scale", 4)
    kwargs.setdefault("blocks", (2, 8, 12, 4))
    return MobileFaceNet(**kwargs)


def mbf_y1(**kwargs) -> MobileFaceNet:
    """The MXNet zoo's MobileFaceNet (``model-y1-test2``): scale 1 (64 channels), blocks (1, 4, 6, 2), 128-d."""
    kwargs.setdefault("scale", 1)
    kwargs.setdefault("num_features", 128)
    return MobileFaceNet(**kwargs)


def mbf_tiny(**kwargs) -> MobileFaceNet:
    """Tiny MobileFaceNet for CPU tests: base 8, one block per stage (two in the first), 56 px input."""
    kwargs.setdefault("base", 8)
    kwargs.setdefault("blocks", (2, 1, 1, 1))
    kwargs.setdefault("input_size", 56)
    return MobileFaceNet(**kwargs)
