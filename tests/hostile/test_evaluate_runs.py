"""Run folders handed to ``evaluate``/``analyze``/``embed`` by someone else, or edited since they were written.

What a user must see: a model run folder given to ``evaluate --model`` with a malformed ``model.json`` or
``backbone.pt`` is one ``error:`` line naming the file (a pickle payload never runs), and no run folder is
left; a rerun over an evaluation run whose manifest is malformed is one error line naming it; a rerun over
finished rows or cached features that no longer hold what was written warns (one line naming the file) and
gives exactly the numbers of an untouched run; a failure in the first batch of IJB, TinyFace or analyze
leaves no run folder; a link planted at a resumable feature file is refused and its target left alone.

A finished run rerun with the same command is not read at all (the rerun contract, facebench.rerun), so the
cases that tamper with a run's state hand over an unfinished one (``_unfinished``: its results not written
yet, as a kill leaves it), or rerun with other protocol options and ``--overwrite``, which scores again from
the cached features (kept: they check themselves).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import types
from pathlib import Path

import conftest as fx
import numpy as np
import pytest
import torch

from facebench.data import encode_image

from .conftest import Payload, files_under, invoke, refused, succeeded

SMALL = ["--size", "32", "--set", "ijb_identities=6", "--set", "templates_per_identity=3", "--set", "rfw_pairs=40",
         "--set", "tinyface_identities=5", "--set", "tinyface_distractors=8", "--set", "tinyface_side=12"]
#: Options that make a rerun score IJB and TinyFace again from their cached features.
OTHER = ["--set", "ijb.flip_fusion=concat", "--set", "tinyface-1n.ranks=[1,2]"]
MODEL_OPTIONS = {"input_size": 32, "num_features": 32}


def _evaluate_args(world, out, *extra, suite="toy-protocols", backbone="pixels"):
    return ["evaluate", "--suite", suite, "--model", world.weights, "--backbone", backbone, "--data-root",
            world.data, "--out", out, "--device", "cpu", "--bootstrap", "0", "--json", *extra]


def _rows(result) -> dict[str, dict]:
    succeeded(result)
    return {row["benchmark"]: row for row in json.loads(result.stdout)["rows"]}


def _model_run(path: Path) -> Path:
    """A model run folder as ``train-fr`` leaves it: a tiny IResNet's ``backbone.pt`` and its ``model.json``."""
    from facebench.pluginmanager import registry

    path.mkdir(parents=True)
    torch.manual_seed(0)
    model = registry("backbone").create("iresnet_tiny", **MODEL_OPTIONS)
    torch.save(model.state_dict(), path / "backbone.pt")
    card = {"backbone": "iresnet_tiny", "backbone_options": MODEL_OPTIONS, "weights": "backbone.pt",
            "input_size": 32, "embedding_size": 32, "recipe": "tiny-arcface", "head": "arcface",
            "dataset": {"name": "toyset", "path": "toy/train"}, "accuracies": {"toy_lfw": 0.5}}
    (path / "model.json").write_text(json.dumps(card))
    return path


def _train_set(path: Path, identities: int = 6, per_identity: int = 3) -> Path:
    from facebench.data import open_writer

    rng = np.random.default_rng(5)
    with open_writer(path, "folder") as writer:
        for ident in range(identities):
            for _ in range(per_identity):
                writer.add(encode_image(fx.identity_image(ident, rng, 30.0), "png"), ident)
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Toy IJB/TinyFace/RFW packs, a pixels weights file, a model run folder, a pack for it, a training set,
    and untouched runs over them (each case copies what it tampers with)."""
    root = tmp_path_factory.mktemp("evaluate-runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEBENCH_QUIET", "1")
        mp.setenv("FACEBENCH_CACHE", str(root / "hash-cache"))
        cli = fx.cli_with_test_extractors(mp)
        w = types.SimpleNamespace(root=root, data=root / "data", weights=fx.write_weights(root / "pixels.pt"))
        succeeded(invoke(cli, ["toyfaces", "protocols", w.data, "--seed", "3", *SMALL]))
        w.model = _model_run(root / "model")
        (root / "packs").mkdir()
        fx.make_pack(root / "packs" / "toy_lfw.bin", 40, 1)
        w.packs = root / "packs"
        w.train = _train_set(root / "train")
        w.base = root / "base"
        w.base_rows = _rows(invoke(cli, _evaluate_args(w, w.base)))
        w.other_rows = _rows(invoke(cli, _evaluate_args(w, root / "other", *OTHER)))
        succeeded(invoke(cli, _model_args(w, w.model, root / "model-eval")))
        w.analysis = root / "analysis"
        succeeded(invoke(cli, _analyze_args(w, w.analysis)))
        w.summary = json.loads((w.analysis / "analysis" / "summary.json").read_text())
    return w


def _feature_file(run: Path, prefix: str) -> Path:
    found = [p for p in (run / "features").glob(f"{prefix}-*.npy") if not p.name.endswith(".partial.npy")]
    assert len(found) == 1, found
    return found[0]


def _one_warning(result, *names) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1, result.stderr
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------- model run folders given to --model

def _model_args(world, model, out, *extra):
    return ["evaluate", "--suite", "toy_lfw", "--model", model, "--data-root", world.packs, "--out", out,
            "--device", "cpu", "--bootstrap", "0", *extra]


def _card(edit):
    def apply(model: Path) -> None:
        card = json.loads((model / "model.json").read_text())
        edit(card)
        (model / "model.json").write_text(json.dumps(card))
    return apply


def _state_of_other_size(model: Path) -> None:
    from facebench.pluginmanager import registry

    other = registry("backbone").create("iresnet_tiny", input_size=32, num_features=16)
    torch.save(other.state_dict(), model / "backbone.pt")


def _linked_weights(model: Path) -> None:
    elsewhere = model.parent / "elsewhere"
    elsewhere.mkdir()
    (model / "backbone.pt").rename(elsewhere / "backbone.pt")
    (model / "backbone.pt").symlink_to(elsewhere / "backbone.pt")


def _payload_weights(marker: Path):
    def apply(model: Path) -> None:
        torch.save({"conv1.weight": Payload(marker)}, model / "backbone.pt")
    return apply


MODEL_CASES = [
    pytest.param(lambda m: (m / "model.json").write_bytes(b'{"backbone": "\xff\xfe"}'), ("model.json", "UTF-8"),
                 id="card-not-utf8"),
    pytest.param(lambda m: (m / "model.json").write_text('{"backbone": "iresnet_tiny",'), ("model.json", "invalid JSON"),
                 id="card-invalid-json"),
    pytest.param(lambda m: (m / "model.json").write_text("[1, 2]"), ("model.json", "an object"), id="card-a-list"),
    pytest.param(lambda m: ((m / "model.json").unlink(), (m / "model.json").mkdir()), ("model.json", "a folder"),
                 id="card-a-folder"),
    pytest.param(_card(lambda c: c.update(backbone=5)), ("model.json", "backbone must be a string"),
                 id="backbone-a-number"),
    pytest.param(_card(lambda c: c.update(backbone="")), ("model.json", "backbone"), id="backbone-empty"),
    pytest.param(_card(lambda c: c.update(backbone="no_such_net")), ("model.json", "no_such_net"),
                 id="backbone-unknown"),
    pytest.param(_card(lambda c: c.update(backbone_options=[32, 32])), ("model.json", "backbone_options must be an object"),
                 id="options-a-list"),
    pytest.param(_card(lambda c: c["backbone_options"].update(colour="red")), ("model.json", "colour"),
                 id="options-unknown-key"),
    pytest.param(_card(lambda c: c["backbone_options"].update(num_features=-3)), ("model.json", "backbone_options"),
                 id="options-negative-size"),
    pytest.param(_card(lambda c: c.update(backbone="se_iresnet_tiny", backbone_options={**MODEL_OPTIONS, "width": 0})),
                 ("model.json", "cannot be built"), id="options-width-zero"),
    pytest.param(_card(lambda c: c["backbone_options"].update(num_features="wide")), ("model.json", "backbone_options"),
                 id="options-string-size"),
    pytest.param(_card(lambda c: c["backbone_options"].update(num_features=1 << 40)), ("backbone.pt", "does not match"),
                 id="options-for-a-model-of-terabytes"),
    pytest.param(_card(lambda c: c.update(input_size="32")), ("model.json", "input_size must be an integer"),
                 id="input-size-a-string"),
    pytest.param(_card(lambda c: c.update(input_size=0)), ("model.json", "input_size"), id="input-size-zero"),
    pytest.param(_card(lambda c: c.pop("input_size")), ("model.json", "input_size"), id="input-size-missing"),
    pytest.param(_card(lambda c: c.update(weights=7)), ("model.json", "weights must be a string"),
                 id="weights-a-number"),
    pytest.param(_card(lambda c: c.update(weights="/etc/hostname")), ("model.json", "/etc/hostname"),
                 id="weights-absolute"),
    pytest.param(_card(lambda c: c.update(weights="../elsewhere/backbone.pt")), ("model.json", ".."),
                 id="weights-traversal"),
    pytest.param(_linked_weights, ("model.json", "outside the run folder"), id="weights-link-outside"),
    pytest.param(_card(lambda c: c.update(dataset=["toy"])), ("model.json", "dataset must be"), id="dataset-a-list"),
    pytest.param(_card(lambda c: c.update(dataset={"name": 3})), ("model.json", "dataset.name must be"),
                 id="dataset-name-a-number"),
    pytest.param(lambda m: (m / "backbone.pt").unlink(), ("backbone.pt", "not found"), id="backbone-pt-missing"),
    pytest.param(lambda m: (m / "backbone.pt").write_bytes(b"PK\x03\x04 not a checkpoint"), ("backbone.pt",),
                 id="backbone-pt-garbage"),
    pytest.param(_state_of_other_size, ("backbone.pt", "does not match"), id="backbone-pt-other-shapes"),
    pytest.param("payload", ("backbone.pt", "refused to load"), id="backbone-pt-pickle-payload"),
]


@pytest.mark.parametrize("tamper, names", MODEL_CASES)
def test_malformed_model_run_is_one_line_and_leaves_nothing(world, cli, tmp_path, marker, tamper, names):
    model = tmp_path / "model"
    shutil.copytree(world.model, model)
    (_payload_weights(marker) if tamper == "payload" else tamper)(model)
    before = files_under(tmp_path)
    out = tmp_path / "out"
    line = refused(invoke(cli, _model_args(world, model, out)), *names)
    assert str(model) in line
    assert not out.exists()
    assert files_under(tmp_path) == before  # nothing written anywhere, the model folder untouched


def _bad_provenance(model: Path) -> None:
    (model / "provenance.json").write_bytes(b"\xff\xfe{not json")


def _noisy_card(model: Path) -> None:
    card = json.loads((model / "model.json").read_text())
    card.update(accuracies=[1, 2], recipe={"x": 1}, epochs="many", surprise={"deep": [1]})
    (model / "model.json").write_text(json.dumps(card))


def _card_naming_a_broken_dataset(model: Path) -> None:
    broken = model.parent / "broken-set"
    broken.mkdir()
    (broken / "dataset.json").write_bytes(b"\xff not json")
    card = json.loads((model / "model.json").read_text())
    card["dataset"] = {"path": str(broken)}
    (model / "model.json").write_text(json.dumps(card))


@pytest.mark.parametrize("extra", [pytest.param(_bad_provenance, id="provenance-not-utf8"),
                                   pytest.param(_noisy_card, id="card-fields-nobody-reads"),
                                   pytest.param(_card_naming_a_broken_dataset, id="card-dataset-card-broken")])
def test_what_evaluate_does_not_need_of_a_model_run_is_ignored(world, cli, tmp_path, extra):
    model = tmp_path / "model"
    shutil.copytree(world.model, model, ignore=shutil.ignore_patterns("eval-*"))
    extra(model)
    succeeded(invoke(cli, _model_args(world, model, tmp_path / "out")))
    row = json.loads((tmp_path / "out" / "results.json").read_text())[0]
    untouched = json.loads((world.root / "model-eval" / "results.json").read_text())[0]
    assert row["accuracy"] == untouched["accuracy"] and row["fold_accuracies"] == untouched["fold_accuracies"]


# ------------------------------------------------------------- reruns over an evaluation run folder

def _manifest(run: Path) -> Path:
    return run / "manifest.json"


def _unfinished(source: Path, run: Path) -> Path:
    """A copy of a finished evaluation run as a kill before its results leaves it: what is reused is read."""
    shutil.copytree(source, run)
    for name in ("results.json", "results.csv"):
        (run / name).unlink()
    return run


def _edit_manifest(edit):
    def apply(run: Path) -> None:
        data = json.loads(_manifest(run).read_text())
        edit(data)
        _manifest(run).write_text(json.dumps(data))
    return apply


def _journal(text: bytes):
    def apply(run: Path) -> None:
        (run / "manifest.json.journal").write_bytes(text)
    return apply


def _feature_manifest(prefix: str, content: bytes):
    def apply(run: Path) -> None:
        feats = _feature_file(run, prefix)
        feats.with_name(feats.stem + ".manifest.json").write_bytes(content)
    return apply


MANIFEST_CASES = [
    pytest.param(lambda r: _manifest(r).write_bytes(b'{"params": {}, "done": {"\xff": 1}}'), "manifest.json",
                 "not UTF-8", id="manifest-not-utf8"),
    pytest.param(lambda r: _manifest(r).write_text('{"params": {"suite": '), "manifest.json", "invalid JSON",
                 id="manifest-invalid-json"),
    pytest.param(lambda r: _manifest(r).write_text("[]"), "manifest.json", "an object", id="manifest-a-list"),
    pytest.param(_edit_manifest(lambda d: d.update(done=["toy_ijb"])), "manifest.json", "done must be an object",
                 id="done-a-list"),
    pytest.param(_edit_manifest(lambda d: d.update(params=["toy-protocols"])), "manifest.json",
                 "params must be an object", id="params-a-list"),
    pytest.param(_edit_manifest(lambda d: d["done"].update(toy_ijb=3)), "manifest.json", "done.toy_ijb",
                 id="done-entry-a-number"),
    pytest.param(_edit_manifest(lambda d: d["done"]["toy_ijb"].update(rows=[3])), "manifest.json", "done.toy_ijb row 1",
                 id="row-not-an-object"),
    pytest.param(_edit_manifest(lambda d: d["done"]["toy_ijb"].update(rows={"a": 1})), "manifest.json",
                 "done.toy_ijb.rows must be a list", id="rows-an-object"),
    pytest.param(_journal(b'{"shard": "x", "info": 1}\n\xff\xfe\n'), "manifest.json.journal", "not UTF-8",
                 id="journal-not-utf8"),
    pytest.param(_journal(b'{"shard": oops\n{"shard": "toy_ijb", "info": []}\n'), "manifest.json.journal", "line 1",
                 id="journal-malformed-line"),
    pytest.param(_journal(b'{"shard": ' + b"9" * 5000 + b'}\n{"shard": "toy_ijb", "info": []}\n'),
                 "manifest.json.journal", "line 1", id="journal-integer-of-5000-digits"),
    pytest.param(lambda r: _manifest(r).write_text('{"params": {}, "done": ' + "9" * 5000 + "}"), "manifest.json",
                 "number too long", id="manifest-integer-of-5000-digits"),
    pytest.param(_feature_manifest("ijb", b'{"params": {}, "done": {}}\xff'), "ijb-", "not UTF-8",
                 id="feature-manifest-not-utf8"),
    pytest.param(_feature_manifest("ijb", b'{"params": {}, "done": [0]}'), "ijb-", "done must be an object",
                 id="feature-manifest-done-a-list"),
    pytest.param(_feature_manifest("tinyface", b'{"params": '), "tinyface-", "invalid JSON",
                 id="feature-manifest-invalid-json"),
]


@pytest.mark.parametrize("tamper, name, problem", MANIFEST_CASES)
def test_rerun_over_a_malformed_manifest_is_one_line(world, cli, tmp_path, tamper, name, problem):
    run = _unfinished(world.base, tmp_path / "run")
    tamper(run)
    # the run's manifest is read on resume; a feature cache's when a benchmark is scored again from it
    extra = [*OTHER, "--overwrite"] if name.endswith("-") else []
    refused(invoke(cli, _evaluate_args(world, run, *extra)), str(run), name, problem)
    assert run.is_dir()  # the user's folder stays, with what it held


def _noise(path: Path) -> None:
    array = np.load(path)
    np.save(path, array + np.random.default_rng(0).normal(0, 5, array.shape).astype(np.float32))


def _cache(prefix: str, change):
    def apply(run: Path) -> Path:
        path = _feature_file(run, prefix)
        change(path)
        return path
    return apply


def _feature_hash(value):
    def change(path: Path) -> None:
        manifest = path.with_name(path.stem + ".manifest.json")
        data = json.loads(manifest.read_text())
        data["done"] = {key: value for key in data["done"]}
        manifest.write_text(json.dumps(data))
    return change


def _partial(path: Path) -> Path:
    """A finished cache turned back into a run interrupted after its last shard, then noised."""
    partial = path.with_name(path.stem + ".partial.npy")
    path.rename(partial)
    _noise(partial)
    return partial


CACHE_CASES = [
    pytest.param(_cache("ijb", _noise), "toy_ijb", id="ijb-cache-noised"),
    pytest.param(_cache("tinyface", _noise), "toy_tinyface", id="tinyface-cache-noised"),
    pytest.param(_cache("ijb", lambda p: p.write_bytes(b"\x93NUMPY garbage")), "toy_ijb", id="ijb-cache-garbage"),
    pytest.param(_cache("ijb", lambda p: np.save(p, np.zeros((61, 3), np.float32))), "toy_ijb",
                 id="ijb-cache-other-shape"),
    pytest.param(_cache("tinyface", lambda p: np.save(p, np.load(p).astype(np.float64))), "toy_tinyface",
                 id="tinyface-cache-other-dtype"),
    pytest.param(_cache("ijb", _feature_hash("0" * 64)), "toy_ijb", id="ijb-cache-hash-edited"),
    pytest.param(_cache("tinyface", _feature_hash(True)), "toy_tinyface", id="tinyface-cache-without-hash"),
    pytest.param(lambda run: _partial(_feature_file(run, "ijb")), "toy_ijb", id="ijb-partial-noised"),
]


@pytest.mark.parametrize("tamper, bench", CACHE_CASES)
def test_cached_features_that_changed_are_computed_again(world, cli, tmp_path, tamper, bench):
    run = tmp_path / "run"
    shutil.copytree(world.base, run)
    changed = tamper(run)
    rows = _rows(result := invoke(cli, _evaluate_args(world, run, *OTHER, "--overwrite")))
    _one_warning(result, changed, "sha256")
    assert rows[bench] == world.other_rows[bench]  # the numbers of an untouched run with these options
    assert rows == world.other_rows


def _row_edit(edit):
    def apply(run: Path) -> None:
        data = json.loads(_manifest(run).read_text())
        edit(data["done"])
        _manifest(run).write_text(json.dumps(data))
    return apply


def _old_layout(done):
    done["toy_rfw_tone2"] = done["toy_rfw_tone2"]["rows"]  # rows without their hash, as before


ROW_CASES = [
    pytest.param(_row_edit(lambda d: d["toy_rfw_tone1"]["rows"][0].update(accuracy=0.999)), "toy_rfw_tone1",
                 "do not match", id="accuracy-edited"),
    pytest.param(_row_edit(lambda d: d["toy_ijb"]["rows"][0].update({"tar_at_far_1e-4": 0.8333})), "toy_ijb",
                 "do not match", id="ijb-tar-edited"),
    pytest.param(_row_edit(lambda d: d["toy_tinyface"]["rows"][0].pop("rank_1")), "toy_tinyface", "do not match",
                 id="rank-removed"),
    pytest.param(_row_edit(_old_layout), "toy_rfw_tone2", "record no sha256", id="rows-without-hash"),
    pytest.param(_row_edit(lambda d: d["toy_rfw_tone3"].update(sha256="0" * 64)), "toy_rfw_tone3", "do not match",
                 id="hash-edited"),
]


@pytest.mark.parametrize("tamper, bench, problem", ROW_CASES)
def test_finished_rows_that_changed_are_scored_again(world, cli, tmp_path, tamper, bench, problem):
    run = _unfinished(world.base, tmp_path / "run")
    tamper(run)
    rows = _rows(result := invoke(cli, _evaluate_args(world, run)))
    _one_warning(result, _manifest(run), f"benchmark {bench} ", problem)
    assert rows[bench] == world.base_rows[bench]
    assert rows == world.base_rows
    assert json.loads((run / "results.json").read_text()) == list(world.base_rows.values())


def test_a_broken_provenance_record_of_the_run_is_refused_then_rewritten(world, cli, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world.base, run)
    (run / "provenance.json").write_bytes(b"\xff\x00 not json")
    # the record the rerun contract decides on cannot be read: refused, naming it, until --overwrite
    refused(invoke(cli, _evaluate_args(world, run)), run, "provenance.json", "not UTF-8", "--overwrite")
    rows = _rows(invoke(cli, _evaluate_args(world, run, "--overwrite")))
    assert rows == world.base_rows
    assert json.loads((run / "provenance.json").read_text())["inputs"]["weights"]["sha256"]


# --------------------------------------------------------- a failed first batch leaves no run folder

def _copy_data(world, tmp_path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(world.data, data)
    return data


def _first_ijb_image_undecodable(data: Path) -> None:
    first = (data / "toy_ijb" / "meta" / "ijbc_name_5pts_score.txt").read_text().split()[0]
    (data / "toy_ijb" / "loose_crop" / first).write_bytes(b"not a jpeg")


def _black(folder: Path) -> None:
    black = encode_image(np.zeros((32, 32, 3), np.uint8), "png")
    for image in folder.iterdir():
        image.write_bytes(black)


HALF_MADE = [
    pytest.param("toy_ijb", "pixels", _first_ijb_image_undecodable, "loose_crop", id="ijb-undecodable-first-image"),
    pytest.param("toy_ijb", "pixels-nan", lambda d: _black(d / "toy_ijb" / "loose_crop"), "NaN",
                 id="ijb-model-outputs-nan"),
    pytest.param("toy_tinyface", "pixels", lambda d: [p.write_bytes(b"\xff\xd8 cut")
                                                      for p in (d / "toy_tinyface" / "Probe").iterdir()],
                 "Probe", id="tinyface-undecodable-probes"),
    pytest.param("toy_tinyface", "pixels-nan", lambda d: _black(d / "toy_tinyface" / "Probe"), "NaN",
                 id="tinyface-model-outputs-nan"),
]


@pytest.mark.parametrize("suite, backbone, tamper, named", HALF_MADE)
def test_a_failed_first_batch_leaves_no_run_folder(world, cli, tmp_path, suite, backbone, tamper, named):
    data = _copy_data(world, tmp_path)
    tamper(data)
    out = tmp_path / "runs" / "eval"
    args = _evaluate_args(types.SimpleNamespace(weights=world.weights, data=data), out, suite=suite, backbone=backbone)
    refused(invoke(cli, args), named)
    assert not out.exists()


def test_a_failed_analysis_leaves_no_run_folder(world, cli, tmp_path):
    train = tmp_path / "train"
    shutil.copytree(world.train, train)
    for image in train.rglob("*.png"):
        image.write_bytes(b"\x89PNG cut short")
    out = tmp_path / "runs" / "analysis"
    refused(invoke(cli, _analyze_args(types.SimpleNamespace(train=train, weights=world.weights), out)), "train")
    assert not out.exists()


def test_a_run_with_a_finished_benchmark_keeps_its_folder(world, cli, tmp_path):
    """The other side of the rule: work that can be resumed is never discarded."""
    data = _copy_data(world, tmp_path)
    _black(data / "toy_tinyface" / "Probe")
    out = tmp_path / "runs" / "eval"
    args = _evaluate_args(types.SimpleNamespace(weights=world.weights, data=data), out, backbone="pixels-nan")
    refused(invoke(cli, args), "NaN")
    assert set(json.loads(_manifest(out).read_text())["done"]) == {"toy_ijb", "toy_ijb_1n"}


# ------------------------------------------------------------ links planted at resumable names

def _victim(tmp_path) -> tuple[Path, bytes]:
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    return victim, victim.read_bytes()


@pytest.mark.parametrize("prefix, suite", [pytest.param("ijb", "toy_ijb", id="ijb-partial-link"),
                                           pytest.param("tinyface", "toy_tinyface", id="tinyface-partial-link")])
def test_a_link_at_the_partial_feature_file_is_refused(world, cli, tmp_path, prefix, suite):
    victim, content = _victim(tmp_path)
    out = tmp_path / "run"
    (out / "features").mkdir(parents=True)
    partial = out / "features" / (_feature_file(world.base, prefix).stem + ".partial.npy")
    partial.symlink_to(victim)
    refused(invoke(cli, _evaluate_args(world, out, suite=suite)), partial, "symbolic link")
    assert victim.read_bytes() == content and partial.is_symlink()


def test_a_link_at_the_feature_cache_folder_is_refused(world, cli, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = _unfinished(world.base, tmp_path / "run")
    for name in ("features", "manifest.json"):  # killed before its first benchmark was recorded
        shutil.rmtree(out / name) if (out / name).is_dir() else (out / name).unlink()
    (out / "features").symlink_to(elsewhere)
    refused(invoke(cli, _evaluate_args(world, out)), out / "features", "symbolic link")
    assert list(elsewhere.iterdir()) == []


def test_a_link_at_the_analysis_folder_is_refused(world, cli, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "run"
    shutil.copytree(world.analysis, out)  # an analysis run killed before it wrote anything of its own
    shutil.rmtree(out / "analysis")
    (out / "analysis").symlink_to(elsewhere)
    refused(invoke(cli, _analyze_args(world, out)), out / "analysis", "symbolic link")
    assert list(elsewhere.iterdir()) == []


def test_a_link_at_the_manifest_journal_is_refused(tmp_path):
    from facebench.errors import OutputError
    from facebench.shards import ShardManifest, journal_path

    victim, content = _victim(tmp_path)
    manifest = ShardManifest(tmp_path / "manifest.json", {"p": 1})
    manifest.REWRITE_UP_TO = 1  # from the fourth shard on, finished shards are appended to the journal
    for shard in range(3):
        manifest.mark_done(shard, "x")
    journal_path(manifest.path).symlink_to(victim)
    with pytest.raises(OutputError, match="manifest.json.journal: cannot write shard manifest: is a symbolic link"):
        manifest.mark_done(3, "x")
    assert victim.read_bytes() == content


def test_a_link_at_the_partial_file_of_embed_is_refused(world, cli, tmp_path):
    victim, content = _victim(tmp_path)
    (tmp_path / "feats.partial.npy").symlink_to(victim)
    result = invoke(cli, ["embed", world.train, "--extractor", "pixels", "--weights", world.weights, "--out",
                          tmp_path / "feats.npy", "--device", "cpu"])
    refused(result, tmp_path / "feats.partial.npy", "symbolic link")
    assert victim.read_bytes() == content and not (tmp_path / "feats.npy").exists()


def test_a_link_at_the_partial_file_of_analyze_is_refused(world, cli, tmp_path):
    victim, content = _victim(tmp_path)
    out = tmp_path / "run"
    (out / "analysis").mkdir(parents=True)
    (out / "analysis" / "features.partial.npy").symlink_to(victim)
    refused(invoke(cli, _analyze_args(world, out)), out / "analysis" / "features.partial.npy", "symbolic link")
    assert victim.read_bytes() == content


def test_embed_rerun_over_noised_features_computes_them_again(world, cli, tmp_path):
    args = ["embed", world.train, "--extractor", "pixels", "--weights", world.weights, "--device", "cpu", "--out"]
    succeeded(invoke(cli, [*args, tmp_path / "clean.npy"]))
    feats = tmp_path / "feats.npy"
    succeeded(invoke(cli, [*args, feats]))
    _noise(feats)
    result = invoke(cli, [*args, feats])
    succeeded(result)
    _one_warning(result, feats, "sha256")
    np.testing.assert_array_equal(np.load(feats), np.load(tmp_path / "clean.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "feats.centers.npy"), np.load(tmp_path / "clean.centers.npy"))


# ------------------------------------------------------------------------ analyze run folders on a rerun

def _analyze_args(world, out):
    return ["analyze", world.train, "--extractor", "pixels", "--weights", world.weights, "--out", out,
            "--only", "separability", "--only", "class-noise", "--device", "cpu"]


def _summary_numbers(summary: dict) -> dict:
    return {name: {k: v for k, v in entry.items() if k != "arrays"} for name, entry in summary["analyses"].items()}


@pytest.mark.parametrize("tamper", [
    pytest.param(_noise, id="features-noised"),
    pytest.param(lambda p: p.write_bytes(b"garbage"), id="features-garbage"),
    pytest.param(lambda p: _feature_hash("f" * 64)(p), id="features-hash-edited"),
])
def test_analyze_rerun_recomputes_features_that_changed(world, cli, tmp_path, tamper):
    run = tmp_path / "run"
    shutil.copytree(world.analysis, run)
    features = run / "analysis" / "features.npy"
    tamper(features)
    result = invoke(cli, _analyze_args(world, run))
    succeeded(result)
    _one_warning(result, features, "sha256")
    summary = json.loads((run / "analysis" / "summary.json").read_text())
    assert _summary_numbers(summary) == _summary_numbers(world.summary)


@pytest.mark.parametrize("content, problem", [
    pytest.param(b'{"params": {}, "done": {"0": "\xff"}}', "not UTF-8", id="manifest-not-utf8"),
    pytest.param(b'{"params": [1], "done": {}}', "params must be an object", id="manifest-params-a-list"),
    pytest.param(b'"done"', "an object", id="manifest-a-string"),
])
def test_analyze_rerun_over_a_malformed_feature_manifest_is_one_line(world, cli, tmp_path, content, problem):
    run = tmp_path / "run"
    shutil.copytree(world.analysis, run)
    manifest = run / "analysis" / "features.manifest.json"
    manifest.write_bytes(content)
    refused(invoke(cli, _analyze_args(world, run)), manifest, problem)


def test_feature_digests_are_of_the_rows_on_disk(world):
    """What the feature manifest records is the sha256 of each shard's float32 rows (checked by hand)."""
    features = _feature_file(world.base, "ijb")
    manifest = json.loads(features.with_name(features.stem + ".manifest.json").read_text())
    rows = np.load(features)
    assert manifest["done"] == {"0": hashlib.sha256(np.ascontiguousarray(rows, np.float32).tobytes()).hexdigest()}
