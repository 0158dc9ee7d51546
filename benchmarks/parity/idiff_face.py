"""IDiff-Face, UIFace and NegFaceDiff side by side with facebench's ``idiff_face`` generator.

    python benchmarks/parity/idiff_face.py --idiff PATH/IDiff-Face --uiface PATH/TFace [--negfacediff PATH] [--seed 0]
    python benchmarks/parity/idiff_face.py --idiff PATH --uiface PATH --write-manifests tests/data/compat

PATHs are checkouts of github.com/fdbtrs/IDiff-Face, github.com/Tencent/TFace (UIFace in
``generation/uiface``; the folder itself is accepted too) and github.com/EduardaCaldeira/NegFaceDiff; each
comparison whose path is missing is skipped with a message. The releases' modules are imported from
there (``pytorch_lightning``, imported only for ``rank_zero_only``, is replaced by a stub; ``einops`` and
``omegaconf`` must be installed), given random weights (every tensor, the zero-initialised ones
included) and run on the CPU: their ``.cuda()`` calls are made no-ops and the noise their samplers draw
with ``torch.randn`` is replaced, while they run, by the draws facebench's per-image generators make, so
both take the same noise. Their state dicts are saved as the releases save them (``torch.save`` of the
DDPM module's ``state_dict()``) and read by facebench's loader (``layout.py``: strict). Printed, each
against the target 1e-4:

* the denoiser at the released size (``unet_cond_ca_cpd25``: 216,341,187 parameters) for the identity and
  the empty context; UIFace's (learned empty context) with its attention logits, and with them injected
  into a second pass as its sampler does (first stage: self-attention logits and the condition mask;
  second stage: self logits replaced, cross logits' statistics blended);
* the first-stage decoder at the released size (``VQDecoderInterface``: quantise, ``post_quant_conv``,
  decode) on a random latent;
* whole samplers on the tiny configuration (facebench's ``idiff_face_tiny`` in the release's classes),
  same seeds: IDiff-Face's DDPM (T = 50 from the checkpoint's tables) to the decoded 56 px image; UIFace's
  two-stage DDIM (50 of T = 1000 steps) to the 112 px image its ``sample.py`` writes (``F.interpolate``),
  at the release's switching threshold and at a looser one that makes samples switch in the first stage;
  NegFaceDiff's DDPM with the farthest context as the negative (w = 0.5).

Each sampler comparison is followed by a control: how far facebench's own result moves when the identity
contexts are rolled by one (or the negative is left out). A control within the tolerance would mean the
comparison could not have seen such a mistake, and fails the run.

``--write-manifests DIR`` writes the layouts the tests check (``idiff_face_denoiser.json``,
``idiff_face_uiface_denoiser.json``, ``idiff_face_decoder.json``, ``idiff_face_tiny.json``): tensor names,
shapes and dtypes of the releases' modules, built on the meta device.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
from _common import commit_of

TOLERANCE = 1e-4
#: the released denoisers' model configs (IDiff-Face configs/model/unet_cond_ca_cpd25.yaml; UIFace
#: configs/model/unet_cond_ca_cpd25_uncond20.yaml) and facebench's tiny one, in the release's terms.
RELEASE_UNET = dict(input_channels=3, initial_channels=96, channel_multipliers=[1, 2, 2, 2],
                    is_attention=[False, True, True, True], attention_heads=-1, attention_head_channels=32,
                    n_blocks_per_resolution=2, condition_type="CA", is_context_conditional=True,
                    n_context_classes=0, context_input_channels=512, context_channels=256,
                    learn_empty_context=False, context_dropout_probability=0.25)
UIFACE_UNET = {**RELEASE_UNET, "learn_empty_context": True, "unconditioned_probability": 0.2}
TINY_UNET = {**RELEASE_UNET, "initial_channels": 32, "channel_multipliers": [1, 2], "is_attention": [False, True],
             "n_blocks_per_resolution": 1, "context_channels": 32, "learn_empty_context": True}
RELEASE_DD = dict(double_z=False, z_channels=3, resolution=256, in_channels=3, out_ch=3, ch=128, ch_mult=[1, 2, 4],
                  num_res_blocks=2, attn_resolutions=[], dropout=0.0)
TINY_DD = {**RELEASE_DD, "ch": 32, "ch_mult": [1, 2, 2], "num_res_blocks": 1, "resolution": 56}
RELEASE_PACKAGES = ("models", "diffusion", "utils")


@contextlib.contextmanager
def release(path: Path):
    """Import the release's ``models``, ``diffusion`` and ``utils`` packages from ``path`` (forgotten again
    afterwards, so the next release's packages of the same names can be imported)."""
    stub = types.ModuleType("pytorch_lightning")
    stub.utilities = types.ModuleType("pytorch_lightning.utilities")
    stub.utilities.rank_zero_only = lambda fn: fn
    saved = {k: sys.modules.get(k) for k in ("pytorch_lightning", "pytorch_lightning.utilities")}
    sys.modules.update({"pytorch_lightning": stub, "pytorch_lightning.utilities": stub.utilities})
    sys.path.insert(0, str(path))
    import tqdm

    bar = tqdm.tqdm
    tqdm.tqdm = functools.partial(bar, disable=True)  # their samplers draw a progress bar per call
    try:
        yield
    finally:
        tqdm.tqdm = bar
        sys.path.remove(str(path))
        for name in list(sys.modules):
            if name.split(".")[0] in RELEASE_PACKAGES:
                del sys.modules[name]
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


@contextlib.contextmanager
def on_cpu(draws: list[torch.Tensor] | None = None):
    """The releases' ``.cuda()`` as a no-op and their ``torch.randn`` serving ``draws`` in order."""
    cuda, randn = torch.Tensor.cuda, torch.randn
    torch.Tensor.cuda = lambda self, *a, **k: self
    queue = list(draws or [])

    def served(*shape, **kwargs):
        if not queue:
            raise AssertionError("the release drew more noise than facebench did")
        x = queue.pop(0)
        assert tuple(x.shape) == tuple(shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape)
        return x.clone()

    if draws is not None:
        torch.randn = served
    try:
        yield queue
    finally:
        torch.Tensor.cuda, torch.randn = cuda, randn


def randomise(module: torch.nn.Module, seed: int) -> None:
    from facebench_plugins.idiff_face.tiny import random_state

    module.load_state_dict(random_state(module, seed))


def report(label: str, a: torch.Tensor, b: torch.Tensor) -> float:
    """Print and return the largest difference, relative to the largest value where that exceeds 1 (float32
    carries about 7 significant digits: the tiny samplers' latents, random weights over 50 steps, reach
    about 2e3, where one unit in the last place is 1e-4)."""
    diff = float((a.double() - b.double()).abs().max())
    scale = float(b.double().abs().max())
    judged = diff / max(scale, 1.0)
    shown = f"{diff:.3e}" if scale <= 1 else f"{diff:.3e} = {judged:.2e} x max |value|"
    print(f"  {label:<66} {shown}  (max |value| {scale:.3g})  {'ok' if judged <= TOLERANCE else 'OVER'}")
    return judged


def control(label: str, a: torch.Tensor, b: torch.Tensor) -> float:
    """Print how far a change the comparison must be able to see moves facebench's own result, judged like
    :func:`report`: within the tolerance, the comparison could not have told the change apart, and the run
    fails (returned as a difference of 1). Random weights let the latents grow to about 1e3 (x_T divided by
    sqrt(alpha_bar) of the first step), so a sampler's result is judged relative to its largest value."""
    diff = float((a.double() - b.double()).abs().max())
    judged = diff / max(float(b.double().abs().max()), 1.0)
    weak = judged <= TOLERANCE
    print(f"  {'control: ' + label:<66} {judged:.2e} x max |value|  {'TOO WEAK' if weak else 'sensitive'}")
    return 1.0 if weak else 0.0


def decoder_interface(dd: dict, seed: int, tmp: Path):
    """The release's ``VQDecoderInterface``, built as ``sample.py`` builds it from a state dict file (of
    random weights written through the release's own modules)."""
    from models.autoencoder.modules import Decoder
    from models.autoencoder.quantization import VectorQuantizer2
    from models.autoencoder.vqgan import VQDecoderInterface

    holder = torch.nn.Module()
    holder.decoder = Decoder(**dd)
    holder.quantize = VectorQuantizer2(8192, 3, beta=0.25)
    holder.post_quant_conv = torch.nn.Conv2d(3, dd["z_channels"], 1)
    randomise(holder, seed)
    state = tmp / f"decoder-{seed}.pt"
    torch.save(holder.state_dict(), state)
    config = tmp / f"first_stage-{seed}.yaml"
    config.write_text(json.dumps({"params": {"embed_dim": 3, "n_embed": 8192, "ddconfig": dd}}))
    return VQDecoderInterface(str(config), str(state)).eval(), state


def model_folder(tmp: Path, name: str, denoiser_state: dict, decoder_file: Path) -> Path:
    folder = tmp / name
    folder.mkdir()
    torch.save(denoiser_state, folder / "ema_averaged_model.ckpt")
    (folder / "first_stage_decoder_state_dict.pt").write_bytes(decoder_file.read_bytes())
    return folder


def draw_log(gen, seeds):
    """facebench's noise for ``seeds``, recording every draw (the release then takes the same ones)."""
    draws: list[torch.Tensor] = []
    draw = gen.noise(seeds)

    def logged():
        x = draw()
        draws.append(x.clone())
        return x

    return logged, draws


# ------------------------------------------------------------------------------------------------ checks

def idiff_checks(path: Path, seed: int, tmp: Path) -> list[float]:
    from facebench_plugins.idiff_face import layout, tiny
    from facebench_plugins.idiff_face.generator import IDiffFaceGenerator, IDiffFaceOptions
    from facebench_plugins.idiff_face.unet import RELEASE, TINY
    from facebench_plugins.idiff_face.vq import RELEASE as DEC_RELEASE
    from facebench_plugins.idiff_face.vq import TINY as DEC_TINY

    diffs = []
    print(f"IDiff-Face ({path}, commit {commit_of(path)})")
    with release(path):
        from diffusion.ddpm import DenoisingDiffusionProbabilisticModel as DDPM
        from models.diffusion.unet import ConditionalUNet

        # the denoiser at the released size
        ref = ConditionalUNet(**RELEASE_UNET)
        randomise(ref, seed)
        ddpm = DDPM(eps_model=ref, T=1000).eval()
        den = layout.read_denoiser(_saved(tmp, "full.ckpt", ddpm.state_dict()), RELEASE)
        ours = layout.build_denoiser(den)
        g = torch.Generator().manual_seed(seed)
        x, t = torch.randn(2, 3, 32, 32, generator=g), torch.tensor([999, 17])
        ctx = torch.nn.functional.normalize(torch.randn(2, 512, generator=g))
        with torch.no_grad():
            diffs.append(report("denoiser (released size), identity context", ours(x, t, ctx), ref.eval()(x, t, ctx)))
            diffs.append(report("denoiser (released size), empty context (zeros)", ours(x, t, None), ref(x, t, None)))
        del ref, ddpm, ours, den

        # the first-stage decoder at the released size
        dec_ref, dec_file = decoder_interface(RELEASE_DD, seed + 1, tmp)
        dec = layout.build_decoder(layout.read_decoder(dec_file, DEC_RELEASE), DEC_RELEASE)
        z = torch.randn(1, 3, 32, 32, generator=g) * 2
        with torch.no_grad():
            diffs.append(report("VQ decoder (released size), 3x32x32 -> 3x128x128", dec(z), dec_ref(z)))
        del dec_ref, dec

        # the whole DDPM sampler on the tiny configuration, to the decoded image
        ref = ConditionalUNet(**TINY_UNET)
        randomise(ref, seed + 2)
        ddpm = DDPM(eps_model=ref, T=tiny.TINY_T)
        dec_ref, dec_file = decoder_interface(TINY_DD, seed + 3, tmp)
        folder = model_folder(tmp, "idiff-tiny", ddpm.state_dict(), dec_file)
        gen = IDiffFaceGenerator(folder, image_size=56, options=IDiffFaceOptions(sampler="idiff-face"), unet=TINY,
                                 decoder=DEC_TINY, latent_size=tiny.TINY_LATENT)
        seeds = [seed * 1000 + k for k in range(3)]
        contexts = gen.contexts(np.random.default_rng(seed).standard_normal((3, 512)))
        noise, draws = draw_log(gen, seeds)
        with torch.no_grad():
            from facebench_plugins.idiff_face import sampling

            ours_latent = sampling.ddpm(gen.unet, gen.schedule, contexts, noise)
            with on_cpu(draws[1:]) as left:
                ref_latent = ddpm.sample(3, gen.latent_shape, x_T=draws[0].clone(), context=contexts)
            assert not left, f"{len(left)} draws unused"
            diffs.append(report(f"DDPM, {tiny.TINY_T} steps (tiny): final latent", ours_latent, ref_latent))
            other = sampling.ddpm(gen.unet, gen.schedule, contexts.roll(1, 0), gen.noise(seeds))
            diffs.append(control("other identity contexts (rolled by one), same seeds", other, ours_latent))
            ref_image = (dec_ref(ref_latent).clamp(-1, 1) + 1) / 2
            diffs.append(report("DDPM (tiny): decoded image in [0, 1] (release: latent_decoder + denormalize)",
                                gen.decode(ours_latent), ref_image))
    return diffs


def _saved(tmp: Path, name: str, state: dict) -> Path:
    path = tmp / name
    torch.save(state, path)
    return path


def uiface_checks(path: Path, seed: int, tmp: Path) -> list[float]:
    from facebench_plugins.idiff_face import layout, sampling
    from facebench_plugins.idiff_face.generator import IDiffFaceGenerator, IDiffFaceOptions
    from facebench_plugins.idiff_face.tiny import TINY_LATENT
    from facebench_plugins.idiff_face.unet import RELEASE_UIFACE, TINY
    from facebench_plugins.idiff_face.vq import TINY as DEC_TINY

    if (path / "generation" / "uiface").is_dir():
        path = path / "generation" / "uiface"
    diffs = []
    print(f"UIFace ({path}, commit {commit_of(path)})")
    with release(path):
        from diffusion.ddpm import DenoisingDiffusionProbabilisticModel as DDPM
        from models.diffusion.unet import ConditionalUNet

        ref = ConditionalUNet(**UIFACE_UNET).eval()
        randomise(ref, seed + 10)
        den = layout.read_denoiser(_saved(tmp, "uiface-full.ckpt", DDPM(eps_model=ref).state_dict()), RELEASE_UIFACE)
        ours = layout.build_denoiser(den)
        g = torch.Generator().manual_seed(seed + 10)
        x, t = torch.randn(3, 3, 32, 32, generator=g), torch.tensor([980, 500, 20])
        ctx = torch.nn.functional.normalize(torch.randn(3, 512, generator=g))
        flag = torch.tensor([True, False, True])
        with torch.no_grad(), on_cpu():
            diffs += _uiface_unet(ours, ref, x, t, ctx, flag, "released size")

        # the two-stage sampler on the tiny configuration, to the 112 px image sample.py writes
        ref = ConditionalUNet(**TINY_UNET).eval()
        randomise(ref, seed + 11)
        dec_ref, dec_file = decoder_interface(TINY_DD, seed + 12, tmp)
        folder = model_folder(tmp, "uiface-tiny", DDPM(eps_model=ref, T=50).state_dict(), dec_file)
        for threshold in (0.006, 0.05):
            opts = IDiffFaceOptions(sampler="uiface", steps=50, threshold=threshold, output_size=112)
            gen = IDiffFaceGenerator(folder, image_size=56, options=opts, unet=TINY, decoder=DEC_TINY,
                                     latent_size=TINY_LATENT)
            ddpm = DDPM(eps_model=ref)  # the release builds it anew: T = 1000, linear
            seeds = [seed * 1000 + 7 + k for k in range(4)]
            contexts = gen.contexts(np.random.default_rng(seed + 1).standard_normal((4, 512)))
            noise, draws = draw_log(gen, seeds)
            trace = sampling.UIFaceTrace([None] * 4)
            with torch.no_grad():
                ours_latent = sampling.uiface(gen.unet, gen.schedule, contexts, noise, steps=50, switch=500,
                                              threshold=threshold, trace=trace)
                with on_cpu([]):
                    ref_latent, _, _ = ddpm.sample_ddim_2stage(4, gen.latent_shape, x_T=draws[0].clone(),
                                                               context=contexts, cfg_scale=1.0, MSE_th=threshold,
                                                               step_th=500)
                switched = ", ".join("t=" + str(s) if s is not None else "t<500" for s in trace.switched_at)
                diffs.append(report(f"two-stage DDIM (tiny), threshold {threshold}: final latent [{switched}]",
                                    ours_latent, ref_latent))
                other = sampling.uiface(gen.unet, gen.schedule, contexts.roll(1, 0), gen.noise(seeds), steps=50,
                                        switch=500, threshold=threshold)
                diffs.append(control("other identity contexts (rolled by one), same seeds", other, ours_latent))
                ref_image = torch.nn.functional.interpolate((dec_ref(ref_latent).clamp(-1, 1) + 1) / 2,
                                                            size=[112, 112], mode="bilinear")
                diffs.append(report("  -> the 112 px image (release: decode, denormalize, F.interpolate)",
                                    gen.align(gen.decode(ours_latent)), ref_image))
    return diffs


def _uiface_unet(ours, ref, x, t, ctx, flag, size: str) -> list[float]:
    diffs = []
    eps_u, self_u, cross_u = ref(x, t, None)
    ours_u, logits_u = ours(x, t, None, capture=True)
    diffs.append(report(f"UIFace denoiser ({size}), empty (learned) context", ours_u, eps_u))
    pairs = [(s, c) for s, c in zip(self_u, cross_u) if s is not None]
    mine = [p for p in logits_u if p is not None]
    diffs.append(max(report(f"  attention logits (self, cross) of {len(pairs)} blocks",
                            torch.cat([a.flatten() for p in mine for a in p]),
                            torch.cat([a.flatten() for p in pairs for a in p])),
                     0.0))
    eps_1, _, cross_1 = ref(x, t, ctx, None, condition_flag=flag.clone(), src_self_attn_map_list=self_u,
                            src_cross_attn_map_list=None)
    inject = [None if p is None else (p[0], None) for p in logits_u]
    ours_1, logits_1 = ours(x, t, ctx, condition=flag, inject=inject, capture=True)
    diffs.append(report("  first stage: condition mask + self logits injected", ours_1, eps_1))
    eps_2, _, _ = ref(x, t, ctx, None, src_self_attn_map_list=self_u, src_cross_attn_map_list=cross_u)
    diffs.append(report("  second stage: self logits replaced, cross statistics blended", ours(x, t, ctx,
                        inject=logits_u), eps_2))
    return diffs


def negfacediff_checks(path: Path, seed: int, tmp: Path) -> list[float]:
    from facebench_plugins.idiff_face import sampling, tiny
    from facebench_plugins.idiff_face.generator import IDiffFaceGenerator, IDiffFaceOptions
    from facebench_plugins.idiff_face.unet import TINY
    from facebench_plugins.idiff_face.vq import TINY as DEC_TINY

    print(f"NegFaceDiff ({path}, commit {commit_of(path)})")
    with release(path):
        from diffusion.ddpm import DenoisingDiffusionProbabilisticModel as DDPM
        from models.diffusion.unet import ConditionalUNet

        ref = ConditionalUNet(**TINY_UNET)
        randomise(ref, seed + 20)
        ddpm = DDPM(eps_model=ref, T=tiny.TINY_T)
        _, dec_file = decoder_interface(TINY_DD, seed + 21, tmp)
        folder = model_folder(tmp, "negface-tiny", ddpm.state_dict(), dec_file)
        bank = np.random.default_rng(seed + 2).standard_normal((5, 512)).astype(np.float32)
        np.save(tmp / "bank.npy", bank)
        gen = IDiffFaceGenerator(folder, image_size=56, options=IDiffFaceOptions(sampler="negfacediff",
                                 negatives=str(tmp / "bank.npy")), unet=TINY, decoder=DEC_TINY,
                                 latent_size=tiny.TINY_LATENT)
        contexts = gen.contexts(bank[:3])
        # the release's Far-Neg: argmin of the cosine to every context (find_farthest_context.py)
        far = torch.nn.functional.cosine_similarity(torch.as_tensor(bank[:3])[:, None], torch.as_tensor(bank)[None],
                                                    dim=2).argmin(dim=1)
        negative_ref = torch.nn.functional.normalize(torch.as_tensor(bank)[far])
        diffs = [report("Far-Neg: the negative contexts", gen.negative_contexts(contexts), negative_ref)]
        seeds = [seed * 1000 + 40 + k for k in range(3)]
        noise, draws = draw_log(gen, seeds)
        with torch.no_grad():
            ours_latent = sampling.ddpm(gen.unet, gen.schedule, contexts, noise,
                                        negative=gen.negative_contexts(contexts), weight=0.5)
            with on_cpu(draws[1:]):
                ref_latent = ddpm.sample_ddpm(3, gen.latent_shape, x_T=draws[0].clone(), context=contexts,
                                              negative_context=negative_ref, w=0.5)
        diffs.append(report(f"negative-context DDPM, w 0.5, {tiny.TINY_T} steps (tiny): final latent", ours_latent,
                            ref_latent))
        with torch.no_grad():
            plain = sampling.ddpm(gen.unet, gen.schedule, contexts, gen.noise(seeds))
        diffs.append(control("no negative (IDiff-Face's sampler), same seeds", plain, ours_latent))
    return diffs


# --------------------------------------------------------------------------------------------- manifests

def layout_of(state: dict) -> dict:
    return {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()}


def write_manifests(idiff: Path, uiface: Path, out: Path) -> None:
    if (uiface / "generation" / "uiface").is_dir():
        uiface = uiface / "generation" / "uiface"
    out.mkdir(parents=True, exist_ok=True)
    manifests: dict[str, dict] = {}
    with release(idiff), torch.device("meta"):
        from diffusion.ddpm import DenoisingDiffusionProbabilisticModel as DDPM
        from models.autoencoder.modules import Decoder
        from models.autoencoder.quantization import VectorQuantizer2
        from models.diffusion.unet import ConditionalUNet

        def decoder(dd):
            holder = torch.nn.Module()
            holder.decoder = Decoder(**dd)
            holder.quantize = VectorQuantizer2(8192, 3, beta=0.25)
            holder.post_quant_conv = torch.nn.Conv2d(3, dd["z_channels"], 1)
            return layout_of(holder.state_dict())

        manifests["idiff_face_denoiser"] = {
            "built_as": "DenoisingDiffusionProbabilisticModel(eps_model=ConditionalUNet(**unet_cond_ca_cpd25), T=1000)"
                        ".state_dict(), as main.py saves ema_averaged_model(_<step>).ckpt",
            "config": RELEASE_UNET, "keys": layout_of(DDPM(eps_model=ConditionalUNet(**RELEASE_UNET), T=1000)
                                                      .state_dict())}
        manifests["idiff_face_decoder"] = {
            "built_as": "VQDecoderInterface's modules (decoder, quantize, post_quant_conv) from "
                        "models/autoencoder/first_stage_config.yaml", "config": RELEASE_DD,
            "keys": decoder(RELEASE_DD)}
        tiny_den = layout_of(DDPM(eps_model=ConditionalUNet(**TINY_UNET), T=50).state_dict())
        tiny_dec = decoder(TINY_DD)
    with release(uiface), torch.device("meta"):
        from diffusion.ddpm import DenoisingDiffusionProbabilisticModel as DDPM
        from models.diffusion.unet import ConditionalUNet

        manifests["idiff_face_uiface_denoiser"] = {
            "built_as": "DenoisingDiffusionProbabilisticModel(eps_model=ConditionalUNet(**unet_cond_ca_cpd25_uncond20))"
                        ".state_dict(); a DDP-wrapped copy saves the same keys under module.",
            "config": UIFACE_UNET, "keys": layout_of(DDPM(eps_model=ConditionalUNet(**UIFACE_UNET)).state_dict())}
    manifests["idiff_face_tiny"] = {
        "built_as": "the IDiff-Face release's DenoisingDiffusionProbabilisticModel(ConditionalUNet(**tiny), T=50) and "
                    "VQDecoderInterface modules at facebench's tiny size (idiff_face_tiny)",
        "config": {"unet": TINY_UNET, "decoder": TINY_DD}, "keys": {"denoiser": tiny_den, "decoder": tiny_dec}}
    commits = {"idiff": commit_of(idiff), "uiface": commit_of(uiface)}
    for name, body in manifests.items():
        note = ("Tensor names, shapes and dtypes of the releases' saved state dicts (IDiff-Face "
                f"{commits['idiff']}, UIFace {commits['uiface']}), built on the meta device by "
                "benchmarks/parity/idiff_face.py --write-manifests; the tests compare facebench's modules with "
                "them and build release-layout checkpoints from them.")
        (out / f"{name}.json").write_text(json.dumps({"note": note, **body}, indent=1) + "\n")
        print(f"wrote {out / f'{name}.json'} ({len(body['keys'])} entries)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--idiff", type=Path, help="checkout of fdbtrs/IDiff-Face")
    parser.add_argument("--uiface", type=Path, help="checkout of Tencent/TFace (or its generation/uiface)")
    parser.add_argument("--negfacediff", type=Path, help="checkout of EduardaCaldeira/NegFaceDiff")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-manifests", type=Path)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    given = {name: p for name, p in (("--idiff", args.idiff), ("--uiface", args.uiface),
                                     ("--negfacediff", args.negfacediff)) if p is not None}
    for name, p in given.items():
        if not p.is_dir():
            print(f"skipped {name}: {p} is not a folder")
    present = {k: p for k, p in given.items() if p.is_dir()}
    if args.write_manifests:
        if "--idiff" not in present or "--uiface" not in present:
            print("skipped --write-manifests: needs --idiff and --uiface")
            return 0
        write_manifests(present["--idiff"], present["--uiface"], args.write_manifests)
        return 0
    if not present:
        print("skipped: no release checkout given (--idiff, --uiface, --negfacediff)")
        return 0
    diffs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, check in (("--idiff", idiff_checks), ("--uiface", uiface_checks),
                            ("--negfacediff", negfacediff_checks)):
            if name in present:
                sub = Path(tmp) / name.strip("-")
                sub.mkdir()
                diffs += check(present[name], args.seed, sub)
            else:
                print(f"skipped {name}: not given")
    worst = max(diffs)
    print(f"largest difference {worst:.3e} ({'within' if worst <= TOLERANCE else 'OVER'} {TOLERANCE:g})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
