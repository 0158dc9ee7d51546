"""facebench demo: the whole pipeline on a tiny toy world, through the same command and config as the
README's first command, then a rerun that reuses every finished step."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import torch
from click.testing import CliRunner
from facebench_plugins.demo import run as demo_run
from facebench_plugins.demo.run import QUICK, config_path

from facebench.cli import create_cli
from facebench.experiments import load_experiment, resolve_steps

# A one-epoch teacher on 40 identities has crowded centres: tau 0.9 still keeps 16 identity vectors
# (16 x 5 = 80 images: more than one batch of the tiny recipe). The pose model sees 128 faces once and
# AttrOP takes at most 5 steps (its minimum): the AttrOP arm runs the same code, only shorter.
TINY = ("vars.identities=40", "vars.images=4", "vars.pairs=40", "vars.fr_epochs=1", "vars.gen_epochs=1",
        "vars.gen_identities=16", "vars.gen_images=5", "vars.tau=0.9", "vars.pose_images=128", "vars.pose_epochs=1",
        "vars.attrop_steps=5")


class Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells, self._in = [], False

    def handle_starttag(self, tag, attrs):
        if tag == "td":
            self._in = True
            self.cells.append("")

    def handle_endtag(self, tag):
        if tag == "td":
            self._in = False

    def handle_data(self, data):
        if self._in:
            self.cells[-1] += data


def test_demo_config_uses_only_installed_commands(tmp_path):
    cli = create_cli()
    from facebench.experiments import find_command

    cfg = load_experiment(config_path(), QUICK)
    steps = resolve_steps(cfg, tmp_path)
    assert [s.name for s in steps if find_command(cli, s.argv) is None] == []
    assert {s.name for s in steps} >= {"toyfaces", "teacher", "features", "vec2face", "identities",
                                       "generate-vec2face", "generate-baseline", "fr-vec2face", "fr-baseline",
                                       "evaluate-real", "evaluate-vec2face", "evaluate-baseline", "pose-model",
                                       "generate-vec2face-attrop", "fr-vec2face-attrop", "evaluate-vec2face-attrop"}


def test_quick_demo_leaves_out_the_newer_protocols(tmp_path, monkeypatch):
    """--quick stays at its few minutes: the toy IJB / RFW / TinyFace steps and dataset metrics are full-demo only."""
    asked = {}

    def record(cli, cfg, out, **kwargs):
        asked.update(kwargs, steps=[s.name for s in cfg.steps])
        raise SystemExit(0)

    monkeypatch.setattr(demo_run, "run_experiment", record)
    for quick in (True, False):
        try:
            demo_run.run_demo(create_cli(), tmp_path, quick=quick)
        except SystemExit:
            pass
        left_out = set(asked["steps"]) - set(asked["only"] or asked["steps"])
        if quick:
            assert left_out == {"toy-protocols", "protocols-real", "protocols-vec2face", "protocols-vec2face-attrop",
                                "protocols-baseline", "metrics-vec2face", "metrics-vec2face-attrop",
                                "metrics-baseline"}
        else:
            assert left_out == set()


def test_tiny_demo_end_to_end_and_rerun_reuses_steps(tmp_path):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out)] + [a for t in TINY for a in ("--set", t)]
    result = CliRunner().invoke(create_cli(), args)
    assert result.exit_code == 0, result.output
    report = out / "report.html"
    assert result.output.strip().splitlines()[-1] == str(report)
    done = json.loads((out / "steps.json").read_text())["done"]
    assert len(done) == len(load_experiment(config_path()).steps)
    parser = Cells()
    parser.feed(report.read_text())
    for label in ("toyfaces (real)", "Vec2Face (tiny)", "Vec2Face (tiny) + AttrOP", "noise_projection baseline"):
        assert any(c.startswith(label) and "measured here" in c for c in parser.cells), label
    assert any("HSFace10K" in c and "published" in c for c in parser.cells)
    accuracy = json.loads((out / "eval-real" / "results.json").read_text())
    assert {row["benchmark"] for row in accuracy} >= {"toy_lfw", "toy_cfp_fp", "toy_cplfw", "toy_agedb_30", "toy_calfw"}
    # the teacher's width (vars.embedding) is the width of every feature, identity vector and the generator's input
    width = int(load_experiment(config_path()).vars["embedding"])
    assert np.load(out / "features" / "train.centers.npy").shape[1] == width == np.load(out / "ids.npy").shape[1]
    stored = torch.load(out / "vec2face" / "generator.pth", weights_only=True)
    assert stored["vec2face_config"]["feature_dim"] == width
    # the AttrOP arm steered 34% of each identity's 5 images (2) toward |yaw| 60, with the demo's pose model
    attrop = json.loads((out / "gen-vec2face-attrop" / "dataset.json").read_text())
    assert attrop["stats"]["attrop"]["images"] == 16 * 2 and attrop["stats"]["attrop"]["max_steps"] <= 5
    assert "pose=60:0.34" in json.dumps(attrop)
    pose = json.loads((out / "analysis-vec2face-attrop" / "analysis" / "summary.json").read_text())
    assert pose["analyses"]["pose-quality"]["yaw"]["extractor"] == "sixdrepnet-tiny"
    # the full demo's newer protocols: toy IJB / RFW / TinyFace for every arm, dataset metrics of the synthetic sets
    protocols = json.loads((out / "protocols-vec2face" / "results.json").read_text())
    assert {row["benchmark"] for row in protocols} >= {"toy_ijb", "toy_ijb_1n", "toy_tinyface", "toy_rfw_tone1"}
    metrics = json.loads((out / "metrics-baseline" / "analysis" / "summary.json").read_text())["analyses"]
    assert {"fidelity", "leakage"} <= set(metrics)
    html = report.read_text()
    for section in ("TAR@FAR", "Borda", "KID", "SER"):
        assert section in html, section
    # a rerun runs nothing again and writes the same report path
    again = CliRunner().invoke(create_cli(), args)
    assert again.exit_code == 0, again.output
    assert "finished in" not in again.output
    assert again.output.count("done before") == len(done)
