"""Vec2Face loss terms checked against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from facebench_plugins.vec2face.losses import (
    LPIPSVGG16,
    ToyPerceptual,
    adaptive_gan_weight,
    least_squares_d_loss,
    ssim,
)
from scipy.signal import correlate2d

from facebench.errors import DataError, MissingFileError


def numpy_ssim(a: np.ndarray, b: np.ndarray, size: int = 11, sigma: float = 1.5) -> float:
    """SSIM from the definition with scipy: 2-D Gaussian window, only positions where the whole window
    fits ('valid', as pytorch_msssim which the release uses), data range 1."""
    a = (a.astype(np.float64) + 1) / 2
    b = (b.astype(np.float64) + 1) / 2
    x = np.arange(size) - size // 2
    g = np.exp(-x**2 / (2 * sigma**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    vals = []
    for n in range(a.shape[0]):
        for c in range(a.shape[1]):
            def f(t):
                return correlate2d(t, w, mode="valid")
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
    # fp32 even for half inputs, and outside any autocast region
    assert ssim(a.half(), b.half()).dtype == torch.float32


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
        na = a / a.norm(dim=1, keepdim=True).clamp(min=1e-4)  # the release's LPIPS floors the norm at 1e-4
        nb = b / b.norm(dim=1, keepdim=True).clamp(min=1e-4)
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


def test_least_squares_discriminator_loss():
    ones, zeros = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    assert float(least_squares_d_loss(ones, zeros)) == 0.0
    assert float(least_squares_d_loss(zeros, ones)) == pytest.approx(1.0)  # 0.5 x (1 + 1)
    real, fake = torch.full((1, 1, 3, 3), 0.5), torch.full((1, 1, 3, 3), -2.0)
    assert float(least_squares_d_loss(real, fake)) == pytest.approx(0.5 * (0.25 + 4.0))


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


# --------------------------------------------------------------------------------- the release's objective

class LinearIdentity(torch.nn.Module):
    """A stand-in FR model: flatten, fixed random projection to 8-d."""

    def __init__(self, size: int):
        super().__init__()
        self.proj = torch.nn.Linear(3 * size * size, 8)

    def forward(self, x):
        return self.proj(x.flatten(1))


def loss_inputs(seed=0, n=3, size=24):
    g = torch.Generator().manual_seed(seed)
    return dict(
        im_features=torch.randn(n, 8, generator=g),
        targets=torch.randn(n, 5, 6, generator=g),
        logits=torch.randn(n, 5, 6, generator=g).requires_grad_(True),
        gt_img=torch.rand(n, 3, size, size, generator=g) * 2 - 1,
        image=(torch.rand(n, 3, size, size, generator=g) * 2 - 1).requires_grad_(True),
    )


def make_loss(**options):
    from facebench_plugins.vec2face.losses import Vec2FaceLoss

    torch.manual_seed(0)
    return Vec2FaceLoss(ToyPerceptual(), LinearIdentity(24), disc_start=2, **options)


def tiny_disc():
    from facebench_plugins.vec2face.discriminator import Discriminator

    torch.manual_seed(1)
    return Discriminator([16, 32])


def test_vec2face_loss_terms_are_the_release_terms():
    loss, disc, x = make_loss(), tiny_disc(), loss_inputs()
    t = loss(**x, discriminator=disc, epoch=0)
    assert t._fields == ("ae_loss", "d_loss", "token_loss", "rec_loss", "ssim_loss", "p_loss", "feature_loss")
    image, gt = x["image"].detach(), x["gt_img"]
    torch.testing.assert_close(t.rec_loss, (image - gt) ** 2)  # unreduced
    torch.testing.assert_close(t.p_loss, 2 * loss.perceptual(image, gt))  # per sample
    assert t.p_loss.shape == (3,)
    assert float(t.ssim_loss.detach()) == pytest.approx(1 - numpy_ssim(image.numpy(), gt.numpy()), abs=1e-5)
    token = ((x["logits"][:, 1:] - x["targets"][:, 1:]) ** 2).mean()
    torch.testing.assert_close(t.token_loss, token)
    emb = loss.identity(image)
    cos = (emb * x["im_features"]).sum(1) / (emb.norm(dim=1) * x["im_features"].norm(dim=1))
    torch.testing.assert_close(t.feature_loss, (1 - cos).mean())
    nll = (t.rec_loss + 0.1 * t.p_loss.view(-1, 1, 1, 1)).mean() + 0.1 * t.ssim_loss + token + t.feature_loss
    # before disc_start: no GAN terms at all, the discriminator is not even run
    torch.testing.assert_close(t.ae_loss, nll)
    assert float(t.d_loss) == 0.0


def test_gan_terms_from_disc_start_generator_term_is_minus_the_mean_logit():
    loss, disc, x = make_loss(), tiny_disc(), loss_inputs()
    before = loss(**x, discriminator=disc, epoch=1)
    t = loss(**x, discriminator=disc, epoch=2)
    image, gt = x["image"].detach(), x["gt_img"]
    with torch.no_grad():
        fake, real = disc(image), disc(gt)
    torch.testing.assert_close(t.ae_loss, before.ae_loss - fake.mean())  # weight 1.0, no adaptive weight
    torch.testing.assert_close(t.d_loss, 0.5 * (((real - 1) ** 2).mean() + (fake**2).mean()))
    half = make_loss(gan_weight=0.5)(**x, discriminator=disc, epoch=5)
    torch.testing.assert_close(half.ae_loss, before.ae_loss - 0.5 * fake.mean())
    off = make_loss(gan_weight=0.0)(**x, discriminator=disc, epoch=5)
    assert float(off.d_loss) == 0.0
    torch.testing.assert_close(off.ae_loss, before.ae_loss)


def d_grads(disc, loss_value):
    disc.zero_grad(set_to_none=True)
    loss_value.backward(retain_graph=True)
    return [p.grad.clone() for p in disc.parameters()]


def test_as_released_the_generator_term_also_trains_the_discriminator():
    """The release backpropagates ae_loss (which holds g = -mean(D(fake)) computed with D live) and d_loss
    into the same discriminator gradients, so after disc_start D follows d + g, not d alone."""
    disc, x = tiny_disc(), loss_inputs()
    t = make_loss()(**x, discriminator=disc, epoch=3)
    both = d_grads(disc, t.ae_loss + t.d_loss)
    only_d = d_grads(disc, t.d_loss)
    g = -disc(x["image"]).mean()
    only_g = d_grads(disc, g)
    for a, b, c in zip(both, only_d, only_g):
        torch.testing.assert_close(a, b + c, rtol=1e-4, atol=1e-6)
    assert max(float((a - b).abs().max()) for a, b in zip(both, only_d)) > 1e-4
    # the textbook update: D frozen while computing g, so its gradients are d's alone; the generator's
    # gradient (through the image) is the same either way
    iso = make_loss(isolate_discriminator=True)(**x, discriminator=disc, epoch=3)
    for a, b in zip(d_grads(disc, iso.ae_loss + iso.d_loss), only_d):
        torch.testing.assert_close(a, b)
    assert all(p.requires_grad for p in disc.parameters())
    x2 = loss_inputs()
    grad_live = torch.autograd.grad(make_loss()(**x, discriminator=disc, epoch=3).ae_loss, x["image"])[0]
    grad_iso = torch.autograd.grad(make_loss(isolate_discriminator=True)(**x2, discriminator=disc, epoch=3).ae_loss,
                                   x2["image"])[0]
    torch.testing.assert_close(grad_live, grad_iso)


def test_adaptive_weight_option_scales_the_generator_term():
    disc, x = tiny_disc(), loss_inputs()
    last = torch.nn.Parameter(torch.randn(3, 3, 3, 3))
    image = torch.nn.functional.conv2d(x["image"], last, padding=1)
    inputs = dict(x, image=image)
    plain = make_loss()(**inputs, discriminator=disc, epoch=2)
    t = make_loss(adaptive_weight=True, disc_weight=0.8)(**inputs, discriminator=disc, epoch=2, last_layer=last)
    nll = plain.ae_loss + disc(image).mean()
    g = -disc(image).mean()
    w = adaptive_gan_weight(nll, g, last) * 0.8
    torch.testing.assert_close(t.ae_loss, nll + w * g)
    with pytest.raises(ValueError, match="last layer"):
        make_loss(adaptive_weight=True)(**inputs, discriminator=disc, epoch=2)


def test_token_loss_targets_are_detached():
    """The token targets (the projected vector and its rows before masking) are constants of the token loss,
    as in the release: held against a fixed decoder output, the token loss sends no gradient into
    ``latent_prior_proj_f`` or ``feature_token``; the same loss on live targets would."""
    from facebench_plugins.vec2face.losses import Vec2FaceLoss
    from facebench_plugins.vec2face.model import MaskingConfig, Vec2Face, model_config

    torch.manual_seed(0)
    model = Vec2Face(model_config("vec2face_tiny"))
    vectors = torch.randn(4, 512) * 3
    dropped, masked = model.random_masking(4, MaskingConfig.training(), torch.Generator().manual_seed(0))
    out = model(vectors, dropped, masked)
    loss = Vec2FaceLoss(None, None, disc_start=10, perceptual_weight=0, identity_weight=0)
    guarded = (model.latent_prior_proj_f.weight, model.latent_prior_proj_f.bias, model.feature_token.weight,
               model.feature_token.bias)
    token = loss(vectors, out.targets, out.rows.detach(), out.image, out.image, None, epoch=0).token_loss
    assert float(token) > 0 and not token.requires_grad  # nothing left to differentiate
    live = ((out.rows.detach()[:, 1:] - out.targets[:, 1:]) ** 2).mean()
    assert all(float(g.abs().max()) > 0 for g in torch.autograd.grad(live, guarded, retain_graph=True))
    # through the decoder output the token loss does train the model, the projection included
    token = loss(vectors, out.targets, out.rows, out.image, out.image, None, epoch=0).token_loss
    grads = torch.autograd.grad(token, guarded, retain_graph=True)
    rows_only = ((out.rows[:, 1:] - out.targets[:, 1:].detach()) ** 2).mean()
    for a, b in zip(grads, torch.autograd.grad(rows_only, guarded)):
        torch.testing.assert_close(a, b)


def black_bordered(t: torch.Tensor, border: int = 6) -> torch.Tensor:
    """``t`` with a black frame (-1) ``border`` pixels wide, as aligned faces padded at the edges have."""
    inside = torch.zeros_like(t[:1, :1])
    inside[..., border:-border, border:-border] = 1
    return t * inside - (1 - inside)


def test_ssim_and_the_full_loss_keep_finite_gradients_under_fp16_autocast():
    """CPU fp16 autocast stands in for CUDA AMP. SSIM runs in fp32 inside it (the same value and gradient as
    outside), and the whole objective, GAN terms included, back-propagates finite gradients into the model
    and the discriminator on images with constant black borders (zero-variance windows, dead features)."""
    from facebench_plugins.vec2face.losses import Vec2FaceLoss
    from facebench_plugins.vec2face.model import MaskingConfig, Vec2Face, model_config

    g = torch.Generator().manual_seed(3)
    gt = black_bordered(torch.rand(2, 3, 56, 56, generator=g) * 2 - 1)
    fake = black_bordered(torch.rand(2, 3, 56, 56, generator=g) * 2 - 1).requires_grad_(True)
    plain = ssim(fake, gt)
    (plain_grad,) = torch.autograd.grad(plain, fake)
    with torch.autocast("cpu", dtype=torch.float16):
        half = ssim(fake, gt)
    (half_grad,) = torch.autograd.grad(half, fake)
    assert half.dtype == torch.float32 and float(half.detach()) == float(plain.detach())
    torch.testing.assert_close(half_grad, plain_grad, rtol=0, atol=0)
    assert torch.isfinite(half_grad).all() and float(half_grad.abs().max()) > 0

    torch.manual_seed(0)
    model = Vec2Face(model_config("vec2face_tiny"))
    disc = tiny_disc()
    loss = Vec2FaceLoss(ToyPerceptual(), LinearIdentity(56), disc_start=0)  # 8-d identity: im_features 8-d
    vectors = torch.randn(2, 512, generator=g) * 20  # raw-scale features
    dropped, masked = model.random_masking(2, MaskingConfig.training(), g)
    with torch.autocast("cpu", dtype=torch.float16):
        out = model(vectors, dropped, masked)
        assert out.image.dtype == torch.float16  # the convolutional decoder runs in half precision
        image = black_bordered(out.image)
        t = loss(vectors[:, :8], out.targets, out.rows, gt, image, disc, epoch=0)
    assert all(torch.isfinite(v).all() for v in t), t
    assert float(t.d_loss) > 0
    (t.ae_loss + t.d_loss).backward()
    for module in (model, disc):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert grads and all(gr is None or torch.isfinite(gr).all() for gr in grads)
        assert sum(float(gr.abs().sum()) for gr in grads if gr is not None) > 0
