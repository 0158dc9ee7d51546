"""Writes in a folder someone else can write to: symbolic links planted at every name facebench could use
for a temporary or resumable file must never redirect an output.

* Predictable temporaries: ``ln -s VICTIM DIR/.<name>.tmp-<pid>`` (this process's pid and its neighbours),
  ``.<name>.tmp``, ``.<name>.partial``, ``<name>.partial.npy`` ... beside every output of ``report``,
  ``generate``, ``evaluate``, ``sample-ids`` and ``data convert``: VICTIM is unchanged, the links are left
  as they were, and the outputs are the same regular files an untouched folder gets.
* Fixed names a command reopens to resume (``generate``'s ``shards/`` and dataset, toyfaces build's
  ``.OUT.partial/``, a training run's ``checkpoint.pt`` and ``metrics.jsonl``): a link there is refused
  with one ``error:`` line naming it, and VICTIM is unchanged.

A run folder that holds such links and no record of a run is not written into at all (the rerun contract,
:mod:`facebench.rerun`): the links are planted in an unfinished run of the same command, which resumes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import conftest as fx
import numpy as np
import pytest

from facebench.cli import create_cli
from facebench.data import open_dataset

from .conftest import files_under, invoke, refused, succeeded

VICTIM_TEXT = b"the victim's own bytes\n"


@pytest.fixture
def victim(tmp_path):
    """A file and a folder the user owns elsewhere; the test fails if either changes."""
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "file.txt").write_bytes(VICTIM_TEXT)
    (folder / "dir").mkdir()
    (folder / "dir" / "keep.txt").write_bytes(VICTIM_TEXT)
    before = files_under(folder)
    yield folder
    assert files_under(folder) == before, "a planted link redirected a write into the victim's files"
    assert (folder / "file.txt").read_bytes() == VICTIM_TEXT


def predictable(name: str) -> list[str]:
    """Every name a temporary or partial output of ``name`` could have had without randomness."""
    pid = os.getpid()
    stem = name[: -len(".npy")] if name.endswith(".npy") else Path(name).stem
    return ([f".{name}.tmp-{p}" for p in range(pid - 3, pid + 4)]
            + [f".{name}.tmp-{pid}.old", f".{name}.tmp", f"{name}.tmp", f".{name}.partial", f"{name}.partial",
               f"{stem}.partial.npy", f".{name}.part", f"{name}~"])


def plant(folder: Path, names: list[str], victim: Path) -> dict[Path, str]:
    """``ln -s VICTIM`` at every predictable name of each output; returns link -> target."""
    links = {}
    for name in names:
        for candidate in predictable(name):
            link = folder / candidate
            link.parent.mkdir(parents=True, exist_ok=True)
            if not os.path.lexists(link):
                os.symlink(victim / "file.txt", link)
                links[link] = os.readlink(link)
    return links


def untouched(links: dict[Path, str]) -> None:
    for link, target in links.items():
        assert link.is_symlink() and os.readlink(link) == target, f"{link} was replaced or removed"


def regular(*paths: Path) -> None:
    for path in paths:
        assert path.exists() and not path.is_symlink(), f"{path} is not the command's own output"


# ------------------------------------------------------------------------- predictable temporary names

def test_generate_outputs_ignore_planted_links(tmp_path, monkeypatch, victim):
    ids = tmp_path / "ids.npy"
    np.save(ids, np.random.default_rng(0).standard_normal((4, fx.DIM)).astype(np.float32) * 1.5)

    def args(out):
        return ["generate", "--generator", "tinygen", "--ids", ids, "--images-per-id", 2, "--ids-per-shard", 2,
                "--out", out, "--format", "testfolder", "--device", "cpu", "--set", "generation.keep_shards=true"]

    clean, out = tmp_path / "clean", tmp_path / "planted"
    succeeded(invoke(fx.gen_cli(monkeypatch), args(clean)))
    outputs = ["ids.npy", "manifest.json", "config.toml", "provenance.json", "dataset.json", "dataset.testfolder"]
    planted = tmp_path / "elsewhere"
    plant(planted, outputs, victim)
    line = refused(invoke(fx.gen_cli(monkeypatch), args(planted)), planted, "holds no record")
    assert "--overwrite" in line  # a folder of someone else's files is not written into
    shutil.copytree(clean, out, ignore=shutil.ignore_patterns("dataset.json", "dataset.testfolder"))  # unfinished
    links = plant(out, outputs, victim)
    links.update(plant(out / "shards", ["shard-00000.msgpack", "shard-00001.msgpack"], victim))
    succeeded(invoke(fx.gen_cli(monkeypatch), args(out)))
    untouched(links)
    regular(*(out / name for name in outputs), out / "shards" / "shard-00000.msgpack")
    assert fx.tree_bytes(out / "dataset.testfolder") == fx.tree_bytes(clean / "dataset.testfolder")
    for name in ("ids.npy", "dataset.json", "shards/shard-00001.msgpack"):
        assert (out / name).read_bytes() == (clean / name).read_bytes(), name


def test_sample_ids_outputs_ignore_planted_links(tmp_path, victim):
    feats = tmp_path / "feats.npy"
    np.save(feats, np.random.default_rng(0).standard_normal((50, 8)))

    def args(folder):
        return ["sample-ids", "--features", feats, "--n", 5, "--tau", "0.9", "--out", folder / "ids.npy",
                "--save-stats", folder / "pca.npz", "--device", "cpu"]

    clean, out = tmp_path / "clean", tmp_path / "planted"
    clean.mkdir()
    succeeded(invoke(create_cli(), args(clean)))
    links = plant(out, ["ids.npy", "ids.npy.json", "pca.npz"], victim)
    succeeded(invoke(create_cli(), args(out)))
    untouched(links)
    regular(out / "ids.npy", out / "ids.npy.json", out / "pca.npz")
    for name in ("ids.npy", "pca.npz"):
        assert (out / name).read_bytes() == (clean / name).read_bytes(), name
    assert json.loads((out / "ids.npy.json").read_text())["sampling"]["n"] == 5


@pytest.mark.parametrize(("name", "outputs"), [
    pytest.param("conv-folder", ["conv-folder"], id="folder"),
    pytest.param("conv.rec", ["conv.rec", "conv.idx"], id="rec-files"),
    pytest.param("conv-rec", ["conv-rec"], id="rec-folder"),
    pytest.param("conv.lmdb", ["conv.lmdb", "conv.lmdb-lock"], id="lmdb"),
])
def test_data_convert_outputs_ignore_planted_links(tmp_path, victim, name, outputs):
    src = fx.write_train_folder(tmp_path / "src", identities=3, per_identity=2, size=16)
    out = tmp_path / "planted"
    links = plant(out, outputs, victim)
    fmt = {"conv-folder": "folder", "conv.lmdb": "lmdb"}.get(name, "rec")
    succeeded(invoke(create_cli(), ["data", "convert", src, out / name, "--to", fmt]))
    untouched(links)
    regular(out / name)
    expected, converted = open_dataset(src), open_dataset(out / name)
    assert len(converted) == len(expected) == 6
    assert converted.labels.tolist() == expected.labels.tolist()
    assert all(converted.image_bytes(i) == expected.image_bytes(i) for i in range(len(expected)))


def test_evaluate_outputs_ignore_planted_links(tmp_path, cli, weights, victim):
    root = tmp_path / "eval"
    root.mkdir()
    fx.make_pack(root / "toy_lfw.bin", 40, 0)

    def args(out):
        return ["evaluate", "--suite", "toy_lfw", "--model", weights, "--backbone", "pixels", "--data-root", root,
                "--out", out, "--device", "cpu"]

    clean, out = tmp_path / "clean", tmp_path / "planted"
    succeeded(invoke(cli, args(clean)))
    outputs = ["results.json", "results.csv", "manifest.json", "config.toml", "provenance.json"]
    shutil.copytree(clean, out, ignore=shutil.ignore_patterns("results.*", "manifest.json"))  # killed before a pack
    links = plant(out, outputs, victim)
    succeeded(invoke(cli, args(out)))
    untouched(links)
    regular(*(out / name for name in outputs))
    rows = json.loads((out / "results.json").read_text())
    assert [(r["benchmark"], r["accuracy"], r["pairs"]) for r in rows] == [
        (r["benchmark"], r["accuracy"], r["pairs"]) for r in json.loads((clean / "results.json").read_text())]


def test_report_output_ignores_planted_links(tmp_path, victim):
    run = fx.eval_run(tmp_path / "runs", "mine", "toyset", {"toy_lfw": 0.9125})
    out = tmp_path / "reports"
    links = plant(out, ["report.html"], victim)
    succeeded(invoke(create_cli(), ["report", run, "--out", out / "report.html"]))
    untouched(links)
    regular(out / "report.html")
    html = (out / "report.html").read_text()
    assert "<html" in html and "91.25" in html
    assert VICTIM_TEXT.decode().strip() not in html


# ---------------------------------------------------------------------- fixed names reopened to resume

def _generate(out: Path, tmp_path: Path) -> list:
    ids = tmp_path / "ids.npy"
    np.save(ids, np.random.default_rng(0).standard_normal((4, fx.DIM)).astype(np.float32))
    return ["generate", "--generator", "tinygen", "--ids", ids, "--images-per-id", 2, "--ids-per-shard", 2,
            "--out", out, "--format", "testfolder", "--device", "cpu"]


@pytest.mark.parametrize("name", ["shards", "dataset.testfolder"])
def test_generate_refuses_a_link_at_a_name_it_reopens(tmp_path, monkeypatch, victim, name):
    out = tmp_path / "run"
    out.mkdir()
    (out / name).symlink_to(victim / "dir", target_is_directory=True)
    line = refused(invoke(fx.gen_cli(monkeypatch), _generate(out, tmp_path)), out / name, "symbolic link")
    assert "refusing to write through it" in line
    assert sorted(p.name for p in out.iterdir()) == [name]  # refused before anything was written


def test_toyfaces_build_refuses_a_link_at_its_partial_folder(tmp_path, victim):
    partial = tmp_path / ".toy.partial"
    partial.symlink_to(victim / "dir", target_is_directory=True)
    args = ["toyfaces", "build", tmp_path / "toy", "--identities", 2, "--images-per-identity", 1, "--size", 16,
            "--pairs", 20, "--packs", "toy_lfw", "--workers", 1]
    refused(invoke(create_cli(), args), partial, "symbolic link")
    assert not (tmp_path / "toy").exists()


def _train_fr(tmp_path: Path, out: Path, *extra) -> list:
    data = fx.write_train_folder(tmp_path / "train", identities=4, per_identity=8, size=56)
    return ["train-fr", "--recipe", "tiny-arcface", "--data", data, "--out", out, "--device", "cpu",
            "--set", "optim.batch_per_gpu=32", "--set", "optim.epochs=1", "--set", "data.workers=0",
            "--set", "train.fp16=false", *extra]


@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "resume"])
def test_train_fr_refuses_a_link_at_its_checkpoint(tmp_path, victim, resume):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").symlink_to(victim / "file.txt")
    args = _train_fr(tmp_path, out, *(["--resume"] if resume else []))
    refused(invoke(create_cli(), args), out / "checkpoint.pt", "symbolic link")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]


def test_train_fr_refuses_a_link_at_its_metrics_log(tmp_path, victim):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").symlink_to(victim / "file.txt")
    refused(invoke(create_cli(), _train_fr(tmp_path, out)), out / "metrics.jsonl", "metrics log")
    assert not (out / "backbone.pt").exists()


def test_train_generator_refuses_a_link_at_its_checkpoint(tmp_path, victim):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").symlink_to(victim / "file.txt")
    data = fx.write_train_folder(tmp_path / "train", identities=2, per_identity=2, size=56)
    np.save(tmp_path / "feats.npy", np.ones((4, 512), np.float32))
    args = ["train-generator", "--config", "tiny", "--data", data, "--features", tmp_path / "feats.npy",
            "--out", out, "--resume", "--set", "losses.identity=0"]
    refused(invoke(create_cli(), args), out / "checkpoint.pt", "symbolic link")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt"]
