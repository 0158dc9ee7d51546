"""The Vec2Face training objective (:class:`Vec2FaceLoss`) and its parts: SSIM, perceptual distance
(LPIPS-VGG16 or a built-in toy net), the least-squares discriminator loss and the adaptive GAN weight.

LPIPS needs two files the user already has (torchvision's VGG16 ImageNet weights and the LPIPS linear
layers); facebench never downloads them. For toy runs a small frozen perceptual net is built from a fixed
seed, so the same code path runs with no weights at all.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from facebench.errors import DataError
from facebench.safe_load import load_state_dict
from facebench.weights import resolve_weights

# ----------------------------------------------------------------------------------------------- SSIM

def _gaussian_1d(size: int, sigma: float, device, dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity of two image batches in [-1, 1], as the release computes it.

    The images are mapped to [0, 1] (data range 1) and compared in fp32 with autocast off; the Gaussian
    window (11 taps, sigma 1.5) is applied separably as a *valid* convolution (no padding), so only
    positions whose whole window lies inside the image count: pytorch_msssim's ``SSIM``, which the
    release uses.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = (x.float() + 1) / 2
        y = (y.float() + 1) / 2
        c = x.shape[1]
        g = _gaussian_1d(window, sigma, x.device, x.dtype)
        rows = g.view(1, 1, window, 1).expand(c, 1, window, 1)
        cols = g.view(1, 1, 1, window).expand(c, 1, 1, window)

        def blur(t: torch.Tensor) -> torch.Tensor:
            return F.conv2d(F.conv2d(t, rows, groups=c), cols, groups=c)

        mx, my = blur(x), blur(y)
        vx = blur(x * x) - mx * mx
        vy = blur(y * y) - my * my
        cov = blur(x * y) - mx * my
        c1, c2 = 0.01**2, 0.03**2
        s = ((2 * mx * my + c1) / (mx * mx + my * my + c1)) * ((2 * cov + c2) / (vx + vy + c2))
        return s.mean()


# ----------------------------------------------------------------------------------------- perceptual

def _unit_channels(t: torch.Tensor) -> torch.Tensor:
    """Each position's channel vector divided by its length, the length floored at 1e-4 (the release's
    LPIPS does so for stability: a dead ReLU position gives 0, not a 1e10 gradient)."""
    return t / t.pow(2).sum(dim=1, keepdim=True).sqrt().clamp(min=1e-4)


def _drop(t: torch.Tensor, p: float) -> torch.Tensor:
    """LPIPS's optional dropout in front of each linear layer (``lin*.model.0``), applied when ``p > 0``:
    the release's pose training leaves its LPIPS in training mode, so it draws a mask (p 0.5) per depth,
    from the global RNG, in depth order, after both feature passes."""
    return F.dropout(t, p, training=True) if p > 0 else t


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

    def __init__(self, vgg_weights: str | os.PathLike, lpips_weights: str | os.PathLike, dropout: float = 0.0):
        super().__init__()
        self.dropout = float(dropout)
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
            d = _drop((_unit_channels(a) - _unit_channels(b)).pow(2), self.dropout)
            total = total + F.conv2d(d, getattr(self, f"lin{i}")).mean(dim=(1, 2, 3))
        return total


class ToyPerceptual(nn.Module):
    """A small frozen conv net from a fixed seed, used like LPIPS with uniform channel weights.

    Random conv features are a usable perceptual distance for toy images and need no weights file.
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64), seed: int = 1234, dropout: float = 0.0):
        super().__init__()
        self.dropout = float(dropout)
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
            d = _drop((_unit_channels(a) - _unit_channels(b)).pow(2), self.dropout)
            total = total + d.sum(dim=1).mean(dim=(1, 2))
        return total


def build_perceptual(kind: str, vgg_weights: str, lpips_weights: str, dropout: float = 0.0) -> nn.Module:
    if kind == "lpips-vgg16":
        return LPIPSVGG16(vgg_weights, lpips_weights, dropout)
    if kind == "toy":
        return ToyPerceptual(dropout=dropout)
    from facebench.errors import ConfigError

    raise ConfigError(f"unknown perceptual loss '{kind}' (expected 'lpips-vgg16' or 'toy')")


# ------------------------------------------------------------------------------------------------- GAN

def adaptive_gan_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                        max_weight: float = 1e4) -> torch.Tensor:
    """|grad rec| / (|grad gan| + 1e-4) at the decoder's last conv, clamped and detached, so the GAN
    term never dominates the reconstruction gradient by more than the ratio allows. The gradients are
    those of the unscaled losses (never the GradScaler's scaled ones, which would shift the 1e-4), in fp32."""
    rec_grad = torch.autograd.grad(rec_loss.float(), last_layer, retain_graph=True)[0].float()
    gan_grad = torch.autograd.grad(gan_loss.float(), last_layer, retain_graph=True)[0].float()
    weight = rec_grad.norm() / (gan_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()


def least_squares_d_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 x (mean((D(real) - 1)^2) + mean(D(fake)^2)): real -> 1, fake -> 0."""
    return 0.5 * ((logits_real - 1.0).pow(2).mean() + logits_fake.pow(2).mean())


class LossTerms(NamedTuple):
    """The release's seven outputs, in its order (a tuple, so ``ae, d, *rest = loss(...)`` works)."""

    ae_loss: torch.Tensor       # what the generator minimises
    d_loss: torch.Tensor        # what the discriminator minimises (0 before disc_start)
    token_loss: torch.Tensor    # mean squared error of decoder rows 1.. against the detached targets
    rec_loss: torch.Tensor      # (image - gt)^2, unreduced (N, 3, S, S)
    ssim_loss: torch.Tensor     # 1 - SSIM
    p_loss: torch.Tensor        # 2 x LPIPS per sample (N,)
    feature_loss: torch.Tensor  # mean(1 - cos(input vector, FR(image)))


class Vec2FaceLoss(nn.Module):
    """The Vec2Face training objective term by term as released (``VQLPIPSWithDiscriminator``).

    ``nll = rec_weight x mean(rec) + perceptual_weight x mean(p) + ssim_weight x ssim + token_weight x token
    + identity_weight x feature``; from epoch ``disc_start`` on, ``ae = nll + w x disc_factor x g`` with
    ``g = -mean(D(image))`` and ``d = disc_factor x least_squares(D(gt), D(image.detach()))``. ``w`` is
    ``gan_weight`` (release: 1.0), times ``disc_weight`` x the gradient-norm ratio at ``last_layer`` when
    ``adaptive_weight`` is set (the release constructs it with 0.8 but leaves it off).

    As released, ``g`` is computed with the discriminator's parameters live, so back-propagating ``ae``
    also adds the gradient of ``g`` to the discriminator: after ``disc_start`` it minimises
    ``d + g``, i.e. ``0.5 D(fake)^2 - D(fake)`` for fakes (optimum 1, not 0). ``isolate_discriminator=True``
    computes ``g`` with the discriminator frozen (the textbook update: D sees only ``d``).

    ``perceptual`` maps two image batches in [-1, 1] to per-sample distances; ``identity`` maps images to
    identity features. A term whose weight is 0 is not computed (its model may then be None; with
    ``token_weight = 0`` the rows may be None), and ``gan_weight = 0`` switches both GAN terms off (the
    discriminator may then be None). Vec2Face+'s pose training is this objective with token and GAN terms
    off and its own weights (``rec + 0.2 x p + ssim + feature``, p = 2 x LPIPS).
    """

    def __init__(self, perceptual: nn.Module | None, identity: nn.Module | None, disc_start: int, *,
                 rec_weight: float = 1.0, perceptual_weight: float = 0.1, ssim_weight: float = 0.1,
                 token_weight: float = 1.0, identity_weight: float = 1.0, gan_weight: float = 1.0,
                 disc_factor: float = 1.0, adaptive_weight: bool = False, disc_weight: float = 0.8,
                 isolate_discriminator: bool = False):
        super().__init__()
        if perceptual is None and perceptual_weight:
            raise ValueError("a perceptual weight without a perceptual model")
        if identity is None and identity_weight:
            raise ValueError("an identity weight without an identity model")
        self.perceptual = perceptual
        self.identity = identity
        self.disc_start = int(disc_start)
        self.rec_weight = rec_weight
        self.perceptual_weight = perceptual_weight
        self.ssim_weight = ssim_weight
        self.token_weight = token_weight
        self.identity_weight = identity_weight
        self.gan_weight = gan_weight
        self.disc_factor = disc_factor
        self.adaptive_weight = adaptive_weight
        self.disc_weight = disc_weight
        self.isolate_discriminator = isolate_discriminator

    def gan_active(self, epoch: int) -> bool:
        """Whether ``epoch`` has the GAN terms (the release's ``disc_factor`` is 0 before ``disc_start``)."""
        return bool(self.gan_weight) and bool(self.disc_factor) and epoch >= self.disc_start

    def forward(self, im_features: torch.Tensor, targets: torch.Tensor | None, logits: torch.Tensor | None,
                gt_img: torch.Tensor, image: torch.Tensor, discriminator: nn.Module | None, epoch: int,
                last_layer: torch.Tensor | None = None) -> LossTerms:
        zero = image.new_zeros((), dtype=torch.float32)
        rec_loss = (image - gt_img) ** 2
        if self.identity_weight:
            feature_loss = (1 - F.cosine_similarity(im_features, self.identity(image))).mean()
        else:
            feature_loss = zero
        if self.perceptual_weight:
            p_loss = self.perceptual(image, gt_img) * 2
        else:
            p_loss = image.new_zeros(image.shape[0], dtype=torch.float32)
        ssim_loss = 1 - ssim(image, gt_img) if self.ssim_weight else zero
        token_loss = (logits[:, 1:] - targets[:, 1:].detach()).pow(2).mean() if self.token_weight else zero
        nll = (self.rec_weight * rec_loss.mean() + self.perceptual_weight * p_loss.mean()
               + self.ssim_weight * ssim_loss + self.token_weight * token_loss + self.identity_weight * feature_loss)
        if not self.gan_active(epoch):
            return LossTerms(nll, zero, token_loss, rec_loss, ssim_loss, p_loss, feature_loss)
        g_loss = -self._logits_for_generator(discriminator, image).mean()
        weight = self.gan_weight
        if self.adaptive_weight:
            if last_layer is None:
                raise ValueError("the adaptive GAN weight needs the decoder's last layer")
            weight = weight * adaptive_gan_weight(nll, g_loss, last_layer) * self.disc_weight
        ae_loss = nll + weight * self.disc_factor * g_loss
        d_loss = self.disc_factor * least_squares_d_loss(discriminator(gt_img.detach()),
                                                         discriminator(image.detach()))
        return LossTerms(ae_loss, d_loss, token_loss, rec_loss, ssim_loss, p_loss, feature_loss)

    def _logits_for_generator(self, discriminator: nn.Module, image: torch.Tensor) -> torch.Tensor:
        if not self.isolate_discriminator:
            return discriminator(image)
        bare = getattr(discriminator, "module", discriminator)  # a DDP wrapper's module
        params = [p for p in bare.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            return bare(image)
        finally:
            for p in params:
                p.requires_grad_(True)
