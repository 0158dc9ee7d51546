"""``facebench generate`` as the release runs it: feature-scale contract, untrained models, identity
pre-pass, finished runs rerun with other parameters, absent devices, reduced-precision generation."""

from __future__ import annotations

import json

import conftest as fx
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import facebench
from facebench.cli import create_cli
from facebench.data import open_dataset

RAW_NORM = 22.0


def _weights(path, *, median_norm=None, release=False):
    """A tiny Vec2Face weights file: release layout (state dict only) or facebench's (config + scale)."""
    from facebench_plugins.vec2face.generator import CONFIG_KEY, FEATURE_SCALE_KEY, STATE_KEY

    gen = facebench.load_generator("vec2face_tiny", seed=3)
    payload = {STATE_KEY: gen.model.state_dict()}
    if not release:
        payload[CONFIG_KEY] = gen.model.config.to_dict()
        payload[FEATURE_SCALE_KEY] = {"median_norm": median_norm, "extractor": "fr-run", "source": "extractor",
                                      "raw": True}
    torch.save(payload, path)
    return path


def _ids(path, norm, n=4, seed=0):
    v = np.random.default_rng(seed).standard_normal((n, 512))
    np.save(path, (v / np.linalg.norm(v, axis=1, keepdims=True) * norm).astype(np.float32))
    return path


def _args(weights, ids, out, *extra):
    return ["generate", "--generator", "vec2face_tiny", "--weights", str(weights), "--ids", str(ids),
            "--images-per-id", "3", "--ids-per-shard", "2", "--out", str(out), "--device", "cpu", *extra]


def test_unit_ids_with_a_raw_scale_generator_stop_before_any_shard(tmp_path):
    weights = _weights(tmp_path / "g.pth", median_norm=RAW_NORM)
    unit = _ids(tmp_path / "unit.npy", 1.0)
    out = tmp_path / "run"
    res = CliRunner().invoke(create_cli(), _args(weights, unit, out))
    assert res.exit_code == 2
    message = " ".join(res.output.split())
    assert message.startswith(f"error: {unit}: identity vectors have median norm 1 but the generator expects norm 22")
    assert "recorded in g.pth" in message and "--rescale-ids" in message
    assert not out.exists()  # nothing written: no shard, no ids, no half-made run folder

    res = CliRunner().invoke(create_cli(), _args(weights, unit, out, "--rescale-ids"))
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "dataset.json").read_text())
    assert summary["settings"]["rescale_ids"] is True
    assert summary["ids_scale"]["factor"] == pytest.approx(RAW_NORM, rel=1e-5)
    assert summary["ids_scale"]["ids_median_norm"] == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_array_equal(np.load(out / "ids.npy"), np.load(unit))  # the user's vectors, unscaled


def test_raw_ids_pass_and_the_release_checkpoint_expects_arcface_scale(tmp_path):
    raw = _ids(tmp_path / "raw.npy", 18.0)  # identity centres are a little shorter than per-image features
    ours = _weights(tmp_path / "ours.pth", median_norm=RAW_NORM)
    res = CliRunner().invoke(create_cli(), _args(ours, raw, tmp_path / "a"))
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "a" / "dataset.json").read_text())["ids_scale"]["factor"] == 1.0
    release = _weights(tmp_path / "vec2face_generator.pth", release=True)  # no recorded scale
    assert CliRunner().invoke(create_cli(), _args(release, raw, tmp_path / "b")).exit_code == 0
    res = CliRunner().invoke(create_cli(), _args(release, _ids(tmp_path / "u.npy", 1.0), tmp_path / "c"))
    assert res.exit_code == 2
    assert "expects norm 22 (range 10 to 40; the released checkpoint was trained on raw ArcFace-R100" in \
        " ".join(res.output.split())


def test_a_generator_without_weights_needs_untrained(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEBENCH_WEIGHTS", str(tmp_path / "empty"))
    ids = _ids(tmp_path / "ids.npy", RAW_NORM)
    base = ["generate", "--ids", str(ids), "--images-per-id", "2", "--device", "cpu"]
    res = CliRunner().invoke(create_cli(), [*base, "--generator", "vec2face", "--out", str(tmp_path / "a")])
    assert res.exit_code == 2
    assert ("generator 'vec2face' needs weights (its file vec2face_generator.pth is not in the weights directory "
            f"{tmp_path / 'empty'}): pass --weights FILE, or --untrained") in " ".join(res.output.split())
    res = CliRunner().invoke(create_cli(), [*base, "--generator", "vec2face_tiny", "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "generator 'vec2face_tiny' needs weights (none given)" in res.output
    assert not (tmp_path / "b").exists()
    res = CliRunner().invoke(create_cli(), [*base, "--generator", "vec2face_tiny", "--untrained",
                                            "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "b" / "dataset.json").read_text())["generator_info"]
    assert info["untrained"] is True and info["weights"] is None
    # a procedural generator has no weights to miss
    res = CliRunner().invoke(create_cli(), [*base, "--generator", "noise_projection", "--out", str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    assert "untrained" not in json.loads((tmp_path / "c" / "dataset.json").read_text())["generator_info"]


def test_an_attrop_model_without_weights_needs_untrained(tmp_path):
    weights = _weights(tmp_path / "g.pth", median_norm=RAW_NORM)
    ids = _ids(tmp_path / "ids.npy", RAW_NORM, n=2)
    attrop = ["--attrop", "pose=60:0.5", "--attrop-identity", "se_iresnet_tiny", "--attrop-pose", "sixdrepnet-tiny",
              "--set", "attrop.steps=1", "--set", "attrop.max_steps=1"]
    res = CliRunner().invoke(create_cli(), _args(weights, ids, tmp_path / "a", *attrop))
    assert res.exit_code == 2
    assert ("AttrOP pose extractor 'sixdrepnet-tiny' has no weights: pass --attrop-pose-weights FILE, or "
            "--untrained") in " ".join(res.output.split())


def test_a_finished_run_rerun_with_other_parameters_is_refused_naming_them(tmp_path):
    weights = _weights(tmp_path / "g.pth", median_norm=RAW_NORM)
    other = _weights(tmp_path / "other.pth", median_norm=RAW_NORM)
    with torch.no_grad():  # other weights, same layout
        state = torch.load(other, weights_only=True)
        state["model_vec2face"]["decoder_norm.bias"] += 1
        torch.save(state, other)
    ids = _ids(tmp_path / "ids.npy", RAW_NORM)
    out = tmp_path / "run"
    assert CliRunner().invoke(create_cli(), _args(weights, ids, out)).exit_code == 0
    same = CliRunner().invoke(create_cli(), _args(weights, ids, out))
    assert same.exit_code == 0 and "already complete" in same.output
    for extra, changed in (
        (["--images-per-id", "4"], "config.images_per_id"),
        (["--set", "generation.perturb.sigmas=[0.2, 0.5, 0.7]"], "config.perturb.sigmas"),
        (["--seed", "5"], "config.seed"),
    ):
        res = CliRunner().invoke(create_cli(), _args(weights, ids, out, *extra))
        assert res.exit_code == 2, extra
        assert f"{out}: holds a finished dataset made with other parameters ({changed}" in " ".join(res.output.split())
    res = CliRunner().invoke(create_cli(), _args(other, ids, out))
    assert res.exit_code == 2 and "generator_info.weights, generator_info.weights_sha256" in res.output
    res = CliRunner().invoke(create_cli(), _args(weights, _ids(tmp_path / "ids2.npy", RAW_NORM, seed=1), out))
    assert res.exit_code == 2 and "(ids_sha256, ids_source.file, ids_source.sha256)" in res.output


def _mean_quality(path):
    reader = open_dataset(path)
    images = np.stack([reader.image(i) for i in range(len(reader))])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    return float(fx.ToyQuality().forward_tensor(x).norm(dim=1).mean())


def test_identity_prepass_updates_the_identity_vectors_and_is_recorded(tmp_path, monkeypatch):
    ids = tmp_path / "ids.npy"
    np.save(ids, np.random.default_rng(0).standard_normal((6, fx.DIM)).astype(np.float32) * 1.5)
    base = ["generate", "--generator", "tinygen", "--ids", str(ids), "--images-per-id", "4", "--ids-per-shard", "3",
            "--format", "testfolder", "--device", "cpu", "--attrop-identity", "toy-identity",
            "--attrop-quality", "toy-quality"]
    plain = CliRunner().invoke(fx.gen_cli(monkeypatch), [*base, "--out", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.output
    pre = CliRunner().invoke(fx.gen_cli(monkeypatch), [*base, "--out", str(tmp_path / "pre"), "--identity-prepass",
                                                   "--set", "attrop.prepass_quality=12",
                                                   "--set", "attrop.prepass_max_steps=30"])
    assert pre.exit_code == 0, pre.output
    summary = json.loads((tmp_path / "pre" / "dataset.json").read_text())
    stats = summary["stats"]["prepass"]
    assert stats["images"] == 6 and stats["met"] + stats["unmet"] == 6 and stats["met"] >= 5
    assert summary["attrop"]["identity_prepass"] is True and summary["attrop"]["prepass_quality"] == 12
    assert f"identity pre-pass: 6 identity vectors optimised, {stats['met']} met every target" in pre.output
    assert "prepass" not in json.loads((tmp_path / "plain" / "dataset.json").read_text())["stats"]
    # the perturbed images were made from the updated identities: their quality rose toward the target
    q_plain = _mean_quality(tmp_path / "plain" / "dataset.testfolder")
    q_pre = _mean_quality(tmp_path / "pre" / "dataset.testfolder")
    assert q_pre > q_plain + 2, (q_plain, q_pre)


@pytest.mark.parametrize("command", [
    ["generate", "--ids", "ids.npy", "--out", "run"],
    ["sample-ids", "--features", "f.npy", "--n", "3", "--out", "ids.npy"],
    ["embed", "data", "--extractor", "fr-run", "--out", "f.npy"],
    ["evaluate", "--suite", "toy-five", "--model", "run"],
    ["analyze", "data", "--extractor", "fr-run", "--weights", "run"],
    ["train-fr", "--recipe", "tiny-arcface", "--data", "data"],
    ["train-generator", "--config", "tiny", "--data", "."],
])
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_an_absent_device_is_one_error_line_on_every_command(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(create_cli(), [*command, "--device", "cuda"])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "error: Invalid value for '--device': device 'cuda' requested but CUDA is not available; use --device cpu"]
    assert list(tmp_path.iterdir()) == []


def test_reduced_precision_generation_agrees_with_fp32(tmp_path):
    """bf16 autocast on CPU stands in for CUDA fp16/bf16: pixels and identity stay those of fp32."""
    gen32 = facebench.load_generator("vec2face_tiny", seed=3)
    gen16 = facebench.load_generator("vec2face_tiny", seed=3, amp=True, amp_dtype="bfloat16")
    assert gen16.amp and gen16.amp_dtype == torch.bfloat16 and not gen32.amp
    vectors = torch.from_numpy(np.load(_ids(tmp_path / "ids.npy", RAW_NORM, n=8)))
    masks = gen32.sample_masks(8)
    a, b = gen32.generate(vectors, masks=masks), gen16.generate(vectors, masks=masks)
    assert a.dtype == b.dtype == torch.float32
    pixel = float((a - b).abs().max())
    extractor = facebench.create_backbone("se_iresnet_tiny").eval()
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(extractor(a), extractor(b)).min().item()
    print(f"bf16 vs fp32: max abs pixel difference {pixel:.4f} (of range 2), min identity cosine {cos:.5f}")
    assert 0 < pixel < 0.1 and cos > 0.99

