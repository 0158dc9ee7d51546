"""Hostile run folders handed to ``facebench report RUN... --out X.html``.

A report prints numbers from files someone else made and is itself a file people share. Each case builds
run folders from toy data (``eval_run``, ``analysis_run``, ``dataset_run`` of tests/conftest.py), breaks
one thing the way a careless or hostile file would, and asserts what a user sees:

- numbers out of range (an accuracy above 100 or below 0, NaN, inf, an EER of 3.2, a count of "40") and
  fields of the wrong type in ``results.json``/``results.csv``, ``analysis/summary.json``, ``dataset.json``,
  ``model.json``, ``provenance.json``, ``config.toml`` and the analysis arrays: exit 2 and one ``error:``
  line naming the file and the key (and row), no report written, nothing else written, no pickle run;
- images from outside the given run folders (a ``dataset.json`` path, a ``model.json`` ``dataset.path``, a
  ``samples.png`` link, a dataset whose images link elsewhere, a leakage array linked in): the report is
  written without them and one warning line names what was skipped; ``--images-from`` lets them in;
- strings are escaped, and links planted at any predictable temporary name leave their target unchanged.
"""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
from pathlib import Path

import conftest as fx
import numpy as np
import pytest
from PIL import Image

from facebench.cli import create_cli

from .conftest import Payload, bomb_png, files_under, invoke, refused, succeeded

TOY = dict(zip(fx.TOY_PACKS, [0.90, 0.80, 0.75, 0.85, 0.82]))


# ----------------------------------------------------------------------------------------- toy inputs


def report(tmp_path: Path, *runs: Path, extra: tuple = (), out: Path | None = None):
    """``facebench report RUNS --out OUT --overwrite``; returns the result and the output path. (A case that
    changes its runs renders them again into the same file: under the rerun contract that is --overwrite.)"""
    out = out or tmp_path / "out" / "r.html"
    return invoke(create_cli(), ["report", *runs, "--out", out, "--overwrite", *extra]), out


def refused_cleanly(tmp_path: Path, run: Path, *names, extra: tuple = ()) -> str:
    """The report is refused with one line naming ``names``; nothing is written anywhere."""
    before = files_under(tmp_path)
    result, out = report(tmp_path, run, extra=extra)
    line = refused(result, *names)
    assert not out.exists() and not out.parent.exists()
    assert files_under(tmp_path) == before
    return line


def eval_dir(tmp_path: Path, name: str = "eval") -> Path:
    return fx.eval_run(tmp_path, name, "toyset", TOY)


def patch_row(run: Path, **fields) -> None:
    """Set ``fields`` in the first row of ``results.json`` (a value of ``...`` removes the key)."""
    rows = json.loads((run / "results.json").read_text())
    for key, value in fields.items():
        if value is ...:
            rows[0].pop(key, None)
        else:
            rows[0][key] = value
    (run / "results.json").write_text(json.dumps(rows))  # NaN and Infinity are written as JS literals


def png_bytes(colour=(10, 200, 30), size=(40, 20)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def images_in(html: str) -> list[str]:
    """The base64 payloads of every embedded image."""
    return [part.split('"', 1)[0] for part in html.split('src="data:image/png;base64,')[1:]]


def warnings_of(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("warning:")]


@pytest.fixture
def private(tmp_path) -> Path:
    """A face folder elsewhere on the machine that no report was asked to show."""
    return fx.write_train_folder(tmp_path / "home" / "private-faces", identities=3, per_identity=2, size=24)


# ----------------------------------------------------------------------------------- results.json rows

ROW_CASES = [
    pytest.param({"accuracy": 140}, ("accuracy", "[0, 100]", "found 140", "row 1"), id="accuracy-above-100"),
    pytest.param({"accuracy": 100.5}, ("accuracy", "found 100.5"), id="accuracy-percent-above-100"),
    pytest.param({"accuracy": -0.5}, ("accuracy", "found -0.5"), id="accuracy-negative"),
    pytest.param({"accuracy": float("nan")}, ("accuracy", "found nan"), id="accuracy-nan"),
    pytest.param({"accuracy": float("inf")}, ("accuracy", "found inf"), id="accuracy-inf"),
    pytest.param({"accuracy": True}, ("accuracy", "found true or false"), id="accuracy-bool"),
    pytest.param({"accuracy": [0.9]}, ("accuracy", "found a list"), id="accuracy-list"),
    pytest.param({"std": -0.01}, ("std", "found -0.01"), id="std-negative"),
    pytest.param({"std": 5.0}, ("std", "[0, 1] like its accuracy"), id="std-percent-beside-a-fraction"),
    pytest.param({"std": float("nan")}, ("std", "found nan"), id="std-nan"),
    pytest.param({"tar_at_far_1e-4": 1.5}, ("tar_at_far_1e-4", "a fraction in [0, 1]"), id="tar-above-1"),
    pytest.param({"tar_at_far_1e-3": float("-inf")}, ("tar_at_far_1e-3", "found -inf"), id="tar-minus-inf"),
    pytest.param({"eer": 3.2}, ("eer", "a fraction in [0, 1]", "found 3.2"), id="eer-in-percent"),
    pytest.param({"eer": -0.1}, ("eer", "found -0.1"), id="eer-negative"),
    pytest.param({"threshold": float("inf")}, ("threshold", "a finite number"), id="threshold-inf"),
    pytest.param({"ci95": {"accuracy": [0.9, 1.2]}}, ("ci95.accuracy", "found 1.2"), id="ci95-bound-above-1"),
    pytest.param({"ci95": {"eer": [0.2, 0.1]}}, ("ci95.eer", "low <= high"), id="ci95-bounds-reversed"),
    pytest.param({"ci95": {"eer": [0.1]}}, ("ci95.eer", "[low, high]"), id="ci95-one-bound"),
    pytest.param({"ci95": [[0.1, 0.2]]}, ("ci95", "must be an object, found a list"), id="ci95-a-list"),
    pytest.param({"roc": {"fpr": [0.0, float("nan")], "tpr": [0.0, 1.0]}}, ("roc.fpr", "found nan"),
                 id="roc-nan"),
    pytest.param({"roc": {"fpr": [0.0, 1.0], "tpr": [0.5]}}, ("roc.fpr", "differ in length"), id="roc-ragged"),
    pytest.param({"roc": {"fpr": "0,1"}}, ("roc.fpr", "must be a list"), id="roc-text"),
    pytest.param({"rank_1": 1.7}, ("rank_1", "found 1.7"), id="rank-above-1"),
    pytest.param({"tpir_at_fpir_1e-2": float("nan")}, ("tpir_at_fpir_1e-2",), id="tpir-nan"),
    pytest.param({"galleries": {"G1": {"rank_1": 2}}}, ("galleries.G1.rank_1", "found 2"), id="gallery-rank-above-1"),
    pytest.param({"galleries": {"G1": [0.5]}}, ("galleries.G1", "must be an object"), id="gallery-a-list"),
    pytest.param({"pairs": -3}, ("pairs", "a non-negative integer", "found -3"), id="count-negative"),
    pytest.param({"pairs": 3.5}, ("pairs", "found 3.5"), id="count-fraction"),
    pytest.param({"pairs": "1320"}, ("pairs", "found a string"), id="count-text"),
    pytest.param({"probes": 10**30}, ("probes", "a non-negative integer"), id="count-beyond-int64"),
    pytest.param({"ijb_options": "F2 N1 D1"}, ("ijb_options", "must be an object, found a string"),
                 id="ijb-options-text"),
    pytest.param({"benchmark": 5}, ("benchmark", "a non-empty string", "found 5"), id="benchmark-a-number"),
    pytest.param({"benchmark": ...}, ("benchmark", "found null"), id="benchmark-missing"),
    pytest.param({"dataset": ["a"]}, ("dataset", "must be a string, found a list"), id="dataset-a-list"),
    pytest.param({"group": {"tone": 1}}, ("group", "must be a string"), id="group-an-object"),
]


@pytest.mark.parametrize(("fields", "names"), ROW_CASES)
def test_result_row_out_of_range_or_mistyped_is_refused(tmp_path, fields, names):
    run = eval_dir(tmp_path)
    patch_row(run, **fields)
    refused_cleanly(tmp_path, run, run / "results.json", *names)


def test_a_bad_row_is_named_by_its_number(tmp_path):
    run = eval_dir(tmp_path)
    rows = json.loads((run / "results.json").read_text())
    rows[3]["accuracy"] = 1e9
    (run / "results.json").write_text(json.dumps(rows))
    refused_cleanly(tmp_path, run, run / "results.json", "accuracy", "at row 4")


@pytest.mark.parametrize(("text", "names"), [
    pytest.param('{"rows": 5}', ("expected a list of result rows",), id="rows-a-number"),
    pytest.param('[[0.9, 0.8]]', ("a result row must be an object, found a list", "row 1"), id="row-a-list"),
    pytest.param('[{"benchmark": "toy_lfw", "accuracy": 0.9}, null]', ("found null", "row 2"), id="row-null"),
    pytest.param('"results"', ("expected a list of result rows",), id="a-string"),
])
def test_results_json_of_the_wrong_shape_is_refused(tmp_path, text, names):
    run = eval_dir(tmp_path)
    (run / "results.json").write_text(text)
    refused_cleanly(tmp_path, run, run / "results.json", *names)


def test_a_results_file_too_large_to_be_a_run_s_is_refused_before_it_is_read(tmp_path):
    run = eval_dir(tmp_path)
    with open(run / "results.json", "r+b") as fh:
        fh.truncate(65 << 20)  # sparse: 65 MiB of nothing
    refused_cleanly(tmp_path, run, run / "results.json", "larger than")


def test_fractions_and_percent_are_both_accepted_and_null_stays_absent(tmp_path):
    """The range rule minds the unit: a row in percent (95.5 +- 1.2), a row in fractions, and an IJB row
    with ``accuracy: null`` all render; the numbers shown are the rows' own."""
    run = eval_dir(tmp_path)
    rows = json.loads((run / "results.json").read_text())
    rows[0].update(accuracy=95.5, std=1.2)
    rows.append({"dataset": "toyset", "benchmark": "toy_ijb", "accuracy": None, "std": None, "eer": None,
                 "protocol": "ijb-1:1", "tar_at_far_1e-4": 0.25, "pairs": 100})
    (run / "results.json").write_text(json.dumps(rows))
    result, out = report(tmp_path, run, extra=("--section", "summary"))
    succeeded(result)
    text = out.read_text()
    assert "95.50 \u00b1 1.20" in text and "80.00 \u00b1 1.00" in text


# ------------------------------------------------------------------------------------------ results.csv

CSV_HEADER = "dataset,benchmark,accuracy,std,threshold,tar_at_far_1e-3,tar_at_far_1e-4,eer\n"


@pytest.mark.parametrize(("body", "names"), [
    pytest.param(b"toyset,toy_lfw,140,1.0,1.4,0.5,0.2,0.1\n", ("accuracy", "found 140", "line 2"), id="csv-above-100"),
    pytest.param(b"toyset,toy_lfw,nan,0.01,1.4,0.5,0.2,0.1\n", ("accuracy", "found nan", "line 2"), id="csv-nan"),
    pytest.param(b"toyset,toy_lfw,0.9,0.01,1.4,0.5,0.2,inf\n", ("eer", "found inf"), id="csv-inf"),
    pytest.param(b"toyset,toy_lfw,high,0.01,1.4,0.5,0.2,0.1\n", ("accuracy", "found 'high'", "line 2"), id="csv-text"),
    pytest.param(b"toyset,toy_lfw,0.9,0.01,1.4,0.5,0.2,0.1,extra,cells\n", ("10 cells", "line 2"), id="csv-ragged"),
    pytest.param(b"toyset,toy_lfw,0.9,0.01,1.4,0.5,0.2,0.1\ntoy\xff,toy_cfp_fp,0.9,0.01,1,0.5,0.2,0.1\n",
                 ("not UTF-8", "byte"), id="csv-not-utf8"),
    pytest.param(b'toyset,"toy_lfw' + b"x" * 200_000 + b'",0.9,0.01,1.4,0.5,0.2,0.1\n', ("unreadable CSV",),
                 id="csv-oversized-field"),
    pytest.param(b"toy\x00set,toy_lfw,0.9,0.01,1.4,0.5,0.2,0.1\n", ("dataset holds a NUL byte", "line 2"),
                 id="csv-nul-byte"),
])
def test_results_csv_out_of_range_or_unreadable_is_refused(tmp_path, body, names):
    run = tmp_path / "csv-run"
    run.mkdir()
    (run / "results.csv").write_bytes(CSV_HEADER.encode() + body)
    refused_cleanly(tmp_path, run, run / "results.csv", *names)


def test_results_csv_with_empty_cells_renders(tmp_path):
    run = tmp_path / "csv-run"
    run.mkdir()
    (run / "results.csv").write_text(CSV_HEADER + "toyset,toy_lfw,0.9,0.01,1.4,,,\ntoyset,toy_ijb,,,,,0.3,\n")
    result, out = report(tmp_path, run, extra=("--section", "summary"))
    succeeded(result)
    assert "90.00 \u00b1 1.00" in out.read_text()


# --------------------------------------------------------------------------------- analysis/summary.json

SUMMARY_CASES = [
    pytest.param({"eer": 4.2}, ("eer", "a fraction in [0, 1]", "found 4.2"), id="eer-in-percent"),
    pytest.param({"eer": float("nan")}, ("eer", "found nan"), id="eer-nan"),
    pytest.param({"intra_noise": -0.2}, ("intra_noise", "found -0.2"), id="noise-negative"),
    pytest.param({"identities": "200"}, ("identities", "a non-negative integer", "found a string"), id="count-text"),
    pytest.param({"images": -1}, ("images", "found -1"), id="count-negative"),
    pytest.param({"images": 800.5}, ("images", "found 800.5"), id="count-fraction"),
    pytest.param({"fid": -1.0}, ("fid", "a finite number >= 0"), id="fid-negative"),
    pytest.param({"fid": float("inf")}, ("fid", "found inf"), id="fid-inf"),
    pytest.param({"separability_threshold": "0.4"}, ("separability_threshold", "a cosine"), id="threshold-text"),
    pytest.param({"dataset": 7}, ("dataset", "must be a string, found an integer"), id="dataset-a-number"),
    pytest.param({"analyses": ["pair-distributions"]}, ("analyses", "must be an object, found a list"),
                 id="analyses-a-list"),
    pytest.param({"analyses": {"leakage": [1, 2]}}, ("analyses.leakage", "must be an object"), id="leakage-a-list"),
    pytest.param({"analyses": {"pair-distributions": {"eer": float("nan")}}}, ("analyses.pair-distributions.eer",),
                 id="nested-eer-nan"),
    pytest.param({"analyses": {"separability": {"separable_share": 1.5}}}, ("analyses.separability.separable_share",),
                 id="nested-share-above-1"),
    pytest.param({"analyses": {"fidelity": {"fr": {"kid": 0.1, "images": [100]}}}},
                 ("analyses.fidelity.fr.images", "[fake, real]"), id="fidelity-images-one"),
    pytest.param({"analyses": {"fidelity": {"fr": {"precision": 2.0, "images": [1, 2]}}}},
                 ("analyses.fidelity.fr.precision",), id="fidelity-precision-above-1"),
    pytest.param({"analyses": {"leakage": {"leaked_at_fmr_share": 0.2, "closest": [{"cosine": 3.0}]}}},
                 ("analyses.leakage.closest[0].cosine", "a cosine in [-1, 1]"), id="leakage-cosine-3"),
    pytest.param({"analyses": {"leakage": {"leaked_at_fmr_share": float("nan")}}},
                 ("analyses.leakage.leaked_at_fmr_share",), id="leakage-share-nan"),
    pytest.param({"fdr": -3.0}, ("fdr", "a finite number >= 0", "found -3.0"), id="fdr-negative"),
    pytest.param({"analyses": {"pair-distributions": {"fmr100": 12.5}}}, ("analyses.pair-distributions.fmr100",
                 "a fraction in [0, 1]"), id="fmr100-in-percent"),
    pytest.param({"analyses": {"pair-distributions": {"genuine_std": -0.1}}},
                 ("analyses.pair-distributions.genuine_std",), id="genuine-std-negative"),
    pytest.param({"analyses": {"pair-distributions": {"fdr": 2.0, "ci95": {"fdr": [3.0, 1.0]}}}},
                 ("analyses.pair-distributions.ci95.fdr", "low <= high"), id="fdr-interval-reversed"),
    pytest.param({"analyses": {"pair-distributions": {"fdr": 2.0, "ci95": {"eer": [0.1, 7]}}}},
                 ("analyses.pair-distributions.ci95.eer bound", "found 7"), id="eer-interval-in-percent"),
    pytest.param({"analyses": {"pair-distributions": {"ci95": {"fdr": "wide"}}}},
                 ("analyses.pair-distributions.ci95.fdr", "[low, high]", "found a string"), id="fdr-interval-text"),
    pytest.param({"analyses": {"vendi": {"inter_vendi": float("inf")}}}, ("analyses.vendi.inter_vendi", "found inf"),
                 id="vendi-inf"),
    pytest.param({"analyses": {"vendi": {"intra_vendi_mean": 3.0, "ci95": {"intra_vendi_mean": [4, 2]}}}},
                 ("analyses.vendi.ci95.intra_vendi_mean", "low <= high"), id="vendi-interval-reversed"),
    pytest.param({"analyses": {"vendi": {"identities_scored": "14"}}}, ("analyses.vendi.identities_scored",
                 "a non-negative integer"), id="vendi-count-text"),
]


@pytest.mark.parametrize(("fields", "names"), SUMMARY_CASES)
def test_analysis_summary_out_of_range_or_mistyped_is_refused(tmp_path, fields, names):
    run = fx.analysis_run(tmp_path, "an", "toyset", n_ids=20)
    path = run / "analysis" / "summary.json"
    summary = json.loads(path.read_text())
    summary.update(fields)
    path.write_text(json.dumps(summary))
    refused_cleanly(tmp_path, run, path, *names)


def test_audit_entries_with_gaps_render_dashes_and_open_intervals(tmp_path):
    """Score statistics and Vendi entries missing figures (or with an unbounded interval, as an infinite FDR
    resample writes it) are rendered with dashes and the infinity sign, not a traceback."""
    run = fx.analysis_run(tmp_path, "an", "toyset", n_ids=20)
    path = run / "analysis" / "summary.json"
    summary = json.loads(path.read_text())
    summary["analyses"] = {"pair-distributions": {"fdr": 12.5, "ci95": {"fdr": [10.0, None]}, "ddof": 0},
                           "vendi": {"inter_vendi": 17.25}}
    path.write_text(json.dumps(summary))
    result, out = report(tmp_path, run, extra=("--section", "analysis"))
    succeeded(result)
    html = out.read_text()
    assert "12.50 [10.00, \u221e]" in html and "17.2" in html and "ddof=0" in html


def test_leakage_without_its_figures_renders_dashes(tmp_path):
    """A leakage entry missing keys the table shows is rendered with dashes, not a traceback."""
    run = fx.analysis_run(tmp_path, "an", "toyset", n_ids=20)
    path = run / "analysis" / "summary.json"
    summary = json.loads(path.read_text())
    summary["analyses"] = {"leakage": {"leaked_at_fmr_share": 0.25}}
    path.write_text(json.dumps(summary))
    result, out = report(tmp_path, run, extra=("--section", "dataset-metrics"))
    succeeded(result)
    assert "25.00" in out.read_text()


# --------------------------------------------------------------------------- dataset.json, model.json, ...

CARD_CASES = [
    pytest.param("dataset.json", {"identities": "40"}, ("identities", "a non-negative integer", "found a string"),
                 id="card-identities-text"),
    pytest.param("dataset.json", {"images": 800.5}, ("images", "found 800.5"), id="card-images-fraction"),
    pytest.param("dataset.json", {"images": -800}, ("images", "found -800"), id="card-images-negative"),
    pytest.param("dataset.json", {"name": 5}, ("name", "must be a string, found an integer"), id="card-name-number"),
    pytest.param("dataset.json", {"generator_info": ["untrained"]}, ("generator_info", "must be an object"),
                 id="card-generator-info-list"),
    pytest.param("dataset.json", {"sha256": {"a": 1}}, ("sha256", "must be a string"), id="card-sha-object"),
    pytest.param("model.json", {"dataset": 42}, ("dataset", "an object or a string, found an integer"),
                 id="model-dataset-number"),
    pytest.param("model.json", {"dataset": {"name": "x", "images": -5}}, ("dataset.images", "found -5"),
                 id="model-dataset-images-negative"),
    pytest.param("model.json", {"num_classes": "3"}, ("num_classes", "found a string"), id="model-classes-text"),
    pytest.param("model.json", {"dataset": {"path": ["/x"]}}, ("dataset.path", "must be a string"),
                 id="model-dataset-path-list"),
    pytest.param("provenance.json", {"inputs": ["weights"]}, ("inputs", "must be an object, found a list"),
                 id="provenance-inputs-list"),
    pytest.param("provenance.json", {"inputs": {"dataset": "sha"}}, ("inputs.dataset", "must be an object"),
                 id="provenance-input-text"),
    pytest.param("provenance.json", {"trained_on": ["a"]}, ("trained_on", "must be a string"),
                 id="provenance-trained-on-list"),
]


@pytest.mark.parametrize(("name", "fields", "names"), CARD_CASES)
def test_cards_with_mistyped_or_out_of_range_fields_are_refused(tmp_path, name, fields, names):
    run = fx.dataset_run(tmp_path, "ds", "toyset", "vec2face_tiny") if name == "dataset.json" else eval_dir(tmp_path)
    path = run / name
    card = json.loads(path.read_text()) if path.exists() else {"backbone": "tiny", "recipe": "tiny-arcface"}
    card.update(fields)
    path.write_text(json.dumps(card))
    refused_cleanly(tmp_path, run, path, *names)


def test_deeply_nested_free_form_values_are_shown_as_text(tmp_path):
    """``settings`` and provenance fields are printed whatever they hold; 900 levels of nesting are text
    (elided), not a recursion error."""
    run = fx.dataset_run(tmp_path, "ds", "toyset", "vec2face_tiny")
    card = json.loads((run / "dataset.json").read_text())
    card["settings"] = json.loads("[" * 900 + "]" * 900)
    (run / "dataset.json").write_text(json.dumps(card))
    (run / "provenance.json").write_text('{"device": ' + "[" * 900 + "]" * 900 + "}")
    result, out = report(tmp_path, run, extra=("--section", "datasets", "--section", "provenance"))
    succeeded(result)
    assert "[[[[[[\u2026]]]]]]" in out.read_text()


@pytest.mark.parametrize("name", ["results.json", "analysis/summary.json", "dataset.json", "model.json",
                                  "provenance.json", "config.toml"])
def test_bytes_that_are_not_utf8_are_one_line(tmp_path, name):
    run = fx.analysis_run(tmp_path, "an", "toyset", n_ids=20) if name.startswith("analysis") else eval_dir(tmp_path)
    path = run / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'{"name": "caf\xe9"}' if name != "config.toml" else b'suite = "caf\xe9"\n')
    refused_cleanly(tmp_path, run, path, "not UTF-8", "byte")


@pytest.mark.parametrize(("name", "text", "names"), [
    pytest.param("dataset.json", "[1, 2]", ("must hold an object, found a list",), id="card-a-list"),
    pytest.param("model.json", '"tiny"', ("must hold an object, found a string",), id="model-a-string"),
    pytest.param("config.toml", "model = [", ("invalid TOML",), id="config-invalid"),
    pytest.param("analysis/summary.json", '{"eer": 0.1,', ("invalid JSON", "line 1"), id="summary-truncated"),
    pytest.param("results.json", '[{"accuracy": ' + "9" * 5000 + "}]", ("invalid JSON", "number too long"),
                 id="results-integer-of-5000-digits"),
    pytest.param("analysis/summary.json", '{"dataset": "\\udcff"}', ("invalid JSON", "lone surrogate"),
                 id="summary-lone-surrogate-escape"),
])
def test_files_that_do_not_parse_are_one_line(tmp_path, name, text, names):
    run = eval_dir(tmp_path)
    (run / name).parent.mkdir(parents=True, exist_ok=True)
    (run / name).write_text(text)
    refused_cleanly(tmp_path, run, run / name, *names)


def test_a_config_model_that_is_a_table_is_not_a_model_folder(tmp_path):
    """``model`` in config.toml means a run folder only for ``evaluate``; a table there (another command's
    config) is passed over, not a traceback."""
    run = eval_dir(tmp_path)
    (run / "config.toml").write_text('[model]\nbackbone = "ir50"\n')
    result, out = report(tmp_path, run, extra=("--section", "summary"))
    succeeded(result)
    assert "toyset" in out.read_text()


def test_a_broken_model_folder_an_evaluation_names_is_passed_over(tmp_path):
    """The FR run folder named by an evaluation's config.toml was not given: its cards are consulted only to
    name the dataset, so malformed ones are left aside (the rows keep their own dataset name)."""
    model = tmp_path / "elsewhere" / "fr"
    model.mkdir(parents=True)
    (model / "model.json").write_text(json.dumps({"dataset": {"name": "theirs", "images": "many"}}))
    (model / "provenance.json").write_text('{"inputs": ["weights"]}')  # a list: a traceback before
    run = eval_dir(tmp_path)
    (run / "config.toml").write_text(f'suite = "toy-five"\nmodel = "{model}"\n')
    result, out = report(tmp_path, run, extra=("--section", "summary"))
    succeeded(result)
    assert "found" in result.stdout and "of dataset 'toyset'" in result.stdout


# -------------------------------------------------------------------------------------- analysis arrays


def _npy_header_only(path: Path, shape: tuple, dtype: str = "<f8") -> None:
    """A ``.npy`` whose header declares ``shape`` and holds no data (a hostile size claim)."""
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": dtype, "fortran_order": False, "shape": shape})


def _npy_raw_header(path: Path, header: bytes) -> None:
    """A ``.npy`` whose header dictionary is ``header`` as written (numpy's parser chokes on it)."""
    header = header.ljust(117) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(24))


@pytest.mark.parametrize(("write", "names"), [
    pytest.param(lambda p, m: np.save(p, np.array([Payload(m)], dtype=object), allow_pickle=True),
                 ("cannot read array", "Python objects"), id="object-array-payload"),
    pytest.param(lambda p, m: p.write_bytes(pickle.dumps(Payload(m))), ("not a .npy array",), id="raw-pickle"),
    pytest.param(lambda p, m: np.save(p, np.array(["0.1", "0.2"])), ("array of numbers", "dtype"), id="strings"),
    pytest.param(lambda p, m: np.save(p, np.array([0.1, 0.2], dtype=np.complex128)), ("array of numbers",),
                 id="complex"),
    pytest.param(lambda p, m: np.save(p, np.full(50, np.nan)), ("NaN or infinite values", "50 of 50"), id="nan-filled"),
    pytest.param(lambda p, m: np.save(p, np.array([0.5, np.inf])), ("NaN or infinite", "1 of 2"), id="one-inf"),
    pytest.param(lambda p, m: np.save(p, np.zeros((20, 25))), ("1-D array", "(20, 25)"), id="two-d"),
    pytest.param(lambda p, m: np.save(p, np.array([0.5, 1.7e308, -0.2])), ("values beyond", "1.7e+308"),
                 id="finite-near-the-float-limit"),
    pytest.param(lambda p, m: _npy_header_only(p, (10**12,)), ("larger than a report reads",), id="huge-claim"),
    pytest.param(lambda p, m: _npy_header_only(p, (1000,)), ("truncated",), id="truncated"),
    pytest.param(lambda p, m: p.write_bytes(b""), ("not a .npy array",), id="empty-file"),
    pytest.param(lambda p, m: _npy_raw_header(p, b"{'descr': '<f8', 'fortran_order': False, 'shape': (3,), "),
                 ("cannot read array", "garbled header"), id="header-unclosed"),
    pytest.param(lambda p, m: _npy_raw_header(p, b"{'descr': '<f8', 'shape': " + b"(" * 400 + b")" * 400 + b"}"),
                 ("cannot read array",), id="header-nested-400-deep"),
])
def test_analysis_arrays_that_are_not_plain_finite_vectors_are_refused(tmp_path, marker, write, names):
    run = fx.analysis_run(tmp_path, "an", "toyset", n_ids=20)
    path = run / "analysis" / "genuine.npy"
    write(path, marker)
    refused_cleanly(tmp_path, run, path, *names)


@pytest.mark.parametrize(("write", "names"), [
    pytest.param(lambda p, m: np.save(p, np.zeros((2, 2, 8, 8, 3), np.float32)), ("uint8 image pairs", "float32"),
                 id="float-pairs"),
    pytest.param(lambda p, m: np.save(p, np.zeros((2, 3, 8, 8, 3), np.uint8)), ("(2, 3, 8, 8, 3)",), id="three-per-pair"),
    pytest.param(lambda p, m: np.save(p, np.array([Payload(m)], dtype=object), allow_pickle=True),
                 ("Python objects",), id="pickled-pairs"),
])
def test_leakage_pairs_that_are_not_image_pairs_are_refused(tmp_path, marker, write, names):
    run = fx.analysis_run(tmp_path, "an", "toyset", n_ids=20)
    path = run / "analysis" / "summary.json"
    summary = json.loads(path.read_text())
    summary["analyses"] = {"leakage": {"leaked_at_fmr_share": 0.2, "leaked_share": 0.3, "threshold": 0.4,
                                       "closest": [{"cosine": 0.9}, {"cosine": 0.8}]}}
    path.write_text(json.dumps(summary))
    pairs = run / "analysis" / "leakage_pairs.npy"
    write(pairs, marker)
    refused_cleanly(tmp_path, run, pairs, *names, extra=("--section", "dataset-metrics"))


# --------------------------------------------------------------------------- confinement: images in HTML


def _card_run(tmp_path: Path, **card) -> Path:
    run = tmp_path / "shared" / "gen-run"
    run.mkdir(parents=True)
    (run / "dataset.json").write_text(json.dumps({"name": "shared-set", "identities": 3, "images": 6, **card}))
    return run


def _skipped(result, out: Path, *names) -> str:
    """The report was written with no image and one warning naming what was skipped; returns it."""
    succeeded(result)
    assert images_in(out.read_text()) == []
    lines = [w for w in warnings_of(result) if "not embedded" in w]
    assert len(lines) == 1, result.stderr
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


def test_dataset_json_path_to_a_private_folder_is_not_embedded(tmp_path, private):
    run = _card_run(tmp_path, path=str(private))
    before = files_under(tmp_path)
    result, out = report(tmp_path, run, extra=("--section", "datasets"))
    _skipped(result, out, run, private, "outside the folders given", f"--images-from {private}")
    assert set(files_under(tmp_path)) - set(before) == {"out/r.html", "out/r.html.json"}  # and its record only
    # the same folder named on the command line is embedded: the check above can fail
    result, out = report(tmp_path, run, extra=("--section", "datasets", "--images-from", private))
    succeeded(result)
    assert len(images_in(out.read_text())) == 1 and warnings_of(result) == []


@pytest.mark.parametrize("key", ["dataset", "train", "path"])
def test_dataset_json_relative_traversal_is_not_embedded(tmp_path, private, key):
    run = _card_run(tmp_path, **{key: os.path.relpath(private, tmp_path / "shared" / "gen-run")})
    result, out = report(tmp_path, run, extra=("--section", "datasets"))
    _skipped(result, out, "shared-set", "outside the folders given")


def test_dataset_json_naming_a_link_inside_the_run_is_not_embedded(tmp_path, private):
    run = _card_run(tmp_path, dataset="images")
    (run / "images").symlink_to(private, target_is_directory=True)
    result, out = report(tmp_path, run, extra=("--section", "datasets"))
    _skipped(result, out, run / "images")


def test_model_json_dataset_path_elsewhere_is_not_embedded(tmp_path, private):
    run = tmp_path / "fr"
    run.mkdir()
    (run / "model.json").write_text(json.dumps({"backbone": "tiny", "recipe": "tiny-arcface",
                                                "dataset": {"path": str(private), "images": 6, "identities": 3}}))
    result, out = report(tmp_path, run, extra=("--section", "datasets"))
    _skipped(result, out, private)


@pytest.mark.parametrize("card", [b'{"train": "../../etc"}', b'{"name": "caf\xe9"}', b'{"train": 5}'])
def test_an_unsound_card_beside_a_training_set_elsewhere_is_passed_over(tmp_path, private, card):
    """The card beside a training set a model.json names lies outside the runs given: consulted only to
    name the set, an unsound one is left aside (the set is named by its folder) and nothing is embedded."""
    (private.parent / "dataset.json").write_bytes(card)
    run = tmp_path / "fr"
    run.mkdir()
    (run / "model.json").write_text(json.dumps({"recipe": "tiny-arcface", "dataset": {"path": str(private)}}))
    result, out = report(tmp_path, run, extra=("--section", "datasets"))
    _skipped(result, out, private)
    assert "<h3>private-faces</h3>" in out.read_text()


def test_analysis_of_a_carded_dataset_elsewhere_is_not_embedded(tmp_path, private):
    """An analysis summary's ``dataset`` path leads to a folder whose dataset.json gives a card: the card
    is shown, its images are not."""
    (private.parent / "dataset.json").write_text(json.dumps({"name": "private", "train": private.name}))
    run = fx.analysis_run(tmp_path, "an", "toyset", n_ids=20)
    path = run / "analysis" / "summary.json"
    summary = json.loads(path.read_text())
    summary["dataset"] = str(private)
    path.write_text(json.dumps(summary))
    result, out = report(tmp_path, run, extra=("--section", "datasets"))
    _skipped(result, out, private)
    assert "<h3>private</h3>" in out.read_text()


def test_samples_png_linking_elsewhere_is_not_embedded(tmp_path):
    secret = tmp_path / "home" / "holiday.png"
    secret.parent.mkdir(parents=True)
    secret.write_bytes(png_bytes((200, 10, 10)))
    run = fx.dataset_run(tmp_path / "shared", "gen-run", "shared-set", "vec2face_tiny")
    (run / "samples.png").symlink_to(secret)
    result, out = report(tmp_path, run, extra=("--section", "datasets"))
    _skipped(result, out, run / "samples.png", "samples.png of dataset 'shared-set'", "outside the folders given")
    assert base64.b64encode(secret.read_bytes()).decode() not in out.read_text()


@pytest.mark.parametrize("data", [pytest.param(bomb_png(), id="decompression-bomb"),
                                  pytest.param(b"GIF89a" + b"\0" * 40, id="not-png"),
                                  pytest.param(png_bytes()[:30], id="truncated")])
def test_a_samples_png_that_is_no_sane_image_is_left_out_with_a_note(tmp_path, data):
    run = fx.dataset_run(tmp_path, "gen-run", "shared-set", "vec2face_tiny", data)
    result, out = report(tmp_path, run, extra=("--section", "datasets"))
    line = _skipped(result, out, run, "samples.png not embedded")
    assert "samples.png not embedded" in out.read_text() and "warning:" in line


def test_a_real_samples_png_inside_the_run_is_embedded(tmp_path):
    sample = png_bytes((1, 2, 3))
    run = fx.dataset_run(tmp_path, "gen-run", "shared-set", "vec2face_tiny", sample)
    result, out = report(tmp_path, run, extra=("--section", "datasets"))
    succeeded(result)
    assert images_in(out.read_text()) == [base64.b64encode(sample).decode()]


def test_a_dataset_inside_the_run_whose_images_link_elsewhere_is_not_embedded(tmp_path, private):
    run = _card_run(tmp_path, dataset="data")
    data = fx.write_train_folder(run / "data", identities=2, per_identity=2, size=24)
    victim = data / "0000000" / "00000000.png"
    victim.unlink()
    victim.symlink_to(next((private / "0000000").iterdir()))
    result, out = report(tmp_path, run, extra=("--section", "datasets"))
    _skipped(result, out, victim, "links outside")


def test_a_dataset_wholly_inside_the_run_is_embedded(tmp_path):
    run = _card_run(tmp_path, dataset="data")
    fx.write_train_folder(run / "data", identities=2, per_identity=2, size=24)
    result, out = report(tmp_path, run, extra=("--section", "datasets"))
    succeeded(result)
    assert len(images_in(out.read_text())) == 1 and warnings_of(result) == []


def test_leakage_pairs_linked_from_elsewhere_are_not_embedded(tmp_path):
    elsewhere = tmp_path / "home" / "pairs.npy"
    elsewhere.parent.mkdir(parents=True)
    np.save(elsewhere, np.full((2, 2, 8, 8, 3), 77, np.uint8))
    run = fx.analysis_run(tmp_path, "an", "toyset", n_ids=20)
    path = run / "analysis" / "summary.json"
    summary = json.loads(path.read_text())
    summary["analyses"] = {"leakage": {"leaked_at_fmr_share": 0.2, "closest": [{"cosine": 0.9}]}}
    path.write_text(json.dumps(summary))
    (run / "analysis" / "leakage_pairs.npy").symlink_to(elsewhere)
    result, out = report(tmp_path, run, extra=("--section", "dataset-metrics"))
    _skipped(result, out, "closest leakage pairs", "leakage_pairs.npy")
    # a copy inside the run is drawn (with fewer cosines than pairs: 'cos ?' for the second)
    (run / "analysis" / "leakage_pairs.npy").unlink()
    np.save(run / "analysis" / "leakage_pairs.npy", np.load(elsewhere))
    result, out = report(tmp_path, run, extra=("--section", "dataset-metrics"))
    succeeded(result)
    assert len(images_in(out.read_text())) == 1 and warnings_of(result) == []


def test_a_sub_folder_linking_to_a_run_elsewhere_keeps_its_numbers_not_its_images(tmp_path):
    outside = fx.dataset_run(tmp_path / "home", "their-run", "their-set", "vec2face_tiny", png_bytes())
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "linked").symlink_to(outside, target_is_directory=True)
    result, out = report(tmp_path, shared, extra=("--section", "datasets"))
    _skipped(result, out, "samples.png")
    assert "their-set" in out.read_text()


def test_images_from_must_be_a_folder(tmp_path):
    run = eval_dir(tmp_path)
    refused_cleanly(tmp_path, run, tmp_path / "nowhere", "--images-from", extra=("--images-from", tmp_path / "nowhere"))


# ----------------------------------------------------------------------------------- escaping (regression)


def test_script_in_a_dataset_name_and_quotes_in_a_benchmark_are_escaped(tmp_path):
    evil = '<script>alert("x")</script>'
    run = fx.eval_run(tmp_path, "eval", evil, TOY)
    patch_row(run, benchmark='toy_lfw" onmouseover="alert(1)')
    card = fx.dataset_run(tmp_path, "ds", evil, "<img src=x onerror=alert(1)>")
    result, out = report(tmp_path, run, card, extra=("--section", "summary", "--section", "datasets"))
    succeeded(result)
    text = out.read_text()
    assert "<script" not in text and "onmouseover=\"" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert "toy_lfw&quot; onmouseover=&quot;alert(1)" in text


# ------------------------------------------------------------------------------------ the written report


def test_links_planted_at_predictable_temporary_names_leave_their_target_unchanged(tmp_path):
    run = eval_dir(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "reports" / "r.html"
    out.parent.mkdir()
    names = [f".r.html.tmp-{pid}" for pid in (os.getpid(), *range(1, 300))]
    names += [".r.html.tmp", "r.html.tmp", ".r.html.partial", "r.html.partial", ".r.html.tmp-0.old"]
    for name in names:
        (out.parent / name).symlink_to(victim)
    result, _ = report(tmp_path, run, extra=("--section", "summary"), out=out)
    succeeded(result)
    assert victim.read_text() == "precious"
    assert out.is_file() and not out.is_symlink() and out.read_text().startswith("<!DOCTYPE html>")
    for name in names:
        assert (out.parent / name).is_symlink() and os.readlink(out.parent / name) == str(victim)
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([*names, "r.html", "r.html.json"])  # no temporary


def test_an_output_that_is_a_link_is_replaced_not_written_through(tmp_path):
    run = eval_dir(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "r.html"
    out.symlink_to(victim)
    plain = invoke(create_cli(), ["report", run, "--out", out, "--section", "summary"])  # not its own output
    assert "holds no record" in refused(plain, out) and out.is_symlink() and victim.read_text() == "precious"
    result, _ = report(tmp_path, run, extra=("--section", "summary"), out=out)  # --overwrite replaces the link
    succeeded(result)
    assert victim.read_text() == "precious"
    assert not out.is_symlink() and out.read_text().startswith("<!DOCTYPE html>")


def test_a_refused_report_keeps_an_earlier_report(tmp_path):
    """A refusal leaves the earlier file at --out as it was, and no temporary beside it."""
    run = eval_dir(tmp_path)
    out = tmp_path / "reports" / "r.html"
    out.parent.mkdir()
    out.write_text("earlier report")
    patch_row(run, accuracy=float("nan"))
    result, _ = report(tmp_path, run, out=out)
    refused(result, run / "results.json", "accuracy")
    assert out.read_text() == "earlier report" and [p.name for p in out.parent.iterdir()] == ["r.html"]


def test_a_record_without_its_finished_entry_is_a_report_to_make_again(tmp_path):
    """``OUT.json`` whose ``rerun`` entry lacks ``finished`` (edited, or an older writer) reads as unfinished."""
    run = eval_dir(tmp_path)
    succeeded(report(tmp_path, run)[0])
    side = tmp_path / "out" / "r.html.json"
    record = json.loads(side.read_text())
    del record["rerun"]["finished"]
    side.write_text(json.dumps(record))
    succeeded(invoke(create_cli(), ["report", run, "--out", tmp_path / "out" / "r.html"]))
    assert json.loads(side.read_text())["rerun"]["finished"]


@pytest.mark.parametrize("name", ["/", "../.."])
def test_a_record_naming_a_finished_output_outside_its_folder_is_refused_unread(tmp_path, name):
    """A ``finished`` name in ``OUT.json`` is hashed to tell whether the output is intact: one that leaves the
    folder (``/`` would hash the whole disk) is refused as an unreadable record, naming it."""
    run = eval_dir(tmp_path)
    succeeded(report(tmp_path, run)[0])
    side = tmp_path / "out" / "r.html.json"
    record = json.loads(side.read_text())
    record["rerun"]["finished"][name] = "0" * 64
    side.write_text(json.dumps(record))
    line = refused(invoke(create_cli(), ["report", run, "--out", tmp_path / "out" / "r.html"]), side, "leaves the folder")
    assert "--overwrite" in line
