"""Vec2Face+'s pose-model training side by side with its release: the loss terms, what trains, one step.

    python benchmarks/parity/vec2face_plus_loss.py --release PATH/TO/Vec2Face_plus [--n 2] [--seed 0]

PATH is a checkout of github.com/HaiyuWu/Vec2Face_plus. The release's side is its own ``pose_training.py``:
its ``main()`` is read with ``ast`` and run statement by statement with the README's command line
(``--use_lora --lora_r 8 --cosine_lr --warmup_epochs 1 --min_lr 1e-6 --lr 1e-4 --epochs 10 --use_amp
--model_weights main_model.pth``), skipping only the output folder and the LMDB loader (which needs CUDA),
and then one iteration of its training loop on a batch given here. facebench's side is ``train-generator``'s
:class:`PoseTrainer` on the same records (an LMDB in the landmarks layout written here) with the shipped
``vec2face_plus_pose`` settings. Both sides get the same random weights, in fp32 on the CPU:

* LPIPS: the release builds torchvision's ``vgg16(pretrained=True)``; here ``torchvision.models.vgg16``
  returns one random VGG16 (no ImageNet weights offline), and both sides read the linear layers from the
  release's own ``lpips/vgg.pth`` (the same file facebench's ``LPIPSVGG16`` reads as ``lpips_weights``);
* the identity model: the release's ``create_fr_model`` reads a random iresnet100 from a temporary file,
  facebench's ``arcface-r100`` extractor the same file;
* the generator: a plain (adapter-free) release ``vec2face_vit_base_patch16`` with random weights saved as
  ``main_model.pth``; the release warm-starts from it with ``load_state_dict(strict=False)``, facebench with
  ``--init``; for the step, facebench's warm-started generator and pose model (adapters' ``B`` and the pose
  model's last layer made non-zero, so every trainable tensor gets a gradient) are copied into the release's;
* the masks: facebench's, handed to the release's ``forward_encoder`` (its ratio draw and its noise);
  the LPIPS dropout masks (the release leaves LPIPS in training mode): the same global seed on both sides;
* ``sixdrepnet`` (imported by the release's model file for AttrOP only) is replaced by an empty module.

Printed, with the largest absolute difference of each: the loss terms (rec, fid, ploss, ssim, total), the
learning rate over the whole schedule, which parameters receive a gradient (the release's
``freeze_except_lora`` + trainable list against facebench's), the gradients, the parameters after the step,
the frozen generator before and after, the optimizer state dicts loaded across, and what the release's
``strict=False`` warm start leaves unloaded. Needs the release's imports: ``pip install pytorch_msssim
omegaconf timm`` (none of them is a facebench dependency). A missing release path skips with a message.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import commit_of, inside, max_diff, random_iresnet, release_parser, vec2face_release

TOLERANCE = 1e-5
#: The files that mark a checkout of the release, and its imports that facebench does not install.
MARKERS = ("pose_training.py", "lpips/vgg.pth")
NEEDS = ("pytorch_msssim", "omegaconf", "timm")
#: Gradients through the generator, relative to each tensor's largest: the forward passes of the release's
#: and facebench's generator agree to float rounding (benchmarks/parity/vec2face_plus.py, target 1e-4).
GRADIENT_TOLERANCE = 1e-4
TERMS = (("rec", "rec"), ("fid", "fid"), ("ploss", "ploss"), ("ssim_l", "ssim"), ("total", "total"))
#: The README's training command (``torchrun`` aside), as the release's argument parser reads it.
README_ARGS = ["--model=vec2face_vit_base_patch16", "--lr", "1e-4", "--warmup_epochs", "1", "--cosine_lr",
               "--min_lr", "1e-6", "--use_amp", "--use_lora", "--lora_r", "8", "--epochs", "10"]


def release_script(root: Path) -> tuple[dict, list[ast.stmt], list[ast.stmt]]:
    """``pose_training.py``'s definitions (run into a namespace), the statements of ``main()`` that set a
    run up (not the output folder, not the LMDB loader) and the body of one training iteration."""
    tree = ast.parse((root / "pose_training.py").read_text(), filename="pose_training.py")
    ns: dict = {"__name__": "release_pose_training"}
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dataloader"):
                continue  # the LMDB loader (lmdb, six, a CUDA stream): the batch is given here
        elif not isinstance(node, ast.FunctionDef | ast.ClassDef):
            continue
        exec(compile(ast.Module([node], []), "pose_training.py", "exec"), ns)  # noqa: S102 - the reference
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    data = ("makedirs", "LMDBDataLoader", "get_loader", "T.Compose")
    setup = []
    for node in main.body:
        if isinstance(node, ast.For):
            break
        if not any(word in ast.unparse(node) for word in data):
            setup.append(node)
    loop = next(n for n in main.body if isinstance(n, ast.For))
    inner = next(n for n in loop.body if isinstance(n, ast.For))
    modes = (".train()", ".eval()")  # pose_model.train(); vec2face.eval()
    step = [n for n in loop.body if isinstance(n, ast.Expr) and any(m in ast.unparse(n) for m in modes)]
    for node in inner.body:
        step.append(node)
        if isinstance(node, ast.If) and "scheduler" in ast.unparse(node.test):
            break  # what follows is logging
    return ns, setup, step


def run(ns: dict, nodes: list[ast.stmt]) -> None:
    exec(compile(ast.Module(nodes, []), "pose_training.py", "exec"), ns)  # noqa: S102 - the reference


def write_records(path: Path, n: int, seed: int) -> None:
    """``n`` records in the landmarks layout: random faces, raw-scale features, five-dot landmark images."""
    from facebench.data import encode_image, open_writer

    rng = np.random.default_rng(seed)
    with open_writer(path, "lmdb", features=True, landmarks=True) as writer:
        for i in range(n):
            face = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
            marks = np.zeros((112, 112, 3), np.uint8)
            for x, y in rng.integers(20, 92, (5, 2)):
                marks[y - 1:y + 2, x - 1:x + 2] = 255
            feature = (rng.standard_normal(512) * 0.97).astype(np.float32)  # raw ArcFace scale: norm ~22
            writer.add(encode_image(face, "png"), i % 2, feature=feature, landmark=encode_image(marks, "png"))


class FixedRatio:
    """Stands for the release's ``mask_ratio_generator`` (a scipy truncnorm): ``rvs`` gives one ratio."""

    def __init__(self, ratio: float):
        self.ratio = ratio

    def rvs(self, size):
        return np.full(size, self.ratio)


@contextlib.contextmanager
def release_noise(noise: torch.Tensor):
    """The release's ``forward_encoder`` draws its row noise with ``torch.rand(bsz, rows)``: it gets
    ``noise`` (facebench's masks as noise: dropped rows lowest, then masked rows, then the rest)."""
    original = torch.rand

    def rand(*size, **kwargs):
        if tuple(size) == tuple(noise.shape):
            return noise.clone()
        return original(*size, **kwargs)

    torch.rand = rand
    try:
        yield
    finally:
        torch.rand = original


def masks_as_noise(dropped: torch.Tensor, masked: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Row noise whose lowest values are the dropped rows, then the masked ones, and a ratio ``r`` with
    ``ceil(rows x r)`` = the masked count: what makes the release's masking pick these masks."""
    n, rows = masked.shape
    key = (~dropped).float() + (~masked).float() + torch.arange(rows).float() / (2 * rows)
    rank = key.argsort(dim=1).argsort(dim=1).float()
    count = int(masked[0].sum())
    return (rank + 0.5) / rows, (count - 0.5) / rows


def main() -> int:
    parser = release_parser(__doc__, "HaiyuWu/Vec2Face_plus", 2, "Batch size of the toy batch.")
    args = parser.parse_args()
    root = vec2face_release(args.release, "Vec2Face_plus", MARKERS, NEEDS)
    if root is None:
        return 0
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))

    import torchvision

    torch.manual_seed(args.seed)
    vgg = torchvision.models.vgg16(weights=None).eval()
    torchvision.models.vgg16 = lambda *a, **kw: vgg  # the release asks for pretrained=True: same random net
    import lpips.lpips as release_lpips
    import models as release_models
    from facebench_plugins.vec2face.pose_training import PoseTrainer
    from facebench_plugins.vec2face.train_config import PoseTrainConfig, shipped_config
    from pixel_generator.vec2face import model_vec2face

    import facebench
    from facebench.config import load_config
    from facebench.training import Position, load_optimizer_state

    lpips_file = root / "lpips" / "vgg.pth"
    original = release_lpips.LPIPS.load_from_pretrained
    release_lpips.LPIPS.load_from_pretrained = lambda self, weight=None: original(self, str(lpips_file))
    commit = commit_of(root)
    n = args.n
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.save({k: v for k, v in vgg.state_dict().items() if k.startswith("features.")}, tmp / "vgg16.pth")
        random_iresnet(release_models, tmp / "iresnet100.pth", args.seed + 2)
        torch.manual_seed(args.seed + 3)
        with inside(root):
            plain = model_vec2face.vec2face_vit_base_patch16(use_rep=True, rep_dim=512)
        torch.save({"model_vec2face": plain.state_dict()}, tmp / "main_model.pth")
        write_records(tmp / "records.lmdb", 2 * n, args.seed + 4)

        # ---------------------------------------------------------------- facebench: train-generator's trainer
        cfg = load_config(PoseTrainConfig, shipped_config("vec2face_plus_pose"), [
            f"batch_size={n}", 'device="cpu"', "num_workers=0", "eval_samples=0", "grid_samples=0",
            f'vgg_weights="{tmp / "vgg16.pth"}"', f'lpips_weights="{lpips_file}"', f"seed={args.seed}"])
        reader = facebench.data.open_dataset(tmp / "records.lmdb")
        extractor = facebench.registry("feature_extractor").create("arcface-r100", weights=str(tmp / "iresnet100.pth"))
        ours = PoseTrainer(cfg, reader, None, tmp / "run", extractor=extractor)
        ours.init_from(tmp / "main_model.pth")
        g = torch.Generator().manual_seed(args.seed + 5)
        with torch.no_grad():  # every trainable tensor gets a gradient once B and the last layer are non-zero
            for name, p in ours.model.named_parameters():
                if name.endswith(".B"):
                    p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            ours.pose.linear.weight.copy_(torch.randn(ours.pose.linear.weight.shape, generator=g) * 1e-3)

        # --------------------------------------------------------------------- the release: pose_training.py
        ns, setup, step = release_script(root)
        ns["create_fr_model"] = functools.partial(ns["create_fr_model"], path=str(tmp / "iresnet100.pth"))
        ns["loader"] = [None] * ours.sampler.steps_per_epoch  # only len(loader) is used before the loop
        argv = sys.argv
        sys.argv = ["pose_training.py", *README_ARGS, f"--batch_size={n}", "--train_source=unused",
                    f"--model_weights={tmp / 'main_model.pth'}", f"--seed={args.seed}"]
        try:
            with inside(root):
                run(ns, setup)
        finally:
            sys.argv = argv
        release, pose = ns["vec2face"], ns["pose_model"]
        print(f"release {root} (commit {commit}); torch {torch.__version__}; batch {n} x 3 x 112 x 112 + "
              f"landmark images, fp32, random weights; README settings: {' '.join(README_ARGS)}")

        # what the release's warm start loads: strict=False drops every tensor whose name the adapters changed
        loaded = release.state_dict()
        file_state = plain.state_dict()
        skipped = [k for k, v in file_state.items() if k not in loaded or not torch.equal(loaded[k], v)]
        ours_state = ours.model.state_dict()
        ours_missing = [k for k in file_state if not any(torch.equal(v, file_state[k]) for v in
                                                          (ours_state.get(k), ours_state.get(_wrapped(k))) if v is
                                                          not None)]
        print(f"\n--model_weights main_model.pth ({len(file_state)} tensors, no adapters), release "
              f"load_state_dict(strict=False): {len(skipped)} not loaded ({', '.join(skipped[:2])}, ...: every "
              f"attention qkv/proj, whose names become ...base.weight under LoRA); facebench --init: "
              f"{len(ours_missing)} not loaded")

        # the step: both sides from facebench's warm-started weights
        release.load_state_dict(ours.model.state_dict(), strict=True)
        pose.load_state_dict(ours.pose.state_dict(), strict=True)
        before = {k: v.clone() for k, v in ours.model.state_dict().items()}

        # the learning rate, step by step over the whole run
        lrs = []
        sched, opt = ns["scheduler"], ns["optimizer"]
        saved = (opt.state_dict(), sched.state_dict())
        for i in range(cfg.epochs * ours.sampler.steps_per_epoch):
            lrs.append(abs(opt.param_groups[0]["lr"] - ours.lr_at(i)) / opt.param_groups[0]["lr"])
            sched.step()
        opt.load_state_dict(saved[0])
        sched.load_state_dict(saved[1])
        print(f"learning rate: {len(lrs)} steps (LinearLR 1e-3 -> 1 over 1 epoch, cosine to 1e-6 over 9), "
              f"largest relative |release - facebench| {max(lrs):.1e}")

        dropped, masked = ours.step_masks(n)
        noise, ratio = masks_as_noise(dropped, masked)
        release.mask_ratio_generator = FixedRatio(ratio)
        images, vectors, marks = (torch.stack(t) for t in zip(*[ours.data.record(i) for i in range(n)]))
        count = int(dropped[0].sum())

        # 1. one iteration of each side's loop: the terms as each computes them from its own forward pass
        ns.update(im=images.clone(), feat=vectors.clone(), landmark=marks.clone())
        torch.manual_seed(args.seed + 6)  # the LPIPS dropout masks
        with release_noise(noise), inside(root):
            run(ns, step)
        ours.model.eval()
        with torch.no_grad():  # facebench's image before its step (eval mode: no RNG drawn)
            image_gap = max_diff(ns["gen_img"], ours.model(vectors, dropped, masked, count, cond=ours.pose(marks)).image)
        torch.manual_seed(args.seed + 6)
        ours.position = Position(0, 0, 0)
        record = ours.train_step(images, vectors, marks)
        worst = 0.0
        print(f"\none training step on each side (LPIPS dropout on, as released; {count} rows dropped, "
              f"{int(masked[0].sum())} masked), the terms: max |release - facebench|")
        for theirs, mine in TERMS:
            d = max_diff(ns[theirs], record[mine])
            worst = max(worst, d)
            print(f"  {mine:<6} {d:.2e}   (release {float(ns[theirs]):+.6f})")

        # 2. what trains: the release's freeze_except_lora + trainable list against facebench's
        names = [f"pose.{k}" for k, _ in pose.named_parameters()] + [k for k, p in release.named_parameters()
                                                                      if p.requires_grad]
        ours_names = ([f"pose.{k}" for k, _ in ours.pose.named_parameters()]
                      + [k for k, p in ours.model.named_parameters() if p.requires_grad])
        rel_params = {**{f"pose.{k}": p for k, p in pose.named_parameters()}, **dict(release.named_parameters())}
        our_params = {**{f"pose.{k}": p for k, p in ours.pose.named_parameters()}, **dict(ours.model.named_parameters())}
        rel_grads = sorted(k for k, p in rel_params.items() if p.grad is not None)
        our_grads = sorted(k for k, p in our_params.items() if p.grad is not None)
        adapters = [k for k in names if not k.startswith("pose.")]
        same = names == ours_names and rel_grads == our_grads == sorted(names)
        print(f"\nwhat trains: release {len(names)} tensors, {sum(rel_params[k].numel() for k in names):,} values "
              f"(the pose model's {len(names) - len(adapters)}, then {len(adapters)} adapter tensors, each an A or a "
              f"B: {all(k.endswith(('.A', '.B')) for k in adapters)}); facebench trains the same tensors in the same "
              f"order and the step's gradients reach exactly these on both sides: {same}")
        worst = max(worst, 0.0 if same else float("inf"))
        frozen = max(max_diff(v, ours.model.state_dict()[k]) for k, v in before.items() if not k.endswith((".A", ".B")))
        frozen_release = max(max_diff(v, release.state_dict()[k]) for k, v in before.items()
                             if not k.endswith((".A", ".B")))
        after = max(max_diff(rel_params[k], our_params[k]) for k in names)
        print(f"  after the AdamW step (lr {ours.lr_at(0):.0e}, weight decay {cfg.weight_decay}): trained tensors "
              f"max |diff| {after:.2e}; the frozen generator changed by {frozen:.1e} (facebench), "
              f"{frozen_release:.1e} (release)")
        worst = max(worst, after, frozen)
        full = max(max_diff(rel_params[k].grad, our_params[k].grad) / float(rel_params[k].grad.abs().max())
                   for k in names if float(rel_params[k].grad.abs().max()) > 0)

        # 3. the objective on the same image: terms and their gradient (the release's own loss lines)
        x = ns["gen_img"].detach().clone()
        loss_lines = [n for n in step if isinstance(n, ast.With)][0].body[2:]  # after pfeat, gen_img
        mine = x.clone().requires_grad_(True)
        ns["gen_img"] = x.clone().requires_grad_(True)
        torch.manual_seed(args.seed + 7)
        run(ns, loss_lines)
        ns["total"].backward()
        torch.manual_seed(args.seed + 7)
        terms = ours.loss(vectors, None, None, images, mine, None, 0)
        terms.ae_loss.backward()
        ours_terms = {"rec": terms.rec_loss.mean(), "fid": terms.feature_loss, "ploss": terms.p_loss.mean(),
                      "ssim": terms.ssim_loss, "total": terms.ae_loss}
        print("\nthe objective on the same generated image (the release's loss lines against Vec2FaceLoss as the "
              "pose trainer configures it): max |release - facebench|")
        for theirs, key in TERMS:
            d = max_diff(ns[theirs], ours_terms[key])
            worst = max(worst, d)
            print(f"  {key:<6} {d:.2e}")
        g = ns["gen_img"].grad
        d = max_diff(g, mine.grad) / float(g.abs().max())
        worst = max(worst, d)
        print(f"  d total / d image: {d:.2e} of its largest value ({float(g.abs().max()):.3e})")

        # 4. the backward pass through generator and pose model, from the same gradient at the image
        upstream = torch.randn(x.shape, generator=torch.Generator().manual_seed(args.seed + 8))
        for module in (release, pose, ours.model, ours.pose):
            module.zero_grad(set_to_none=True)
        with release_noise(noise):
            release(vectors, pose(marks))[2].backward(upstream)
        ours.train_pose(vectors, marks, dropped, masked, count).backward(upstream)
        back = max(max_diff(rel_params[k].grad, our_params[k].grad) / float(rel_params[k].grad.abs().max())
                   for k in names)
        print(f"\nbackward through the adapted generator and the pose model from one gradient at the image: every "
              f"trained tensor's gradient within {back:.2e} of its largest value (target {GRADIENT_TOLERANCE:g}: fp32 "
              f"rounding through 20 blocks and the decoder, the generator's own parity target)")
        print(f"  (the whole step's gradients differ by up to {full:.1e} of their largest value: the two forward "
              f"passes round differently, the images differ by {image_gap:.1e}, and the random VGG16 and iresnet100 "
              f"turn that into that much gradient; parts 3 and 4 compare each half at the same point)")

        # 5. the optimizer state dicts, across (the parameter order is the release's)
        load_optimizer_state(ours.opt, ns["optimizer"].state_dict(), "release", "optimizer")
        back_opt = torch.optim.AdamW(ns["trainable"], lr=1e-4)
        back_opt.load_state_dict(ours.opt.state_dict())
        exp = max(max_diff(back_opt.state[p]["exp_avg"], ours.opt.state[q]["exp_avg"])
                  for p, q in zip(ns["trainable"], ours.trainable()))
        print(f"\nAdamW state dict release -> facebench -> release: {len(ours.opt.state)} tensors with state, "
              f"exp_avg max |diff| {exp:.1e}")
        worst = max(worst, exp)
    ok = worst <= TOLERANCE and back <= GRADIENT_TOLERANCE
    print(f"\nlargest difference of the terms, the step and the optimizer {worst:.2e} (target {TOLERANCE:g}), of the "
          f"generator's gradients {back:.2e} (target {GRADIENT_TOLERANCE:g}): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def _wrapped(name: str) -> str:
    """A plain Vec2Face attention name as the adapters store it (``qkv.weight`` -> ``qkv.base.weight``)."""
    for layer in (".attn.qkv.", ".attn.proj."):
        if layer in name:
            head, tail = name.split(layer)
            return f"{head}{layer}base.{tail}"
    return name


if __name__ == "__main__":
    raise SystemExit(main())
