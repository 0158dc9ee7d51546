"""Vec2Face's training objective side by side with its release: every loss term, the gradients, the model layout.

    python benchmarks/parity/vec2face_loss.py --release PATH/TO/Vec2Face [--n 4] [--seed 0]

PATH is a checkout of github.com/HaiyuWu/Vec2Face. Its ``VQLPIPSWithDiscriminator`` and ``Discriminator``
(``pixel_generator/vec2face/taming/modules/``) and its ``vec2face_vit_base_patch16`` are imported from
there; facebench's side is ``facebench_plugins.vec2face.losses.Vec2FaceLoss``, its ``Discriminator`` and its
``Vec2Face``. Both sides get the same random weights, in fp32:

* LPIPS: the release builds torchvision's ``vgg16(pretrained=True)`` and loads its linear layers from a
  hard-coded path; here ``torchvision.models.vgg16`` returns one random VGG16 and the linear layers come from
  a temporary file, and facebench's ``LPIPSVGG16`` reads the same two tensors from files;
* the identity model: the release's ``create_fr_model`` reads an iresnet100 state dict from a file;
  facebench's ``arcface-r100`` extractor reads the same temporary file;
* the discriminator: the release's ``Discriminator(dims=(64, 128, 256, 512))`` state dict loaded strictly
  into facebench's;
* ``sixdrepnet`` (imported by the release's model file for AttrOP only) is replaced by an empty module.

Printed: the largest absolute difference of each of the seven terms before and after ``disc_start``
(target 1e-5), of the gradients the release's update produces (``ae_loss.backward(); d_loss.backward()``)
for the discriminator, the image and the decoder rows, the check that the release's discriminator gradient
is grad(d) + grad(g) (its generator term trains the discriminator too) and that facebench's
``isolate_discriminator`` option gives grad(d) alone, the adaptive-weight option against the release's
flag, and the generator's parameter order and optimizer state dicts loaded across. Needs the release's
imports: ``pip install pytorch_msssim omegaconf timm`` (none of them is a facebench dependency). A missing
release path skips with a message.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from _common import inside, max_diff, random_iresnet, release_parser, vec2face_release

TOLERANCE = 1e-5
#: The files that mark a checkout of the release, and its imports that facebench does not install.
MARKERS = ("pixel_generator/vec2face/taming/modules/discriminator_loss.py",)
NEEDS = ("pytorch_msssim", "omegaconf", "timm")
TERMS = ("ae_loss", "d_loss", "token_loss", "rec_loss", "ssim_loss", "p_loss", "feature_loss")


def release_gradients(loss_fn, disc, inputs, epoch, last_layer=None):
    """The release's fp32 update: ``ae_loss.backward(); d_loss.backward()``; returns terms and gradients."""
    x = {k: v.detach().clone().requires_grad_(k in ("image", "logits")) for k, v in inputs.items()}
    disc.zero_grad(set_to_none=True)
    terms = loss_fn(x["im_features"], x["targets"], x["logits"], x["gt_img"], x["image"], disc, 0, epoch,
                    last_layer=last_layer)
    terms[0].backward()
    terms[1].backward()
    grads = {"discriminator": torch.cat([p.grad.reshape(-1) for p in disc.parameters()]),
             "image": x["image"].grad, "rows": x["logits"].grad}
    return terms, grads


def facebench_gradients(loss_fn, disc, inputs, epoch, last_layer=None):
    x = {k: v.detach().clone().requires_grad_(k in ("image", "logits")) for k, v in inputs.items()}
    disc.zero_grad(set_to_none=True)
    terms = loss_fn(x["im_features"], x["targets"], x["logits"], x["gt_img"], x["image"], disc, epoch,
                    last_layer=last_layer)
    (terms.ae_loss + terms.d_loss).backward()
    grads = {"discriminator": torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                                         for p in disc.parameters()]),
             "image": x["image"].grad, "rows": x["logits"].grad}
    return terms, grads


def d_only_gradient(disc, value):
    disc.zero_grad(set_to_none=True)
    value.backward()
    return torch.cat([p.grad.reshape(-1) for p in disc.parameters()])


def main() -> int:
    parser = release_parser(__doc__, "HaiyuWu/Vec2Face", 4, "Batch size of the toy batch.")
    parser.add_argument("--skip-model", action="store_true", help="Skip the 174M-parameter layout check.")
    args = parser.parse_args()
    root = vec2face_release(args.release, "Vec2Face", MARKERS, NEEDS)
    if root is None:
        return 0

    import torchvision
    from facebench_plugins.vec2face.discriminator import Discriminator
    from facebench_plugins.vec2face.losses import LPIPSVGG16, Vec2FaceLoss
    from facebench_plugins.vec2face.trainer import ExtractorIdentity

    import facebench

    torch.manual_seed(args.seed)
    vgg = torchvision.models.vgg16(weights=None).eval()
    torchvision.models.vgg16 = lambda *a, **kw: vgg  # the release asks for pretrained=True: same random net
    import lpips.lpips as release_lpips
    import models as release_models
    from pixel_generator.vec2face.taming.modules import discriminator_loss as release_loss
    from pixel_generator.vec2face.taming.modules.discriminator.model import (
        Discriminator as ReleaseDiscriminator,
    )

    torch.set_printoptions(precision=3)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.save({k: v for k, v in vgg.state_dict().items() if k.startswith("features.")}, tmp / "vgg16.pth")
        g = torch.Generator().manual_seed(args.seed + 1)
        lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
               for i, c in enumerate((64, 128, 256, 512, 512))}
        torch.save(lin, tmp / "vgg.pth")
        original = release_lpips.LPIPS.load_from_pretrained
        release_lpips.LPIPS.load_from_pretrained = lambda self, weight=None: original(self, str(tmp / "vgg.pth"))
        random_iresnet(release_models, tmp / "iresnet100.pth", args.seed + 2)

        release = release_loss.VQLPIPSWithDiscriminator(disc_start=1, disc_weight=0.8, use_amp=False,
                                                        fr_model=str(tmp / "iresnet100.pth")).eval()
        torch.manual_seed(args.seed + 3)
        release_disc = ReleaseDiscriminator(dims=(64, 128, 256, 512))
        ours_disc = Discriminator((64, 128, 256, 512))
        ours_disc.load_state_dict(release_disc.state_dict(), strict=True)
        release_disc.load_state_dict(ours_disc.state_dict(), strict=True)
        extractor = facebench.registry("feature_extractor").create("arcface-r100", weights=str(tmp / "iresnet100.pth"))
        perceptual = LPIPSVGG16(tmp / "vgg16.pth", tmp / "vgg.pth")
        ours = Vec2FaceLoss(perceptual, ExtractorIdentity(extractor), disc_start=1)
        ours_iso = Vec2FaceLoss(perceptual, ExtractorIdentity(extractor), disc_start=1, isolate_discriminator=True)
        ours_adaptive = Vec2FaceLoss(perceptual, ExtractorIdentity(extractor), disc_start=1, adaptive_weight=True,
                                     disc_weight=0.8)

        g = torch.Generator().manual_seed(args.seed + 4)
        n = args.n
        gt = torch.rand(n, 3, 112, 112, generator=g) * 2 - 1
        inputs = {
            "im_features": torch.randn(n, 512, generator=g) * 0.97,  # raw ArcFace scale: norm ~22
            "targets": torch.randn(n, 50, 768, generator=g),
            "logits": torch.randn(n, 50, 768, generator=g),
            "gt_img": gt,
            "image": (gt + 0.3 * torch.randn(n, 3, 112, 112, generator=g)).clamp(-1.2, 1.2),
        }
        print(f"release {root} (torch {torch.__version__}); batch {n} x 3 x 112 x 112, fp32, random weights")
        print(f"discriminator: {sum(p.numel() for p in ours_disc.parameters()):,} parameters, state dict loads "
              f"strictly both ways; logits {max_diff(release_disc(gt), ours_disc(gt)):.2e} max |diff|")
        worst = 0.0
        for epoch, label in ((0, "before disc_start (epoch 0)"), (1, "after disc_start (epoch 1)")):
            rel_terms, rel_grads = release_gradients(release, release_disc, inputs, epoch)
            our_terms, our_grads = facebench_gradients(ours, ours_disc, inputs, epoch)
            print(f"\n{label}: max |release - facebench|")
            for name, a, b in zip(TERMS, rel_terms, our_terms):
                d = max_diff(a, b)
                worst = max(worst, d)
                print(f"  {name:<13} {d:.2e}   (release {float(torch.as_tensor(a).detach().float().mean()):+.5f})")
            for name in ("discriminator", "image", "rows"):
                d = max_diff(rel_grads[name], our_grads[name])
                scale = float(rel_grads[name].abs().max())
                worst = max(worst, d / max(scale, 1.0))
                print(f"  grad {name:<13} {d:.2e}   (largest {scale:.3e})")

        # the finding: with D live in g, ae_loss.backward() trains the discriminator too
        x = {k: v.clone() for k, v in inputs.items()}
        t = release(x["im_features"], x["targets"], x["logits"], x["gt_img"], x["image"], release_disc, 0, 1)
        grad_d = d_only_gradient(release_disc, t[1])
        t = release(x["im_features"], x["targets"], x["logits"], x["gt_img"], x["image"], release_disc, 0, 1)
        grad_g = d_only_gradient(release_disc, t[0])  # only g in ae_loss depends on D's parameters
        _, rel_grads = release_gradients(release, release_disc, inputs, 1)
        _, iso_grads = facebench_gradients(ours_iso, ours_disc, inputs, 1)
        print("\nthe release's discriminator gradient after disc_start (ae_loss.backward(); d_loss.backward()):")
        print(f"  |grad_D(release) - grad_D(d_loss)|           {max_diff(rel_grads['discriminator'], grad_d):.3e}"
              f"   (|grad_D(d_loss)| max {float(grad_d.abs().max()):.3e})")
        print(f"  |grad_D(release) - grad_D(d_loss + g)|       "
              f"{max_diff(rel_grads['discriminator'], grad_d + grad_g):.2e}")
        print(f"  facebench isolate_discriminator=true vs d_loss alone: "
              f"{max_diff(iso_grads['discriminator'], grad_d):.2e}; image gradient vs the release "
              f"{max_diff(iso_grads['image'], rel_grads['image']):.2e}")
        cosine = torch.nn.functional.cosine_similarity(grad_g, grad_d, dim=0)
        print(f"  |grad_D(g)| / |grad_D(d_loss)| = {float(grad_g.norm() / grad_d.norm()):.3f}, "
              f"cosine {float(cosine):+.3f}")

        # the adaptive weight: the release's inverted flag set to True switches it on
        release_ad = release_loss.VQLPIPSWithDiscriminator(disc_start=1, disc_weight=0.8, use_amp=False,
                                                           fr_model=str(tmp / "iresnet100.pth"),
                                                           not_use_g_loss_adaptive_weight=True).eval()
        last = torch.nn.Parameter(torch.eye(3).view(3, 3, 1, 1) + 0.05 * torch.randn(3, 3, 1, 1, generator=g))
        base = inputs["image"]
        img_r = torch.nn.functional.conv2d(base, last)
        t_r = release_ad(inputs["im_features"], inputs["targets"], inputs["logits"], gt, img_r, release_disc, 0, 1,
                         last_layer=last)
        img_o = torch.nn.functional.conv2d(base, last)
        t_o = ours_adaptive(inputs["im_features"], inputs["targets"], inputs["logits"], gt, img_o, ours_disc, 1,
                            last_layer=last)
        d = max_diff(t_r[0], t_o.ae_loss)
        worst = max(worst, d)
        print(f"\nadaptive weight on (release not_use_g_loss_adaptive_weight=True, facebench adaptive_weight=true): "
              f"ae_loss {d:.2e}")

        if not args.skip_model:
            worst = max(worst, model_layout(root))
    print(f"\nlargest difference {worst:.2e}: {'PASS' if worst <= TOLERANCE else 'FAIL'} (target {TOLERANCE:g})")
    return 0 if worst <= TOLERANCE else 1


def model_layout(root: Path) -> float:
    """The release's generator and facebench's: parameter order, strict loads, AdamW states across."""
    from facebench_plugins.vec2face.checkpoint import release_parameters
    from facebench_plugins.vec2face.model import Vec2Face, model_config
    from pixel_generator.vec2face import model_vec2face

    with inside(root):
        release = model_vec2face.vec2face_vit_base_patch16(use_rep=True, rep_dim=512, mask_ratio_mu=0.75,
                                                           mask_ratio_std=0.25, mask_ratio_min=0.5,
                                                           mask_ratio_max=1.0)
    ours = Vec2Face(model_config("vec2face_vit_base_patch16"))
    ours.load_state_dict(release.state_dict(), strict=True)
    release.load_state_dict(ours.state_dict(), strict=True)
    names_release = [n for n, _ in release.named_parameters()]
    names_ours = [n for n, _ in release_parameters(ours)]
    print(f"\ngenerator: {len(names_release)} parameters; facebench's optimizer order == the release's "
          f"named_parameters(): {names_release == names_ours}; state dicts load strictly both ways")
    g = torch.Generator().manual_seed(5)
    opt_r = torch.optim.AdamW(release.parameters(), lr=1e-4, betas=(0.9, 0.99))
    used = [p for n, p in release.named_parameters() if not n.startswith(("center_token", "patch_embed"))]
    for p in used:
        p.grad = torch.randn(p.shape, generator=g)
    opt_r.step()
    opt_o = torch.optim.AdamW([p for _, p in release_parameters(ours)], lr=1e-4, betas=(0.9, 0.99))
    opt_o.load_state_dict(opt_r.state_dict())
    params_o = dict(release_parameters(ours))
    worst = max(max_diff(opt_o.state[params_o[n]]["exp_avg"], opt_r.state[p]["exp_avg"])
                for n, p in release.named_parameters() if p in opt_r.state)
    back = torch.optim.AdamW(release.parameters(), lr=1e-4, betas=(0.9, 0.99))
    back.load_state_dict(opt_o.state_dict())
    print(f"  AdamW state dict release -> facebench -> release: exp_avg max |diff| {worst:.1e} over "
          f"{len(opt_r.state)} parameters with state (center_token, patch_embed: none, as unused)")
    return 0.0 if names_release == names_ours else float("inf")


if __name__ == "__main__":
    raise SystemExit(main())
