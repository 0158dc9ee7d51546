"""Vec2Face training checkpoints in the release's layout: the discriminator and the generator's parameter
order against the compat manifests (read from the released files), a release training checkpoint
continued by ``train-generator --init``, and facebench's checkpoint loading into modules of the release's
names and shapes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import metrics_rows
from facebench_plugins.vec2face.checkpoint import load_scaler_state, release_parameters
from facebench_plugins.vec2face.discriminator import Discriminator
from facebench_plugins.vec2face.model import Vec2Face, model_config

from facebench.cli import create_cli
from facebench.data import encode_image, open_writer

COMPAT = Path(__file__).resolve().parents[2] / "shared" / "design" / "compat"
if not COMPAT.is_dir():
    COMPAT = Path("/work/shared/design/compat")


def manifest(name: str) -> dict:
    path = COMPAT / name
    if not path.is_file():  # the compat manifests live beside the checkout (../shared)
        pytest.skip(f"no compat manifest at {path}")
    return json.loads(path.read_text())


def disc_manifest() -> dict[str, list[int]]:
    return manifest("vec2face_discriminator.json")["state_dict"]


def generator_manifest() -> dict[str, list]:
    return manifest("vec2face_vit_base_patch16.json")["tensors"]


def test_discriminator_has_the_release_layout_and_loads_strictly_both_ways():
    want = disc_manifest()
    disc = Discriminator((64, 128, 256, 512))
    ours = disc.state_dict()
    assert list(ours) == list(want)  # names in the release's order
    assert {k: list(v.shape) for k, v in ours.items()} == want
    assert sum(p.numel() for p in disc.parameters()) == 6_139_393
    g = torch.Generator().manual_seed(0)
    release_like = {k: torch.randn(shape, generator=g) for k, shape in want.items()}
    disc.load_state_dict(release_like, strict=True)
    torch.testing.assert_close(disc.state_dict(), release_like)
    assert disc(torch.zeros(2, 3, 112, 112)).shape == (2, 1, 11, 11)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        disc.load_state_dict({**release_like, "layers.4.0.weight": torch.zeros(1)}, strict=True)


def test_generator_parameters_follow_the_release_order():
    """The released state dict lists its tensors in the order the release's model registers them; the
    optimizer facebench builds sees the parameters in exactly that order (buffers aside)."""
    with torch.device("meta"):
        model = Vec2Face(model_config("vec2face_vit_base_patch16"))
    buffers = {name for name, _ in model.named_buffers()}
    released = [k for k in generator_manifest() if k not in buffers]
    assert [name for name, _ in release_parameters(model)] == released
    assert [name for name, _ in model.named_parameters()] != released  # facebench registers another order


def release_order_params(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The model's parameters in the order of the released state dict (from the manifest, not facebench)."""
    params = dict(model.named_parameters())
    return [params[k] for k in generator_manifest() if k in params]


N_IDS, PER_ID = 4, 4


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    with open_writer(root / "train", "folder") as w:
        for i in range(N_IDS * PER_ID):
            img = rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)
            w.add(encode_image(img, "png"), i // PER_ID)
    np.save(root / "feats.npy", (rng.normal(size=(N_IDS * PER_ID, 512))).astype(np.float32))
    return root


def release_checkpoint(path: Path, epoch: int) -> dict:
    """What the release's ``save_model`` writes, built from random weights: both state dicts, AdamW states
    (one step taken, parameters in the release's order), the epoch, an enabled GradScaler's state and the
    argparse namespace of its command line."""
    torch.manual_seed(123)
    model, disc = Vec2Face(model_config("vec2face_tiny")), Discriminator([32, 64])
    opt = torch.optim.AdamW(release_order_params(model), lr=1e-3, betas=(0.9, 0.99))
    disc_opt = torch.optim.AdamW(disc.parameters(), lr=1e-3, betas=(0.9, 0.99))
    for p in list(model.parameters()) + list(disc.parameters()):
        p.grad = torch.randn_like(p)
    for p in (*model.center_token.parameters(), *model.patch_embed.parameters()):
        p.grad = None  # unused by the forward pass: never a gradient, never optimizer state
    opt.step()
    disc_opt.step()
    ckpt = {
        "model_vec2face": model.state_dict(), "model_disc": disc.state_dict(), "model_ema": None,
        "optimizer_vec2face": opt.state_dict(), "optimizer_disc": disc_opt.state_dict(), "epoch": epoch,
        "scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                   "_growth_tracker": 7},
        "args": argparse.Namespace(model="vec2face_vit_base_patch16", batch_size=8, epochs=2, disc_start=1,
                                   lr=1e-3, amp_dtype=torch.float16, use_amp=True, output_dir="./out"),
    }
    torch.save(ckpt, path)  # pickled like the release's file (the namespace is a class instance)
    return ckpt


def run(args):
    return CliRunner().invoke(create_cli(), args, catch_exceptions=False)


COMMON = ["--config", "tiny", "--set", "losses.identity=0", "--set", "batch_size=8", "--set", "epochs=2",
          "--set", "disc_start=1", "--set", "grid_samples=2", "--set", "log_every=1"]


def test_a_release_training_checkpoint_continues_and_ours_loads_into_the_release_layout(toy, tmp_path):
    src = tmp_path / "checkpoint-last.pth"
    release = release_checkpoint(src, epoch=0)
    out = tmp_path / "run"
    res = run(["train-generator", "--data", str(toy / "train"), "--features", str(toy / "feats.npy"),
               "--out", str(out), "--init", str(src), *COMMON, "--set", "max_steps=3"])
    assert res.exit_code == 0, res.output
    # epoch 0 finished in the release -> epoch 1 (steps 2 and 3 of 2 per epoch): exactly one step here
    assert "trained vec2face_tiny: 3 steps" in res.output
    rows = metrics_rows(out)
    assert [(r["step"], r["epoch"]) for r in rows] == [(3, 1)] and rows[0]["d_loss"] > 0
    ours = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ours["position"] == {"epoch": 1, "step_in_epoch": 1, "global_step": 3}
    # one step away from the release's weights (AdamW moves each weight by about lr), far from a fresh model
    fresh = Vec2Face(model_config("vec2face_tiny")).state_dict()
    for key in ("latent_prior_proj_f.weight", "decoder_blocks.0.mlp.fc1.weight", "im_decoder.conv_out.weight"):
        step = (ours["model_vec2face"][key] - release["model_vec2face"][key]).abs().max()
        assert 0 < float(step) < 3e-3, key
        assert float((fresh[key] - release["model_vec2face"][key]).abs().max()) > 0.01
    assert 0 < float((ours["model_disc"]["to_logits.2.weight"] - release["model_disc"]["to_logits.2.weight"])
                     .abs().max()) < 3e-3
    # the optimizer states continued: one more step on every parameter that had state
    for key in ("optimizer_vec2face", "optimizer_disc"):
        before, after = release[key]["state"], ours[key]["state"]
        assert set(after) == set(before)
        assert all(float(after[i]["step"]) == float(before[i]["step"]) + 1 for i in before)

    # facebench's checkpoint in the release's modules: the manifests' names (the tiny sizes have fewer
    # blocks and stages, so a subset), strict loads, optimizer states in the manifest's parameter order
    assert set(ours["model_vec2face"]) < set(generator_manifest())
    assert set(ours["model_disc"]) < set(disc_manifest())
    model, disc = Vec2Face(model_config("vec2face_tiny")), Discriminator([32, 64])
    assert len(release_order_params(model)) == len(list(model.parameters()))
    model.load_state_dict(ours["model_vec2face"], strict=True)
    disc.load_state_dict(ours["model_disc"], strict=True)
    opt = torch.optim.AdamW(release_order_params(model), lr=1e-3, betas=(0.9, 0.99))
    opt.load_state_dict(ours["optimizer_vec2face"])
    disc_opt = torch.optim.AdamW(disc.parameters(), lr=1e-3, betas=(0.9, 0.99))
    disc_opt.load_state_dict(ours["optimizer_disc"])
    params = release_order_params(model)
    for i, state in ours["optimizer_vec2face"]["state"].items():
        assert state["exp_avg"].shape == params[i].shape
    assert ours["epoch"] == 0  # epoch 1 is unfinished: the release would redo it
    # ours ran on CPU with the scaler disabled, which saves {}: an enabled scaler keeps its own scale
    assert ours["scaler"] == {}
    enabled = torch.amp.GradScaler("cpu", enabled=True, growth_interval=2000)
    load_scaler_state(enabled, ours["scaler"])
    assert enabled._init_scale == 65536.0 and enabled._growth_interval == 2000


def test_resume_flag_continues_a_release_checkpoint_copied_into_the_run(toy, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    release_checkpoint(out / "checkpoint.pt", epoch=0)
    res = run(["train-generator", "--data", str(toy / "train"), "--features", str(toy / "feats.npy"),
               "--out", str(out), "--resume", *COMMON])
    assert res.exit_code == 0, res.output
    assert "trained vec2face_tiny: 4 steps, 2 epochs" in res.output
    rows = metrics_rows(out)
    assert [r["step"] for r in rows] == [3, 4]


def test_scaler_states_load_across_enabled_and_disabled():
    enabled = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0, growth_interval=2000)
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    load_scaler_state(enabled, disabled.state_dict())  # {}: keeps its own initial scale
    assert enabled._init_scale == 1024.0
    load_scaler_state(disabled, {"scale": 8.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                 "growth_interval": 2000, "_growth_tracker": 0})
    assert disabled.state_dict() == {}
    load_scaler_state(enabled, {"scale": 8.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                "growth_interval": 100, "_growth_tracker": 3})
    assert enabled._init_scale == 8.0 and enabled._growth_interval == 100


def test_bad_init_checkpoints_are_one_line_errors(toy, tmp_path):
    base = ["train-generator", "--data", str(toy / "train"), "--features", str(toy / "feats.npy"), *COMMON]
    partial = tmp_path / "partial.pth"
    torch.save({"model_vec2face": {}, "epoch": 3}, partial)
    res = run([*base, "--out", str(tmp_path / "a"), "--init", str(partial)])
    assert res.exit_code == 2
    assert f"{partial}: not a Vec2Face training checkpoint: no model_disc, optimizer_vec2face" in res.output
    wrong = tmp_path / "wrong_disc.pth"
    ckpt = release_checkpoint(wrong, epoch=0)
    ckpt["model_disc"] = Discriminator([64, 128]).state_dict()
    torch.save(ckpt, wrong)
    res = run([*base, "--out", str(tmp_path / "b"), "--init", str(wrong)])
    assert res.exit_code == 2 and "'model_disc' does not match the discriminator with widths [32, 64]" in res.output
    assert len(res.output.strip().splitlines()) == 1
    # anything beyond tensors, plain values and argparse.Namespace is refused, never unpickled
    evil = tmp_path / "evil.pth"
    ckpt["args"] = Path("/tmp")
    torch.save(ckpt, evil)
    res = run([*base, "--out", str(tmp_path / "c"), "--init", str(evil)])
    assert res.exit_code == 2 and "refused to load Vec2Face training checkpoint" in res.output
    old = tmp_path / "old.pt"
    torch.save({"training_format": 1, "model_vec2face": {}, "optimizer": {}}, old)
    res = run([*base, "--out", str(tmp_path / "e"), "--init", str(old)])
    assert res.exit_code == 2 and "written by an older facebench (training format 1, now 2)" in res.output
    res = run([*base, "--out", str(tmp_path / "d"), "--init", str(partial), "--resume"])
    assert res.exit_code == 2 and "pass one of them" in res.output
