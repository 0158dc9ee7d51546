"""The discriminator Vec2Face trains against, in the release's layout (``model_disc`` of its checkpoints).

A ViT-VQGAN-style patch discriminator: a multi-kernel stem at full resolution, then one strided stage per
further width (conv 4x4 stride 2, LeakyReLU(0.1), GroupNorm, one pre-activation residual conv), then a
1x1 conv and an unpadded 4x4 conv to one logit per patch (11x11 logits for a 112 px image with the
release's widths 64/128/256/512). Module names and shapes follow ``design/compat/vec2face_discriminator.json``
so a release checkpoint's discriminator loads strictly and ours loads into the release's code.
"""

from __future__ import annotations

import torch
from torch import nn

#: Negative slope of every LeakyReLU of the release's discriminator.
SLOPE = 0.1


class CrossEmbedLayer(nn.Module):
    """Convolutions of several kernel sizes side by side, outputs concatenated along channels.

    The widest kernel gets the smallest share: with sizes sorted ascending, kernel i gets ``out / 2^(i+1)``
    channels and the last one the remainder (64 -> 32, 16, 16 for kernels 3, 7, 15); padding keeps the
    spatial size a multiple of the stride.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_sizes: tuple[int, ...], stride: int = 1):
        super().__init__()
        kernels = sorted(kernel_sizes)
        if any(k % 2 != stride % 2 for k in kernels):
            raise ValueError(f"kernel sizes {kernels} must all have the parity of the stride {stride}")
        shares = [out_channels // 2 ** (i + 1) for i in range(len(kernels) - 1)]
        shares.append(out_channels - sum(shares))
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels, share, k, stride=stride, padding=(k - stride) // 2)
            for k, share in zip(kernels, shares)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([conv(x) for conv in self.convs], dim=1)


class NormActConv(nn.Module):
    """GroupNorm, LeakyReLU, 3x3 conv (``block`` inside the release's residual block)."""

    def __init__(self, channels: int, out_channels: int, groups: int):
        super().__init__()
        self.groupnorm = nn.GroupNorm(groups, channels)
        self.activation = nn.LeakyReLU(SLOPE)
        self.project = nn.Conv2d(channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.activation(self.groupnorm(x)))


class ResidualBlock(nn.Module):
    """x + block(x); a 1x1 conv on the shortcut when the width changes (never with the release's stages)."""

    def __init__(self, channels: int, out_channels: int, groups: int):
        super().__init__()
        self.block = NormActConv(channels, out_channels, groups)
        self.res_conv = nn.Conv2d(channels, out_channels, 1) if channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x) + self.res_conv(x)


class Discriminator(nn.Module):
    """Images (N, 3, S, S) -> patch logits (N, 1, S / 2^(len(dims)-1) - 3, same)."""

    def __init__(self, dims: tuple[int, ...] | list[int] = (64, 128, 256, 512), channels: int = 3,
                 groups: int = 8, stem_kernels: tuple[int, ...] = (3, 7, 15)):
        super().__init__()
        dims = [int(d) for d in dims]
        if len(dims) < 2:
            raise ValueError(f"the discriminator needs at least two widths, got {dims}")
        stages: list[nn.Module] = [nn.Sequential(CrossEmbedLayer(channels, dims[0], tuple(stem_kernels)),
                                                 nn.LeakyReLU(SLOPE))]
        for d_in, d_out in zip(dims[:-1], dims[1:]):
            stages.append(nn.Sequential(
                nn.Conv2d(d_in, d_out, 4, stride=2, padding=1),
                nn.LeakyReLU(SLOPE),
                nn.GroupNorm(groups, d_out),
                ResidualBlock(d_out, d_out, groups),
            ))
        self.layers = nn.ModuleList(stages)
        self.to_logits = nn.Sequential(nn.Conv2d(dims[-1], dims[-1], 1), nn.LeakyReLU(SLOPE),
                                       nn.Conv2d(dims[-1], 1, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.layers:
            x = stage(x)
        return self.to_logits(x)
