"""The report's Vec2Face+ parts: the VFace rows of the release README beside HSFace (like-for-like recipe
named), the VFace scaling series, and the pose-steering comparison of AttrOP and landmark pose control."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import TOY_PACKS, eval_run, write_train_folder
from facebench_plugins.reports import figures
from facebench_plugins.reports.pose_steering import ATTROP, LANDMARKS, NONE, steering
from test_report_html import EVIL, parse

from facebench.report import write_report
from facebench.runs import Run

#: The Vec2Face+ README's tables, as printed there: images, LFW, CFP-FP, CPLFW, AgeDB, CALFW, Avg.
README = {
    "VFace10K": (500000, [99.35, 93.56, 88.03, 94.33, 94.17], 93.89),
    "VFace20K": (1000000, [99.40, 94.23, 89.10, 95.58, 94.67], 94.60),
    "VFace100K": (4000000, [99.52, 95.09, 90.23, 95.17, 94.38], 94.88),
    "VFace300K": (12000000, [99.57, 94.80, 90.43, 95.17, 94.70], 94.93),
}


def _section(text: str, name: str) -> str:
    start = text.index(f'id="sec-{name}"')
    end = text.find("<section", start)
    return text[start:end if end > 0 else len(text)]


def _cells(row):
    return [c for c, _ in row[1]]


def test_vface_rows_render_with_the_readme_numbers_in_a_like_for_like_group(tmp_path):
    runs = [eval_run(tmp_path, "eval", "toy", dict(zip(TOY_PACKS, [0.9, 0.8, 0.7, 0.8, 0.85])))]
    text = write_report(runs, tmp_path / "r.html").read_text()
    five = parse(text).tables[0]
    for name, (images, values, avg) in README.items():
        rows = [r for r in five if r[1] and r[1][0][0].startswith(name + "published")]
        assert len(rows) == 1, f"{name} shown {len(rows)} times"  # once: not also among the newer methods
        cells = _cells(rows[0])
        assert rows[0][0] == "published"
        assert cells[1] == f"{images / 1e6:g}M images"
        assert [float(c.split()[0]) for c in cells[2:8]] == values + [avg]
        assert np.mean(values) == pytest.approx(avg, abs=0.005)  # the README's average of its five values
    headings = [_cells(r)[0] for r in five if r[0] == "group"]
    plus = next(h for h in headings if "Vec2Face+" in h)
    assert "arXiv 2507.17192" in plus and "SE-IResNet50 + ArcFace with random erasing" in plus
    assert "rand_erase = True" in plus
    # the VFace group sits right after HSFace's Table 2, and the ▲ of each column is VFace's within it
    assert headings.index(plus) == next(i for i, h in enumerate(headings) if "Table 2" in h) + 1
    best = [r for r in five if r[1] and r[1][0][0].startswith("VFace300K")][0]
    assert "best" in best[1][2][1] and "best" in best[1][7][1]  # LFW 99.57 and Avg. 94.93 lead the group
    # which published rows share a recipe is said in words under the table
    note = re.search(r'<p class="muted">FR recipe: (.*?)</p>', _section(text, "summary")).group(1)
    alike = re.search(r"SE-IResNet50 \+ ArcFace: ([^.]*)", note).group(1).split(", ")
    assert {"HSFace10K (Vec2Face)", "CASIA-WebFace (real)", "HSFace10K", "VFace10K", "VFace300K"} <= set(alike)
    assert "DCFace" not in alike and "IDiff-Face" not in alike


def test_size_plot_draws_hsface_and_vface_as_two_series(tmp_path, monkeypatch):
    seen = []
    real = figures.scaling_plot

    def spy(published, measured):
        seen.extend(published)
        return real(published, measured)

    monkeypatch.setattr(figures, "scaling_plot", spy)
    runs = [eval_run(tmp_path, "eval", "toy", dict(zip(TOY_PACKS, [0.9] * 5)), images=800, identities=40)]
    text = write_report(runs, tmp_path / "r.html").read_text()
    vface = sorted((p[1], p[2]) for p in seen if p[3] == "VFace (Vec2Face+)")
    assert vface == sorted((float(images), avg) for images, _, avg in README.values())
    hsface = [p for p in seen if p[3] == "HSFace (Vec2Face)"]
    assert [p[0] for p in hsface] == ["HSFace10K", "HSFace20K", "HSFace100K", "HSFace200K", "HSFace300K"]
    assert "VFace10K to 300K (Vec2Face+ README)" in _section(text, "scaling")


# ------------------------------------------------------------------------------------- pose steering


def generated(root: Path, name: str, dataset: str, **card) -> Path:
    """A ``generate`` run folder: a (tiny) set and the card naming it."""
    path = root / name
    write_train_folder(path / "dataset", identities=2, per_identity=2, size=8)
    (path / "dataset.json").write_text(json.dumps({"name": dataset, "dataset": "dataset", "identities": 2,
                                                   "images": 4, **card}))
    return path


def analysed(root: Path, name: str, dataset_dir: Path, yaw: np.ndarray, extractor: str = "sixdrepnet") -> Path:
    """An ``analyze`` run of the dataset in ``dataset_dir``: the yaw angles and the summary naming the set."""
    path = root / name
    run = Run.start(path, seed=0, device="cpu", command=["facebench", "analyze", str(dataset_dir)])
    (path / "analysis").mkdir()
    np.save(path / "analysis" / "yaw.npy", yaw.astype(np.float32))
    run.write_json("analysis/summary.json", {"dataset": str(dataset_dir.resolve()), "images": len(yaw), "analyses": {
        "pose-quality": {"yaw": {"extractor": extractor, "mean": float(yaw.mean())}}}})
    return path


ATTROP_CARD = {"generator": "vec2face", "attrop": {"spec": "pose=60:0.4,pose=85:0.2,quality=27", "steps": 5,
                                                    "terms": ["pose=60:0.4", "pose=85:0.2", "quality=27"]}}
SWEEP = [f"yaw{y:+d}" if y else "frontal" for y in range(-90, 91, 15)]
#: What ``generate --pose-landmarks yaw-sweep`` records: the source, each pose, the assignment rule.
LANDMARK_CARD = {"generator": "vec2face_plus", "attrop": None,
                 "pose_landmarks": {"source": {"kind": "named", "names": ["yaw-sweep"]}, "rendering": "discs",
                                    "size": 112, "count": len(SWEEP), "assignment": "image i takes pose i mod P",
                                    "poses": [{"name": n, "sha256": "0" * 64, "points": [[38.3, 51.7]] * 5}
                                              for n in SWEEP]}}


@pytest.fixture()
def steered(tmp_path):
    rng = np.random.default_rng(3)
    yaws = {"attrop": np.concatenate([rng.normal(0, 12, 300), rng.normal(62, 6, 120), rng.normal(-80, 5, 60)]),
            "pose": np.concatenate([rng.normal(0, 10, 200), rng.normal(55, 8, 150), rng.normal(-50, 8, 150)]),
            "plain": rng.normal(0, 15, 250)}
    runs = []
    for key, name, card in (("attrop", "HSFace-like " + EVIL, ATTROP_CARD), ("pose", "VFace-like", LANDMARK_CARD),
                            ("plain", "unsteered", {"generator": "vec2face", "attrop": None})):
        gen = generated(tmp_path, f"gen-{key}", name, **card)
        runs += [gen, analysed(tmp_path, f"an-{key}", gen, yaws[key])]
    return runs, yaws


def test_pose_steering_compares_attrop_with_landmark_pose_control(steered, tmp_path, monkeypatch):
    runs, yaws = steered
    drawn = []
    real = figures.pose_panels_plot
    monkeypatch.setattr(figures, "pose_panels_plot", lambda panels, xlabel: drawn.extend(panels) or real(panels, xlabel))
    text = write_report(runs, tmp_path / "r.html").read_text()
    section = _section(text, "pose-steering")
    # one panel per way of steering, each holding the angles its analysis wrote
    assert [title for title, _ in drawn] == [ATTROP, LANDMARKS, NONE]
    for (_, series), key in zip(drawn, ("attrop", "pose", "plain")):
        assert len(series) == 1
        np.testing.assert_allclose(series[0][1], yaws[key].astype(np.float32))
    assert section.count("<img ") == 1
    rows = parse(section).tables[0]
    assert _cells(rows[0]) == ["dataset", "pose steering", "generator", "targets", "pose model", "images read",
                               "mean |yaw| (deg)", "median |yaw| (deg)", "|yaw| \u2265 45 deg (%)"]
    body = {_cells(r)[0]: _cells(r) for r in rows[1:]}
    assert set(body) == {"HSFace-like " + EVIL, "VFace-like", "unsteered"}
    assert body["HSFace-like " + EVIL][1:5] == [ATTROP, "vec2face", "pose=60:0.4, pose=85:0.2", "sixdrepnet"]
    assert body["VFace-like"][1:3] == [LANDMARKS, "vec2face_plus"]
    assert body["VFace-like"][3] == ("named yaw-sweep; 13 poses (yaw-90, yaw-75, yaw-60, yaw-45, yaw-30, yaw-15, "
                                     "+7 more)")
    assert body["unsteered"][1] == NONE
    for name, key in (("HSFace-like " + EVIL, "attrop"), ("VFace-like", "pose"), ("unsteered", "plain")):
        a = np.abs(yaws[key].astype(np.float32).astype(np.float64))
        assert body[name][5:] == [str(len(a)), f"{a.mean():.1f}", f"{np.median(a):.1f}",
                                  f"{100 * (a >= 45).mean():.1f}"]
    # a name from someone's card is text, never markup
    assert "<script>" not in text and "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in section


def test_pose_steering_needs_both_ways(steered, tmp_path):
    runs, _ = steered
    only_attrop = [r for r in runs if "pose" not in r.name]
    text = write_report(only_attrop, tmp_path / "r.html").read_text()
    assert 'id="sec-pose-steering"' not in text
    assert 'id="sec-analysis"' in text  # the yaw histograms of every dataset are still drawn there


def test_pose_steering_says_when_pose_models_differ(steered, tmp_path):
    runs, yaws = steered
    other = analysed(tmp_path, "an-pose-2", runs[2], yaws["pose"], extractor="sixdrepnet-tiny")
    section = _section(write_report([*runs[:2], runs[2], other], tmp_path / "r.html").read_text(), "pose-steering")
    assert "read by different pose models" in section
    # one dataset read twice: each row says which analysis it is
    section = _section(write_report([*runs[:4], other], tmp_path / "r2.html").read_text(), "pose-steering")
    names = [_cells(r)[0] for r in parse(section).tables[0][1:]]
    assert names == ["HSFace-like " + EVIL, "VFace-like (an-pose)", "VFace-like (an-pose-2)"]


@pytest.mark.parametrize("card,kind,targets", [
    ({"attrop": {"spec": "pose=60:0.4,quality=27"}}, ATTROP, "pose=60:0.4"),
    ({"attrop": "pose=85:0.2"}, ATTROP, "pose=85:0.2"),
    ({"attrop": {"spec": "quality=27"}}, NONE, "\u2013"),
    ({"attrop": {"terms": ["pose=30:0.5", 7, None]}}, ATTROP, "pose=30:0.5"),
    ({"attrop": 5, "pose_landmarks": []}, NONE, "\u2013"),
    ({"pose_landmarks": "examples", "attrop": {"terms": ["pose=60:0.4"]}}, f"{LANDMARKS} + {ATTROP}",
     "examples; pose=60:0.4"),
    ({"pose_landmarks": {"names": ["frontal", "left"]}}, LANDMARKS, "names=[2 entries]"),
    ({"pose_landmarks": {"source": {"kind": "images", "file": "landmark_examples.txt"},
                         "poses": [{"name": "./landmarks/images/2758_0.jpg"}, {"name": 3}]}}, LANDMARKS,
     "images landmark_examples.txt; 2 poses (./landmarks/images/2758_0.jpg)"),
    ({"pose_landmarks": {"source": 5, "poses": "x"}}, LANDMARKS, "source=5, poses=x"),
    (None, NONE, "\u2013"),
], ids=["spec", "spec-string", "quality-only", "odd-terms", "wrong-types", "both", "names", "image-list",
        "odd-record", "no-card"])
def test_steering_rule(card, kind, targets):
    assert steering(card) == (kind, targets)
