"""Acceptance: a tiny Vec2Face trained on toyfaces reconstructs identities.

The teacher is the tiny FR recipe trained on the same toy world (``train-fr --recipe tiny-arcface``); the
generator is trained with ``train-generator --extractor fr-run --weights TEACHER`` and the final identity
check compares, through the teacher, each input feature with the image generated from it (genuine) and
with images of other identities (unrelated), recomputed here independently from the saved generator.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import facebench
from facebench.cli import create_cli


def invoke(args):
    res = CliRunner().invoke(create_cli(), args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def test_tiny_vec2face_trained_on_toyfaces_reconstructs_identities(tmp_path):
    toy, teacher, run = tmp_path / "toy", tmp_path / "teacher", tmp_path / "v2f"
    invoke(["toyfaces", "build", str(toy), "--identities", "12", "--images-per-identity", "6", "--size", "56",
            "--pairs", "20", "--packs", "toy_lfw", "--workers", "1"])
    invoke(["train-fr", "--recipe", "tiny-arcface", "--data", str(toy / "train"), "--out", str(teacher),
            "--device", "cpu", "--set", "optim.epochs=10", "--set", "optim.batch_per_gpu=24"])
    res = invoke(["train-generator", "--config", "tiny", "--data", str(toy / "train"), "--extractor", "fr-run",
                  "--weights", str(teacher), "--out", str(run), "--set", "epochs=4", "--set", "batch_size=12",
                  "--set", "disc_start=3", "--set", "eval_samples=72", "--set", "grid_samples=4"])
    assert "identity check (fr-run, 72 images)" in res.output
    reported = json.loads((run / "reconstruction.json").read_text())

    # independent recomputation from the saved files: features, generator and teacher reloaded
    ext = facebench.registry("feature_extractor").create("fr-run", weights=str(teacher))
    reader = facebench.data.open_dataset(toy / "train")
    feats = np.load(run / "features.npy")
    # the extractor's raw features (the image alone, unnormalised) are what the generator trained on
    raw = ext.embed(np.stack([reader.image(i) for i in range(4)]), raw=True)
    np.testing.assert_allclose(feats[:4], raw, rtol=1e-4, atol=1e-4)
    scale = torch.load(run / "generator.pth", weights_only=True)["feature_scale"]
    assert scale == {"median_norm": pytest.approx(float(np.median(np.linalg.norm(feats, axis=1))), rel=1e-5),
                     "extractor": "fr-run", "source": "extractor", "raw": True}
    idx = np.unique(np.linspace(0, len(reader) - 1, num=72).round().astype(int))
    gen = facebench.load_generator("vec2face_tiny", weights=run / "generator.pth", seed=0)
    images = gen.generate(feats[idx])
    pix = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    emb = ext.embed(pix)
    unit = feats[idx] / np.linalg.norm(feats[idx], axis=1, keepdims=True)
    sims = unit @ emb.T
    labels = reader.labels[idx]
    genuine = float(np.diag(sims).mean())
    unrelated = float(sims[labels[:, None] != labels[None, :]].mean())
    print(f"genuine {genuine:.3f} unrelated {unrelated:.3f}")
    assert abs(genuine - reported["genuine_mean"]) < 1e-3 and abs(unrelated - reported["unrelated_mean"]) < 1e-3
    assert genuine > unrelated + 0.15
