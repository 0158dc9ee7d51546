"""Outputs get the user's umask: under umask 022 every folder and file facebench writes is group- and
world-readable (folders also searchable), as a plain ``mkdir`` / ``open`` would make them, so a
collaborator on a shared server can read a dataset (temporary folders used to stay ``drwx------``)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from click.testing import CliRunner

from facebench import atomic
from facebench.cli import create_cli


@pytest.fixture
def umask_022():
    before = os.umask(0o022)
    yield
    os.umask(before)


def _run(*args):
    result = CliRunner().invoke(create_cli(), [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def _unreadable(root):
    """Every path below ``root`` that a group member or another user could not read (or enter)."""
    bad = []
    for path in root.rglob("*"):
        mode = path.lstat().st_mode
        need = 0o055 if stat.S_ISDIR(mode) else 0o044
        if mode & need != need:
            bad.append(f"{path.relative_to(root.parent)} {stat.filemode(mode)}")
    return bad


def test_atomic_dir_and_temp_dir_follow_the_umask(tmp_path, umask_022):
    with atomic.atomic_dir(tmp_path / "out", what="test folder") as tmp:
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o755
        (tmp / "f").write_text("x")
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    os.umask(0o077)  # a private umask is honoured too
    with atomic.atomic_dir(tmp_path / "private", what="test folder"):
        pass
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o700


def test_every_output_is_group_and_world_readable_under_umask_022(tmp_path, umask_022):
    toy, runs = tmp_path / "toy", tmp_path / "runs"
    _run("toyfaces", "build", toy, "--identities", "8", "--images-per-identity", "8", "--size", "24",
         "--pairs", "40", "--packs", "toy_lfw,toy_cfp_fp")
    for fmt in ("rec", "lmdb"):
        _run("toyfaces", "build", tmp_path / f"toy-{fmt}", "--identities", "4", "--images-per-identity", "2",
             "--size", "24", "--pairs", "40", "--packs", "toy_lfw", "--format", fmt)
    for fmt, dst in (("rec", "conv-rec"), ("lmdb", "conv.lmdb"), ("folder", "conv-folder")):
        _run("data", "convert", toy / "train", tmp_path / dst, "--to", fmt)
    _run("data", "convert", toy / "toy_lfw.bin", tmp_path / "conv-pairs", "--to", "pairlist")
    _run("data", "grid", toy / "train", "--out", tmp_path / "grid.png")
    _run("train-fr", "--recipe", "tiny-arcface", "--data", toy / "train", "--val", "toy_lfw",
         "--out", runs / "real", "--set", "optim.epochs=1")
    _run("evaluate", "--suite", "toy_lfw", "--model", runs / "real", "--data-root", toy)
    _run("embed", "--extractor", "fr-run", "--weights", runs / "real", toy / "train", "--out",
         tmp_path / "feats" / "train.npy", "--raw")
    _run("sample-ids", "--features", tmp_path / "feats" / "train.centers.npy", "--n", "4", "--tau", "0.99",
         "--out", tmp_path / "sampled" / "ids.npy")
    _run("train-generator", "--config", "tiny", "--data", toy / "train", "--features", tmp_path / "feats" / "train.npy",
         "--out", runs / "v2f", "--set", "losses.identity=0", "--set", "epochs=1", "--set", "max_steps=1",
         "--set", "grid_samples=2")
    ids = tmp_path / "ids.npy"
    np.save(ids, np.random.default_rng(0).standard_normal((4, 512)).astype(np.float32) * 20)
    for fmt in ("folder", "lmdb"):
        _run("generate", "--generator", "noise_projection", "--ids", ids, "--images-per-id", "2",
             "--format", fmt, "--out", runs / f"gen-{fmt}", "--device", "cpu")
    _run("analyze", toy / "train", "--extractor", "fr-run", "--weights", runs / "real", "--out",
         runs / "analysis", "--only", "pair-distributions")
    _run("report", runs / "real", runs / "gen-folder", "--out", tmp_path / "reports" / "r.html")
    assert _unreadable(tmp_path) == []


@pytest.fixture(params=[0o022, 0o077], ids=["umask-022", "umask-077"])
def umask(request):
    before = os.umask(request.param)
    yield request.param
    os.umask(before)


def test_generate_sample_ids_convert_and_toyfaces_follow_the_umask(tmp_path, umask):
    """Every file and folder these commands write has exactly the permissions the umask leaves (a private
    umask 077 keeps everything private: nothing is widened by an explicit mode), and under 022 is readable."""
    toy = tmp_path / "toy"
    _run("toyfaces", "build", toy, "--identities", "4", "--images-per-identity", "2", "--size", "24",
         "--pairs", "40", "--packs", "toy_lfw", "--workers", "1")
    for fmt, dst in (("rec", "conv-rec"), ("rec", "conv.rec"), ("lmdb", "conv.lmdb"), ("folder", "conv-folder")):
        _run("data", "convert", toy / "train", tmp_path / "converted" / dst, "--to", fmt)
    feats = tmp_path / "feats.npy"
    np.save(feats, np.random.default_rng(0).standard_normal((40, 512)).astype(np.float32) * 20)
    _run("sample-ids", "--features", feats, "--n", "4", "--tau", "0.9", "--out", tmp_path / "sampled" / "ids.npy",
         "--save-stats", tmp_path / "sampled" / "pca.npz", "--device", "cpu")
    for fmt in ("folder", "lmdb"):
        _run("generate", "--generator", "noise_projection", "--ids", tmp_path / "sampled" / "ids.npy",
             "--images-per-id", "2", "--format", fmt, "--out", tmp_path / "runs" / f"gen-{fmt}", "--device", "cpu",
             "--set", "generation.keep_shards=true")
    written = [p for p in tmp_path.rglob("*") if not p.is_symlink()]
    assert any(p.name.endswith(".msgpack") for p in written) and any(p.suffix == ".idx" for p in written)
    widened = [f"{p.relative_to(tmp_path)} {stat.filemode(p.stat().st_mode)}" for p in written
               if stat.S_IMODE(p.stat().st_mode) & umask]
    assert widened == []
    private = [p for p in written if stat.S_IMODE(p.stat().st_mode) & 0o600 != 0o600]
    assert private == []
    if umask == 0o022:
        assert _unreadable(tmp_path) == []
