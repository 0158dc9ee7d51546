"""``facebench train-generator`` on Vec2Face+'s pose model (``vec2face_plus_pose_tiny``) on a toy landmarks LMDB:
what trains (the adapters and the pose model, nothing else), the objective against an independent computation,
the release's schedule, exact resume, ``--init`` from release-layout tiny checkpoints, the output loaded by
``load_generator("vec2face_plus_tiny")``, and the toy landmarks the set is drawn from.

The release-layout checkpoints are built from the manifests in tests/data/compat (the release's module names
and shapes).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import metrics_rows

import facebench
from facebench.cli import create_cli
from facebench.data.tensors import to_model_input

COMPAT = Path(__file__).resolve().parent / "data" / "compat"
N_IDS, PER_ID = 4, 4
BASE = ["--config", "vec2face_plus_pose_tiny", "--device", "cpu", "--set", "losses.identity=0", "--set", "batch_size=8",
        "--set", "epochs=2", "--set", "log_every=1", "--set", "grid_samples=4", "--set", "eval_samples=0"]


def run(args):
    return CliRunner().invoke(create_cli(), [str(a) for a in args], catch_exceptions=False)


def said(res) -> str:
    """The command's output with the console's line wrapping undone."""
    return " ".join(res.output.split())


def layout(section: str) -> dict:
    return json.loads((COMPAT / "vec2face_plus_tiny.json").read_text())["keys"][section]


def release_tensors(names: dict, seed: int) -> dict:
    """Random tensors under the release's names and shapes (position ids counting, as the release's)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, (shape, dtype) in names.items():
        if dtype == "int64":
            out[name] = torch.arange(math.prod(shape), dtype=torch.int64).reshape(shape)
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 50
            out[name] = torch.randn(shape, generator=g) / math.sqrt(fan_in) + (1.0 if len(shape) == 1 and
                                                                                 name.endswith("weight") else 0.0)
    return out


def plain_name(name: str) -> str:
    """A name of the adapted generator as a plain (adapter-free) Vec2Face file stores it."""
    return name.replace(".attn.qkv.base.", ".attn.qkv.").replace(".attn.proj.base.", ".attn.proj.")


def is_adapter(name: str) -> bool:
    return name.endswith((".A", ".B"))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """16 toyfaces records (112 px) with their landmark images, and tiny release-layout main/pose files."""
    from facebench_plugins.vec2face.toy_pose_data import write_toy_landmarks_lmdb

    root = tmp_path_factory.mktemp("pose")
    write_toy_landmarks_lmdb(root / "pose.lmdb", identities=N_IDS, per_identity=PER_ID, seed=3)
    torch.save({"model_vec2face": release_tensors(layout("main_model")["model_vec2face"], 1)}, root / "main_model.pth")
    pose = layout("pose_model")
    torch.save({"epoch": 9, "model_vec2face": release_tensors(pose["model_vec2face"], 2),
                "pose_model": release_tensors(pose["pose_model"], 3), "optimizer": {"state": {}, "param_groups": []},
                "args": argparse.Namespace(use_lora=True, lora_r=8, amp_dtype=torch.float16)}, root / "pose_model.pth")
    return root


@pytest.fixture(scope="module")
def whole(toy, tmp_path_factory):
    """One uninterrupted run of 2 epochs x 2 steps from the tiny main_model.pth."""
    out = tmp_path_factory.mktemp("whole") / "run"
    res = run(["train-generator", "--data", toy / "pose.lmdb", "--init", toy / "main_model.pth", "--out", out, *BASE])
    assert res.exit_code == 0, res.output
    return out, res


def make_trainer(toy, tmp_path, *overrides, extractor=None, data=None):
    from facebench_plugins.vec2face.pose_training import PoseTrainer
    from facebench_plugins.vec2face.train_config import PoseTrainConfig, shipped_config

    from facebench.config import load_config

    cfg = load_config(PoseTrainConfig, shipped_config("vec2face_plus_pose_tiny"),
                      ['device="cpu"', "batch_size=8", "eval_samples=0", "losses.identity=0", *overrides])
    reader = facebench.data.open_dataset(data or toy / "pose.lmdb")
    return PoseTrainer(cfg, reader, None, tmp_path, extractor=extractor)


# ----------------------------------------------------------------------------------------- the run

def test_only_the_adapters_and_the_pose_model_train_from_main_model(toy, whole):
    out, res = whole
    assert "the generator with fresh adapters, a fresh pose model" in said(res)
    assert "trained vec2face_plus_tiny pose model: 4 steps, 2 epochs" in res.output
    final = torch.load(out / "generator.pth", weights_only=True)
    assert set(final) == {"model_vec2face", "pose_model", "vec2face_config", "pose_config", "feature_scale"}
    main = torch.load(toy / "main_model.pth", weights_only=True)["model_vec2face"]
    trained = final["model_vec2face"]
    frozen = [k for k in trained if not is_adapter(k)]
    assert len(frozen) == len(main)  # every tensor of main_model.pth found its place, the attention in .base
    for name in frozen:
        assert torch.equal(trained[name], main[plain_name(name)]), name  # bit for bit: frozen
    # the adapters moved: B from zero, A from its seeded start (weight decay, then gradients once B is non-zero)
    from facebench_plugins.vec2face.pose_training import PoseTrainer  # noqa: F401 - the class the run used

    adapters = [k for k in trained if is_adapter(k)]
    assert len(adapters) == 4 * 4  # qkv and proj (A and B) of 2 encoder and 2 decoder blocks
    assert all(trained[k].abs().max() > 0 for k in adapters if k.endswith(".B"))
    pose = final["pose_model"]
    assert pose["linear.weight"].abs().max() > 0  # the release initialises it at zero
    assert final["vec2face_config"]["lora_rank"] == 8 and final["pose_config"]["out_dim"] == 128
    # the checkpoint: the release's keys (one AdamW over the pose model's 10 tensors then the 16 adapters)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert set(ckpt) >= {"model_vec2face", "pose_model", "optimizer", "epoch", "scaler", "position", "rng"}
    assert ckpt["epoch"] == 1 and ckpt["position"] == {"epoch": 2, "step_in_epoch": 0, "global_step": 4}
    assert len(ckpt["optimizer"]["param_groups"][0]["params"]) == 10 + 16
    assert ckpt["optimizer"]["param_groups"][0]["weight_decay"] == 0.05
    assert ckpt["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)


def test_the_trained_file_loads_as_vec2face_plus_tiny_and_follows_landmarks(toy, whole):
    out, _ = whole
    gen = facebench.load_generator("vec2face_plus_tiny", weights=str(out / "generator.pth"))
    final = torch.load(out / "generator.pth", weights_only=True)
    for ours, saved in ((gen.model.state_dict(), final["model_vec2face"]), (gen.pose_model.state_dict(),
                                                                             final["pose_model"])):
        assert set(ours) == set(saved) and all(torch.equal(ours[k], saved[k]) for k in saved)
    reader = facebench.data.open_dataset(toy / "pose.lmdb")
    from facebench_plugins.vec2face.landmarks import landmark_tensor

    marks = landmark_tensor(np.stack([reader.landmark_image(i) for i in (0, 5)]))
    vectors = np.stack([reader.feature(0), reader.feature(0)])
    masks = gen.sample_masks(2)
    a = gen.generate(vectors, masks=masks, landmarks=marks)
    b = gen.generate(vectors, masks=masks, landmarks=marks[[1, 0]])
    assert a.shape == (2, 3, 56, 56)
    assert not torch.equal(a[0], b[0])  # the same identity and masks, another landmark image: another image
    assert gen.input_scale["median_norm"] == pytest.approx(final["feature_scale"]["median_norm"])


def test_metrics_follow_the_release_objective_and_schedule(whole):
    out, res = whole
    rows = metrics_rows(out)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:  # log_every=1: every row is one step
        assert r["total"] == pytest.approx(r["rec"] + 0.2 * r["ploss"] + r["ssim"] + r["fid"], rel=1e-6)
        assert r["fid"] == 0 and r["grad_norm"] > 0 and 0 < r["ssim"] < 2
    # torch's LinearLR(1e-3 -> 1) over epoch 0 (2 steps), then CosineAnnealingLR to min_lr over epoch 1
    lr, low = 1e-3, 1e-5
    expected = [lr * 1e-3, lr * (1e-3 + 0.999 * 0.5), lr, low + (lr - low) * 0.5 * (1 + math.cos(math.pi * 0.5))]
    assert [r["lr"] for r in rows] == pytest.approx(expected, rel=1e-12)
    assert "step 1/4 epoch 1/2  total " in res.output and " rec " in res.output and " ploss " in res.output
    grid = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(out / "grids" / "epoch_001.png"))
    assert grid.shape == (3 * 56, 4 * 56, 3)  # real, landmark image, generated
    assert grid[56:112].max() > 200 and np.median(grid[56:112]) < 10  # bright dots on black


def test_resume_continues_exactly(toy, whole, tmp_path):
    common = ["--data", toy / "pose.lmdb", *BASE]
    parts = tmp_path / "parts"
    first = run(["train-generator", "--out", parts, "--init", toy / "main_model.pth", *common, "--set", "max_steps=3"])
    assert first.exit_code == 0 and "3 steps" in first.output
    resumed = run(["train-generator", "--out", parts, *common, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    a = torch.load(whole[0] / "generator.pth", weights_only=True)
    b = torch.load(parts / "generator.pth", weights_only=True)
    for key in ("model_vec2face", "pose_model"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    la, lb = metrics_rows(whole[0]), metrics_rows(parts)
    assert [(r["total"], r["ploss"], r["lr"]) for r in la] == [(r["total"], r["ploss"], r["lr"]) for r in lb]


def test_a_release_training_checkpoint_continues_with_resume(toy, whole, tmp_path):
    """The release's checkpoint_N.pth (epoch, model_vec2face, pose_model, optimizer, args) copied as the run's
    checkpoint.pt continues at its next epoch with its optimizer state, as the release's --resume does."""
    ckpt = torch.load(whole[0] / "checkpoint.pt", weights_only=True)
    release = {k: ckpt[k] for k in ("model_vec2face", "pose_model", "optimizer")}
    release.update(epoch=0, args=argparse.Namespace(lr=1e-3, use_lora=True, amp_dtype=torch.float16))
    out = tmp_path / "cont"
    out.mkdir()
    torch.save(release, out / "checkpoint.pt")
    res = run(["train-generator", "--data", toy / "pose.lmdb", "--out", out, *BASE, "--resume"])
    assert res.exit_code == 0, res.output
    assert "(epoch 0 finished) at epoch 1, step 2" in said(res)
    assert "trained vec2face_plus_tiny pose model: 4 steps" in res.output
    rows = metrics_rows(out)
    assert [r["step"] for r in rows] == [3, 4]


def test_init_from_a_release_pose_model_starts_from_its_weights(toy, tmp_path):
    """pose_model.pth (adapters and pose model) warm-starts as the release's --model_weights: its weights, epoch 0,
    a fresh optimizer (the file's epoch and optimizer are not used)."""
    trainer = make_trainer(toy, tmp_path)
    trainer.init_from(toy / "pose_model.pth")
    saved = torch.load(toy / "pose_model.pth", weights_only=False)
    for ours, theirs in ((trainer.model.state_dict(), saved["model_vec2face"]),
                         (trainer.pose.state_dict(), saved["pose_model"])):
        assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert trainer.position.global_step == 0 and not trainer.opt.state
    out = tmp_path / "run"
    res = run(["train-generator", "--data", toy / "pose.lmdb", "--init", toy / "pose_model.pth", "--out", out, *BASE,
               "--set", "max_steps=1"])
    assert res.exit_code == 0 and "the generator with its adapters, its pose model" in said(res)
    after = torch.load(out / "generator.pth", weights_only=True)["model_vec2face"]
    frozen = [k for k in after if not is_adapter(k)]
    assert all(torch.equal(after[k], saved["model_vec2face"][k]) for k in frozen)
    assert any(not torch.equal(after[k], saved["model_vec2face"][k]) for k in after if is_adapter(k))


# ----------------------------------------------------------------------------------------- the objective

class Pool:
    """A frozen toy identity model: 4 x 4 average pooling of the 56 px image, times 4 (48-d features far from
    unit length)."""

    input_size = 56

    def forward_tensor(self, x):
        return 4 * torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)


def numpy_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Mean SSIM of (N, C, H, W) images in [-1, 1] mapped to [0, 1]: 11-tap Gaussian (sigma 1.5), valid
    windows only, C1 = 0.01^2, C2 = 0.03^2 (pytorch_msssim's SSIM(data_range=1)), in float64."""
    x, y = (x.astype(np.float64) + 1) / 2, (y.astype(np.float64) + 1) / 2
    t = np.arange(11) - 5
    w = np.exp(-(t**2) / (2 * 1.5**2))
    w /= w.sum()

    def blur(a):
        rows = sum(w[k] * a[..., k:a.shape[-2] - 10 + k, :] for k in range(11))
        return sum(w[k] * rows[..., k:rows.shape[-1] - 10 + k] for k in range(11))

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return float((((2 * mx * my + c1) / (mx**2 + my**2 + c1)) * ((2 * cxy + c2) / (vx + vy + c2))).mean())


def test_the_terms_equal_an_independent_computation(toy, tmp_path):
    """rec, fid, ploss, ssim and total of one step against numpy: the release's
    rec + 0.2 x 2 x perceptual + (1 - SSIM) + (1 - cos), here with the toy perceptual net (its stage
    features taken from the net, the distance computed in numpy) and LPIPS dropout off."""
    from facebench_plugins.vec2face.toy_pose_data import write_toy_landmarks_lmdb

    pool = Pool()
    data = tmp_path / "pooled.lmdb"
    write_toy_landmarks_lmdb(data, identities=2, per_identity=4, seed=5, teacher=lambda images: pool.forward_tensor(
        to_model_input(images, 56)).numpy())
    trainer = make_trainer(toy, tmp_path / "run", "perceptual_dropout=0.0", "feature_dim=48", "losses.identity=1.0",
                           extractor=pool, data=data)
    with torch.no_grad():  # B and the pose model's last layer away from zero, so the pose row matters
        for name, p in trainer.model.named_parameters():
            if name.endswith(".B"):
                p.normal_(0, 0.05)
        trainer.pose.linear.weight.normal_(0, 1e-3)
    images, vectors, marks = (torch.stack(t) for t in zip(*[trainer.data.record(i) for i in range(8)]))
    dropped, masked = trainer.step_masks(8)
    trainer.model.eval()
    with torch.no_grad():
        gen = trainer.model(vectors, dropped, masked, cond=trainer.pose(marks)).image
        feats = [(stage_a, stage_b) for stage_a, stage_b in _stages(trainer.loss.perceptual, gen, images)]
    record = trainer.train_step(images, vectors, marks)
    g, im, v = gen.numpy().astype(np.float64), images.numpy().astype(np.float64), vectors.numpy().astype(np.float64)
    rec = np.mean((g - im) ** 2)
    out = pool.forward_tensor(gen).numpy().astype(np.float64)
    fid = np.mean(1 - (v * out).sum(1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(out, axis=1)))
    ploss = 0.0
    for a, b in feats:
        a, b = a.numpy().astype(np.float64), b.numpy().astype(np.float64)
        na = a / np.maximum(np.sqrt((a**2).sum(1, keepdims=True)), 1e-4)
        nb = b / np.maximum(np.sqrt((b**2).sum(1, keepdims=True)), 1e-4)
        ploss += ((na - nb) ** 2).sum(1).mean(axis=(1, 2))
    ploss = 2 * np.mean(ploss)
    ssim_l = 1 - numpy_ssim(g, im)
    expected = {"rec": rec, "fid": fid, "ploss": ploss, "ssim": ssim_l, "total": rec + 0.2 * ploss + ssim_l + fid}
    for key, value in expected.items():
        assert float(record[key]) == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert fid > 0.01 and ploss > 0.01  # every term is live


def _stages(net, x, y):
    a, b = x.float(), y.float()
    for stage in net.stages:
        a, b = stage(a), stage(b)
        yield a, b


def test_identity_check_generates_each_record_from_its_own_landmark_image(toy, tmp_path):
    """reconstruction.json: each sampled record's image generated from its feature and its landmark image
    (the pose path), embedded by the extractor and compared with the input feature."""
    from facebench.data.tensors import to_uint8

    class Embedder(Pool):
        def embed(self, images):
            out = self.forward_tensor(to_model_input(images, 56)).numpy()
            return out / np.linalg.norm(out, axis=1, keepdims=True)

    from facebench_plugins.vec2face.toy_pose_data import write_toy_landmarks_lmdb

    data = write_toy_landmarks_lmdb(tmp_path / "pooled.lmdb", identities=2, per_identity=4, seed=5,
                                    teacher=lambda x: Pool().forward_tensor(to_model_input(x, 56)).numpy())
    extractor = Embedder()
    trainer = make_trainer(toy, tmp_path / "run", "feature_dim=48", extractor=extractor, data=data)
    stats = trainer.check_identities(8)
    assert json.loads((tmp_path / "run" / "reconstruction.json").read_text()) == stats
    g = torch.Generator().manual_seed(trainer.cfg.seed)
    feats = np.stack([trainer.data.feature(i) for i in range(8)])
    marks = torch.stack([trainer.data.landmark(i) for i in range(8)])
    emb = extractor.embed(to_uint8(trainer.generate(torch.from_numpy(feats), marks, trainer.cfg.masking, g)))
    cos = (feats * emb).sum(1) / np.linalg.norm(feats, axis=1)
    assert stats["samples"] == 8 and stats["genuine_mean"] == pytest.approx(float(cos.mean()), rel=1e-5)
    assert stats["unrelated_pairs"] == 8 * 8 - 2 * 4 * 4


def test_lpips_dropout_is_on_as_released(toy, tmp_path):
    """The release leaves LPIPS in training mode: its dropout (p 0.5) draws new masks every step, so the
    perceptual term changes with the RNG while the others do not; perceptual_dropout=0 makes it fixed."""
    values = {}
    for p in (0.5, 0.0):
        trainer = make_trainer(toy, tmp_path / str(p), f"perceptual_dropout={p}")
        images, vectors, marks = (torch.stack(t) for t in zip(*[trainer.data.record(i) for i in range(8)]))
        gen = torch.tanh(images + 0.3)
        terms = []
        for seed in (1, 2):
            torch.manual_seed(seed)
            t = trainer.loss(vectors, None, None, images, gen, None, 0)
            terms.append((float(t.p_loss.mean()), float(t.rec_loss.mean()), float(t.ssim_loss)))
        values[p] = terms
    (p1, r1, s1), (p2, r2, s2) = values[0.5]
    assert p1 != p2 and (r1, s1) == (r2, s2)
    assert values[0.0][0] == values[0.0][1]
    assert abs(p1 - values[0.0][0][0]) / values[0.0][0][0] < 0.5  # dropout keeps the expected value


def test_linear_warmup_is_torchs_linearlr_then_cosine():
    """The kit's LinearWarmup against torch's SequentialLR(LinearLR, CosineAnnealingLR) stepped per iteration,
    as the release builds it (warm-up, and warm-up 0: cosine alone)."""
    from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR

    from facebench.training import LinearWarmup

    for warmup in (2, 0):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.AdamW([p], lr=1e-4)
        steps, total = 7, 10 * 7
        cosine = CosineAnnealingLR(opt, T_max=total - warmup * steps, eta_min=1e-6)
        sched = (SequentialLR(opt, [LinearLR(opt, 1e-3, 1.0, total_iters=warmup * steps), cosine],
                              milestones=[warmup * steps]) if warmup else cosine)
        ours = LinearWarmup.from_epochs("cosine", epochs=10, steps_per_epoch=steps, warmup_epochs=warmup,
                                        min_factor=1e-2, start_factor=1e-3)
        for step in range(total):
            assert 1e-4 * ours(step) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9), (warmup, step)
            opt.step()
            sched.step()


# ----------------------------------------------------------------------------------------- config, data

def test_shipped_configs_are_the_release_settings():
    from facebench_plugins.vec2face.train_config import PoseTrainConfig, config_class, shipped_config

    from facebench.config import load_config
    from facebench.safe_load import read_toml

    cfg = load_config(PoseTrainConfig, shipped_config("vec2face_plus_pose"))
    assert (cfg.model, cfg.epochs, cfg.batch_size, cfg.lr, cfg.min_lr, cfg.weight_decay) == (
        "vec2face_plus", 10, 64, 1e-4, 1e-6, 0.05)
    assert (cfg.cosine_lr, cfg.warmup_epochs, cfg.warmup_start_factor, cfg.amp, cfg.grad_clip) == (
        True, 1.0, 1e-3, False, 0.0)
    assert (cfg.lora.rank, cfg.lora.alpha, cfg.lora.dropout, cfg.perceptual_dropout) == (8, 32.0, 0.0, 0.5)
    assert (cfg.masking.ratio_min, cfg.masking.ratio_max, cfg.masking.mean, cfg.masking.std) == (0.6, 0.8, 0.7, 0.1)
    assert (cfg.losses.pixel, cfg.losses.perceptual, cfg.losses.ssim, cfg.losses.identity) == (1.0, 0.2, 1.0, 1.0)
    assert cfg == PoseTrainConfig()  # the dataclass defaults are the release's too
    table = read_toml(shipped_config("tiny"))
    assert config_class(table, []).__name__ == "TrainGeneratorConfig"
    assert config_class(table, ['model="vec2face_plus_tiny"']) is PoseTrainConfig


def test_user_errors_are_one_line(toy, whole, tmp_path):
    from facebench.data import encode_image, open_writer

    plain = tmp_path / "plain.lmdb"
    with open_writer(plain, "lmdb", features=True) as w:
        for i in range(8):
            w.add(encode_image(np.full((112, 112, 3), 30 * i, np.uint8), "png"), i % 2,
                  feature=np.ones(512, np.float32))
    res = run(["train-generator", "--data", plain, "--out", tmp_path / "a", *BASE])
    assert res.exit_code == 2 and f"{plain}: holds no landmark images" in res.output
    assert not (tmp_path / "a").exists()
    res = run(["train-generator", "--data", toy / "pose.lmdb", "--out", tmp_path / "b", *BASE, "--set", "lora.rank=0"])
    assert res.exit_code == 2 and "config key 'lora.rank' must be at least 1" in res.output
    res = run(["train-generator", "--data", toy / "pose.lmdb", "--config", "tiny", "--set",
               'model="vec2face_plus_tiny_pose"', "--out", tmp_path / "c"])
    assert res.exit_code == 2 and "has LoRA adapters, which Vec2Face+ trains with its pose model" in res.output
    res = run(["train-generator", "--data", toy / "pose.lmdb", "--out", tmp_path / "d", *BASE[2:], "--config",
               "vec2face_plus_pose_tiny", "--set", "losses.identity=1"])
    assert res.exit_code == 2 and "the identity loss needs a frozen FR extractor" in res.output
    res = run(["train-generator", "--data", toy / "pose.lmdb", "--out", tmp_path / "e", *BASE, "--set",
               "losses.feature_map=1"])
    assert res.exit_code == 2 and "unknown config key 'losses.feature_map'" in res.output
    out = tmp_path / "twice"
    shutil.copytree(whole[0], out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    same = ["train-generator", "--data", toy / "pose.lmdb", "--init", toy / "main_model.pth", "--out", out, *BASE]
    res = run(same)  # the rerun contract: the same command on a finished run does nothing
    assert res.exit_code == 0 and "already complete" in res.output and "nothing to do" in res.output, res.output
    res = run(["train-generator", "--data", toy / "pose.lmdb", "--out", out, *BASE])  # without --init
    assert res.exit_code == 2 and "(inputs.init); pass --overwrite" in " ".join(res.output.split())
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_a_broken_landmark_image_met_in_a_dataloader_worker_is_one_line(toy, tmp_path):
    """torch re-raises a worker's exception as ``type(exc)(message)``, which a DataError cannot be built from
    (a RuntimeError traceback): the record's error crosses to the main process as a value instead. (Here, not
    in tests/hostile: a worker talks to its parent over a socket, which the hostile suite's no-network guard
    refuses.)"""
    import lmdb
    import msgpack

    data = tmp_path / "broken.lmdb"
    shutil.copy(toy / "pose.lmdb", data)
    env = lmdb.open(str(data), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        record = msgpack.unpackb(txn.get(b"5"), raw=True)
        txn.put(b"5", msgpack.packb([*record[:3], b"\xff\xd8 a truncated JPEG"], use_bin_type=True))
    env.close()
    res = CliRunner().invoke(create_cli(), [str(a) for a in ["train-generator", "--data", data, "--out",
                                                             tmp_path / "run", *BASE, "--set", "num_workers=1"]])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"{data}: " in errors[0] and "at key 5 (landmark image)" in errors[0]
    assert "Traceback" not in res.output and not (tmp_path / "run").exists()


def test_help_has_the_pose_model_example():
    res = run(["train-generator", "--help"])
    assert res.exit_code == 0 and "--config vec2face_plus_pose --data WebFace4M_with_landmarks.lmdb" in res.output


def test_toy_landmarks_are_where_toyfaces_draws_the_features():
    """Frontal, unrolled: eyes level and mirrored about the nose; the pupil under each eye point is dark. Rolled:
    the points turn with the photo about the face centre."""
    from dataclasses import replace

    from facebench_plugins.toyfaces.params import Difficulty, rng_for, sample_identity, sample_nuisance
    from facebench_plugins.toyfaces.render import face_landmarks, render_face

    ident = sample_identity(rng_for(0, 1, 2))
    nz = replace(sample_nuisance(rng_for(0, 3, 4), ident, Difficulty()), yaw=0.0, pitch=0.0, roll=0.0, dx=0.0,
                 dy=0.0, squint=0.0)
    pts = face_landmarks(ident, nz, 112)
    assert pts[0, 1] == pytest.approx(pts[1, 1]) and pts[0, 0] + pts[1, 0] == pytest.approx(2 * pts[2, 0])
    assert pts[2, 1] > pts[0, 1] and pts[3, 1] > pts[2, 1]  # nose below the eyes, mouth below the nose
    image = render_face(ident, nz, 112).astype(float).mean(axis=2)
    for x, y in pts[:2]:
        assert image[int(y), int(x)] < np.median(image) - 40
    rolled = face_landmarks(ident, replace(nz, roll=30.0), 112)
    centre = np.array([56.0, 56.0 + 0.06 * 56])  # the head's projected centre (FACE_CENTER)
    t = math.radians(30.0)
    rot = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
    np.testing.assert_allclose(rolled, (pts - centre) @ rot.T + centre, atol=1e-9)


_TRAIN_ON_TWO_RANKS = """
import sys
from pathlib import Path
import torch
import facebench
from facebench.config import load_config
from facebench_plugins.vec2face.pose_training import PoseTrainer
from facebench_plugins.vec2face.train_config import PoseTrainConfig, shipped_config

torch.set_num_threads(1)
tmp = Path(sys.argv[1])
cfg = load_config(PoseTrainConfig, shipped_config("vec2face_plus_pose_tiny"),
                  ['device="cpu"', "batch_size=4", "epochs=1", "eval_samples=0", "grid_samples=0", "losses.identity=0"])
trainer = PoseTrainer(cfg, facebench.data.open_dataset(tmp / "pose.lmdb"), None, tmp / "run")
start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
trainer.fit()
torch.save({"model": trainer.model.state_dict(), "pose": trainer.pose.state_dict(), "start": start},
           tmp / f"rank{trainer.dist.rank}.pt")
trainer.close()
"""


def test_two_ranks_average_the_adapters_as_well_as_the_pose_model(toy, tmp_path):
    """Under torchrun both ranks end with the same adapters and pose model: the adapters' gradients are
    averaged with the pose model's (the release wraps only the pose model in DDP, so its ranks' adapters drift
    apart); 2 ranks x 4 images make the global batch of 8, 2 steps."""
    import os
    import subprocess

    from conftest import torchrun

    shutil.copy(toy / "pose.lmdb", tmp_path / "pose.lmdb")
    script = tmp_path / "ranks.py"
    script.write_text(_TRAIN_ON_TWO_RANKS)
    done = subprocess.run(torchrun(str(script), str(tmp_path)), env=dict(os.environ, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert metrics_rows(tmp_path / "run")[-1]["step"] == 2
    for key in ("model", "pose"):
        assert all(torch.equal(r0[key][k], r1[key][k]) for k in r0[key]), key
    moved = [k for k in r0["model"] if not torch.equal(r0["model"][k], r0["start"][k])]
    assert moved and all(is_adapter(k) for k in moved)
