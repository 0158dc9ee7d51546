"""``facebench train-generator`` on tiny data: outputs, exact resume, LMDB features, one-line errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import metrics_rows, torchrun
from PIL import Image

import facebench
from facebench.cli import create_cli
from facebench.data import encode_image, open_writer
from facebench.errors import ConfigError

N_IDS, PER_ID, SIZE = 4, 4, 56


def toy_images():
    """Identity = colour + a bar position; every image differs a little."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(N_IDS):
        colour = rng.integers(30, 220, 3)
        for j in range(PER_ID):
            img = np.zeros((SIZE, SIZE, 3), np.uint8) + colour.astype(np.uint8)
            img[8 + 8 * i: 16 + 8 * i, 10 + j: 40 + j] = 255 - colour
            out.append((i, img))
    feats = np.repeat(rng.normal(size=(N_IDS, 512)), PER_ID, axis=0)
    feats += 0.05 * rng.normal(size=feats.shape)
    return out, feats.astype(np.float32)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    images, feats = toy_images()
    with open_writer(root / "train", "folder") as w:
        for label, img in images:
            w.add(encode_image(img, "png"), label)
    np.save(root / "feats.npy", feats)
    with open_writer(root / "gen.lmdb", "lmdb", features=True) as w:
        for (label, img), f in zip(images, feats):
            w.add(encode_image(img, "png"), label, feature=f)
    return root


BASE = ["--config", "tiny", "--set", "losses.identity=0", "--set", "batch_size=8", "--set", "epochs=2",
        "--set", "disc_start=1", "--set", "grid_samples=4", "--set", "log_every=1"]


def run(args):
    result = CliRunner().invoke(create_cli(), args, catch_exceptions=False)
    return result


@pytest.fixture(scope="module")
def whole(toy, tmp_path_factory):
    """One uninterrupted 2-epoch run, shared by the output checks and the resume comparison."""
    out = tmp_path_factory.mktemp("whole") / "run"
    res = run(["train-generator", "--data", str(toy / "train"), "--features", str(toy / "feats.npy"),
               "--out", str(out), *BASE])
    assert res.exit_code == 0, res.output
    return out, res


def test_train_generator_writes_a_loadable_generator_grids_log_and_provenance(toy, whole):
    out, res = whole
    assert "trained vec2face_tiny: 4 steps, 2 epochs" in res.output
    gen = facebench.load_generator("vec2face_tiny", weights=out / "generator.pth")
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    for k, v in ckpt["model_vec2face"].items():
        assert torch.equal(gen.model.state_dict()[k], v), k
    # the release's training layout, plus facebench's keys for an exact resume
    assert set(ckpt) >= {"model_vec2face", "model_disc", "optimizer_vec2face", "optimizer_disc", "epoch", "scaler",
                         "rng", "position", "config", "vec2face_config"}
    assert ckpt["epoch"] == 1  # the last finished epoch, as the release counts
    assert ckpt["position"] == {"epoch": 2, "step_in_epoch": 0, "global_step": 4}
    for epoch in (0, 1):
        grid = np.asarray(Image.open(out / "grids" / f"epoch_{epoch:03d}.png"))
        assert grid.shape == (2 * SIZE, 4 * SIZE, 3)
    # the top row of the grid is the real images, read back from the dataset
    reader = facebench.data.open_dataset(toy / "train")
    np.testing.assert_array_equal(grid[:SIZE, :SIZE], reader.image(0))
    rows = metrics_rows(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(r["d_loss"] == 0 for r in rows if r["epoch"] == 0)  # GAN from epoch disc_start = 1
    assert all(r["d_loss"] > 0 for r in rows if r["epoch"] == 1)
    assert all(np.isfinite(r["ae_loss"]) and r["grad_norm"] > 0 and r["images_per_s"] > 0 for r in rows)
    # the epoch rows are the means of the epoch's steps (log_every=1: each train row is one step)
    epochs = metrics_rows(out, "epoch")
    assert [(r["epoch"], r["step"]) for r in epochs] == [(0, 2), (1, 4)]
    for e in epochs:
        steps = [r for r in rows if r["epoch"] == e["epoch"]]
        for term in ("ae_loss", "d_loss", "token_loss", "p_loss", "grad_norm", "disc_grad_norm"):
            assert e[term] == pytest.approx(np.mean([r[term] for r in steps]), rel=1e-5), term
    # the same figures as plain lines on stdout, one per logged step and one per epoch
    lines = [line for line in res.output.splitlines() if line.startswith(("step ", "epoch "))]
    assert len(lines) == 6 and lines[0].startswith("step 1/4 epoch 1/2  ae_loss ")
    assert f"token_loss {rows[0]['token_loss']:.4f}" in lines[0] and " lr " in lines[0] and "img/s" in lines[0]
    assert lines[2].startswith("epoch 1/2 done at step 2, means:") and f"ae_loss {epochs[0]['ae_loss']:.4f}" in lines[2]
    # generator.pth records the raw scale it was trained on, beside the official key
    final = torch.load(out / "generator.pth", weights_only=True)
    norms = np.linalg.norm(np.load(toy / "feats.npy").astype(np.float64), axis=1)
    assert final["feature_scale"] == {"median_norm": pytest.approx(float(np.median(norms)), rel=1e-6),
                                      "extractor": None, "source": "features", "raw": True}
    assert set(final) == {"model_vec2face", "vec2face_config", "feature_scale"}
    prov = json.loads((out / "provenance.json").read_text())
    assert set(prov["inputs"]) >= {"data", "features"}
    assert (out / "config.toml").read_text().count('model = "vec2face_tiny"') == 1


def test_resume_continues_exactly(toy, whole, tmp_path):
    common = ["--data", str(toy / "train"), "--features", str(toy / "feats.npy"), *BASE]
    whole, parts = whole[0], tmp_path / "parts"
    first = run(["train-generator", "--out", str(parts), *common, "--set", "max_steps=3"])
    assert first.exit_code == 0 and "3 steps" in first.output
    again = run(["train-generator", "--out", str(parts), *common])  # without its cap: other parameters
    assert again.exit_code == 2 and "(config.max_steps); pass --overwrite" in " ".join(again.output.split())
    resumed = run(["train-generator", "--out", str(parts), *common, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    a = torch.load(whole / "generator.pth", weights_only=True)["model_vec2face"]
    b = torch.load(parts / "generator.pth", weights_only=True)["model_vec2face"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = (whole / "metrics.jsonl").read_text().splitlines()
    lb = (parts / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["ae_loss"] for x in la] == [json.loads(x)["ae_loss"] for x in lb]
    assert [json.loads(x)["d_loss"] for x in la] == [json.loads(x)["d_loss"] for x in lb]


def test_features_stored_in_the_lmdb_are_used(toy, tmp_path):
    out = tmp_path / "lmdb_run"
    res = run(["train-generator", "--data", str(toy / "gen.lmdb"), "--out", str(out), *BASE,
               "--set", "epochs=1", "--set", "max_steps=1"])
    assert res.exit_code == 0, res.output
    assert (out / "generator.pth").is_file() and not (out / "features.npy").exists()
    scale = torch.load(out / "generator.pth", weights_only=True)["feature_scale"]
    norms = np.linalg.norm(toy_images()[1].astype(np.float64), axis=1)  # what the LMDB stores, raw
    assert scale == {"median_norm": pytest.approx(float(np.median(norms)), rel=1e-6), "extractor": None,
                     "source": "dataset", "raw": True}
    assert scale["median_norm"] > 20


def test_unit_length_features_train_and_are_recorded_as_not_raw(toy, tmp_path):
    feats = np.load(toy / "feats.npy")
    unit = tmp_path / "unit.npy"
    np.save(unit, feats / np.linalg.norm(feats, axis=1, keepdims=True))
    out = tmp_path / "unit_run"
    res = run(["train-generator", "--data", str(toy / "train"), "--features", str(unit), "--out", str(out), *BASE,
               "--set", "epochs=1", "--set", "max_steps=1"])
    assert res.exit_code == 0, res.output
    assert "features are unit length (median norm 1.0000)" in res.output
    scale = torch.load(out / "generator.pth", weights_only=True)["feature_scale"]
    assert scale["raw"] is False and scale["median_norm"] == pytest.approx(1.0, abs=1e-6)


def test_a_narrower_teacher_trains_a_generator_of_its_width(toy, tmp_path):
    """feature_dim follows a teacher of another width (the demo's 32): recorded in generator.pth, so that
    generate takes that teacher's vectors and refuses 512-d ones naming the width."""
    narrow = tmp_path / "narrow.npy"
    np.save(narrow, np.load(toy / "feats.npy")[:, :32])
    out = tmp_path / "narrow_run"
    args = ["train-generator", "--data", str(toy / "train"), "--features", str(narrow), "--out", str(out), *BASE,
            "--set", "epochs=1", "--set", "max_steps=1"]
    res = run(args)
    assert res.exit_code == 2
    assert "features have 32 dimensions, the model expects 512 (--set feature_dim=32 trains" in res.output
    res = run([*args, "--set", "feature_dim=32"])
    assert res.exit_code == 0, res.output
    stored = torch.load(out / "generator.pth", weights_only=True)
    assert stored["vec2face_config"]["feature_dim"] == 32
    assert tuple(stored["model_vec2face"]["latent_prior_proj_f.weight"].shape) == (128, 32)
    generator = facebench.load_generator("vec2face_tiny", weights=out / "generator.pth")
    images = generator.generate(np.load(narrow)[:3])
    assert images.shape[0] == 3
    with pytest.raises(ConfigError, match=r"vectors must have shape \(N, 32\), got \(2, 512\)"):
        generator.generate(np.zeros((2, 512), np.float32))


def test_user_errors_are_one_line(toy, tmp_path):
    data = ["--data", str(toy / "train")]
    res = run(["train-generator", *data, "--out", str(tmp_path / "a"), *BASE])
    assert res.exit_code == 2 and "holds no features; pass --features" in res.output
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 512), np.float32))
    res = run(["train-generator", *data, "--features", str(bad), "--out", str(tmp_path / "b"), *BASE])
    assert res.exit_code == 2 and f"{bad}: expected float features of shape (16, D)" in res.output
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    res = run(["train-generator", *data, "--features", str(empty), "--out", str(tmp_path / "e"), *BASE])
    assert res.exit_code == 2 and f"{empty}: cannot read features: the file is empty" in res.output
    res = run(["train-generator", *data, "--features", str(toy / "feats.npy"), "--out", str(tmp_path / "c"),
               "--config", "tiny"])
    assert res.exit_code == 2 and "identity loss needs a frozen FR extractor" in res.output
    res = run(["train-generator", *data, "--features", str(toy / "feats.npy"), "--config", "tiny",
               "--set", "losses.idnetity=0"])
    assert res.exit_code == 2 and "unknown config key 'losses.idnetity'" in res.output
    res = run(["train-generator", *data, "--config", "huge"])
    assert res.exit_code == 2 and ("no shipped vec2face config 'huge' (shipped: base, tiny, vec2face_plus_pose, "
                                   "vec2face_plus_pose_tiny)") in res.output
    res = run(["train-generator", *data, "--features", str(toy / "feats.npy"), "--config", "tiny",
               "--set", "amp_dtype=\"fp8\""])
    assert res.exit_code == 2 and "config key 'amp_dtype' must be one of fp16, bf16, got 'fp8'" in res.output
    res = run(["train-generator", *data, "--features", str(toy / "feats.npy"), "--out", str(tmp_path / "d"),
               *BASE, "--set", "perceptual=\"lpips-vgg16\"", "--set", "vgg_weights=\"/nowhere/vgg16.pth\""])
    assert res.exit_code == 2 and "/nowhere/vgg16.pth: weights file not found" in res.output
    assert all(len(r.splitlines()) == 1 for r in [res.output.strip()])


def test_help_has_an_example():
    res = run(["train-generator", "--help"])
    assert res.exit_code == 0 and "Examples:" in res.output and "--extractor" in res.output


def test_torchrun_two_ranks_share_the_global_batch(toy, tmp_path):
    """Two gloo ranks with 4 images each make the single run's global batch of 8: the same 4 steps in 2
    epochs (GAN from epoch 1, so the discriminator runs under DDP too), one set of files from rank 0."""
    import os
    import subprocess

    out = tmp_path / "ddp"
    args = ["train-generator", "--data", str(toy / "train"), "--features", str(toy / "feats.npy"), "--out", str(out),
            "--device", "cpu", *BASE, "--set", "batch_size=4"]
    env = dict(os.environ, FACEBENCH_QUIET="1", OMP_NUM_THREADS="1")
    env.pop("FACEBENCH_PLUGINS", None)
    cmd = torchrun("-m", "facebench", *args)
    log = tmp_path / "log.txt"
    with log.open("w") as stdout:  # train-generator > log.txt
        done = subprocess.run(cmd, env=env, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    text = log.read_text()
    assert text.count("trained vec2face_tiny: 4 steps, 2 epochs") == 1  # rank 0 reports, once
    # rank 0 alone logs: one line per step (log_every=1) and one per epoch, the ranks' means
    steps = [line for line in text.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == ["1/4", "2/4", "3/4", "4/4"]
    assert sum(line.startswith("epoch ") for line in text.splitlines()) == 2
    assert json.loads((out / "provenance.json").read_text())["world_size"] == 2
    rows = metrics_rows(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(np.isfinite(r["ae_loss"]) for r in rows)
    assert all(r["d_loss"] > 0 for r in rows if r["epoch"] == 1)
    gen = facebench.load_generator("vec2face_tiny", weights=out / "generator.pth")
    untrained = facebench.load_generator("vec2face_tiny")
    assert any(not torch.equal(a, b) for a, b in zip(gen.model.state_dict().values(),
                                                     untrained.model.state_dict().values()))


def make_trainer(toy, tmp_path, *overrides):
    from facebench_plugins.vec2face.train_config import TrainGeneratorConfig, shipped_config
    from facebench_plugins.vec2face.trainer import GeneratorTrainer

    from facebench.config import load_config

    cfg = load_config(TrainGeneratorConfig, shipped_config("tiny"),
                      ["losses.identity=0", "batch_size=8", "disc_start=1", *overrides])
    reader = facebench.data.open_dataset(toy / "train")
    return GeneratorTrainer(cfg, reader, np.load(toy / "feats.npy"), tmp_path)


def test_steps_follow_the_release_update(toy, tmp_path):
    """Before disc_start the discriminator still takes an AdamW step with zero gradients (weight decay only,
    as the release's zero-weighted d_loss gives); the generator's lr is the release's warm-up from 0 at step
    0 and the discriminator's stays at the base rate; one shared GradScaler gives the unscaled update."""
    images, vectors = (torch.stack(t) for t in zip(*[make_trainer(toy, tmp_path).data[i] for i in range(8)]))
    plain = make_trainer(toy, tmp_path / "a", "warmup_epochs=1.0")  # 2 steps per epoch, 6 epochs
    d0 = [p.detach().clone() for p in plain.disc.parameters()]
    plain.position.global_step = 1  # epoch 0.5: half way through the warm-up
    plain.train_step(images, vectors)
    lr, wd = plain.disc_opt.param_groups[0]["lr"], plain.cfg.weight_decay
    assert lr == plain.lr == 1e-3 and plain.opt.param_groups[0]["lr"] == pytest.approx(0.5e-3)
    for before, p in zip(d0, plain.disc.parameters()):
        torch.testing.assert_close(p.detach(), before * (1 - lr * wd), rtol=0, atol=1e-7)
    assert plain.lr_at(0) == 0.0
    assert plain.lr_at(3) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 0.5 / 5)))  # epoch 1.5
    # the GAN phase through an enabled (CPU) GradScaler shared by both optimisers = the unscaled update
    runs = []
    for scaled in (False, True):
        t = make_trainer(toy, tmp_path / f"s{scaled}")
        if scaled:
            t.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=2000)
        t.position = facebench.training.Position(epoch=1, step_in_epoch=0, global_step=2)
        record = t.train_step(images, vectors)
        assert record["d_loss"] > 0 and record["disc_grad_norm"] > 0
        runs.append(t)
    for a, b in zip([*runs[0].model.parameters(), *runs[0].disc.parameters()],
                    [*runs[1].model.parameters(), *runs[1].disc.parameters()]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert runs[1].scaler.get_scale() == 2.0**12


_EXTRACT_ON_TWO_RANKS = """
import sys
from pathlib import Path
import numpy as np, torch
from facebench.data import open_dataset
from facebench.runtime import shutdown, init_distributed
from facebench_plugins.vec2face.training_data import extract_features

class Pool:  # a raw 'FR model': 4x4 average pooling of the 32 px image, times 10 (norms far from 1)
    input_size = 32
    def forward_tensor(self, x):
        return 10 * torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)

torch.set_num_threads(1)
tmp = Path(sys.argv[1])
feats = extract_features(open_dataset(tmp / "train"), Pool(), tmp / "run" / "features.npy", name="pool",
                         weights=None, device="cpu", batch_size=2, shard_size=3)
ctx = init_distributed("cpu")  # the group extract_features made: joining again returns it
np.save(tmp / f"rows{ctx.rank}.npy", np.asarray(feats))
shutdown(ctx)
"""


def test_two_ranks_share_the_feature_extraction_of_train_generator(toy, tmp_path):
    """Under torchrun the extractor's raw features are written by both ranks into one file (shards round
    robin, one manifest per rank), after the process group exists; both ranks read every row, equal to
    the single-process extraction and to pooling each image directly."""
    import os
    import shutil
    import subprocess

    from facebench_plugins.vec2face.training_data import extract_features

    from facebench.data import open_dataset
    from facebench.data.tensors import to_model_input

    shutil.copytree(toy / "train", tmp_path / "train")
    script = tmp_path / "ranks.py"
    script.write_text(_EXTRACT_ON_TWO_RANKS)
    done = subprocess.run(torchrun(str(script), str(tmp_path)), env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "run"
    manifests = sorted(p.name for p in run.glob("features.manifest*.json"))
    assert manifests == ["features.manifest-rank0.json", "features.manifest-rank1.json"]
    done_by = [sorted(json.loads((run / m).read_text())["done"], key=int) for m in manifests]
    assert done_by == [["0", "2", "4"], ["1", "3", "5"]]  # 16 images in 6 shards of 3, round robin
    reader = open_dataset(tmp_path / "train")
    direct = np.stack([10 * torch.nn.functional.adaptive_avg_pool2d(to_model_input(reader.image(i), 32), 4)
                       .flatten().numpy() for i in range(len(reader))])
    for rank in (0, 1):
        np.testing.assert_allclose(np.load(tmp_path / f"rows{rank}.npy"), direct, atol=1e-5)
    pool = type("Pool", (), {"input_size": 32, "forward_tensor": lambda self, x: 10 * torch.nn.functional
                             .adaptive_avg_pool2d(x, 4).flatten(1)})()
    single = extract_features(reader, pool, tmp_path / "single" / "features.npy", name="pool", weights=None,
                              device="cpu", batch_size=2, shard_size=3)
    np.testing.assert_array_equal(np.asarray(single), np.load(run / "features.npy"))
