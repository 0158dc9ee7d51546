"""Arc2Face side by side with its release: conditioning, first denoising step, final latents, images.

    python benchmarks/parity/arc2face.py --release PATH/TO/Arc2Face [--model DIR] [--n 3] [--steps 25]

PATH is a checkout of github.com/foivospar/Arc2Face. Its ``arc2face/models.py`` (``CLIPTextModelWrapper``)
and ``arc2face/utils.py`` (``project_face_embs``) are loaded from there by file path, and the release's
pipeline is assembled as its README does: ``StableDiffusionPipeline`` with the wrapper as text encoder,
the Arc2Face UNet, SD 1.5's VAE, tokenizer and scheduler, and ``DPMSolverMultistepScheduler`` built from
that scheduler's config; every component is read with the libraries' own ``from_pretrained``. Both sides
get the same model directory (default: a fresh ``make-tiny`` one: random weights, tiny configs), the
same identity vectors (facebench normalises them itself; the release's side as its README does) and the
same per-image seeds. Printed, per scheduler: the largest absolute differences of the prompt embeddings
(facebench ``prompt_embeds`` against ``project_face_embs``, target 1e-6); of the first UNet output and
the final latents of facebench's sampler against the pipeline, both given the release's prompt
embeddings (target 1e-5); of the final latents end to end, and of the decoded uint8 images.

The release's wrapper imports ``transformers.modeling_attn_mask_utils``, which transformers 5 removed; run
this with the release's pins (transformers 4.36.0, diffusers 0.29.2) on the path, e.g. installed with
``pip install --target DIR --no-deps transformers==4.36.0 diffusers==0.29.2 huggingface_hub==0.23.5
tokenizers==0.15.2`` and ``PYTHONPATH=DIR``. A missing release path skips with a message.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import load_file_module, release_checkout

#: (scheduler, steps, guidance): the release's default first, then the other two options.
SETTINGS = (("dpmsolver++", 25, 3.0), ("ddim", 25, 3.0), ("lcm", 4, 1.0))
TOLERANCE = {"prompt_embeds": 1e-6, "first UNet output": 1e-5, "final latents": 1e-5}


def first_output(unet):
    """A forward hook that keeps the UNet's first output of a run."""
    seen: list[torch.Tensor] = []

    def hook(module, args, output):
        if not seen:
            seen.append((output[0] if isinstance(output, tuple) else output.sample).detach().clone())

    return seen, unet.register_forward_hook(hook)


def release_pipeline(model: Path, release):
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTokenizer

    encoder = release.CLIPTextModelWrapper.from_pretrained(str(model), subfolder="encoder")
    unet = UNet2DConditionModel.from_pretrained(str(model), subfolder="arc2face")
    return StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(str(model), subfolder="vae"), text_encoder=encoder,
        tokenizer=CLIPTokenizer.from_pretrained(str(model), subfolder="tokenizer"), unet=unet,
        scheduler=PNDMScheduler.from_pretrained(str(model), subfolder="scheduler"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def scheduler_for(pipeline, name: str):
    import diffusers
    from facebench_plugins.arc2face.generator import SCHEDULERS

    return getattr(diffusers, SCHEDULERS[name]).from_config(pipeline.scheduler.config)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", help="Checkout of github.com/foivospar/Arc2Face.")
    parser.add_argument("--model", help="Model directory in the release layout [default: a fresh make-tiny one].")
    parser.add_argument("--n", type=int, default=3, help="Identity vectors (one image each).")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = Path(args.release) if args.release else None
    if not release_checkout(root, "Arc2Face", "arc2face/models.py"):
        return 0
    try:
        models = load_file_module("arc2face_release_models", root / "arc2face" / "models.py")
        utils = load_file_module("arc2face_release_utils", root / "arc2face" / "utils.py")
    except ImportError as exc:
        import transformers

        print(f"skipped: the release's code does not import with transformers {transformers.__version__} ({exc}); "
              "run with its pins (transformers 4.36.0, diffusers 0.29.2) on PYTHONPATH, see this file's docstring")
        return 0
    import diffusers
    import transformers
    from facebench_plugins.arc2face.generator import arc2face_tiny
    from facebench_plugins.arc2face.tiny import make_tiny

    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else make_tiny(Path(tmp) / "tiny", seed=args.seed)
        print(f"release {root} (transformers {transformers.__version__}, diffusers {diffusers.__version__}, "
              f"torch {torch.__version__}); model {'tiny random (make-tiny)' if not args.model else model}")
        pipeline = release_pipeline(model, models)
        rng = np.random.default_rng(args.seed)
        raw = rng.standard_normal((args.n, 512)).astype(np.float32)
        unit = torch.from_numpy(raw) / torch.norm(torch.from_numpy(raw), dim=1, keepdim=True)  # as the README does
        seeds = [int(s) for s in rng.integers(0, 2**31, size=args.n)]
        # project_face_embs indexes with a (1, L) mask, so it takes one vector at a time
        release_embeds = torch.cat([utils.project_face_embs(pipeline, unit[i:i + 1]) for i in range(args.n)])
        worst: dict[str, float] = {}
        pipeline.set_progress_bar_config(disable=True)
        for name, steps, guidance in SETTINGS:
            gen = arc2face_tiny(model, scheduler=name, steps=steps, guidance=guidance, batch_size=args.n)
            ours = gen.prompt_embeds(raw)  # raw vectors: facebench normalises them itself
            pipeline.scheduler = scheduler_for(pipeline, name)
            gens = [torch.Generator().manual_seed(s) for s in seeds]
            rel_first, hook = first_output(pipeline.unet)
            rel = pipeline(prompt_embeds=release_embeds, num_inference_steps=steps, guidance_scale=guidance,
                           generator=gens, output_type="latent").images
            hook.remove()
            rel_img = pipeline(prompt_embeds=release_embeds, num_inference_steps=steps, guidance_scale=guidance,
                               generator=[torch.Generator().manual_seed(s) for s in seeds], output_type="np").images
            # the sampler on the release's own prompt embeddings (each stage compared on equal inputs) ...
            fb_first, hook = first_output(gen.unet)
            fb = gen.latents(release_embeds, seeds)
            hook.remove()
            # ... and facebench end to end, from the raw vectors
            fb_end = gen.latents(ours, seeds)
            fb_img = gen.sample(raw, seeds)
            rel_u8 = (rel_img * 255).round().astype(np.uint8)
            diffs = {"prompt_embeds": (ours - release_embeds).abs().max().item(),
                     "first UNet output": (fb_first[0] - rel_first[0]).abs().max().item(),
                     "final latents": (fb - rel).abs().max().item(),
                     "final latents, end to end": (fb_end - rel).abs().max().item(),
                     "uint8 images (levels)": float(np.abs(fb_img.astype(int) - rel_u8.astype(int)).max())}
            print(f"\n{name}, {steps} steps, guidance {guidance}, {args.n} identities, seeds {seeds} "
                  f"(final latents up to {rel.abs().max().item():.1f} in magnitude)")
            for key, value in diffs.items():
                target = TOLERANCE.get(key)
                verdict = "" if target is None else (f"  <= {target:g} ok" if value <= target else f"  > {target:g} FAIL")
                print(f"  max |facebench - release| {key:<26} {value:.3e}{verdict}")
                worst[key] = max(worst.get(key, 0.0), value)
    failed = [k for k, t in TOLERANCE.items() if worst[k] > t]
    print("\nparity: " + ("FAILED for " + ", ".join(failed) if failed else "all within tolerance"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
