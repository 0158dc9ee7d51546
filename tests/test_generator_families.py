"""Every generator family under one recipe, on toyfaces: a small set from each tiny generator (Vec2Face,
Arc2Face, DCFace, IDiff-Face in both its IDiff-Face and UIFace samplers), the same ``tiny-arcface`` FR
training on each, the same ``toy-five`` evaluation, and one report that puts them side by side.

The tiny generators have random weights, so the numbers are a pipeline check, not a ranking: what is tested
is that each family's set goes through the same commands, that the report shows one row per set with the
same recipe, and that each dataset card says how the set was conditioned (DCFace on real appearance, with
its style bank's provenance)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import cli_in
from test_report_html import parse

from facebench.pluginmanager import reset_plugins

IDS, IMAGES = 4, 4
#: generator -> (extra generate arguments, how its weights are made); every set is IDS x IMAGES.
FAMILIES = {
    "vec2face_tiny": (["--ids", "ids.npy", "--untrained"], None),
    "arc2face_tiny": (["--ids", "ids.npy", "--generator-option", "steps=2"], ["arc2face", "make-tiny"]),
    "dcface_tiny": (["--n-ids", str(IDS), "--generator-option", "style_bank=toy/train"], ["dcface", "make-tiny"]),
    "idiff_face_tiny": (["--ids", "ids.npy"], ["idiff-face", "make-tiny"]),
    "uiface_tiny": (["--ids", "ids.npy", "--generator-option", "sampler=uiface"], ["idiff-face", "make-tiny"]),
}


def _ok(result, step):
    assert result.exit_code == 0, f"{step}: {result.output}"
    return result


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    home = tmp_path_factory.mktemp("families")
    quiet = os.environ.get("FACEBENCH_QUIET")
    os.environ["FACEBENCH_QUIET"] = "1"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads per process thrash on a shared 2-core machine
    reset_plugins()
    try:
        _ok(cli_in(home, "toyfaces", "build", "toy", "--identities", "8", "--images-per-identity", "2", "--size", "56",
                   "--pairs", "40", "--packs", "toy_lfw,toy_cfp_fp"), "build")
        np.save(home / "ids.npy", np.random.default_rng(3).standard_normal((IDS, 512)).astype(np.float32))
        for name, (extra, make) in FAMILIES.items():
            generator = "idiff_face_tiny" if name == "uiface_tiny" else name
            weights = [] if make is None else ["--weights", f"weights/{generator}"]
            if make is not None and not (home / "weights" / generator).exists():
                _ok(cli_in(home, *make, f"weights/{generator}"), f"{name} weights")
            _ok(cli_in(home, "generate", "--generator", generator, *weights, *extra, "--images-per-id", str(IMAGES),
                       "--out", f"gen/{name}", "--set", f'generation.dataset_name="{name}"', "--device", "cpu"),
                f"{name} generate")
            _ok(cli_in(home, "train-fr", "--recipe", "tiny-arcface", "--data", f"gen/{name}/{name}", "--out",
                       f"fr/{name}", "--set", "optim.epochs=1", "--set", "optim.batch_per_gpu=8", "--device", "cpu"),
                f"{name} train-fr")
            _ok(cli_in(home, "evaluate", "--suite", "toy-five", "--model", f"fr/{name}", "--data-root", "toy",
                       "--out", f"eval/{name}", "--device", "cpu"), f"{name} evaluate")
        runs = [f"{kind}/{name}" for name in FAMILIES for kind in ("gen", "eval")]
        _ok(cli_in(home, "report", *runs, "--out", "report.html"), "report")
    finally:
        if quiet is None:
            os.environ.pop("FACEBENCH_QUIET", None)
        torch.set_num_threads(threads)
        reset_plugins()
    return home


def test_each_family_is_trained_and_evaluated_with_the_same_recipe(families):
    for name in FAMILIES:
        card = json.loads((families / "gen" / name / "dataset.json").read_text())
        assert (card["identities"], card["images"], card["generator_info"]["untrained"]) == (IDS, IDS * IMAGES, True)
        model = json.loads((families / "fr" / name / "model.json").read_text())
        assert (model["recipe"], model["num_classes"], model["num_images"]) == ("tiny-arcface", IDS, IDS * IMAGES)
        rows = json.loads((families / "eval" / name / "results.json").read_text())
        assert sorted(r["benchmark"] for r in rows) == ["toy_cfp_fp", "toy_lfw"], name
        assert all(0.0 <= r["accuracy"] <= 1.0 and r["dataset"] == name for r in rows), name


def test_the_report_puts_every_family_side_by_side(families):
    five = parse((families / "report.html").read_text()).tables[0]
    measured = [[c for c, _ in cells] for cls, cells in five if cls == "measured"]
    for name in FAMILIES:
        # one row per set in the accuracy table, marked as the pipeline check an untrained generator is,
        # trained with the one recipe (the last column)
        mine = [r for r in measured if r[0].startswith(name + " [pipeline check: untrained generator]")]
        assert len(mine) == 1, name
        assert mine[0][-1] == "se_iresnet_tiny + arcface", name
        rows = json.loads((families / "eval" / name / "results.json").read_text())
        shown = {"toy_lfw": 2, "toy_cfp_fp": 3}  # LFW and CFP-FP columns
        for row in rows:
            assert float(mine[0][shown[row["benchmark"]]].split()[0]) == pytest.approx(100 * row["accuracy"], abs=0.005)


def test_the_dcface_card_says_it_is_conditioned_on_real_appearance(families):
    info = json.loads((families / "gen" / "dcface_tiny" / "dataset.json").read_text())["generator_info"]
    assert info["conditioned_on_real_appearance"] is True
    bank = info["style_bank"]  # the bank's provenance: which photos, hashed, how many
    assert (bank["path"], bank["images"], bank["size"]) == ("toy/train", 16, 56) and len(bank["sha256"]) == 64
    report = (families / "report.html").read_text()
    assert "conditioned on real appearance" in _card(report, "dcface_tiny")
    idiff = json.loads((families / "gen" / "uiface_tiny" / "dataset.json").read_text())
    assert "uiface" in json.dumps(idiff["generator_info"])  # which sampler made the set is on its card
    assert "conditioned on real appearance" not in _card(report, "uiface_tiny")


def _card(report: str, name: str) -> str:
    """The report's dataset card of ``name`` (up to the next card)."""
    start = report.index(f"<h3>{name}")
    end = report.find("<h3>", start + 1)
    return report[start:end if end > 0 else len(report)]
