"""Vec2Face+ side by side with its release: the pose-conditioned generator, its layouts, its landmark images.

    python benchmarks/parity/vec2face_plus.py --release PATH/TO/Vec2Face_plus [--n 4] [--seed 0] [--tiny]
    python benchmarks/parity/vec2face_plus.py --release PATH --write-manifests tests/data/compat

PATH is a checkout of github.com/HaiyuWu/Vec2Face_plus. Its ``MaskedGenerativeEncoderViT`` (with
``use_lora=True, lora_r=8``, as ``pose_control.py --use_lora --lora_r 8`` builds it), ``LoRALinear`` and
``PoseCondModel`` are imported from there and given random weights (every tensor, the adapters' ``B`` and
the pose model's zero-initialised ``linear`` included, so both paths matter). Their state dicts are saved
as the release saves ``pose_model.pth`` (``{"model_vec2face": ..., "pose_model": ...}``) and loaded by
``facebench.load_generator("vec2face_plus", weights=...)``, the loader ``generate`` uses (strict both
ways). Both run on the same identity vectors and landmark images, in fp32 on the CPU:

* landmark images: facebench's named poses and the release's two example files (read as ``pose_control.py``
  reads them: ``ToTensor`` + ``Normalize(0.5, 0.5)``; the release also casts them to fp16, which autocast
  does anyway on CUDA), cycled over the batch as ``pose_control.py`` repeats them;
* masks: the release draws its own (``pose_control.py``'s ratio 0.8-0.9); they are captured from its
  ``forward_encoder`` and handed to facebench, so both mask the same rows.

Printed: the release commit; the largest difference of the pose rows, of the generated images (raw, and
clipped as saved) on the reference path and on facebench's fast path; the release's uint8 conversion
against facebench's; the main model (``main_model.pth``, no adapters, no condition); ``LoRALinear`` alone;
the zero-initialised pose model against plain Vec2Face; facebench's landmark images against the release's
files; OpenCV's ``circle`` against facebench's discs (when ``cv2`` is importable). Target <= 1e-4.

Needs the release's imports: ``pip install omegaconf timm`` (``sixdrepnet``, imported for AttrOP only, is
replaced by an empty module). ``--write-manifests DIR`` writes the layouts the tests check
(``vec2face_plus_main_model.json``, ``vec2face_plus_pose_model.json``, ``vec2face_plus_tiny.json``): tensor
names, shapes and dtypes of the release's modules. A missing release path skips with a message.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _common import commit_of, inside, max_diff, release_parser, vec2face_release

TOLERANCE = 1e-4
#: The files that mark a checkout of the release, and its imports that facebench does not install.
MARKERS = ("pixel_generator/vec2face/pose_condition.py",)
NEEDS = ("omegaconf", "timm", "scipy")
POSE_MASKING = {"mask_ratio_min": 0.8, "mask_ratio_max": 0.9, "mask_ratio_mu": 0.85, "mask_ratio_std": 0.05}
#: The tiny configuration in the release's terms: facebench's vec2face_tiny (56 px).
TINY_VIT = {"img_size": 56, "patch_size": 8, "embed_dim": 128, "depth": 2, "num_heads": 4, "decoder_embed_dim": 128,
            "decoder_depth": 2, "decoder_num_heads": 4, "mlp_ratio": 4}
TINY_VQGAN = """model:
  params:
    ddconfig:
      double_z: False
      z_channels: 32
      resolution: 56
      in_channels: 3
      out_ch: 3
      ch: 32
      ch_mult: [1, 1, 1, 1]
      num_res_blocks: 1
      attn_resolutions: [16]
      dropout: 0.0
"""


def release_model(root: Path, *, tiny: bool, lora: bool, masking: dict):
    """The release's model as its scripts build it (``tiny``: with facebench's tiny sizes and a tiny
    ``vqgan.yaml`` in a temporary working directory)."""
    from pixel_generator.vec2face import model_vec2face as mv

    options = {"use_rep": True, "rep_dim": 512, "use_class_label": False, "rep_drop_prob": 0.0, **masking}
    if lora:
        options.update(use_lora=True, lora_r=8, lora_alpha=32, lora_drop=0.0)
    if not tiny:
        with inside(root):
            return mv.vec2face_vit_base_patch16(**options)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "configs" / "vec2face").mkdir(parents=True)
        (Path(tmp) / "configs" / "vec2face" / "vqgan.yaml").write_text(TINY_VQGAN)
        with inside(Path(tmp)):
            return mv.MaskedGenerativeEncoderViT(**TINY_VIT, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                                                 **options)


def release_pose_model(*, tiny: bool):
    """The release's ``PoseCondModel``; the tiny one with its ``linear`` narrowed to the tiny width (128)."""
    from pixel_generator.vec2face.pose_condition import PoseCondModel

    model = PoseCondModel()
    if tiny:
        model.linear = torch.nn.Linear(model.linear.in_features, 128)
        torch.nn.init.zeros_(model.linear.weight)
        torch.nn.init.zeros_(model.linear.bias)
    return model


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Every parameter random at a scale that keeps activations finite (norm weights near 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 1 and name.endswith("weight"):  # LayerNorm / GroupNorm scales
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
            elif "pos_embed" in name or "position_embeddings" in name:
                p.copy_(0.02 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))


def layout(state: dict) -> dict:
    return {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in state.items()}


def write_manifests(root: Path, out: Path, commit: str) -> None:
    note = ("Tensor names, shapes and dtypes of Vec2Face+'s saved state dicts, as the release's code builds them "
            f"(github.com/HaiyuWu/Vec2Face_plus {commit}: pixel_generator/vec2face/model_vec2face.py "
            "MaskedGenerativeEncoderViT, lora.py LoRALinear, pose_condition.py PoseCondModel). Written once by "
            "benchmarks/parity/vec2face_plus.py --write-manifests with random weights; the tests compare facebench's "
            "modules with them and build release-layout checkpoints from them.")
    out.mkdir(parents=True, exist_ok=True)
    main = release_model(root, tiny=False, lora=False, masking=POSE_MASKING)
    plus = release_model(root, tiny=False, lora=True, masking=POSE_MASKING)
    files = {
        "vec2face_plus_main_model.json": {
            "note": note, "built_as": "vec2face_vit_base_patch16(use_rep=True, rep_dim=512)",
            "file": "vec2face_plus/main_model.pth", "keys": {"model_vec2face": layout(main.state_dict())}},
        "vec2face_plus_pose_model.json": {
            "note": note, "built_as": "vec2face_vit_base_patch16(use_lora=True, lora_r=8, lora_alpha=32); PoseCondModel()",
            "file": "vec2face_plus/pose_model.pth",
            "keys": {"model_vec2face": layout(plus.state_dict()),
                     "pose_model": layout(release_pose_model(tiny=False).state_dict())}},
    }
    tiny_main = release_model(root, tiny=True, lora=False, masking=POSE_MASKING)
    tiny_plus = release_model(root, tiny=True, lora=True, masking=POSE_MASKING)
    files["vec2face_plus_tiny.json"] = {
        "note": note + " Tiny: MaskedGenerativeEncoderViT(" + ", ".join(f"{k}={v}" for k, v in TINY_VIT.items())
                + ") with a vqgan.yaml of ch 32, ch_mult [1,1,1,1], num_res_blocks 1, z_channels 32, resolution 56 "
                "(facebench's vec2face_tiny); the pose model is the release's with its linear 12544 -> 128.",
        "keys": {"main_model": {"model_vec2face": layout(tiny_main.state_dict())},
                 "pose_model": {"model_vec2face": layout(tiny_plus.state_dict()),
                                "pose_model": layout(release_pose_model(tiny=True).state_dict())}}}
    for name, data in files.items():
        (out / name).write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote {out / name}")


def capture_masks(model) -> dict[str, torch.Tensor]:
    """Wraps the release's ``forward_encoder`` so that the masks it draws (``dropped``, ``masked``: one flag
    per patch row) land in the returned dict, to be handed to facebench."""
    captured: dict[str, torch.Tensor] = {}
    encoder = model.forward_encoder

    def capture(r):
        out = encoder(r)
        captured["dropped"], captured["masked"] = out[2][:, 1:].bool(), out[3][:, 1:].bool()
        return out

    model.forward_encoder = capture
    return captured


def release_landmarks(root: Path) -> dict[str, torch.Tensor]:
    """The release's example landmark images, read as ``pose_control.py``'s ``ImageDataset`` reads them
    (``Image.open(path).convert("RGB")``, ``ToTensor``, ``Normalize([0.5]*3, [0.5]*3)``; not cast to fp16)."""
    from PIL import Image
    from torchvision.transforms import transforms as T

    transform = T.Compose([T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
    out = {}
    for line in (root / "landmarks" / "landmark_examples.txt").read_text().split():
        path = root / line
        out[path.stem] = transform(Image.open(path).convert("RGB"))
    return out


def check_circles() -> None:
    """OpenCV's filled ``circle`` against facebench's discs over random centres (edges clipped) and radii."""
    try:
        import cv2
    except ImportError:
        print("opencv: not importable here, disc check skipped (pip install opencv-python-headless)")
        return
    from facebench_plugins.vec2face.landmarks import disc_half_widths

    rng = np.random.default_rng(0)
    differ = 0
    for _ in range(3000):
        r, size = int(rng.integers(0, 15)), 48
        cx, cy = (int(v) for v in rng.integers(-10, 58, size=2))
        a = np.zeros((size, size), np.uint8)
        cv2.circle(a, (cx, cy), r, 255, -1)
        b = np.zeros((size, size), np.uint8)
        for off, half in disc_half_widths(r).items():
            if 0 <= cy + off < size and max(cx - half, 0) <= min(cx + half, size - 1):
                b[cy + off, max(cx - half, 0):min(cx + half, size - 1) + 1] = 255
        differ += int((a != b).any())
    print(f"opencv {cv2.__version__} circle(thickness=-1) vs facebench's discs: {differ} of 3000 random discs differ")


def main() -> int:
    parser = release_parser(__doc__, "HaiyuWu/Vec2Face_plus", 4, "Batch size.")
    parser.add_argument("--tiny", action="store_true", help="The tiny configuration (56 px) instead of ViT-Base.")
    parser.add_argument("--write-manifests", metavar="DIR", help="Write the release's layouts as JSON to DIR.")
    args = parser.parse_args()
    root = vec2face_release(args.release, "Vec2Face+", MARKERS, NEEDS)
    if root is None:
        return 0
    commit = commit_of(root)
    print(f"release {root} commit {commit} (torch {torch.__version__})")
    if args.write_manifests:
        write_manifests(root, Path(args.write_manifests), commit)
        return 0

    from facebench_plugins.vec2face.landmarks import RELEASE_EXAMPLES, load_pose_set, render_landmarks
    from facebench_plugins.vec2face.lora import LoRALinear
    from pixel_generator.vec2face.lora import LoRALinear as ReleaseLoRA

    import facebench
    from facebench.data.tensors import to_uint8

    name = "vec2face_plus_tiny" if args.tiny else "vec2face_plus"
    worst = 0.0

    # -- LoRALinear alone
    torch.manual_seed(args.seed)
    rel_lora = ReleaseLoRA(torch.nn.Linear(64, 96), r=8, alpha=32)
    randomise(rel_lora, args.seed)
    ours_lora = LoRALinear(torch.nn.Linear(64, 96), 8, 32)
    ours_lora.load_state_dict(rel_lora.state_dict(), strict=True)
    x = torch.randn(5, 7, 64)
    d = max_diff(rel_lora(x), ours_lora(x))
    worst = max(worst, d)
    print(f"LoRALinear (64 -> 96, r 8, alpha 32): state dict loads strictly; output max |diff| {d:.2e}")

    # -- the landmark images
    files = release_landmarks(root)
    for stem, tensor in files.items():
        data, pixels = render_landmarks(RELEASE_EXAMPLES[f"release-{stem}"])
        same = data == (root / "landmarks" / "images" / f"{stem}.jpg").read_bytes()
        ours = load_pose_set(f"release-{stem}").model_input()[0]
        print(f"landmark image {stem}.jpg: facebench's drawing of its fitted centres is {'byte-identical' if same else 'not byte-identical'}"
              f" (sha256 {hashlib.sha256(data).hexdigest()[:16]}...); as model input max |diff| {max_diff(ours, tensor):.3g}")
    listed = load_pose_set(str(root / "landmarks" / "landmark_examples.txt")).model_input()
    d = max_diff(listed, torch.stack(list(files.values())))
    worst = max(worst, d)
    print(f"the release's landmark_examples.txt read by facebench (paths from the repository root) vs the release's "
          f"transform: max |diff| {d:.2e}")
    check_circles()

    # -- the pose model: release modules with random weights, loaded by facebench's generate loader
    tiny = args.tiny
    release = release_model(root, tiny=tiny, lora=True, masking=POSE_MASKING).eval()
    release_pose = release_pose_model(tiny=tiny).eval()
    fresh = float(release_pose(torch.zeros(1, 3, 112, 112)).abs().max())
    randomise(release, args.seed + 1)
    randomise(release_pose, args.seed + 2)
    n = args.n
    g = torch.Generator().manual_seed(args.seed + 3)
    rep = torch.randn(n, 512, generator=g)  # raw ArcFace scale: norm ~22
    named = load_pose_set("frontal,yaw+60").model_input()
    pool = torch.cat([named, torch.stack(list(files.values()))])  # four poses
    landmarks = pool.repeat(math.ceil(n / len(pool)), 1, 1, 1)[:n]  # pose_control.py: repeated over the batch

    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "pose_model.pth"
        torch.save({"model_vec2face": release.state_dict(), "pose_model": release_pose.state_dict(),
                    "epoch": 0, "args": argparse.Namespace(use_lora=True, lora_r=8)}, weights)
        gen = facebench.load_generator(name, weights=str(weights), fast=False)
        # strict the other way: facebench's state dicts load into the release's modules
        release.load_state_dict(gen.model.state_dict(), strict=True)
        release_pose.load_state_dict(gen.pose_model.state_dict(), strict=True)
        print(f"\n{name}: {sum(p.numel() for p in gen.model.parameters()):,} + "
              f"{sum(p.numel() for p in gen.pose_model.parameters()):,} parameters; the release's state dicts load "
              f"into facebench's generator ({weights.name} with epoch and args beside them) and back, strictly")

        captured = capture_masks(release)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        with torch.no_grad():
            rel_cond = release_pose(landmarks).float()
            _, _, rel_img, _, _ = release(rep, rel_cond)
        masks = (captured["dropped"], captured["masked"])
        print(f"masks drawn by the release (pose_control.py's ratios): {int(masks[0][0].sum())} of 49 rows dropped, "
              f"{int(masks[1][0].sum())} masked")
        with torch.no_grad():
            our_cond = gen.pose_model(landmarks)
            gen.model.set_fused_attention(False)
            our_raw = gen.model(rep, *masks, cond=our_cond).image
        plain = gen.generate_plain(rep, masks=masks, landmarks=landmarks)
        fast = gen.generate(rep, masks=masks, landmarks=landmarks)
        checks = [("pose rows (N, 1, D)", rel_cond, our_cond, True),
                  ("image, raw", rel_img, our_raw, True),
                  ("image, clipped (generate_plain)", rel_img.clamp(-1, 1), plain, True),
                  ("image, fast path (fused attention, inference_mode)", rel_img.clamp(-1, 1), fast, False)]
        print(f"\nmax |release - facebench| over {n} images of {gen.image_size} px, 4 landmark images cycled:")
        for label, a, b, counted in checks:
            d = max_diff(a, b)
            if counted:
                worst = max(worst, d)
            print(f"  {label:<52} {d:.2e}   (release range {float(a.min()):+.3f} .. {float(a.max()):+.3f})")
        rel_u8 = ((rel_img.permute(0, 2, 3, 1).numpy() + 1.0) / 2.0 * 255.0).clip(0, 255).astype(np.uint8)
        ours_u8 = to_uint8(plain)
        delta = np.abs(rel_u8.astype(int) - ours_u8.astype(int))
        print(f"  uint8 as saved: the release truncates, facebench's to_uint8 rounds: {int((delta > 0).sum())} of "
              f"{delta.size} values differ, by at most {int(delta.max())}")

        # -- a zero pose row (the release initialises linear to zero) is not plain Vec2Face
        outputs = []
        for cond in (torch.zeros_like(rel_cond), None):
            np.random.seed(args.seed)  # the same masks both times
            torch.manual_seed(args.seed)
            with torch.no_grad():
                outputs.append(release(rep, cond)[2])
        print(f"\nthe release's fresh PoseCondModel gives rows of max |value| {fresh:g} (linear initialised to zero); "
              f"its model with a zero row vs with none (plain Vec2Face): max |diff| {max_diff(*outputs):.3g} (with a "
              "row, the masked positions take it and decoder_embed is skipped)")

    # -- the main model: a Vec2Face file, no adapters, no condition
    main = release_model(root, tiny=tiny, lora=False, masking=POSE_MASKING).eval()
    randomise(main, args.seed + 4)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "main_model.pth"
        torch.save({"model_vec2face": main.state_dict()}, weights)
        gen = facebench.load_generator(name, weights=str(weights), fast=False)
        captured = capture_masks(main)
        with torch.no_grad():
            _, _, rel_img, _, _ = main(rep)
        ours = gen.generate_plain(rep, masks=(captured["dropped"], captured["masked"]))
        d = max_diff(rel_img.clamp(-1, 1), ours)
        worst = max(worst, d)
        print(f"main model ({weights.name}: no adapters, no pose model; vec2face_plus builds a plain Vec2Face): "
              f"clipped image max |diff| {d:.2e}; needs landmarks: {gen.needs_pose_landmarks}")
    print(f"\nlargest difference {worst:.2e}: {'PASS' if worst <= TOLERANCE else 'FAIL'} (target {TOLERANCE:g}); "
          f"release commit {commit}")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    raise SystemExit(main())
