"""Vec2Face loss terms checked against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from facebench_plugins.vec2face.losses import (
    LPIPSVGG16,
    MultiScaleDiscriminator,
    ToyPerceptual,
    adaptive_gan_weight,
    discriminator_loss,
    generator_gan_loss,
    ssim,
)
from scipy.ndimage import correlate

from facebench.errors import DataError, MissingFileError


def numpy_ssim(a: np.ndarray, b: np.ndarray, size: int = 11, sigma: float = 1.5) -> float:
    """SSIM written from the definition with scipy (reflect padding like the torch version)."""
    a = (a.astype(np.float64) + 1) / 2
    b = (b.astype(np.float64) + 1) / 2
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-x**2 / (2 * sigma**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    vals = []
    for n in range(a.shape[0]):
        for c in range(a.shape[1]):
            def f(t):
                return correlate(t, w, mode="mirror")
            ua, ub = f(a[n, c]), f(b[n, c])
            va, vb = f(a[n, c] ** 2) - ua**2, f(b[n, c] ** 2) - ub**2
            cov = f(a[n, c] * b[n, c]) - ua * ub
            c1, c2 = 0.01**2, 0.03**2
            vals.append(((2 * ua * ub + c1) * (2 * cov + c2)) / ((ua**2 + ub**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_matches_a_scipy_computation():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 24, 24, generator=g) * 2 - 1
    b = (a + 0.3 * torch.randn(2, 3, 24, 24, generator=g)).clamp(-1, 1)
    assert float(ssim(a, a)) == pytest.approx(1.0, abs=1e-6)
    assert float(ssim(a, b)) == pytest.approx(numpy_ssim(a.numpy(), b.numpy()), abs=1e-5)
    assert float(ssim(a, b)) < 0.9


def test_toy_perceptual_is_a_fixed_distance():
    p1, p2 = ToyPerceptual(), ToyPerceptual()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    y = torch.rand(3, 3, 32, 32) * 2 - 1
    d = p1(x, y)
    assert d.shape == (3,) and (d > 0).all()
    torch.testing.assert_close(p1(x, x), torch.zeros(3))
    torch.testing.assert_close(p2(x, y), d)  # same seed, same net
    torch.testing.assert_close(p1(y, x), d)
    assert not any(p.requires_grad for p in p1.parameters())
    near = p1(x, (x + 0.05 * torch.randn_like(x)).clamp(-1, 1))
    assert (near < d).all()


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory):
    from facebench_plugins.vec2face.losses import VGG16_LAYOUT

    root = tmp_path_factory.mktemp("lpips")
    g = torch.Generator().manual_seed(0)
    state, index, ch = {}, 0, 3
    for item in VGG16_LAYOUT:  # torchvision's key names: features.<index>.weight, pooling takes an index
        if item == "M":
            index += 1
            continue
        state[f"features.{index}.weight"] = torch.randn(item, ch, 3, 3, generator=g) * (2 / (9 * ch)) ** 0.5
        state[f"features.{index}.bias"] = torch.zeros(item)
        ch, index = item, index + 2
    state["classifier.0.weight"] = torch.zeros(2, 2)  # present in the real file, ignored
    torch.save(state, root / "vgg16-397923af.pth")
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(LPIPSVGG16.CHANNELS)}
    torch.save(lin, root / "vgg.pth")
    return root, lin


def test_lpips_vgg16_matches_its_definition(lpips_files):
    root, lin = lpips_files
    net = LPIPSVGG16(root / "vgg16-397923af.pth", root / "vgg.pth")
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    y = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    d = net(x, y)
    # independent: run VGG layer by layer, record after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(t):
        out, h = [], (t - shift) / scale
        for i, layer in enumerate(net.features):
            h = layer(h)
            if i in (3, 8, 15, 22, 29):
                out.append(h)
        return out

    want = torch.zeros(2)
    for i, (a, b) in enumerate(zip(taps(x), taps(y))):
        na = a / (a.norm(dim=1, keepdim=True) + 1e-10)
        nb = b / (b.norm(dim=1, keepdim=True) + 1e-10)
        w = lin[f"lin{i}.model.1.weight"].view(1, -1, 1, 1)
        want += ((na - nb) ** 2 * w).sum(dim=1).mean(dim=(1, 2))
    torch.testing.assert_close(d, want, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(net(x, x), torch.zeros(2))


def test_lpips_needs_the_user_files(lpips_files, tmp_path, monkeypatch):
    root, _ = lpips_files
    monkeypatch.setenv("FACEBENCH_WEIGHTS", str(tmp_path / "empty"))
    with pytest.raises(MissingFileError, match="vgg16-397923af.pth: weights file not found .*VGG16 ImageNet"):
        LPIPSVGG16("vgg16-397923af.pth", root / "vgg.pth")
    torch.save({"lin0.model.1.weight": torch.zeros(1, 64, 1, 1)}, tmp_path / "short.pth")
    with pytest.raises(DataError, match="missing LPIPS linear layer lin1"):
        LPIPSVGG16(root / "vgg16-397923af.pth", tmp_path / "short.pth")


def test_least_squares_gan_losses():
    ones = [torch.ones(2, 1, 4, 4), torch.ones(2, 1, 2, 2)]
    zeros = [torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 2, 2)]
    assert float(discriminator_loss(ones, zeros)) == 0.0
    assert float(discriminator_loss(zeros, ones)) == pytest.approx(2.0)
    assert float(generator_gan_loss(ones)) == 0.0
    half = [torch.full((1, 1, 3, 3), 0.5)]
    assert float(generator_gan_loss(half)) == pytest.approx(0.25)
    d = MultiScaleDiscriminator([32, 64])
    outs = d(torch.randn(2, 3, 56, 56))
    assert [tuple(o.shape) for o in outs] == [(2, 1, 28, 28), (2, 1, 14, 14)]


def test_adaptive_weight_is_the_gradient_norm_ratio():
    torch.manual_seed(0)
    last = torch.nn.Parameter(torch.randn(4, 3))
    x = torch.randn(5, 3)
    out = x @ last.T
    rec = (out**2).mean()
    gan = (out - 1).abs().mean() * 3
    w = adaptive_gan_weight(rec, gan, last)
    g_rec = torch.autograd.grad((x @ last.T).pow(2).mean(), last)[0]
    g_gan = torch.autograd.grad(((x @ last.T) - 1).abs().mean() * 3, last)[0]
    assert float(w) == pytest.approx(float(g_rec.norm() / (g_gan.norm() + 1e-4)), rel=1e-5)
    assert not w.requires_grad
    huge = adaptive_gan_weight(rec * 1e9, gan * 1e-9, last)
    assert float(huge) == 1e4
