"""A command that fails leaves no half-made run folder behind: refused before any work, or failing before
it wrote anything to resume from (train-fr, evaluate, train-generator), its run folder is gone again;
a folder that existed before is left alone."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import cli_in

from facebench.runs import discard_on_failure


def test_discard_on_failure_keeps_what_can_resume_and_what_was_there(tmp_path):
    with pytest.raises(RuntimeError), discard_on_failure(tmp_path / "new") as run:
        run.mkdir()
        (run / "config.toml").write_text("x = 1\n")
        raise RuntimeError("failed before any work")
    assert not (tmp_path / "new").exists()
    with pytest.raises(RuntimeError), discard_on_failure(tmp_path / "resumable") as run:
        run.mkdir()
        (run / "checkpoint.pt").write_bytes(b"state")
        raise RuntimeError("failed after a checkpoint")
    assert (tmp_path / "resumable" / "checkpoint.pt").is_file()
    (tmp_path / "mine").mkdir()
    with pytest.raises(RuntimeError), discard_on_failure(tmp_path / "mine"):
        raise RuntimeError("failed in a folder the user made")
    assert (tmp_path / "mine").is_dir()


def _one_error(result):
    assert result.exit_code == 2, result.output
    return [line for line in result.output.splitlines() if line.startswith("error:")][-1]


def test_failed_commands_leave_no_run_folder(workflow, tmp_path):
    home = tmp_path
    shutil.copytree(workflow.home / "toy", home / "toy")
    shutil.copytree(workflow.home / "runs" / "tiny", home / "runs" / "tiny", ignore=shutil.ignore_patterns("eval-*"))
    # a training set whose images cannot be decoded: train-fr fails in its first step
    broken = home / "broken"
    shutil.copytree(home / "toy" / "train", broken)
    for image in broken.rglob("*.jpg"):
        image.write_bytes(b"not a jpeg")
    error = _one_error(cli_in(home, "train-fr", "--recipe", "tiny-arcface", "--data", "broken", "--out", "runs/b"))
    assert "broken" in error
    assert not (home / "runs" / "b").exists()
    # a verification pack that is not one: evaluate fails on it
    (home / "bad").mkdir()
    (home / "bad" / "toy_lfw.bin").write_bytes(b"\x80\x04garbage")
    _one_error(cli_in(home, "evaluate", "--suite", "toy_lfw", "--model", "runs/tiny", "--data-root", "bad"))
    assert not (home / "runs" / "tiny" / "eval-toy_lfw").exists()
    # features of the wrong shape: train-generator fails before its first step
    np.save(home / "feats.npy", np.zeros((3, 512), np.float32))
    _one_error(cli_in(home, "train-generator", "--config", "tiny", "--data", "toy/train", "--features", "feats.npy",
                      "--out", "runs/v2f"))
    assert not (home / "runs" / "v2f").exists()


def test_generate_failing_in_its_first_shard_leaves_no_run_folder(tmp_path, monkeypatch):
    from facebench_plugins.baselines.noise import NoiseProjectionGenerator

    from facebench.errors import FacebenchError

    calls = []

    def fails_on_the_second_batch(self, vectors, **kwargs):
        calls.append(len(vectors))
        if len(calls) > 1:
            raise FacebenchError("noise_projection: out of memory (a test's failure)")
        return real(self, vectors, **kwargs)

    real = NoiseProjectionGenerator.generate
    monkeypatch.setattr(NoiseProjectionGenerator, "generate", fails_on_the_second_batch)
    np.save(tmp_path / "ids.npy", np.random.default_rng(0).standard_normal((6, 512)).astype(np.float32) * 20)
    args = ["generate", "--generator", "noise_projection", "--ids", "ids.npy", "--images-per-id", "2",
            "--set", "generation.batch_size=4", "--device", "cpu"]
    error = _one_error(cli_in(tmp_path, *args, "--out", "runs/gen"))
    assert "out of memory (a test's failure)" in error
    assert not (tmp_path / "runs" / "gen").exists()
    # a run with a finished shard keeps its folder, and the same command resumes it
    calls.clear()
    _one_error(cli_in(tmp_path, *args, "--set", "generation.ids_per_shard=2", "--out", "runs/kept"))
    manifest = json.loads((tmp_path / "runs" / "kept" / "manifest.json").read_text())
    assert manifest["done"]
    monkeypatch.setattr(NoiseProjectionGenerator, "generate", real)
    assert cli_in(tmp_path, *args, "--set", "generation.ids_per_shard=2", "--out", "runs/kept").exit_code == 0


def test_toyfaces_build_failing_before_its_first_shard_leaves_nothing(tmp_path, monkeypatch):
    from facebench_plugins.toyfaces import build

    from facebench.errors import FacebenchError

    def fails(pool, fn, jobs):
        raise FacebenchError("rendering failed (a test's failure)")

    monkeypatch.setattr(build, "_map", fails)
    error = _one_error(cli_in(tmp_path, "toyfaces", "build", "toy", "--identities", "4", "--images-per-identity", "2",
                              "--size", "24", "--pairs", "40", "--packs", "toy_lfw"))
    assert "rendering failed" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither toy nor .toy.partial
