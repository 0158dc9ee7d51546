"""``facebench generate``: sharded writing, read-back, resume after an interruption or kill -9."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import conftest as fx
import numpy as np
import pytest
from click.testing import CliRunner

from facebench.generation import sharded as generation

HERE = Path(__file__).resolve().parent


def _ids(path: Path, n=12, d=fx.DIM, seed=0) -> Path:
    np.save(path, np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32) * 1.5)
    return path


def _args(ids: Path, out: Path, *extra: str) -> list[str]:
    return ["generate", "--generator", "tinygen", "--ids", str(ids), "--images-per-id", "4", "--ids-per-shard", "2",
            "--batch-size", "3", "--out", str(out), "--format", "testfolder", "--device", "cpu", *extra]


def _dataset_bytes(out: Path) -> dict[str, bytes]:
    files = {f"dataset/{k}": v for k, v in fx.tree_bytes(out / "dataset.testfolder").items()}
    files["ids.npy"] = (out / "ids.npy").read_bytes()
    files["dataset.json"] = (out / "dataset.json").read_bytes()
    return files


def test_generate_writes_a_readable_dataset(tmp_path, monkeypatch):
    ids = _ids(tmp_path / "ids.npy")
    out = tmp_path / "run"
    res = CliRunner().invoke(fx.gen_cli(monkeypatch), _args(ids, out))
    assert res.exit_code == 0, res.output
    assert "generated 6 of 6 shards in this run; wrote 48 images of 12 identities" in res.output
    reader = fx.TestFolderFormat().open(out / "dataset.testfolder")
    assert len(reader) == 48 and reader.num_classes == 12
    assert np.bincount(reader.labels).tolist() == [4] * 12
    assert reader.image(0).shape == (16, 16, 3)
    summary = json.loads((out / "dataset.json").read_text())
    assert summary["identities"] == 12 and summary["images"] == 48 and summary["format"] == "testfolder"
    assert summary["stats"]["perturb"]["images"] == 48
    assert summary["stats"]["perturb"]["min_cos"] >= 0.5
    np.testing.assert_array_equal(np.load(out / "ids.npy"), np.load(ids))
    assert not (out / "shards").exists()  # staged shards are removed once the dataset is complete
    assert (out / "provenance.json").is_file() and (out / "config.toml").is_file()
    # the images are what the generator makes of the perturbed vectors: same identity, similar images
    imgs = np.stack([reader.image(i) for i in range(len(reader))]).reshape(12, 4, -1).astype(float)
    within = np.mean([np.abs(g[0] - g[1]).mean() for g in imgs])
    across = np.mean([np.abs(imgs[i, 0] - imgs[i + 1, 0]).mean() for i in range(11)])
    assert within < across
    # rerunning a finished run does nothing
    again = CliRunner().invoke(fx.gen_cli(monkeypatch), _args(ids, out))
    assert again.exit_code == 0 and "already complete" in again.output


def test_interrupted_run_resumes_to_identical_bytes(tmp_path, monkeypatch):
    ids = _ids(tmp_path / "ids.npy")
    full = tmp_path / "full"
    assert CliRunner().invoke(fx.gen_cli(monkeypatch), _args(ids, full)).exit_code == 0

    real = generation.generate_shard
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    part = tmp_path / "part"
    monkeypatch.setattr(generation, "generate_shard", failing)
    res = CliRunner().invoke(fx.gen_cli(monkeypatch), _args(ids, part))
    assert res.exit_code == 130
    assert not (part / "dataset.testfolder").exists() and not (part / "dataset.json").exists()
    assert len(json.loads((part / "manifest.json").read_text())["done"]) == 2
    monkeypatch.setattr(generation, "generate_shard", real)
    res = CliRunner().invoke(fx.gen_cli(monkeypatch), _args(ids, part))
    assert res.exit_code == 0, res.output
    assert "generated 4 of 6 shards in this run" in res.output
    assert _dataset_bytes(part) == _dataset_bytes(full)


def test_kill_9_during_generation_then_resume_equals_uninterrupted_run(tmp_path, monkeypatch):
    ids = _ids(tmp_path / "ids.npy", n=20)
    full = tmp_path / "full"
    assert CliRunner().invoke(fx.gen_cli(monkeypatch), _args(ids, full)).exit_code == 0

    out = tmp_path / "killed"
    env = {**os.environ, "TINYGEN_DELAY": "0.25", "FACEBENCH_QUIET": "1", "PYTHONPATH": str(HERE)}
    cmd = [sys.executable, str(HERE / "conftest.py"), *_args(ids, out)]
    done = fx.kill_after_shards(cmd, out / "manifest.json", env=env)
    assert 3 <= done < 10
    assert not (out / "dataset.json").exists() and not (out / "dataset.testfolder").exists()

    res = CliRunner().invoke(fx.gen_cli(monkeypatch), _args(ids, out))
    assert res.exit_code == 0, res.output
    assert _dataset_bytes(out) == _dataset_bytes(full)


def _interrupted_then_resumed(tmp_path, monkeypatch, generator, *, stop_at=3):
    ids = _ids(tmp_path / "ids.npy")
    args = lambda out: [*_args(ids, out), "--generator", generator]  # noqa: E731 (the last --generator wins)
    full = tmp_path / f"full-{generator}"
    assert CliRunner().invoke(fx.gen_cli(monkeypatch), args(full)).exit_code == 0
    real, calls = generation.generate_shard, {"n": 0}

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == stop_at:
            raise KeyboardInterrupt
        return real(*a, **k)

    part = tmp_path / f"part-{generator}"
    monkeypatch.setattr(generation, "generate_shard", interrupted)
    assert CliRunner().invoke(fx.gen_cli(monkeypatch), args(part)).exit_code == 130
    monkeypatch.setattr(generation, "generate_shard", real)
    # other draws from the global RNGs between the two runs must not matter either
    import random

    random.random(), np.random.rand(), __import__("torch").rand(3)
    res = CliRunner().invoke(fx.gen_cli(monkeypatch), args(part))
    assert res.exit_code == 0, res.output
    return res, _dataset_bytes(full), _dataset_bytes(part)


def test_a_generator_drawing_from_the_global_rngs_resumes_byte_for_byte(tmp_path, monkeypatch):
    """No ``reseed``, no RNG of its own (Python, numpy and torch global RNGs): every shard is seeded
    from (seed, shard) alone, so the resumed dataset equals the uninterrupted one."""
    res, full, part = _interrupted_then_resumed(tmp_path, monkeypatch, "globalgen")
    assert "generated 4 of 6 shards in this run" in res.output and "non-deterministic" not in res.output
    assert part == full


def test_a_generator_marked_non_deterministic_is_named_when_resuming(tmp_path, monkeypatch):
    res, _, _ = _interrupted_then_resumed(tmp_path, monkeypatch, "nondetgen")
    assert "generator 'nondetgen' is marked non-deterministic by its plugin" in " ".join(res.output.split())


def test_changed_parameters_refuse_to_resume(tmp_path, monkeypatch):
    ids = _ids(tmp_path / "ids.npy")
    out = tmp_path / "run"
    real = generation.generate_shard
    calls = []

    def stop(*args, **kwargs):  # interrupted after the first shard: there is something to resume
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(generation, "generate_shard", stop)
    CliRunner().invoke(fx.gen_cli(monkeypatch), _args(ids, out))
    monkeypatch.setattr(generation, "generate_shard", real)
    res = CliRunner().invoke(fx.gen_cli(monkeypatch), _args(ids, out, "--seed", "7"))
    assert res.exit_code == 2
    assert (f"error: {out}: cannot resume: parameters differ from the interrupted run (config.seed); pass "
            "--overwrite to start again, or choose another --out") in " ".join(res.output.split())
    # --overwrite starts the run again with the new seed: the set is that of a fresh run with seed 7
    res = CliRunner().invoke(fx.gen_cli(monkeypatch), _args(ids, out, "--seed", "7", "--overwrite"))
    assert res.exit_code == 0 and "generated 6 of 6 shards in this run" in res.output, res.output
    fresh = CliRunner().invoke(fx.gen_cli(monkeypatch), _args(ids, tmp_path / "fresh", "--seed", "7"))
    assert fresh.exit_code == 0 and _dataset_bytes(out) == _dataset_bytes(tmp_path / "fresh")
    # interrupted before its first shard, a run leaves nothing to resume: no folder, and another seed is fine
    monkeypatch.setattr(generation, "generate_shard", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    CliRunner().invoke(fx.gen_cli(monkeypatch), _args(ids, tmp_path / "early"))
    assert not (tmp_path / "early").exists()


def test_seed_changes_images_and_n_ids_samples_from_stats(tmp_path, monkeypatch):
    from facebench.generation.sampling import PCAStats

    rng = np.random.default_rng(0)
    PCAStats.fit(rng.standard_normal((200, fx.DIM)) + 0.2).save(tmp_path / "pca.npz")
    base = ["generate", "--generator", "tinygen", "--n-ids", "6", "--stats", str(tmp_path / "pca.npz"),
            "--images-per-id", "3", "--format", "testfolder", "--device", "cpu", "--tau", "0.6"]
    a = CliRunner().invoke(fx.gen_cli(monkeypatch), [*base, "--out", str(tmp_path / "a")])
    b = CliRunner().invoke(fx.gen_cli(monkeypatch), [*base, "--out", str(tmp_path / "b"), "--seed", "1"])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    assert "rejection rate" in a.output
    ids = np.load(tmp_path / "a" / "ids.npy")
    unit = ids / np.linalg.norm(ids, axis=1, keepdims=True)
    gram = unit @ unit.T
    np.fill_diagonal(gram, -1)
    assert ids.shape == (6, fx.DIM) and gram.max() <= 0.6
    assert fx.tree_bytes(tmp_path / "a" / "dataset.testfolder") != fx.tree_bytes(tmp_path / "b" / "dataset.testfolder")
    summary = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert summary["ids_source"]["sample"]["n"] == 6


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--format", "nosuchformat"], "unknown format 'nosuchformat'"),
        (["--n-ids", "3"], "give exactly one of --ids FILE, --n-ids N or --ref-images DIR"),
        (["--weights", "missing_generator.pth"], "missing_generator.pth: weights file not found"),
        (["--set", "generation.images_per_id=0"], "images_per_id must be >= 1"),
        (["--set", "generation.perturb.min_cos=2.0"], "min_cos must be in [-1, 1)"),
    ],
)
def test_bad_generate_options_are_one_line_errors(tmp_path, monkeypatch, extra, message):
    ids = _ids(tmp_path / "ids.npy")
    res = CliRunner().invoke(fx.gen_cli(monkeypatch), [*_args(ids, tmp_path / "out"), *extra])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert res.output.strip().count("\n") == 0 or "error:" in res.output.strip().splitlines()[-1]


def test_wrong_identity_width_names_the_file(tmp_path, monkeypatch):
    ids = _ids(tmp_path / "ids16.npy", d=16)
    res = CliRunner().invoke(fx.gen_cli(monkeypatch), _args(ids, tmp_path / "out"))
    assert res.exit_code == 2
    assert f"error: {ids}: identity vectors have 16 dimensions, the generator expects 32" in res.output


def test_torchrun_two_ranks_write_the_same_dataset_as_one_process(tmp_path, monkeypatch):
    ids = _ids(tmp_path / "ids.npy")
    single = tmp_path / "single"
    assert CliRunner().invoke(fx.gen_cli(monkeypatch), _args(ids, single)).exit_code == 0
    out = tmp_path / "ranks"
    env = {**os.environ, "FACEBENCH_QUIET": "1", "PYTHONPATH": str(HERE)}
    cmd = fx.torchrun(str(HERE / "conftest.py"), *_args(ids, out))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "generated 3 of 6 shards in this run" in proc.stdout
    assert (out / "manifest-rank0.json").is_file() and (out / "manifest-rank1.json").is_file()
    assert _dataset_bytes(out) == _dataset_bytes(single)


def test_sigmas_too_large_for_the_vectors_are_warned_about(tmp_path, monkeypatch):
    ids = _ids(tmp_path / "ids.npy")  # norm about 8.5 in 32 dimensions: the paper's sigmas fit
    fine = CliRunner().invoke(fx.gen_cli(monkeypatch), _args(ids, tmp_path / "fine"))
    assert fine.exit_code == 0, fine.output
    assert "needed their noise halved" not in fine.output
    big = CliRunner().invoke(fx.gen_cli(monkeypatch), _args(ids, tmp_path / "big", "--set",
                                                         "generation.perturb.sigmas=[10.0, 10.0, 10.0]",
                                                         "--set", "generation.perturb.max_attempts=1"))
    assert big.exit_code == 0, big.output
    shrunk = json.loads((tmp_path / "big" / "dataset.json").read_text())["stats"]["perturb"]["shrunk"]
    assert shrunk > 24
    text = " ".join(big.output.split())
    assert f"warning: {shrunk} of 48 perturbed vectors needed their noise halved" in text
    from facebench.generation.perturbation import matching_sigmas  # what to set, not only which key

    norm = float(np.median(np.linalg.norm(np.load(ids), axis=1)))
    fit = matching_sigmas(float(f"{norm:.6g}"), 32)
    assert f"Use raw features (facebench embed --raw), or keep the paper's cosines at this norm with --set " \
           f"'generation.perturb.sigmas=[{', '.join(f'{x:g}' for x in fit)}]'" in text
