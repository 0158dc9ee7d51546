"""The toyfaces world: determinism, pack structure, formats, identity signal and the build command."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from facebench_plugins.toyfaces.build import ToyConfig, build_world
from facebench_plugins.toyfaces.packs import PACKS
from facebench_plugins.toyfaces.params import (
    Difficulty,
    identity_vector,
    rng_for,
    sample_identity,
    sample_nuisance,
    stream_key,
)
from facebench_plugins.toyfaces.render import render_face

from facebench.cli import create_cli
from facebench.config import read_toml
from facebench.data import open_dataset, open_pairs

TINY = {"identities": 5, "images_per_identity": 3, "pairs": 40, "size": 32}


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "provenance.json"}


def run(*args):
    return CliRunner().invoke(create_cli(), [str(a) for a in args], catch_exceptions=False)


def test_build_command_writes_training_set_and_all_packs(tmp_path):
    result = run("toyfaces", "build", tmp_path / "toy", "--identities", 5, "--images-per-identity", 3,
                 "--pairs", 40, "--size", 32, "--workers", 1)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "toy" / "dataset.json").read_text())
    assert record["identities"] == 5 and record["images"] == 15 and set(record["packs"]) == set(PACKS)
    train = open_dataset(tmp_path / "toy" / "train")
    assert len(train) == 15 and train.num_classes == 5 and train.image(0).shape == (32, 32, 3)
    assert train.labels.tolist() == [i // 3 for i in range(15)]
    for name in PACKS:
        pack = open_pairs(tmp_path / "toy" / f"{name}.bin")
        assert len(pack) == 40
        # 10 folds of 4 pairs, the same-identity half first in each fold (LFW layout).
        assert pack.issame.tolist() == [True, True, False, False] * 10
        assert pack.pair_images(0)[0].shape == (32, 32, 3)
    assert (tmp_path / "toy" / "provenance.json").is_file()
    world = run("data", "info", tmp_path / "toy", "--json")  # the world folder stands for its training set
    assert world.exit_code == 0 and json.loads(world.output)["path"] == str(tmp_path / "toy" / "train")
    config = read_toml(tmp_path / "toy" / "config.toml")
    assert config["identities"] == 5 and config["difficulty"]["yaw_sigma"] == Difficulty().yaw_sigma


def test_same_seed_gives_byte_identical_files_whatever_the_workers(tmp_path):
    build_world(tmp_path / "a", ToyConfig(**TINY, seed=7), workers=1)
    build_world(tmp_path / "b", ToyConfig(**TINY, seed=7), workers=2)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    build_world(tmp_path / "c", ToyConfig(**TINY, seed=8), workers=1)
    c = _files(tmp_path / "c")
    images = [k for k in a if k.startswith("train/")]
    assert images and all(a[k] != c[k] for k in images)
    assert a["toy_lfw.bin"] != c["toy_lfw.bin"]


@pytest.mark.parametrize("fmt,path", [("rec", "train"), ("lmdb", "train.lmdb")])
def test_other_training_formats(tmp_path, fmt, path):
    build_world(tmp_path / "w", ToyConfig(**TINY, format=fmt, packs=["toy_lfw"]), workers=1)
    reader = open_dataset(tmp_path / "w" / path)
    assert reader.format_name == fmt and len(reader) == 15 and reader.num_classes == 5
    assert sorted(p.name for p in (tmp_path / "w").iterdir() if p.suffix == ".bin") == ["toy_lfw.bin"]


def test_pack_identities_are_disjoint_from_training_identities():
    def vectors(stream, n):
        return {identity_vector(sample_identity(rng_for(0, stream_key(stream), i))).tobytes() for i in range(n)}

    train = vectors("train", 300)
    for name in PACKS:
        assert not train & vectors(name, 300)
    assert len(train) == 300


def test_identity_survives_nuisance_better_than_across_identities():
    """Pixel distance between photos of one person is smaller than between people (on average)."""
    d = Difficulty()
    people = [sample_identity(rng_for(1, 99, i)) for i in range(12)]
    photos = np.stack([[render_face(p, sample_nuisance(rng_for(1, 98, i, j), p, d.scaled(0.3)), 32)
                        for j in range(2)] for i, p in enumerate(people)]).astype(np.float32)
    same = np.mean([np.abs(photos[i, 0] - photos[i, 1]).mean() for i in range(12)])
    diff = np.mean([np.abs(photos[i, 0] - photos[(i + 1) % 12, 1]).mean() for i in range(12)])
    assert same < diff


def test_difficulty_knobs_change_the_photos():
    person = sample_identity(rng_for(0, 1, 0))
    calm = sample_nuisance(rng_for(0, 2, 0), person, Difficulty().scaled(0.0))
    assert (calm.yaw, calm.roll, calm.blur, calm.light) == (0.0, 0.0, 0.0, 0.0)
    np.testing.assert_array_equal(render_face(person, calm, 48), render_face(person, calm, 48))
    wild = sample_nuisance(rng_for(0, 2, 0), person, Difficulty(yaw_sigma=40))
    assert abs(wild.yaw) > 0 and not np.array_equal(render_face(person, wild, 48), render_face(person, calm, 48))


def test_bad_options_are_one_line_errors(tmp_path):
    result = run("toyfaces", "build", tmp_path / "x", "--pairs", 30)
    assert result.exit_code == 2 and "multiple of 20" in result.output
    result = run("toyfaces", "build", tmp_path / "x", "--packs", "toy_lfw,toy_nope")
    assert result.exit_code == 2 and "unknown toyfaces pack(s) toy_nope" in result.output
    result = run("toyfaces", "build", tmp_path / "x", "--set", "difficulty.yaw=3")
    assert result.exit_code == 2 and "unknown config key 'difficulty.yaw'" in result.output
    assert not (tmp_path / "x").exists()


def test_interrupted_build_resumes_from_finished_shards(tmp_path, monkeypatch):
    from facebench_plugins.toyfaces import build as build_module

    cfg = ToyConfig(identities=70, images_per_identity=1, pairs=20, size=24, packs=["toy_lfw"])
    calls = []
    real = build_module._render_shard

    def failing(job):
        calls.append(job[:2])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(build_module, "_render_shard", failing)
    with pytest.raises(KeyboardInterrupt):
        build_world(tmp_path / "w", cfg, workers=1)
    assert not (tmp_path / "w").exists()
    assert json.loads((tmp_path / ".w.partial" / "manifest.json").read_text())["done"] == {"train-00000000": True}
    calls.clear()
    monkeypatch.setattr(build_module, "_render_shard", lambda job: calls.append(job[:2]) or real(job))
    build_world(tmp_path / "w", cfg, workers=1)
    assert calls == [("train", 32), ("train", 64), ("toy_lfw", 0)]  # the finished shard was not redone
    assert not (tmp_path / ".w.partial").exists()
    build_world(tmp_path / "fresh", cfg, workers=1)
    assert _files(tmp_path / "w") == _files(tmp_path / "fresh")
    changed = ToyConfig(identities=70, images_per_identity=1, pairs=20, size=24, packs=["toy_lfw"], seed=1)
    (tmp_path / ".x.partial").mkdir()
    (tmp_path / ".x.partial" / "manifest.json").write_text(json.dumps({"params": {"toyfaces": {}}, "done": {}}))
    with pytest.raises(Exception, match="cannot resume: parameters differ"):
        build_world(tmp_path / "x", changed, workers=1)
