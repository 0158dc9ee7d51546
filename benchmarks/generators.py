"""Generator speed: images/s of Vec2Face, Arc2Face, DCFace and IDiff-Face/UIFace at the same batch, side by side.

    python benchmarks/generators.py                          # tiny models on CPU, batch 8
    python benchmarks/generators.py --device cuda --batch 8  # also the base models (random weights)
    python benchmarks/generators.py --paths                  # Vec2Face's plain and fast paths (base + tiny)

Every figure is the best of at least ``--repeats`` timed ``generate`` calls (fast ones repeated for a
second) after a warm-up, producing the aligned
FR-ready images of the generator contract (Arc2Face: diffusion, VAE decode and the FFHQ -> ArcFace warp).
Arc2Face runs with the release's sampler (DPM-Solver++, 25 steps, guidance 3) and with the 4-step LCM
sampler the Vec2Face paper timed it with. Random weights are used: speed does not depend on the values.
DCFace runs at the release's settings (dual-condition DDIM, 50 steps, eta 1; its first stage, 100 respaced
DDPM steps, once per identity: its cost is spread over ``--images-per-id`` images); IDiff-Face with its
release's 1000-step DDPM, NegFaceDiff's (two denoiser passes a step) and UIFace's two-stage DDIM (50 of 1000
steps, two passes a step), each on the tiny model. Beside the measured rows: the paper's Table 3 as published (Titan Xp, batch 8),
and the FLOPs of one image of each base model, counted with ``torch.utils.flop_counter`` on the meta device
(nothing is computed; Vec2Face's while it runs), from which a GPU-hour estimate for a 10k x 50 set follows
at an assumed sustained throughput (``--assume-tflops``; not a measurement).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import facebench

PUBLISHED = (("Vec2Face", 467.0), ("Arc2Face (4-step sampler)", 1.5))  # Table 3: Titan Xp, batch 8
ARC2FACE_SETTINGS = (("dpmsolver++", 25, 3.0), ("lcm", 4, 1.0))


def best_time(fn, repeats: int, device: torch.device, min_seconds: float = 1.0) -> float:
    """The fastest of at least ``repeats`` calls, repeating fast ones for ``min_seconds`` (on a shared
    machine a single 20 ms call is easily slowed by a neighbour; the best of many is not)."""
    fn()  # warm-up (allocations, first-call setup)
    best, spent, count = float("inf"), 0.0, 0
    while count < repeats or spent < min_seconds:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        took = time.perf_counter() - start
        best, spent, count = min(best, took), spent + took, count + 1
    return best


def arc2face_available() -> bool:
    return not facebench.registry("generator").get("arc2face").missing()


def arc2face_flops_per_image(steps: int, guidance: float) -> dict[str, float]:
    """FLOPs of one image of the base (released-size) Arc2Face, counted on the meta device: ``steps`` UNet
    evaluations (two with classifier-free guidance), one VAE decode, one text-encoder pass."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from facebench_plugins.arc2face.configs import release_configs
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = release_configs()
    with torch.device("meta"):
        unet = UNet2DConditionModel(**cfg["unet"])
        vae = AutoencoderKL(**cfg["vae"])
        encoder = CLIPTextModel(CLIPTextConfig(**cfg["encoder"]))
    side = cfg["unet"]["sample_size"]
    counts = {}
    with FlopCounterMode(display=False) as fc:
        unet(torch.zeros(1, 4, side, side, device="meta"), torch.tensor(500, device="meta"),
             encoder_hidden_states=torch.zeros(1, 77, 768, device="meta"))
    counts["unet"] = fc.get_total_flops() * steps * (2 if guidance > 1 else 1)
    with FlopCounterMode(display=False) as fc:
        vae.decode(torch.zeros(1, 4, side, side, device="meta"))
    counts["vae"] = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        encoder(input_ids=torch.zeros(1, 77, dtype=torch.long, device="meta"))
    counts["encoder"] = fc.get_total_flops()
    counts["total"] = sum(counts.values())
    return counts


def vec2face_flops_per_image(device: torch.device) -> float:
    """FLOPs of one image of the base Vec2Face, counted while it runs (batch 2) on ``device``."""
    from torch.utils.flop_counter import FlopCounterMode

    gen = facebench.load_generator("vec2face", device=device)
    with FlopCounterMode(display=False) as fc:
        gen.generate(torch.randn(2, gen.feature_dim, device=device))
    return fc.get_total_flops() / 2


def dcface_flops_per_image(images_per_id: int) -> dict[str, float]:
    """FLOPs of one image of the released DCFace (dcface_3x3's sizes), on the meta device: the condition
    (identity and style encoders) once, the UNet at each of the 50 DDIM steps, and the first stage's 100
    steps at 256 px shared by an identity's ``images_per_id`` images."""
    from facebench_plugins.dcface.generator import RELEASE_STAGE1_STEPS, RELEASE_STEPS
    from facebench_plugins.dcface.layout import STAGE1_CONFIG, STAGE1_SIZE
    from facebench_plugins.dcface.networks import DCFace, DCFaceConfig, UNet
    from torch.utils.flop_counter import FlopCounterMode

    cfg = DCFaceConfig()
    with torch.device("meta"):
        model, stage1 = DCFace(cfg).eval(), UNet(STAGE1_CONFIG).eval()
        image = torch.zeros(1, 3, cfg.image_size, cfg.image_size)
        t = torch.tensor([500])
        counts = {}
        with FlopCounterMode(display=False) as fc:
            cond, stylemod = model.condition(image, image)
        counts["condition"] = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            model.eps(image, t, cond, stylemod)
        counts["unet"] = fc.get_total_flops() * RELEASE_STEPS
        with FlopCounterMode(display=False) as fc:
            stage1(torch.zeros(1, 3, STAGE1_SIZE, STAGE1_SIZE), t)
        counts["first stage"] = fc.get_total_flops() * RELEASE_STAGE1_STEPS / images_per_id
    counts["total"] = sum(counts.values())
    return counts


#: IDiff-Face family presets: (label, UNet evaluations per image at full size).
IDIFF_PRESETS = (("idiff-face", "DDPM 1000 steps", 1000), ("uiface", "two-stage DDIM 50 steps, 2 passes", 100),
                 ("negfacediff", "DDPM 1000 steps, negative pass", 2000))


def idiff_face_flops_per_image(evaluations: int) -> dict[str, float]:
    """FLOPs of one image of the released IDiff-Face/UIFace (the release's UNet on the 32 x 32 VQ latent,
    ``evaluations`` passes, and one VQ decode to 128 px), on the meta device."""
    from facebench_plugins.idiff_face.unet import RELEASE as UNET
    from facebench_plugins.idiff_face.unet import IdentityUNet
    from facebench_plugins.idiff_face.vq import RELEASE as DECODER
    from facebench_plugins.idiff_face.vq import LatentDecoder
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        unet, decoder = IdentityUNet(UNET).eval(), LatentDecoder(DECODER).eval()
        latent = torch.zeros(1, UNET.input_channels, 32, 32)
        counts = {}
        with FlopCounterMode(display=False) as fc:
            unet(latent, torch.tensor([500]), torch.zeros(1, 512))
        counts["unet"] = fc.get_total_flops() * evaluations
        with FlopCounterMode(display=False) as fc:
            decoder(latent)
        counts["decoder"] = fc.get_total_flops()
    counts["total"] = sum(counts.values())
    return counts


def style_bank(tmp: Path, size: int) -> Path:
    """A small toyfaces training folder: DCFace's style images (their content does not change the speed)."""
    from click.testing import CliRunner

    from facebench.cli import create_cli

    out = tmp / "bank"
    res = CliRunner().invoke(create_cli(), ["toyfaces", "build", str(out), "--identities", "4",
                                            "--images-per-identity", "2", "--size", str(size), "--pairs", "20",
                                            "--packs", "toy_lfw"])
    if res.exit_code != 0:
        raise SystemExit(f"cannot build the style bank: {res.output.strip()}")
    return out / "train"


def measure_dcface(args, device: torch.device, tmp: Path) -> list[tuple[str, str, float]]:
    """dcface_tiny at the release's settings: the main sampler's img/s, and with the first stage's share."""
    from facebench_plugins.dcface.generator import RELEASE_STAGE1_STEPS, RELEASE_STEPS, STAGE1, make_code

    gen = facebench.load_generator("dcface_tiny", device=device, style_bank=str(style_bank(tmp, 56)),
                                   steps=RELEASE_STEPS, stage1_steps=RELEASE_STAGE1_STEPS, batch_size=args.batch)
    codes = torch.from_numpy(np.stack([make_code(STAGE1, 0, 7)] * args.batch))
    main = best_time(lambda: gen.generate(codes), args.repeats, device)  # the identity image is made once
    stage1 = best_time(lambda: gen.stage1_images([7]), 1, device, min_seconds=0.0)
    per_image = main / args.batch + stage1 / args.images_per_id
    return [("dcface_tiny", f"DDIM {RELEASE_STEPS} steps, eta 1 (no first stage)", args.batch / main),
            ("dcface_tiny", f"+ first stage {RELEASE_STAGE1_STEPS} steps / {args.images_per_id} img", 1 / per_image)]


def measure_idiff_face(args, device: torch.device, tmp: Path) -> list[tuple[str, str, float]]:
    """idiff_face_tiny with each preset at its release's settings: 1000-step DDPM (a fresh linear schedule of
    T = 1000 over the tiny checkpoint's 50-step tables), UIFace's 50 DDIM steps of 1000."""
    from facebench_plugins.idiff_face.tiny import make_tiny

    weights = make_tiny(tmp / "idiff_face_tiny")
    negatives = tmp / "negatives.npy"
    np.save(negatives, np.random.default_rng(0).standard_normal((16, 512)).astype(np.float32))
    vectors = torch.randn(args.batch, 512)
    settings = {"idiff-face": {"timesteps": 1000}, "uiface": {"steps": 50, "timesteps": 1000},
                "negfacediff": {"timesteps": 1000, "negatives": str(negatives)}}
    rows = []
    for preset, label, _ in IDIFF_PRESETS:
        gen = facebench.load_generator("idiff_face_tiny", weights=weights, device=device, batch_size=args.batch,
                                       sampler=preset, **settings[preset])
        took = best_time(lambda g=gen: g.generate(vectors), 1, device, min_seconds=0.0)
        rows.append(("idiff_face_tiny", f"{preset}: {label}", args.batch / took))
    return rows


def measure(args, device: torch.device, tmp: Path) -> list[tuple[str, str, float]]:
    """(model, settings, images/s) for each generator this machine runs."""
    rows = []
    names = ["vec2face_tiny"] + (["vec2face"] if device.type == "cuda" else [])
    for name in names:
        torch.manual_seed(0)
        gen = facebench.load_generator(name, device=device)
        vectors = torch.randn(args.batch, gen.feature_dim, device=device)
        rows.append((name, f"{gen.image_size} px", args.batch / best_time(lambda g=gen, v=vectors: g.generate(v),
                                                                            args.repeats, device)))
    rows += measure_dcface(args, device, tmp) + measure_idiff_face(args, device, tmp)
    if not arc2face_available():
        print(f"arc2face: not measured ({facebench.registry('generator').get('arc2face').missing()} missing; "
              'pip install -e ".[arc2face]")')
        return rows
    from facebench_plugins.arc2face.configs import release_configs
    from facebench_plugins.arc2face.generator import Arc2FaceGenerator, Arc2FaceOptions
    from facebench_plugins.arc2face.tiny import make_tiny, write_model_dir

    models = [("arc2face_tiny", make_tiny(tmp / "tiny"), 56)]
    if device.type == "cuda":
        base = Path(args.arc2face_dir) if args.arc2face_dir else write_model_dir(tmp / "base", release_configs())
        models.append(("arc2face", base, 112))
    for name, model_dir, size in models:
        for scheduler, steps, guidance in ARC2FACE_SETTINGS:
            opts = Arc2FaceOptions(scheduler=scheduler, steps=steps, guidance=guidance, batch_size=args.batch)
            gen = Arc2FaceGenerator(model_dir, device=device, image_size=size, options=opts)
            vectors = torch.randn(args.batch, 512)
            rate = args.batch / best_time(lambda g=gen, v=vectors: g.generate(v), args.repeats, device)
            rows.append((name, f"{scheduler} {steps} steps, guidance {guidance:g}, {gen.dtype_name}", rate))
    return rows


def vec2face_paths(args, device: torch.device) -> None:
    """Vec2Face's plain path (explicit fp32 attention, no_grad) against its fast path, base and tiny."""
    print(f"\nVec2Face plain vs fast path (batch {args.batch}, best of {args.repeats})")
    print(f"{'model':<16}{'plain img/s':>13}{'fast img/s':>13}{'fast/plain':>12}{'max |diff|':>13}")
    for name in ("vec2face", "vec2face_tiny"):
        torch.manual_seed(0)
        gen = facebench.load_generator(name, device=device, compile=args.compile)
        vectors = torch.randn(args.batch, gen.feature_dim, device=device)
        masks = gen.sample_masks(args.batch)
        plain = best_time(lambda g=gen, v=vectors, m=masks: g.generate_plain(v, masks=m), args.repeats, device)
        fast = best_time(lambda g=gen, v=vectors, m=masks: g.generate(v, masks=m), args.repeats, device)
        diff = (gen.generate(vectors, masks=masks) - gen.generate_plain(vectors, masks=masks)).abs().max().item()
        print(f"{name:<16}{args.batch / plain:>13.2f}{args.batch / fast:>13.2f}{plain / fast:>12.2f}{diff:>13.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="Images per generate call (the paper's: 8).")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arc2face-dir", help="A real Arc2Face model directory to time on CUDA instead of "
                                               "random base-size weights.")
    parser.add_argument("--assume-tflops", type=float, default=60.0,
                        help="Sustained fp16 TFLOP/s assumed for the GPU estimate (default 60: about 20%% of "
                             "an A100's 312 dense peak, typical of SD 1.5 inference).")
    parser.add_argument("--images", type=int, default=500_000, help="Images of the estimated set (10k x 50).")
    parser.add_argument("--images-per-id", type=int, default=50,
                        help="Images per identity: DCFace's first stage runs once per identity.")
    parser.add_argument("--threads", type=int, help="torch CPU threads (1 is steadier on a shared machine).")
    parser.add_argument("--paths", action="store_true", help="Also Vec2Face's plain against fast path.")
    parser.add_argument("--compile", action="store_true", help="torch.compile Vec2Face's fast path (--paths).")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"best of {args.repeats}; random weights")
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(args, device, Path(tmp))
    print(f"\n{'model':<16}{'settings':<52}{'img/s':>10}")
    for name, settings, rate in rows:
        print(f"{name:<16}{settings:<52}{rate:>10.3f}")
    rates = {name: r for name, s, r in rows if "lcm" not in s}
    for small, big in (("vec2face_tiny", "arc2face_tiny"), ("vec2face", "arc2face")):
        if small in rates and big in rates:
            print(f"{small} / {big} (release sampler): {rates[small] / rates[big]:.1f}x")
    print("\npublished (Vec2Face paper, Table 3: one Titan Xp, batch 8, Arc2Face with a 4-step sampler)")
    for name, rate in PUBLISHED:
        print(f"{name:<42}{rate:>10.1f} img/s")
    print(f"{'Vec2Face / Arc2Face':<42}{PUBLISHED[0][1] / PUBLISHED[1][1]:>10.0f}x")
    print("\nFLOPs per image of the base models (counted, not timed)")
    v2f = vec2face_flops_per_image(torch.device("cpu"))
    print(f"{'vec2face (112 px)':<42}{v2f / 1e9:>10.1f} GFLOP")
    families = [(f"dcface ({args.images_per_id} img/id)", dcface_flops_per_image(args.images_per_id))]
    families += [(f"idiff_face ({preset})", idiff_face_flops_per_image(n)) for preset, _, n in IDIFF_PRESETS]
    for label, c in families:
        parts = ", ".join(f"{k} {v / 1e9:.1f}" for k, v in c.items() if k != "total")
        print(f"{label:<42}{c['total'] / 1e9:>10.1f} GFLOP  ({parts}); {c['total'] / v2f:.0f}x Vec2Face")
        rate = args.assume_tflops * 1e12 / c["total"]
        print(f"{'':<42}at {args.assume_tflops:g} TFLOP/s sustained: {rate:.2f} img/s, "
              f"{args.images / rate / 3600:.1f} GPU-hours for {args.images} images (estimate)")
    if arc2face_available():
        for scheduler, steps, guidance in ARC2FACE_SETTINGS:
            c = arc2face_flops_per_image(steps, guidance)
            label = f"arc2face ({scheduler}, {steps} steps, cfg {guidance:g})"
            print(f"{label:<42}{c['total'] / 1e9:>10.1f} GFLOP  (UNet {c['unet'] / 1e9:.0f}, VAE decode "
                  f"{c['vae'] / 1e9:.0f}, encoder {c['encoder'] / 1e9:.1f}); {c['total'] / v2f:.0f}x Vec2Face")
            rate = args.assume_tflops * 1e12 / c["total"]
            print(f"{'':<42}at {args.assume_tflops:g} TFLOP/s sustained: {rate:.2f} img/s, "
                  f"{args.images / rate / 3600:.1f} GPU-hours for {args.images} images (estimate)")
    if args.paths:
        vec2face_paths(args, device)


if __name__ == "__main__":
    main()
