"""The loss terms of Vec2Face training: SSIM, perceptual (LPIPS-VGG16 or a built-in toy net), GAN parts.

LPIPS needs two files the user already has (torchvision's VGG16 ImageNet weights and the LPIPS linear
layers); facebench never downloads them. For toy runs a small frozen perceptual net is built from a fixed
seed, so the same code path runs with no weights at all.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from facebench.errors import DataError
from facebench.safe_load import load_state_dict
from facebench.weights import resolve_weights

# ----------------------------------------------------------------------------------------------- SSIM

def _gaussian_window(size: int, sigma: float, channels: int, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity of two image batches in [-1, 1] (computed on [0, 1], Gaussian window)."""
    x = (x.float() + 1) / 2
    y = (y.float() + 1) / 2
    c = x.shape[1]
    w = _gaussian_window(window, sigma, c, x.device, x.dtype)
    pad = window // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (pad,) * 4, mode="reflect"), w, groups=c)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cov = blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean()


# ----------------------------------------------------------------------------------------- perceptual

def _unit_channels(t: torch.Tensor) -> torch.Tensor:
    return t / (t.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)


#: VGG16 convolution widths with "M" for max-pooling, as torchvision numbers its ``features`` layers.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


def vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` up to relu5_3 (same indices), without building the 120M-parameter
    classifier that LPIPS never uses."""
    layers: list[nn.Module] = []
    ch = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(ch, int(item), 3, padding=1), nn.ReLU(inplace=False)]
            ch = int(item)
    return nn.Sequential(*layers)


class LPIPSVGG16(nn.Module):
    """LPIPS distance with VGG16 features: channel-normalised feature differences at five depths,
    weighted per channel by the LPIPS linear layers, averaged over space and summed over depths."""

    #: The last VGG16 ``features`` index (exclusive) of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
    CUTS = (4, 9, 16, 23, 30)
    CHANNELS = (64, 128, 256, 512, 512)

    def __init__(self, vgg_weights: str | os.PathLike, lpips_weights: str | os.PathLike):
        super().__init__()
        vgg_path = resolve_weights(vgg_weights)
        lin_path = resolve_weights(lpips_weights)
        features = vgg16_features()
        state = load_state_dict(vgg_path, what="VGG16 ImageNet weights")
        feature_state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        try:
            features.load_state_dict(feature_state, strict=True)
        except RuntimeError as exc:
            raise DataError(vgg_path, f"not torchvision VGG16 weights ({str(exc).splitlines()[0]})") from None
        self.features = features
        lin = load_state_dict(lin_path, what="LPIPS VGG linear layers")
        weights = []
        for i, ch in enumerate(self.CHANNELS):
            key = next((k for k in (f"lin{i}.model.1.weight", f"lin{i}.weight") if k in lin), None)
            if key is None or tuple(lin[key].shape) != (1, ch, 1, 1):
                raise DataError(lin_path, f"missing LPIPS linear layer lin{i} of shape (1, {ch}, 1, 1)")
            weights.append(lin[key].float())
        for i, w in enumerate(weights):
            self.register_buffer(f"lin{i}", w)
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps, start, h = [], 0, (x - self.shift) / self.scale
        for cut in self.CUTS:
            h = self.features[start:cut](h)
            taps.append(h)
            start = cut
        return taps

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample distance (N,) between images in [-1, 1]."""
        total = 0.0
        for i, (a, b) in enumerate(zip(self._taps(x.float()), self._taps(y.float()))):
            d = (_unit_channels(a) - _unit_channels(b)).pow(2)
            total = total + F.conv2d(d, getattr(self, f"lin{i}")).mean(dim=(1, 2, 3))
        return total


class ToyPerceptual(nn.Module):
    """A small frozen conv net from a fixed seed, used like LPIPS with uniform channel weights.

    Random conv features are a usable perceptual distance for toy images and need no weights file.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), seed: int = 1234):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        layers, ch = [], 3
        for w in widths:
            conv = nn.Conv2d(ch, w, 3, stride=2, padding=1)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / (ch * 9)) ** 0.5)
                conv.bias.zero_()
            layers.append(nn.Sequential(conv, nn.ReLU()))
            ch = w
        self.stages = nn.ModuleList(layers)
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total, a, b = 0.0, x.float(), y.float()
        for stage in self.stages:
            a, b = stage(a), stage(b)
            total = total + (_unit_channels(a) - _unit_channels(b)).pow(2).sum(dim=1).mean(dim=(1, 2))
        return total


def build_perceptual(kind: str, vgg_weights: str, lpips_weights: str) -> nn.Module:
    if kind == "lpips-vgg16":
        return LPIPSVGG16(vgg_weights, lpips_weights)
    if kind == "toy":
        return ToyPerceptual()
    from facebench.errors import ConfigError

    raise ConfigError(f"unknown perceptual loss '{kind}' (expected 'lpips-vgg16' or 'toy')")


# ------------------------------------------------------------------------------------------------- GAN

class MultiScaleDiscriminator(nn.Module):
    """Strided conv blocks (GroupNorm + LeakyReLU(0.1)); a 1x1 logit head after every block, so the
    least-squares loss sees real/fake maps at several scales."""

    def __init__(self, dims: tuple[int, ...] | list[int] = (64, 128, 256, 512)):
        super().__init__()
        dims = list(dims)
        self.stem = nn.Conv2d(3, dims[0], 3, padding=1)
        blocks, heads, ch = [], [], dims[0]
        for d in dims:
            blocks.append(nn.Sequential(
                nn.Conv2d(ch, d, 4, stride=2, padding=1),
                nn.GroupNorm(min(32, d), d),
                nn.LeakyReLU(0.1),
            ))
            heads.append(nn.Conv2d(d, 1, 1))
            ch = d
        self.blocks = nn.ModuleList(blocks)
        self.heads = nn.ModuleList(heads)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, outs = F.leaky_relu(self.stem(x), 0.1), []
        for block, head in zip(self.blocks, self.heads):
            h = block(h)
            outs.append(head(h))
        return outs


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Least squares: real -> 1, fake -> 0, averaged over scales."""
    terms = [(r.float() - 1).pow(2).mean() + f.float().pow(2).mean() for r, f in zip(real, fake)]
    return sum(terms) / len(terms)


def generator_gan_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """Least squares for the generator: fake -> 1."""
    return sum((f.float() - 1).pow(2).mean() for f in fake) / len(fake)


def adaptive_gan_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                        max_weight: float = 1e4) -> torch.Tensor:
    """|grad rec| / (|grad gan| + 1e-4) at the decoder's last conv, clamped and detached, so the GAN
    term never dominates the reconstruction gradient by more than the ratio allows."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (gan_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()
