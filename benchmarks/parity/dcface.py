"""DCFace side by side with facebench's ``dcface`` generator: checkpoint reading, condition, denoiser, samplers.

    python benchmarks/parity/dcface.py --release PATH/TO/dcface [--seed 0] [--skip-sampler]
    python benchmarks/parity/dcface.py --release PATH --write-manifests tests/data/compat

PATH is a checkout of github.com/mk-minchul/dcface (the repository root, or its ``dcface/`` folder); a
missing path skips with a message. The release's own classes are imported from there and run on the CPU:
``src.trainer.Trainer`` (the Lightning module ``synthesis.py`` loads), ``make_condition``,
``render_condition`` with its vendored diffusers DDIM, and the first stage's guided-diffusion
``create_model`` / ``create_gaussian_diffusion``. The paths run never call ``.cuda()`` (``synthesis.py``'s
``pl_module.to('cuda')`` is replaced by building the module here), so nothing of the release is edited;
what is patched at run time:

* imports the paths do not use: ``torch.utils.tensorboard`` (pytorch-lightning's logger), ``cv2`` (the
  release's plotting helpers; only ``INTER_AREA`` is read at import) become stubs, and ``transformers`` is
  hidden so that the vendored diffusers skips its text-to-image pipelines (they need transformers 4);
* ``recognition_helper.download_ir_pretrained_statedict`` (it downloads AdaFace weights) returns a seeded
  random IR state dict instead;
* ``torch.randn`` / ``torch.randn_like`` while a release sampler runs: the draws come from per-image
  generators seeded as facebench seeds its own (the release draws from torch's global generator), so both
  sides take the same noise.

Needs, beside facebench's environment: ``pip install --target DIR --no-deps pytorch-lightning==1.7.1
torchmetrics==0.9.3 pyDeprecate==0.3.2 omegaconf==2.2.3 antlr4-python3-runtime==4.9.3 setuptools==69.5.1``
and ``PYTHONPATH=DIR`` (the release's pins; setuptools for ``pkg_resources``).

Every module gets random weights (every tensor, the zero-initialised ones and the BatchNorm statistics
included). Each Lightning module is saved as Lightning 1.7 saves a checkpoint (``dump_checkpoint``:
``state_dict`` and ``hyper_parameters`` as the omegaconf containers the release's hydra config hands it)
and read back by facebench's reader and strict loader (``plugins/dcface/layout.py``). Printed, each
against the target 1e-4:

* released size (UNet 128 channels, (1,1,2,2,4,4), attention at 16, 8 heads; IR-50 identity and style
  backbones, IR-101 eval backbone; 3x3 and 5x5 style patches): the condition (``cross_attn`` and
  ``stylemod`` of ``make_condition``) and the denoiser's output for the same noisy image and timestep;
* the first stage at its released size (ADM 256 px, ``unconditional_sampling.sh``'s flags): one denoiser
  output;
* whole samplers, same seeds: DCFace's DDIM (50 steps, eta 1.0, ``render_condition``) to the final image
  at the released size (one image: the condition fixes the UNet's width, 128 channels so that its timestep
  embedding is the identity feature's 512, and the attention's 512, so no smaller UNet of the
  architecture is much cheaper); the first stage's 100 respaced ancestral steps on facebench's tiny
  first-stage size (32 px) to the saved PNG's pixels.

``--write-manifests DIR`` writes ``dcface_3x3.json``, ``dcface_5x5.json`` (the Lightning module's
``state_dict`` at the released hyper-parameters) and ``dcface_ffhq_10m.json`` (the first stage), built on
the meta device from the release's classes: the tests compare facebench's expected layout with them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
import types
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import commit_of
from _common import max_diff as flat_max_diff

TOLERANCE = 1e-4
COND = {"condition_type": "crossatt_and_stylemod", "condition_source": "patchstat_spatial_and_image"}
#: the released model_params (configs/model/default.yaml with datamodule.img_size=112 from train.sh)
RELEASE_UNET = dict(image_size=112, num_channels=128, num_res_blocks=1, channel_mult="", learn_sigma=True,
                    class_cond=False, use_checkpoint=False, attention_resolutions="16", num_heads=4,
                    num_head_channels=64, num_heads_upsample=-1, use_scale_shift_norm=True, dropout=0.0,
                    resblock_updown=True, use_fp16=False, use_new_attention_order=False)
#: unconditional_sampling.sh's model flags, and facebench's tiny first stage in the same terms
STAGE1_RELEASE = dict(image_size=256, num_channels=128, num_res_blocks=1, channel_mult="", learn_sigma=True,
                      class_cond=False, use_checkpoint=False, attention_resolutions="16", num_heads=4,
                      num_head_channels=64, num_heads_upsample=-1, use_scale_shift_norm=True, dropout=0.0,
                      resblock_updown=True, use_fp16=False, use_new_attention_order=False)
STAGE1_TINY = {**STAGE1_RELEASE, "image_size": 32, "num_channels": 32, "channel_mult": "1,2",
               "attention_resolutions": "16", "num_head_channels": 32}  # plugins/dcface/tiny.py's, 32 // 16 = ds 2
CASIA_CLASSES = 10572  # rows of the released centre tables (CASIA-WebFace classes)


# --------------------------------------------------------------------------------------------- the release

def release_root(path: Path) -> Path:
    return path / "dcface" if (path / "dcface" / "src" / "trainer.py").is_file() else path


def import_release(root: Path) -> types.SimpleNamespace:
    """The release's modules, with the stubs the module docstring lists."""
    board = types.ModuleType("torch.utils.tensorboard")
    board.SummaryWriter, board.__path__ = object, []
    summary = types.ModuleType("torch.utils.tensorboard.summary")
    summary.hparams = None
    cv2 = types.ModuleType("cv2")
    cv2.INTER_AREA = 3
    sys.modules.update({"torch.utils.tensorboard": board, "torch.utils.tensorboard.summary": summary, "cv2": cv2,
                        "transformers": None})
    sys.path.insert(0, str(root))
    sys.path.insert(0, str(root / "stage1" / "unconditional_generation"))
    with contextlib.redirect_stdout(io.StringIO()):
        import omegaconf
        import pytorch_lightning
        from diffusion import script_util
        from src import trainer
        from src.models import conditioner
        from src.recognition import recognition_helper, tface_model
        from src.visualizations import sample_visual
    return types.SimpleNamespace(trainer=trainer, conditioner=conditioner, recognition_helper=recognition_helper,
                                 tface_model=tface_model, sample_visual=sample_visual, script_util=script_util,
                                 omegaconf=omegaconf, pl=pytorch_lightning)


def randomise(module: torch.nn.Module, seed: int) -> None:
    """Every floating tensor of the state dict random at a scale that keeps activations finite."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict(keep_vars=True).items():
            if not t.is_floating_point() or t.device.type == "meta":
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("running_mean"):
                t.copy_(0.1 * torch.randn(t.shape, generator=g))
            else:
                t.add_(0.02 * torch.randn(t.shape, generator=g))
                if name.endswith("res_layer.5.weight"):  # an IR block's last BatchNorm: keep the 24- or 49-block
                    t.mul_(0.1)  # residual stack near unit scale, so the condition is O(1), not 1e10


def ir_state(rel, backbone: str, seed: int) -> dict:
    torch.manual_seed(seed)
    model = rel.tface_model.IR_101((112, 112)) if backbone == "ir_101" else rel.tface_model.IR_50((112, 112))
    randomise(model, seed)
    return model.state_dict()


def hyper_parameters(unet: dict, spatial_dim: int, files: dict[str, str], *, eval_ir101: bool) -> dict:
    """The Trainer's hyper-parameters as hydra composes them for train.sh (paths: files written here)."""
    recognition = {"backbone": "ir_50", "dataset": "webface4m", "loss_fn": "adaface", "normalize_feature": False,
                   "return_spatial": [2], "head_name": "none", "ckpt_path": files["ir50"],
                   "center_path": files["center"]}
    recognition_eval = ({**recognition, "backbone": "ir_101", "ckpt_path": None, "center_path": files["center"]}
                        if eval_ir101 else dict(recognition))
    return {
        "image_size": 32, "channels": 3, "ckpt_path": None, "use_ema": True,
        "sampler": {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02,
                    "variance_type": "learned_range"},
        "first_stage_config": None, "cond_stage_config": None,
        "unet_config": {"type": "ilvr", "freeze_unet": False,
                        "params": {**COND, "pretrained_model_path": None, "gradient_checkpointing": False,
                                   "image_size": 32, "in_channels": 3, "out_channels": 3,
                                   "cross_attention_dim": 512},
                        "model_params": dict(unet)},
        "optimizer": {"lr": 1e-4}, "paths": {"root_dir": "."}, "precision": 16, "datamodule": None,
        "recognition": recognition, "recognition_eval": recognition_eval,
        "losses": {"mse_loss_lambda": 1.0, "identity_consistency_loss_lambda": 0.05},
        "external_mapping": {"version": "v4_dropout", "return_spatial": [2], "spatial_dim": spatial_dim,
                             "out_channel": 512, "dropout_prob": 0.3},
        "label_mapping": {"version": "v4", "out_channel": 256, "num_latent": 8,
                          "recognition_config": dict(recognition)},
    }


def build_trainer(rel, hp: dict, seed: int):
    """``Trainer(**hyper_parameters)`` as hydra instantiates it (omegaconf containers), random weights."""
    helper = rel.recognition_helper
    real = helper.download_ir_pretrained_statedict
    helper.download_ir_pretrained_statedict = lambda backbone, *a: ir_state(rel, backbone, seed + 7)
    try:
        kwargs = {k: rel.omegaconf.OmegaConf.create(v) if isinstance(v, dict) else v for k, v in hp.items()}
        with contextlib.redirect_stdout(io.StringIO()):
            module = rel.trainer.Trainer(**kwargs)
    finally:
        helper.download_ir_pretrained_statedict = real
    randomise(module, seed)
    return module.eval()


def saved_hyper_parameters(rel, module) -> dict:
    """``hyper_parameters`` as the checkpoint holds them, as plain data: the Trainer's own containers after
    ``__init__`` (``make_label_mapping`` rewrites ``label_mapping.recognition_config`` in place: block 21,
    no checkpoint or centre path)."""
    conf = rel.omegaconf.OmegaConf
    return {k: conf.to_container(v) if isinstance(v, rel.omegaconf.Container) else v
            for k, v in module.hparams.items()}


def save_lightning(rel, module, path: Path) -> None:
    """The checkpoint as pytorch-lightning 1.7's ``CheckpointConnector.dump_checkpoint`` writes it."""
    hparams = module.hparams
    ckpt = {"epoch": 9, "global_step": 1000, "pytorch-lightning_version": rel.pl.__version__,
            "state_dict": module.state_dict(), "loops": {}, "callbacks": {}, "optimizer_states": [],
            "lr_schedulers": []}
    if getattr(module, "_hparams_name", None):
        ckpt["hparams_name"] = module._hparams_name
    ckpt["hyper_parameters"] = dict(hparams)
    torch.save(ckpt, path)


def support_files(rel, tmp: Path, rows: int, seed: int) -> dict[str, str]:
    ir50 = tmp / "adaface_ir50_casia.ckpt"
    torch.save({"state_dict": {"model." + k: v for k, v in ir_state(rel, "ir_50", seed).items()}}, ir50)
    center = tmp / "center_ir_50_adaface_casia_faces_webface_112x112.pth"
    g = torch.Generator().manual_seed(seed)
    torch.save({"center": torch.nn.functional.normalize(torch.randn(rows, 512, generator=g), dim=1)}, center)
    return {"ir50": str(ir50), "center": str(center)}


# ------------------------------------------------------------------------------------------- comparisons

def max_diff(a, b) -> float:
    """In float64, shapes equal: the two sides' outputs are compared as they come, in either dtype."""
    return flat_max_diff(a, b, double=True, same_shape=True)


def report(name: str, diff: float, diffs: list[float], ref=None) -> None:
    """One compared quantity; ``ref`` (the release's values) shows that they are not degenerate."""
    diffs.append(diff)
    scale = ""
    if ref is not None:
        r = torch.as_tensor(np.asarray(ref) if not torch.is_tensor(ref) else ref).double()
        scale = f"; release values in [{float(r.min()):.3g}, {float(r.max()):.3g}], std {float(r.std()):.3g}"
    print(f"  {name}: max |diff| {diff:.3e} ({'ok' if diff <= TOLERANCE else 'OVER'}{scale})")


def facebench_generator(model_dir: Path, style_dir: Path, **kw):
    from facebench_plugins.dcface.generator import DCFaceGenerator, DCFaceOptions

    return DCFaceGenerator(model_dir, options=DCFaceOptions(style_bank=str(style_dir), batch_size=64), **kw)


def per_image_noise(seeds: list[int]):
    """facebench's per-image noise (``generator._per_image_noise``) over a fresh set of generators."""
    from facebench_plugins.dcface.generator import _per_image_noise

    return _per_image_noise([torch.Generator().manual_seed(s) for s in seeds])


@contextlib.contextmanager
def release_noise(noise):
    """``torch.randn`` / ``torch.randn_like`` while a release sampler runs: ``noise(shape)`` draws (itself
    with the real ``torch.randn``)."""
    real_randn, real_like = torch.randn, torch.randn_like

    def draw(shape: tuple[int, ...], device) -> torch.Tensor:
        torch.randn = real_randn
        try:
            return noise(tuple(int(s) for s in shape)).to(device or "cpu")
        finally:
            torch.randn = randn

    def randn(*size, generator=None, device=None, **kw):
        return draw(tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size,
                    device)

    def randn_like(x, **kw):
        return draw(tuple(x.shape), x.device)

    torch.randn, torch.randn_like = randn, randn_like
    try:
        yield
    finally:
        torch.randn, torch.randn_like = real_randn, real_like


def images(n: int, seed: int, size: int = 112) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((n, 3, size, size), generator=g) * 2 - 1)


def write_style_bank(folder: Path, n: int, seed: int, size: int = 112) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"style_{i}.png")


def check_dcface(rel, tmp: Path, spatial_dim: int, seed: int, diffs: list[float], *, sample: bool) -> None:
    """Condition + one denoiser output (and, with ``sample``, 50-step DDIM to the final image)."""
    from facebench_plugins.dcface import layout

    files = support_files(rel, tmp, 16, seed)
    hp = hyper_parameters(RELEASE_UNET, spatial_dim, files, eval_ir101=True)
    module = build_trainer(rel, hp, seed)
    model_dir = tmp / "model"
    model_dir.mkdir(exist_ok=True)
    ckpt_path = model_dir / "dcface_3x3.ckpt"
    save_lightning(rel, module, ckpt_path)
    print(f"DCFace {spatial_dim}x{spatial_dim}, released size: {ckpt_path.stat().st_size / 1e6:.0f} MB checkpoint "
          f"({len(module.state_dict())} tensors) read by facebench's reader, loaded strictly")
    model, _ = layout.load_dcface(ckpt_path)

    id_images, style_images = images(2, seed + 1), images(2, seed + 2)
    batch = {"image": style_images, "id_image": id_images, "class_label": torch.arange(2), "index": torch.arange(2),
             "orig": style_images}
    with torch.no_grad():
        hidden = rel.conditioner.make_condition(module, COND["condition_type"], COND["condition_source"], dict(batch))
        cond, stylemod = model.condition(id_images, style_images)
        report("condition cross_attn (make_condition)", max_diff(hidden["cross_attn"], cond), diffs, hidden["cross_attn"])
        report("condition stylemod (identity feature)", max_diff(hidden["stylemod"], stylemod), diffs, hidden["stylemod"])
        x = images(2, seed + 3)
        t = torch.tensor(637)
        ref = module.ema_model.averaged_model(x, t, encoder_hidden_states=hidden).sample
        report("denoiser output (EMA UNet, t = 637)", max_diff(ref, model.eps(x, t[None], cond, stylemod)), diffs, ref)
    if not sample:
        return
    style_dir = tmp / "style"
    write_style_bank(style_dir, 2, seed)
    generator = facebench_generator(model_dir, style_dir)
    seeds = [seed * 1000 + 11]
    one = {k: v[:1] for k, v in batch.items()}  # one image: 50 released-size UNet passes per side
    with release_noise(per_image_noise(seeds)):
        ref = rel.sample_visual.render_condition(one, module, sampler="ddim", between_zero_and_one=True,
                                                 generator=torch.Generator().manual_seed(0))
    ours = generator.sample(id_images[:1], style_images[:1], per_image_noise(seeds))
    ours01 = ((ours + 1) / 2).permute(0, 2, 3, 1).numpy()
    inside = float(((ref > 0) & (ref < 1)).mean())
    print(f"  (final image: {inside:.1%} of the release's values inside (0, 1), not clipped)")
    report("final image, DDIM 50 steps eta 1.0 (render_condition, [0, 1])", max_diff(ref, ours01), diffs, ref)
    report("final image as 8-bit pixels (release: x 255, rounded)",
           max_diff(np.rint(ref * 255), np.rint(ours01 * 255)), diffs)


def check_stage1(rel, tmp: Path, seed: int, diffs: list[float], *, full: bool) -> None:
    from facebench_plugins.dcface import layout
    from facebench_plugins.dcface.tiny import STAGE1_TINY as FB_TINY
    from facebench_plugins.dcface.tiny import STAGE1_TINY_SIZE

    su = rel.script_util
    if full:
        torch.manual_seed(seed)
        ref_model = su.create_model(**STAGE1_RELEASE).eval()
        randomise(ref_model, seed)
        path = tmp / "ffhq_10m.pt"
        torch.save(ref_model.state_dict(), path)
        ours = layout.load_stage1(path)
        x = images(1, seed + 4, 256)
        t = torch.tensor([412])
        with torch.no_grad():
            ref_out = ref_model(x, t)
            d = max_diff(ref_out, ours(x, t))
        print(f"first stage, released size (ADM 256 px, {sum(p.numel() for p in ours.parameters()) / 1e6:.1f} M "
              "parameters): ffhq_10m.pt layout loaded strictly")
        report("first-stage denoiser output (6 channels, t = 412)", d, diffs, ref_out)
        return
    torch.manual_seed(seed)
    ref_model = su.create_model(**STAGE1_TINY).eval()
    randomise(ref_model, seed + 1)
    model_dir = tmp / "stage1"
    model_dir.mkdir()
    torch.save(ref_model.state_dict(), model_dir / layout.STAGE1)
    # the generator needs its DCFace checkpoint too: facebench's tiny one
    from facebench_plugins.dcface.tiny import make_tiny

    make_tiny(tmp / "tiny")
    (model_dir / "dcface_3x3.ckpt").write_bytes((tmp / "tiny" / "dcface_3x3.ckpt").read_bytes())
    style_dir = tmp / "style56"
    write_style_bank(style_dir, 1, seed, 56)
    generator = facebench_generator(model_dir, style_dir, stage1_config=FB_TINY, stage1_size=STAGE1_TINY_SIZE)
    generator._load_stage1()
    diffusion = su.create_gaussian_diffusion(steps=1000, learn_sigma=True, noise_schedule="linear",
                                             timestep_respacing="100")
    seeds = [seed * 1000 + 21, seed * 1000 + 22]
    shape = (2, 3, STAGE1_TINY_SIZE, STAGE1_TINY_SIZE)
    with release_noise(per_image_noise(seeds)), torch.no_grad():
        ref = diffusion.p_sample_loop(ref_model, shape, clip_denoised=True, model_kwargs={}, range_t=20)
    with torch.no_grad():
        ours = generator.stage1_sampler.sample(generator.stage1, shape, per_image_noise(seeds))
    print(f"first stage, tiny size ({STAGE1_TINY_SIZE} px, 32 channels): 100 respaced ancestral steps "
          "(p_sample_loop)")
    report("first-stage sample", max_diff(ref, ours), diffs, ref)
    from PIL import Image
    from torchvision import utils

    pixels = []
    for i in range(2):
        out = tmp / f"stage1_{i}.png"
        utils.save_image(ref[i].unsqueeze(0), out, nrow=1, normalize=True, value_range=(-1, 1))
        pixels.append(np.asarray(Image.open(out).convert("RGB")))
    ours8 = ((ours.clamp(-1, 1) + 1) / 2).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    report("first-stage PNG pixels (utils.save_image, 0..255)", max_diff(np.stack(pixels), ours8), diffs)


# --------------------------------------------------------------------------------------------- manifests

def layout_of(state: dict) -> dict:
    return {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()}


def write_manifests(rel, out: Path, commit: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        files = support_files(rel, Path(tmp), CASIA_CLASSES, 0)
        for name, spatial in (("dcface_3x3", 3), ("dcface_5x5", 5)):
            hp = hyper_parameters(RELEASE_UNET, spatial, files, eval_ir101=True)
            with torch.device("meta"), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # loading the support files into meta modules copies nothing
                module = build_trainer(rel, hp, 0)
            hp_doc = saved_hyper_parameters(rel, module)
            for part in ("recognition", "recognition_eval"):
                for key in ("ckpt_path", "center_path"):
                    if hp_doc[part][key]:
                        hp_doc[part][key] = Path(hp_doc[part][key]).name
            body = {"note": f"Tensor names, shapes and dtypes of the DCFace release's Lightning checkpoint "
                            f"state_dict (github.com/mk-minchul/dcface {commit}: src.trainer.Trainer built from "
                            f"these hyper-parameters: train.sh's, external_mapping.spatial_dim={spatial}), on the "
                            "meta device, by benchmarks/parity/dcface.py --write-manifests. The centre tables' "
                            f"rows are the training classes of the centre files ({CASIA_CLASSES}: CASIA-WebFace); "
                            "facebench accepts any row count.",
                    "hyper_parameters": hp_doc, "keys": layout_of(module.state_dict())}
            (out / f"{name}.json").write_text(json.dumps(body, indent=1) + "\n")
            print(f"wrote {out / f'{name}.json'} ({len(body['keys'])} tensors)")
    with torch.device("meta"):
        stage1 = rel.script_util.create_model(**STAGE1_RELEASE)
    body = {"note": f"Tensor names, shapes and dtypes of the DCFace release's first stage ffhq_10m.pt (github.com/"
                    f"mk-minchul/dcface {commit}: stage1/unconditional_generation diffusion.script_util.create_model "
                    "with unconditional_sampling.sh's flags), on the meta device, by benchmarks/parity/dcface.py "
                    "--write-manifests.", "config": STAGE1_RELEASE, "keys": layout_of(stage1.state_dict())}
    (out / "dcface_ffhq_10m.json").write_text(json.dumps(body, indent=1) + "\n")
    print(f"wrote {out / 'dcface_ffhq_10m.json'} ({len(body['keys'])} tensors)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--release", type=Path, help="checkout of github.com/mk-minchul/dcface")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-sampler", action="store_true",
                        help="leave out the 50-step DDIM run (100 released-size UNet passes: minutes on a CPU)")
    parser.add_argument("--write-manifests", type=Path, metavar="DIR")
    args = parser.parse_args()
    if args.release is None or not args.release.is_dir():
        print(f"skipped: no DCFace release checkout given (--release {args.release})")
        return 0
    root = release_root(args.release)
    commit = commit_of(args.release)
    rel = import_release(root)
    print(f"release {root} commit {commit} (torch {torch.__version__}, pytorch-lightning {rel.pl.__version__})")
    torch.set_grad_enabled(False)
    if args.write_manifests:
        write_manifests(rel, args.write_manifests, commit)
        return 0
    diffs: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for spatial, sample in ((3, not args.skip_sampler), (5, False)):
            sub = Path(tmp) / f"dcface{spatial}"
            sub.mkdir()
            check_dcface(rel, sub, spatial, args.seed, diffs, sample=sample)
        for full in (True, False):
            sub = Path(tmp) / f"stage1-{full}"
            sub.mkdir()
            check_stage1(rel, sub, args.seed, diffs, full=full)
    worst = max(diffs)
    print(f"\nlargest difference {worst:.3e}: {'PASS' if worst <= TOLERANCE else 'FAIL'} (target {TOLERANCE:g}); "
          f"release commit {commit}")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
