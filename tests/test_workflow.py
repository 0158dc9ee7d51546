"""The researcher's own workflow on toy data, end to end, as the docs show it: build a toy world, train on
it, evaluate, generate a second set another way, train and evaluate on it, and compare both training runs
with ``facebench report RUN_A RUN_B`` and no ``--label``: one measured row, one card and one size-plot
point per dataset, each named after its dataset."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import WORKFLOW_SIZE, cli_in

from facebench.data import identify, open_dataset


def _section(text: str, name: str) -> str:
    start = text.index(f'id="sec-{name}"')
    end = text.find("<section", start)
    return text[start:end if end > 0 else len(text)]


def test_the_scenario_reports_one_row_card_and_point_per_dataset(workflow, monkeypatch):
    from facebench_plugins.reports import figures

    home = workflow.home
    points = []
    real_plot = figures.scaling_plot

    def spy(published, measured):
        points.extend(measured)
        return real_plot(published, measured)

    monkeypatch.setattr(figures, "scaling_plot", spy)
    result = cli_in(home, "report", "runs/tiny", "runs/noise", "--out", "reports/compare.html")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line for line in lines if not line.startswith("warning:")] == [
        "found runs/tiny: FR model (tiny-arcface) of dataset 'toy'",
        "found runs/tiny/eval-toy-five: evaluation (5 benchmarks) of dataset 'toy'",
        "found runs/noise: FR model (tiny-arcface) of dataset 'noise-set'",
        "found runs/noise/eval-toy-five: evaluation (5 benchmarks) of dataset 'noise-set'",
        "reports/compare.html",
    ]
    # the training sets lie outside the runs given: their cards have no sample grid, and the report says so
    assert [line.split(" not embedded: ")[0] for line in lines if line.startswith("warning:")] == [
        "warning: runs/tiny: sample images of dataset 'toy'",
        "warning: runs/noise: sample images of dataset 'noise-set'"]
    text = (home / "reports" / "compare.html").read_text()

    # one measured row per dataset, named after it, holding the accuracies evaluate wrote
    summary = _section(text, "summary")
    five = summary[:summary.index("</table>")]
    rows = re.findall(r'<tr class="measured"><td class="text">(.*?)<span', five)
    assert rows == ["toy", "noise-set"]
    averages = {}
    for name, run in (("toy", "tiny"), ("noise-set", "noise")):
        results = json.loads((home / "runs" / run / "eval-toy-five" / "results.json").read_text())
        assert {r["dataset"] for r in results} == {name}  # evaluate names the row the same way
        averages[name] = 100 * sum(r["accuracy"] for r in results) / len(results)
        row = five[five.index(f'<td class="text">{name}<span'):]
        row = row[:row.index("</tr>")]
        cells = [float(c.split()[0]) for c in re.findall(r"<td(?: class=\"best\")?>([0-9.]+[^<]*)</td>", row)]
        assert cells[-1] == pytest.approx(averages[name], abs=0.006)

    # one card per dataset, named after it; the generated set's card shows its generator
    cards = re.findall(r'<div class="card"><h3>(.*?)</h3>', _section(text, "datasets"))
    assert cards == ["toy", "noise-set"]
    noise_card = _section(text, "datasets").split("<h3>noise-set</h3>")[1]
    assert "noise_projection" in noise_card and "tiny-arcface" in noise_card

    # one size-plot point per dataset, at its size, with the row's average; no line joins them
    size = WORKFLOW_SIZE["identities"] * WORKFLOW_SIZE["images"]
    assert [(name, x) for name, x, _ in points] == [("toy", size), ("noise-set", size)]
    assert [y for *_, y in points] == pytest.approx([averages["toy"], averages["noise-set"]], abs=1e-6)


def test_every_command_names_a_dataset_the_same_way(workflow):
    home = workflow.home
    # the generate run folder is a dataset for every command that reads one
    assert identify(home / "runs" / "noise-set").name == "noise-set"
    with open_dataset(home / "runs" / "noise-set") as reader:
        assert reader.path == str(home / "runs" / "noise-set" / "dataset.folder")
    model = json.loads((home / "runs" / "noise" / "model.json").read_text())
    card = json.loads((home / "runs" / "noise-set" / "dataset.json").read_text())
    assert model["dataset"]["name"] == "noise-set" and model["dataset"]["sha256"] == card["sha256"]
    toy = json.loads((home / "runs" / "tiny" / "model.json").read_text())
    world = json.loads((home / "toy" / "dataset.json").read_text())
    assert toy["dataset"]["name"] == "toy" and toy["dataset"]["sha256"] == world["sha256"]
    info = cli_in(home, "data", "info", "runs/noise-set", "--json")
    assert info.exit_code == 0 and json.loads(info.output)["identities"] == WORKFLOW_SIZE["identities"]
    grid = cli_in(home, "data", "grid", "runs/noise-set", "--out", "noise.png")
    assert grid.exit_code == 0 and (home / "noise.png").is_file()
    embedded = cli_in(home, "embed", "--extractor", "fr-run", "--weights", "runs/tiny", "runs/noise-set",
                      "--out", "noise-feats.npy")
    assert embedded.exit_code == 0, embedded.output
    assert len(np.load(home / "noise-feats.labels.npy")) == WORKFLOW_SIZE["identities"] * WORKFLOW_SIZE["images"]
    world = cli_in(home, "data", "info", "toy", "--json")  # a toyfaces world folder: its training set
    assert world.exit_code == 0 and json.loads(world.output)["path"] == "toy/train"
    analysis = cli_in(home, "analyze", "runs/noise-set", "--extractor", "fr-run", "--weights", "runs/tiny",
                      "--only", "pair-distributions")
    assert analysis.exit_code == 0, analysis.output
    summary = json.loads((home / "runs" / "analyze-noise-set" / "analysis" / "summary.json").read_text())
    assert summary["dataset_name"] == "noise-set"
    assert summary["dataset"] == str(home / "runs" / "noise-set" / "dataset.folder")
    found = cli_in(home, "report", "runs/analyze-noise-set", "--out", "analysis.html")
    assert found.exit_code == 0, found.output
    assert "found runs/analyze-noise-set: analysis (1 analysis) of dataset 'noise-set'" in found.output


def test_the_refused_default_tau_says_what_works(workflow):
    message = workflow.steps["sample-default"].output.strip().splitlines()[-1]
    assert message.startswith("error: only ") and "at tau=0.3;" in message
    assert f"--tau {workflow.tau:g} keeps {WORKFLOW_SIZE['identities']} from the same draws" in message
    # and the suggested value did work (the fixture used it)
    assert "kept 16 identity vectors" in workflow.steps["sample"].output


def test_a_run_that_contributes_nothing_is_named_with_the_folder_meant(workflow):
    home = workflow.home
    result = cli_in(home, "report", "runs/tiny", "runs/noise-set/dataset.folder", "--out", "r2.html")
    assert result.exit_code == 0, result.output
    assert ("warning: runs/noise-set/dataset.folder: nothing to report here or in its sub-folders (looked for "
            "results.json, results.csv, analysis/summary.json, dataset.json, model.json); did you mean "
            "runs/noise-set?") in result.output
    # a model given without its evaluation: said, with the folder that evaluated it
    (home / "elsewhere").mkdir(exist_ok=True)
    alone = cli_in(home, "report", "runs/noise-set", "--out", "r3.html")
    assert alone.exit_code == 0 and "warning" not in alone.output
    model_only = home / "model-only"
    if not model_only.exists():
        model_only.mkdir()
        for name in ("model.json", "provenance.json", "config.toml"):
            (model_only / name).write_bytes((home / "runs" / "noise" / name).read_bytes())
    warned = cli_in(home, "report", "model-only", "--out", "r4.html")
    assert warned.exit_code == 0
    assert ("warning: model-only: its model has no evaluation here, so it has no accuracy row; evaluate it with "
            "facebench evaluate --model model-only --suite SUITE --data-root DIR") in warned.output
