"""``facebench generate`` with the real (tiny) Vec2Face generator and the built-in dataset formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facebench.cli import create_cli
from facebench.data import open_dataset
from facebench.generation import sharded as generation


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    import facebench

    torch.manual_seed(0)
    gen = facebench.load_generator("vec2face_tiny")
    path = tmp_path_factory.mktemp("weights") / "vec2face_tiny.pth"
    torch.save({"model_vec2face": gen.model.state_dict()}, path)
    ids = np.random.default_rng(0).standard_normal((4, gen.feature_dim)).astype(np.float32) * 1.2
    np.save(path.parent / "ids.npy", ids)
    return path


def _args(weights, out, fmt):
    return ["generate", "--generator", "vec2face_tiny", "--weights", str(weights), "--ids",
            str(weights.parent / "ids.npy"), "--images-per-id", "3", "--ids-per-shard", "2", "--batch-size", "6",
            "--out", str(out), "--format", fmt, "--device", "cpu"]


def _files(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in ("provenance.json", "config.toml", "manifest.json")}


@pytest.mark.parametrize("fmt", ["folder", "rec"])
def test_vec2face_dataset_reads_back_and_resumes_byte_for_byte(tmp_path, tiny_weights, monkeypatch, fmt):
    full = tmp_path / "full"
    res = CliRunner().invoke(create_cli(), _args(tiny_weights, full, fmt))
    assert res.exit_code == 0, res.output
    reader = open_dataset(full / f"dataset.{fmt}")
    assert len(reader) == 12 and reader.num_classes == 4
    assert np.bincount(reader.labels).tolist() == [3, 3, 3, 3]
    assert reader.image(0).shape == (56, 56, 3)
    assert json.loads((full / "dataset.json").read_text())["dataset"] == f"dataset.{fmt}"
    if fmt == "folder":  # images of one identity are closer to each other than to other identities'
        order = np.argsort(reader.labels, kind="stable")
        imgs = np.stack([reader.image(int(i)).astype(float).ravel() for i in order]).reshape(4, 3, -1)
        within = np.mean([np.abs(g[a] - g[b]).mean() for g in imgs for a in range(3) for b in range(a + 1, 3)])
        across = np.mean([np.abs(imgs[i, 0] - imgs[j, 0]).mean() for i in range(4) for j in range(i + 1, 4)])
        assert within < across

    real = generation.generate_shard
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    part = tmp_path / "part"
    monkeypatch.setattr(generation, "generate_shard", interrupted)
    assert CliRunner().invoke(create_cli(), _args(tiny_weights, part, fmt)).exit_code == 130
    monkeypatch.setattr(generation, "generate_shard", real)
    res = CliRunner().invoke(create_cli(), _args(tiny_weights, part, fmt))
    assert res.exit_code == 0, res.output
    assert "generated 1 of 2 shards in this run" in res.output
    assert _files(part) == _files(full)


def test_vec2face_lmdb_dataset(tmp_path, tiny_weights):
    out = tmp_path / "run"
    res = CliRunner().invoke(create_cli(), _args(tiny_weights, out, "lmdb"))
    assert res.exit_code == 0, res.output
    reader = open_dataset(out / "dataset.lmdb")
    assert len(reader) == 12 and reader.num_classes == 4
    folder = tmp_path / "folder"
    assert CliRunner().invoke(create_cli(), _args(tiny_weights, folder, "folder")).exit_code == 0
    other = open_dataset(folder / "dataset.folder")
    # the same images whatever the container (both store the same encoded JPEG bytes)
    assert sorted(reader.image_bytes(i) for i in range(12)) == sorted(other.image_bytes(i) for i in range(12))
