"""Hostile ``generate`` run folders: a finished run whose ``dataset.json`` or dataset was tampered with, an
interrupted run whose manifest, staged shards or ``ids.npy`` were, and dataset names that would collide
with the run folder's own files.

A finished run is "already complete" only when its card checks out. Otherwise the rerun says what is
wrong in one line and re-assembles from the staged shards when they are all there (the same bytes as
the run made), or refuses naming the file when they are gone. Resuming reads every manifest, shard and
``ids.npy`` as untrusted data: one ``error:`` line naming the file, never a traceback or a pickle.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import conftest as fx
import msgpack
import numpy as np
import pytest

from facebench.generation import sharded

from .conftest import Payload, files_under, invoke, refused, succeeded

IDS, PER_ID, PER_SHARD = 6, 2, 2  # three shards
SET = "dataset.testfolder"


def gen_args(out: Path, *extra, ids: Path | None = None, stats: Path | None = None) -> list:
    source = ["--ids", ids] if ids is not None else ["--n-ids", IDS, "--stats", stats, "--tau", "0.99"]
    return ["generate", "--generator", "tinygen", *source, "--images-per-id", PER_ID, "--ids-per-shard",
            PER_SHARD, "--batch-size", 4, "--out", out, "--format", "testfolder", "--device", "cpu", *extra]


def generate(monkeypatch, *args, **kw):
    return invoke(fx.gen_cli(monkeypatch), gen_args(*args, **kw))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Built once: finished runs (staged shards removed, and kept) and an interrupted one (two of its three
    shards done, its identities sampled into ``ids.npy``), plus the uninterrupted run it should become."""
    from facebench.generation.sampling import PCAStats

    root = tmp_path_factory.mktemp("generate")
    ids = root / "ids.npy"
    np.save(ids, np.random.default_rng(0).standard_normal((IDS, fx.DIM)).astype(np.float32) * 1.5)
    stats = root / "pca.npz"
    PCAStats.fit(np.random.default_rng(1).standard_normal((200, fx.DIM))).save(stats)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEBENCH_QUIET", "1")
        mp.setenv("FACEBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "facebench-cache"))
        succeeded(generate(mp, root / "finished", ids=ids))
        succeeded(generate(mp, root / "kept", "--set", "generation.keep_shards=true", ids=ids))
        succeeded(generate(mp, root / "sampled", stats=stats))
        real, calls = sharded.generate_shard, []

        def interrupted(*a, **k):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return real(*a, **k)

        mp.setattr(sharded, "generate_shard", interrupted)
        assert generate(mp, root / "interrupted", stats=stats).exit_code == 130
    assert sorted(p.name for p in (root / "interrupted" / "shards").iterdir()) == [
        "shard-00000.msgpack", "shard-00001.msgpack"]
    return {"root": root, "ids": ids, "stats": stats}


def copy_run(runs, name: str, tmp_path: Path) -> Path:
    return Path(shutil.copytree(runs["root"] / name, tmp_path / name, symlinks=True))


def dataset_bytes(run: Path) -> dict[str, bytes]:
    return {**{f"set/{k}": v for k, v in fx.tree_bytes(run / SET).items()},
            "dataset.json": (run / "dataset.json").read_bytes(), "ids.npy": (run / "ids.npy").read_bytes()}


# ------------------------------------------------------------------- a finished run that is not what it says

def _card(run: Path, **changes) -> None:
    card = json.loads((run / "dataset.json").read_text())
    card.update(changes)
    (run / "dataset.json").write_text(json.dumps(card))


def _first_image(run: Path) -> Path:
    return sorted((run / SET).rglob("*.jpg"))[0]


FINISHED = [
    # (id, tamper(run), file named, fragment of the error line)
    pytest.param(lambda r: (r / "dataset.json").write_bytes(b'{"dataset": "\xff\xfe"}'), "dataset.json",
                 "not UTF-8", id="card-not-utf8"),
    pytest.param(lambda r: (r / "dataset.json").write_text('{"dataset": '), "dataset.json", "invalid JSON",
                 id="card-invalid-json"),
    pytest.param(lambda r: (r / "dataset.json").write_text("[1, 2]"), "dataset.json", "must hold an object",
                 id="card-a-list"),
    pytest.param(lambda r: _card(r, images="12"), "dataset.json", "images must be an integer, found a string",
                 id="card-images-a-string"),
    pytest.param(lambda r: _card(r, dataset=7), "dataset.json", "dataset must be a string", id="card-dataset-a-number"),
    pytest.param(lambda r: _card(r, dataset="elsewhere"), "dataset.json", "names the set 'elsewhere'",
                 id="card-names-another-set"),
    pytest.param(lambda r: shutil.rmtree(r / SET), "dataset.json", f"the set it names, {SET}, is missing",
                 id="set-missing"),
    pytest.param(lambda r: _card(r, identities=IDS + 1), "dataset.json", f"identities is {IDS + 1}",
                 id="card-identity-count"),
    pytest.param(lambda r: _card(r, sha256="0" * 64), "dataset.json", "no longer has the sha256",
                 id="card-sha256"),
    pytest.param(lambda r: _first_image(r).write_bytes(_first_image(r).read_bytes()[:-20] + b"\0" * 20),
                 "dataset.json", "no longer has the sha256", id="image-edited"),
    pytest.param(lambda r: _first_image(r).unlink(), "dataset.json", f"holds {IDS * PER_ID - 1} images",
                 id="image-removed"),
    pytest.param(lambda r: _manifest(r, lambda m: m["done"].pop("2")), "manifest.json",
                 "does not record shard 2 as done", id="manifest-lacks-a-shard"),
    pytest.param(lambda r: (r / "manifest.json").unlink(), "manifest.json", "is missing", id="manifest-missing"),
]


@pytest.mark.parametrize(("tamper", "named", "fragment"), FINISHED)
def test_finished_run_that_does_not_check_out_is_refused_when_its_shards_are_gone(
        runs, tmp_path, monkeypatch, tamper, named, fragment):
    run = copy_run(runs, "finished", tmp_path)
    tamper(run)
    before = files_under(tmp_path)
    line = refused(generate(monkeypatch, run, ids=runs["ids"]), run / named, fragment)
    assert "staged shards are gone" in line and "already complete" not in line
    assert files_under(tmp_path) == before  # refused before anything was written


@pytest.mark.parametrize(("tamper", "named", "fragment"), [
    p for p in FINISHED if p.id in ("card-not-utf8", "card-a-list", "card-sha256", "image-edited", "set-missing",
                                    "image-removed")])
def test_finished_run_with_its_shards_is_reassembled_to_the_same_bytes(
        runs, tmp_path, monkeypatch, tamper, named, fragment):
    run = copy_run(runs, "kept", tmp_path)
    made = dataset_bytes(run)
    tamper(run)
    res = generate(monkeypatch, run, "--set", "generation.keep_shards=true", ids=runs["ids"])
    out = succeeded(res)
    warning = [line for line in res.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and str(run / named) in warning[0] and fragment in warning[0], res.stderr
    assert "re-assembling the dataset from the staged shards" in warning[0]
    assert "already complete" not in out
    assert dataset_bytes(run) == made
    again = generate(monkeypatch, run, "--set", "generation.keep_shards=true", ids=runs["ids"])
    assert "already complete" in succeeded(again) and "warning" not in again.stderr


def test_a_finished_run_whose_card_checks_out_is_complete(runs, tmp_path, monkeypatch):
    run = copy_run(runs, "finished", tmp_path)
    before = files_under(tmp_path)
    assert "already complete" in succeeded(generate(monkeypatch, run, ids=runs["ids"]))
    assert files_under(tmp_path) == before


def test_reassembly_from_a_truncated_staged_shard_names_the_shard_and_a_rerun_finishes(runs, tmp_path, monkeypatch):
    """The warning says why the dataset is re-assembled, the error which shard stopped it; the card is gone
    by then, so once the shard is deleted a rerun regenerates it and finishes with the bytes the run made."""
    run = copy_run(runs, "kept", tmp_path)
    made = dataset_bytes(run)
    _card(run, sha256="0" * 64)
    shard = run / "shards" / "shard-00001.msgpack"
    shard.write_bytes(shard.read_bytes()[:100])
    args = ("--set", "generation.keep_shards=true")
    res = generate(monkeypatch, run, *args, ids=runs["ids"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    warning, error = [line for line in res.stderr.splitlines() if line.strip()]
    assert warning.startswith(f"warning: {run / 'dataset.json'}: ") and "re-assembling" in warning
    assert error.startswith(f"error: {shard}: staged shard is unreadable") and "delete it and rerun" in error
    shard.unlink()
    assert "generated 1 of 3 shards" in succeeded(generate(monkeypatch, run, *args, ids=runs["ids"]))
    assert dataset_bytes(run) == made


# ---------------------------------------------------------------------- resuming an interrupted run

def _manifest(run: Path, change) -> None:
    manifest = json.loads((run / "manifest.json").read_text())
    change(manifest)
    (run / "manifest.json").write_text(json.dumps(manifest))


def _shard(run: Path, change, index: int = 1) -> None:
    path = run / "shards" / f"shard-{index:05d}.msgpack"
    path.write_bytes(msgpack.packb(change(msgpack.unpackb(path.read_bytes(), raw=False)), use_bin_type=True))


SHARD1 = "shards/shard-00001.msgpack"

RESUMED = [
    # (id, tamper(run), file named, fragment of the error line)
    pytest.param(lambda r: (r / "manifest.json").write_bytes(b'{"params": {}, "done": {"0": "\xff"}}'),
                 "manifest.json", "not UTF-8", id="manifest-not-utf8"),
    pytest.param(lambda r: (r / "manifest.json").write_text('{"params": '), "manifest.json", "invalid JSON",
                 id="manifest-invalid-json"),
    pytest.param(lambda r: (r / "manifest.json").write_text("[]"), "manifest.json", "must hold an object",
                 id="manifest-a-list"),
    pytest.param(lambda r: _manifest(r, lambda m: m.update(done=["0", "1"])), "manifest.json",
                 "done must be an object, found a list", id="done-a-list"),
    pytest.param(lambda r: _manifest(r, lambda m: m.update(params=[1, 2])), "manifest.json",
                 "params must be an object, found a list", id="params-a-list"),
    pytest.param(lambda r: _manifest(r, lambda m: m.pop("params")), "manifest.json",
                 "params must be an object, found null", id="params-missing"),
    pytest.param(lambda r: _manifest(r, lambda m: m["done"].update({"../../x": True})), "manifest.json",
                 "done must list shard numbers", id="done-not-a-shard-number"),
    pytest.param(lambda r: (r / "manifest.json.journal").write_text('{"shard": \n{"shard": "1"}\n'),
                 "manifest.json.journal", "malformed journal entry", id="journal-garbage-line"),
    pytest.param(lambda r: (r / SHARD1).write_bytes((r / SHARD1).read_bytes()[:50]), SHARD1,
                 "staged shard is unreadable", id="shard-truncated"),
    pytest.param(lambda r: (r / SHARD1).write_bytes(b""), SHARD1, "staged shard is unreadable", id="shard-empty"),
    pytest.param(lambda r: (r / SHARD1).write_bytes(msgpack.packb([1, 2, 3])), SHARD1,
                 "staged shard must be an object, found a list", id="shard-a-list"),
    pytest.param(lambda r: _shard(r, lambda s: {k: v for k, v in s.items() if k != "images"}), SHARD1,
                 "staged shard has no images", id="shard-without-images"),
    pytest.param(lambda r: _shard(r, lambda s: {**s, "labels": [str(x) for x in s["labels"]]}), SHARD1,
                 "integer labels and encoded images", id="shard-labels-strings"),
    pytest.param(lambda r: _shard(r, lambda s: {**s, "images": [len(x) for x in s["images"]]}), SHARD1,
                 "integer labels and encoded images", id="shard-images-numbers"),
    pytest.param(lambda r: _shard(r, lambda s: {**s, "images": "x" * 10}), SHARD1,
                 "images must be a list, found a string", id="shard-images-a-string"),
    pytest.param(lambda r: _shard(r, lambda s: {**s, "stats": {"perturb": {"min_cos": "low"}}}), SHARD1,
                 "stats must be tables of numbers", id="shard-stats-strings"),
    pytest.param(lambda r: _shard(r, lambda s: {**s, "labels": s["labels"][:-1], "images": s["images"][:-1]}),
                 SHARD1, "other labels", id="shard-one-image-short"),
    pytest.param(lambda r: _shard(r, lambda s: {**s, "labels": [x + 1 for x in s["labels"]]}), SHARD1,
                 "other labels", id="shard-labels-of-another-shard"),
    pytest.param(lambda r: _shard(r, lambda s: {**s, "labels": s["labels"][:-1]}), SHARD1,
                 "3 labels for 4 images", id="shard-labels-and-images-differ"),
    pytest.param(lambda r: np.save(r / "ids.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True), "ids.npy",
                 "cannot read identity vectors", id="ids-object-array"),
    pytest.param(lambda r: np.save(r / "ids.npy", np.ones((IDS, 16), np.float32)), "ids.npy", "16 dimensions",
                 id="ids-wrong-width"),
    pytest.param(lambda r: np.save(r / "ids.npy", np.ones(IDS, np.float32)), "ids.npy", "(N, D) matrix",
                 id="ids-one-dimensional"),
    pytest.param(lambda r: (r / "ids.npy").write_bytes(b"\x93NUMPY\x01\x00"), "ids.npy",
                 "cannot read identity vectors", id="ids-truncated"),
]


@pytest.mark.parametrize(("tamper", "named", "fragment"), RESUMED)
def test_resuming_a_tampered_run_names_the_file(runs, tmp_path, monkeypatch, tamper, named, fragment):
    run = copy_run(runs, "interrupted", tmp_path)
    tamper(run)
    refused(generate(monkeypatch, run, stats=runs["stats"]), run / named, fragment)
    assert not (run / "dataset.json").exists()


def test_a_pickled_ids_file_never_runs(runs, tmp_path, monkeypatch, marker):
    run = copy_run(runs, "interrupted", tmp_path)
    (run / "ids.npy").write_bytes(pickle.dumps(Payload(marker)))
    refused(generate(monkeypatch, run, stats=runs["stats"]), run / "ids.npy", "pickled")


def test_a_missing_staged_shard_is_generated_again(runs, tmp_path, monkeypatch):
    run = copy_run(runs, "interrupted", tmp_path)
    (run / SHARD1).unlink()  # the manifest records it as done: its file is what counts
    assert "generated 2 of 3 shards" in succeeded(generate(monkeypatch, run, stats=runs["stats"]))
    assert dataset_bytes(run) == dataset_bytes(runs["root"] / "sampled")


# ------------------------------------------------------------------ names that collide with the run folder

NAMES = ["manifest.json", "config.toml", "provenance.json", "dataset.json", "ids.npy", "shards",
         "MANIFEST.json", "manifest-rank1.json", "manifest.json.journal", "../escape", "/tmp/abs", "a/b", "..",
         ".hidden", "a\\\\b"]


@pytest.mark.parametrize("name", NAMES, ids=lambda n: n.replace("/", "SLASH").replace("\\", "BSLASH") or "empty")
def test_a_dataset_name_of_the_run_folder_is_refused_before_anything_is_written(runs, tmp_path, monkeypatch, name):
    out = tmp_path / "sub" / "run"
    before = files_under(tmp_path)
    line = refused(generate(monkeypatch, out, "--set", f'generation.dataset_name="{name}"', ids=runs["ids"]),
                   "generation.dataset_name")
    assert "plain file name" in line or "collide with the run folder" in line
    assert not out.exists() and files_under(tmp_path) == before


@pytest.mark.parametrize(("content", "fragment"), [
    pytest.param(b'[generation]\nseed = 1 # \xff\n', "not UTF-8 text at byte", id="not-utf8"),
    pytest.param(b"[generation\n", "invalid TOML", id="invalid-toml"),
    pytest.param(b"[generation]\nseed = '1'\n", "generation.seed' expects int", id="seed-a-string"),
    pytest.param(b"generation = 3\n", "expects a table", id="generation-a-number"),
])
def test_a_broken_generate_config_is_refused_before_anything_is_written(runs, tmp_path, monkeypatch, content,
                                                                         fragment):
    config = tmp_path / "gen.toml"
    config.write_bytes(content)
    before = files_under(tmp_path)
    refused(generate(monkeypatch, tmp_path / "run", "--config", config, ids=runs["ids"]), fragment)
    assert files_under(tmp_path) == before
