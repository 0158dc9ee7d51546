"""`facebench evaluate` end to end on small packs, with a feature extractor registered by the test.

The extractor ("pixels") average-pools the image to 4x4 and projects it with a weights file, so the
expected embeddings can be recomputed here with plain numpy and compared with the result files.
"""

from __future__ import annotations

import csv
import json
import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import PIXEL_SIZE as SIZE
from conftest import identity_image, make_pack, plain_embeddings, write_train_folder

from facebench.cli import create_cli
from facebench.data import encode_image, open_writer
from facebench.metrics import verify


def test_evaluate_toy_suite_writes_results_that_match_verify(tmp_path, cli, weights):
    root = tmp_path / "eval"
    root.mkdir()
    packs = {name: make_pack(root / f"{name}.bin", 200, seed) for seed, name in
             enumerate(["toy_lfw", "toy_cfp_fp", "toy_calfw"])}
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["evaluate", "--suite", "toy-five", "--model", str(weights),
                                      "--backbone", "pixels", "--data-root", str(root), "--out", str(out),
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    # The Table 1 layout: found columns in suite order, then Avg; missing packs listed by file name.
    assert "LFW (toy)" in result.output and "Avg" in result.output
    assert "missing (2)" in result.output and "toy_cplfw.bin" in result.output and "toy_agedb_30.bin" in result.output
    rows = json.loads((out / "results.json").read_text())
    assert [r["benchmark"] for r in rows] == ["toy_lfw", "toy_cfp_fp", "toy_calfw"]
    for row in rows:
        images, flags = packs[row["benchmark"]]
        emb = plain_embeddings(images, weights)
        expect = verify(emb[0::2], emb[1::2], flags)
        assert row["accuracy"] == pytest.approx(expect.accuracy, abs=1e-12)
        assert row["std"] == pytest.approx(expect.std, abs=1e-12)
        assert row["fold_thresholds"] == pytest.approx(list(expect.thresholds))
        assert row["eer"] == pytest.approx(expect.eer, abs=1e-9)
        assert 0.6 < row["accuracy"] < 1.0
        assert row["dataset"] == "pixels" and row["pairs"] == 200 and row["flip_test"] is True
    with open(out / "results.csv") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0])[:8] == ["dataset", "benchmark", "accuracy", "std", "threshold", "tar_at_far_1e-3",
                                  "tar_at_far_1e-4", "eer"]
    assert float(table[1]["accuracy"]) == pytest.approx(rows[1]["accuracy"])
    avg = 100 * np.mean([r["accuracy"] for r in rows])
    assert f"{avg:.2f}" in result.output
    prov = json.loads((out / "provenance.json").read_text())
    assert set(prov["inputs"]) == {"weights", "pack:toy_lfw", "pack:toy_cfp_fp", "pack:toy_calfw"}
    assert prov["missing_packs"] == ["toy_cplfw", "toy_agedb_30"]


def test_evaluate_resumes_finished_packs_and_json_output(tmp_path, cli, weights):
    root = tmp_path / "eval"
    root.mkdir()
    make_pack(root / "toy_lfw.bin", 100, 0)
    args = ["evaluate", "--suite", "toy_lfw", "--model", str(weights), "--backbone", "pixels",
            "--data-root", str(root), "--out", str(tmp_path / "run"), "--device", "cpu", "--json", "--label", "mine"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    stamp = (tmp_path / "run" / "results.json").stat().st_mtime_ns
    second = CliRunner().invoke(cli, args)  # the same evaluation: its rows are read back, nothing written
    assert second.exit_code == 0
    assert (tmp_path / "run" / "results.json").stat().st_mtime_ns == stamp
    payload = json.loads(second.stdout)  # stdout holds only the JSON document
    assert payload["rows"][0]["accuracy"] == json.loads((tmp_path / "run" / "results.json").read_text())[0]["accuracy"]
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert list(manifest["done"]) == ["toy_lfw"]
    assert payload["rows"][0]["dataset"] == "mine"


def test_user_suite_from_toml(tmp_path, cli, weights):
    root = tmp_path / "eval"
    (root / "mine").mkdir(parents=True)
    make_pack(root / "mine" / "office.bin", 100, 3)
    make_pack(root / "toy_lfw.bin", 100, 4)
    suite = tmp_path / "office.toml"
    suite.write_text('name = "office"\nbenchmarks = ["toy_lfw"]\n\n[[benchmark]]\nname = "office"\n'
                     'label = "Office"\nfiles = ["mine/office.bin"]\n')
    result = CliRunner().invoke(cli, ["evaluate", "--suite", str(suite), "--model", str(weights), "--backbone",
                                      "pixels", "--data-root", str(root), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [(r["benchmark"], r["label"], r["suite"]) for r in rows] == [
        ("toy_lfw", "LFW (toy)", "office"), ("office", "Office", "office")]


def _one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_all_packs_missing_is_one_line_error_listing_them(tmp_path, cli, weights):
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(cli, ["evaluate", "--suite", "five", "--model", str(weights), "--backbone",
                                      "pixels", "--data-root", str(tmp_path / "empty")])
    _one_line_error(result, "none of the packs of suite 'five'", "lfw.bin", "cfp_fp.bin", "calfw.bin")


def test_pack_with_zero_pairs_is_one_line_error(tmp_path, cli, weights):
    (tmp_path / "eval").mkdir()
    with open(tmp_path / "eval" / "toy_lfw.bin", "wb") as fh:  # an empty pack, flags as a numpy bool array
        pickle.dump(([], np.zeros(0, dtype=bool)), fh)
    result = CliRunner().invoke(cli, ["evaluate", "--suite", "toy_lfw", "--model", str(weights), "--backbone",
                                      "pixels", "--data-root", str(tmp_path / "eval"), "--out", str(tmp_path / "r")])
    _one_line_error(result, "toy_lfw.bin", "zero pairs")
    assert not (tmp_path / "r" / "results.json").exists()


def test_pack_with_mismatched_lengths_is_one_line_error(tmp_path, cli, weights):
    (tmp_path / "eval").mkdir()
    image = encode_image(np.zeros((SIZE, SIZE, 3), np.uint8), "png")
    with open(tmp_path / "eval" / "toy_lfw.bin", "wb") as fh:
        pickle.dump(([image] * 6, [True, False]), fh)
    result = CliRunner().invoke(cli, ["evaluate", "--suite", "toy_lfw", "--model", str(weights), "--backbone",
                                      "pixels", "--data-root", str(tmp_path / "eval"), "--out", str(tmp_path / "r")])
    _one_line_error(result, "toy_lfw.bin", "6 images for 2")


def test_nan_embeddings_are_one_line_error_naming_pack_and_image(tmp_path, cli, weights):
    root = tmp_path / "eval"
    root.mkdir()
    rng = np.random.default_rng(0)
    with open_writer(root / "toy_lfw.bin", "bin") as writer:
        for k in range(20):
            a = identity_image(k, rng, 10)
            b = np.zeros_like(a) if k == 7 else identity_image(k, rng, 10)
            writer.add(encode_image(a, "png"), encode_image(b, "png"), True)
    result = CliRunner().invoke(cli, ["evaluate", "--suite", "toy_lfw", "--model", str(weights), "--backbone",
                                      "pixels-nan", "--data-root", str(root), "--out", str(tmp_path / "r")])
    _one_line_error(result, "toy_lfw.bin", "NaN or inf embeddings for 1 images", "image 15")


def test_weights_file_without_backbone_and_missing_weights(tmp_path, cli, weights):
    (tmp_path / "eval").mkdir()
    make_pack(tmp_path / "eval" / "toy_lfw.bin", 20, 0)
    result = CliRunner().invoke(cli, ["evaluate", "--suite", "toy_lfw", "--model", str(weights),
                                      "--data-root", str(tmp_path / "eval")])
    _one_line_error(result, "needs --backbone NAME")
    result = CliRunner().invoke(cli, ["evaluate", "--suite", "toy_lfw", "--model", str(tmp_path / "nope.pt"),
                                      "--backbone", "pixels", "--data-root", str(tmp_path / "eval")])
    _one_line_error(result, f"{tmp_path / 'nope.pt'}: not found: neither a train-fr run folder nor a weights file "
                            "(also looked in the weights directory")
    result = CliRunner().invoke(cli, ["evaluate", "--suite", "fivee", "--model", str(weights),
                                      "--backbone", "pixels", "--data-root", str(tmp_path / "eval")])
    _one_line_error(result, "unknown suite 'fivee' (did you mean 'five'? suites: all, doppelver, eclipse, five,")
    assert "pair-distributions" not in result.output  # analyses are not suites
    result = CliRunner().invoke(cli, ["evaluate", "--suite", "pair-distributions", "--model", str(weights),
                                      "--backbone", "pixels", "--data-root", str(tmp_path / "eval")])
    _one_line_error(result, "evaluator 'pair-distributions' is not a verification suite (suites: all,")


def test_evaluate_an_fr_run_directory_through_the_fr_run_extractor(tmp_path):
    """A train-fr style run directory (model.json + backbone.pt) is evaluated with the fr plugin's extractor;
    accuracies equal verify() on that extractor's own flip-test embeddings."""
    from facebench import create_backbone
    from facebench.data import open_pairs
    from facebench.pluginmanager import registry

    torch.manual_seed(0)
    run = tmp_path / "fr-run"
    run.mkdir()
    torch.save(create_backbone("iresnet_tiny", input_size=32).state_dict(), run / "backbone.pt")
    (run / "model.json").write_text(json.dumps({
        "backbone": "iresnet_tiny", "backbone_options": {"input_size": 32}, "input_size": 32,
        "weights": "backbone.pt", "dataset": {"path": str(tmp_path / "toy" / "train")}}))
    root = tmp_path / "eval"
    root.mkdir()
    make_pack(root / "toy_lfw.bin", 100, 5)
    out = tmp_path / "result"
    result = CliRunner().invoke(create_cli(), ["evaluate", "--suite", "toy_lfw", "--model", str(run),
                                               "--data-root", str(root), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    row = json.loads((out / "results.json").read_text())[0]
    assert row["dataset"] == "toy/train" and row["model"] == "fr-run:fr-run"
    extractor = registry("feature_extractor").create("fr-run", weights=str(run), device="cpu")
    with open_pairs(root / "toy_lfw.bin") as reader:
        emb = extractor.embed(reader.images())  # the fr plugin's own embedding path, flip test on
        expect = verify(emb[0::2], emb[1::2], reader.issame)
    assert row["accuracy"] == pytest.approx(expect.accuracy, abs=1e-12)
    assert row["fold_thresholds"] == pytest.approx(list(expect.thresholds))


def test_a_run_folder_given_to_a_weights_file_extractor_names_fr_run(tmp_path):
    """``--extractor NAME --weights RUN`` (or ``--backbone NAME --model RUN``) with a train-fr run folder
    says that the run folder's extractor is fr-run, or which file to pass; nothing is written."""
    from facebench import create_backbone

    run = tmp_path / "fr-run"
    run.mkdir()
    torch.save(create_backbone("se_iresnet_tiny").state_dict(), run / "backbone.pt")
    (run / "model.json").write_text(json.dumps({"backbone": "se_iresnet_tiny", "weights": "backbone.pt"}))
    make_pack(tmp_path / "eval" / "toy_lfw.bin", 20, 0)
    data = write_train_folder(tmp_path / "train", identities=3, per_identity=2)
    expect = (f"{run}: a train-fr run folder, not a weights file: the feature extractor for a run folder is "
              f"fr-run (it reads model.json), or pass its weights file {run / 'backbone.pt'}")
    commands = (
        ["evaluate", "--suite", "toy_lfw", "--model", str(run), "--backbone", "se_iresnet_tiny",
         "--data-root", str(tmp_path / "eval"), "--out", str(tmp_path / "out")],
        ["analyze", str(data), "--extractor", "se_iresnet_tiny", "--weights",
         str(run), "--out", str(tmp_path / "out")],
        ["embed", "--extractor", "se_iresnet_tiny", "--weights", str(run), str(data),
         "--out", str(tmp_path / "out" / "f.npy")],
    )
    for args in commands:
        result = CliRunner().invoke(create_cli(), [*args, "--device", "cpu"])
        _one_line_error(result, expect)
        assert not (tmp_path / "out").exists()


def test_a_folder_that_is_not_a_model_yet_is_named_for_what_it_is(tmp_path, cli):
    """``evaluate --model runs/notyet``: a run still training (or stopped), a dataset folder or an evaluation
    folder is said to be that, with what to do; nothing is written."""
    make_pack(tmp_path / "eval" / "toy_lfw.bin", 20, 0)
    cases = {
        "training": ({"config.toml": "", "metrics.jsonl": "", "checkpoint.pt": "x"},
                     "a train-fr run folder that has no model yet (model.json and backbone.pt are written when "
                     "training finishes); wait for it, or if it stopped, continue it with facebench train-fr ... "
                     "--out {path} --resume"),
        "starting": ({"config.toml": "", "provenance.json": "{}"},
                     "a run folder that has no model yet (model.json is written when training finishes, and it "
                     "has no checkpoint either): wait for it, or if it stopped, start it again"),
        "dataset": ({"dataset.json": "{}"}, "a dataset folder (dataset.json), not a model; train one on it with "
                                            "facebench train-fr --recipe NAME --data {path}"),
        "evaluation": ({"results.json": "[]"}, "an evaluation run folder, not a model; pass the train-fr run folder "
                                               "it evaluated"),
    }
    for name, (files, message) in cases.items():
        folder = tmp_path / "runs" / name
        folder.mkdir(parents=True)
        for file, text in files.items():
            (folder / file).write_text(text)
        result = CliRunner().invoke(cli, ["evaluate", "--suite", "toy_lfw", "--model", str(folder),
                                          "--data-root", str(tmp_path / "eval"), "--out", str(tmp_path / "out")])
        _one_line_error(result, f"{folder}: {message.format(path=folder)}")
        assert not (tmp_path / "out").exists()
