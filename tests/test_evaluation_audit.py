"""The dataset audit end to end: `facebench analyze` on a toyfaces world computes the score statistics and
intra/inter-class Vendi scores (checked against numpy on the run's own features and score arrays), prints
them in its console table and `facebench report` shows them; `evaluate` writes and prints the bias
trade-off of a grouped suite; the toy ND-Twins mirror and the `twins` suite read SOTA-FR's layout."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from conftest import invoke, plain_embeddings
from test_metrics_audit import brute_fnmr_at_fmr, plain_vendi

from facebench.cli import create_cli
from facebench.data import open_dataset, open_pairs
from facebench.metrics import verify


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("audit") / "toy"
    result = invoke(create_cli(), ["toyfaces", "build", out, "--identities", "14", "--images-per-identity", "5",
                                   "--size", "32", "--pairs", "20", "--packs", "toy_lfw", "--seed", "4"])
    assert result.exit_code == 0, result.output
    return out


def _cells(html: str, label: str, after: str) -> list[str]:
    part = html.split(after, 1)[1]
    row = re.search(r"<tr[^>]*>(?:(?!</tr>).)*?" + re.escape(label) + r"(?:(?!</tr>).)*</tr>", part, re.S)
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)


def test_analyze_reports_score_statistics_and_vendi_scores(tmp_path, cli, weights, world):
    run = tmp_path / "analysis"
    result = invoke(cli, ["analyze", world, "--extractor", "pixels", "--weights", weights, "--out", run,
                          "--only", "pair-distributions", "--only", "vendi", "--device", "cpu",
                          "--set", "pair-distributions.bootstrap=80", "--set", "vendi.bootstrap=80"])
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "analysis" / "summary.json").read_text())
    stats, vendi = summary["analyses"]["pair-distributions"], summary["analyses"]["vendi"]

    # score statistics from the run's own sampled scores, by numpy (population SD: ddof=0 stated)
    gen, imp = np.load(run / "analysis" / "genuine.npy"), np.load(run / "analysis" / "impostor.npy")
    assert stats["genuine_pairs"] == gen.size == 14 * 10 and stats["ddof"] == 0
    assert stats["genuine_mean"] == pytest.approx(gen.mean(), abs=1e-9)
    assert stats["genuine_std"] == pytest.approx(gen.std(), abs=1e-9)
    assert stats["impostor_mean"] == pytest.approx(imp.mean(), abs=1e-9)
    assert stats["impostor_std"] == pytest.approx(imp.std(), abs=1e-9)
    fdr = (gen.mean() - imp.mean()) ** 2 / (gen.var() + imp.var())
    assert stats["fdr"] == pytest.approx(fdr, rel=1e-9) and summary["fdr"] == stats["fdr"]
    assert stats["fmr100"] == pytest.approx(brute_fnmr_at_fmr(gen, imp, 0.01), abs=1e-12)
    assert stats["fmr1000"] == pytest.approx(brute_fnmr_at_fmr(gen, imp, 0.001), abs=1e-12)
    for key in ("fdr", "eer", "genuine_mean", "impostor_std"):
        lo, hi = stats["ci95"][key]
        assert lo <= stats[key] <= hi, key
    assert stats["bootstrap"] == 80 and "FNMR at FMR 1e-2" == stats["definitions"]["fmr100"]

    # Vendi scores from the run's own features, by full Gram eigendecompositions
    feats = np.load(run / "analysis" / "features.npy").astype(np.float64)
    with open_dataset(world) as reader:
        labels = np.asarray(reader.labels)
    intra = np.load(run / "analysis" / "intra_vendi.npy")
    expected = [plain_vendi(feats[labels == c]) for c in np.unique(labels)]
    np.testing.assert_allclose(intra, expected, rtol=1e-6)
    assert vendi["intra_vendi_mean"] == pytest.approx(np.mean(expected), rel=1e-6)
    centres = np.stack([feats[labels == c].mean(0) for c in np.unique(labels)])
    assert vendi["inter_vendi"] == pytest.approx(plain_vendi(centres), rel=1e-6)
    assert 1 <= vendi["intra_vendi_mean"] <= 5 and vendi["identities_scored"] == 14
    lo, hi = vendi["ci95"]["intra_vendi_mean"]
    assert lo <= vendi["intra_vendi_mean"] <= hi

    # the console table shows the new figures (with their intervals)
    for key, value in (("fdr", stats["fdr"]), ("fmr100", stats["fmr100"]), ("genuine_std", stats["genuine_std"]),
                       ("intra_vendi_mean", vendi["intra_vendi_mean"]), ("inter_vendi", vendi["inter_vendi"])):
        assert f"{key}={value:.4g}" in result.output, key
    assert f"[{stats['ci95']['fdr'][0]:.4g}," in result.output

    # ... and so does the report's analysis section, per dataset
    html_path = tmp_path / "report.html"
    result = invoke(create_cli(), ["report", run, "--out", html_path])
    assert result.exit_code == 0, result.output
    html = html_path.read_text()
    section = html.split('<section id="sec-analysis">')[1].split("</section>")[0]
    cells = _cells(section, "toy", "Score statistics")
    assert cells[1] == "140 / " + str(imp.size)
    assert cells[2].startswith(f"{gen.mean():.3f} [") and cells[3].startswith(f"{gen.std():.3f}")
    assert cells[6] == f"{fdr:.2f} [{stats['ci95']['fdr'][0]:.2f}, {stats['ci95']['fdr'][1]:.2f}]"
    assert cells[7].startswith(f"{stats['eer'] * 100:.2f} [") and cells[8].startswith(f"{stats['fmr100'] * 100:.2f}")
    assert "ddof=0" in section and "FMR100 / FMR1000" in section
    cells = _cells(section, "toy", "Diversity: Vendi scores")
    assert cells[1].startswith(f"{np.mean(expected):.2f} [") and cells[5] == f"{plain_vendi(centres):.1f}"
    assert cells[4] == "14" and cells[6] == "14"
    assert "intra-class Vendi histogram" in section


def test_vendi_with_one_image_per_identity_states_what_it_skipped(tmp_path, cli, weights):
    from conftest import write_train_folder

    data = write_train_folder(tmp_path / "single", identities=6, per_identity=1, size=32)
    run = tmp_path / "run"
    result = invoke(cli, ["analyze", data, "--extractor", "pixels", "--weights", weights, "--out", run,
                          "--only", "vendi", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    vendi = json.loads((run / "analysis" / "summary.json").read_text())["analyses"]["vendi"]
    assert vendi["intra_skipped"] == "no identity has two images" and vendi["identities_scored"] == 0
    assert "inter_vendi" in vendi and np.load(run / "analysis" / "intra_vendi.npy").tolist() == [1.0] * 6


@pytest.fixture(scope="module")
def protocols(tmp_path_factory):
    out = tmp_path_factory.mktemp("toyp") / "toy-protocols"
    result = invoke(create_cli(), ["toyfaces", "protocols", out, "--size", "32", "--seed", "5", "--set",
                                   "ijb_identities=4", "--set", "rfw_pairs=40", "--set", "tinyface_identities=2",
                                   "--set", "tinyface_distractors=2", "--set", "twins_pairs=60"])
    assert result.exit_code == 0, result.output
    assert "toy_twins (60 pairs)" in result.output
    return out


def test_grouped_suite_writes_and_prints_its_trade_off(tmp_path, cli, weights, protocols):
    out = tmp_path / "rfw"
    result = invoke(cli, ["evaluate", "--suite", "toy-rfw", "--model", weights, "--backbone", "pixels", "--data-root",
                          protocols, "--out", out, "--device", "cpu", "--bootstrap", "0", "--label", "pixels"])
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "results.json").read_text())
    acc = np.array([100 * r["accuracy"] for r in sorted(rows, key=lambda r: r["group"])])
    trade = json.loads((out / "tradeoff.json").read_text())
    assert len(trade) == 1 and trade[0]["ddof"] == 1 and list(trade[0]["groups"]) == ["tone1", "tone2", "tone3",
                                                                                       "tone4"]
    assert trade[0]["std"] == pytest.approx(acc.std(ddof=1), abs=1e-9)
    assert trade[0]["trade_off"] == pytest.approx(acc.mean() - acc.std(ddof=1), abs=1e-9)
    assert "bias trade-off across groups" in result.output and "SD (ddof=1)" in result.output
    assert f"{acc.mean() - acc.std(ddof=1):.2f}" in result.output
    # an ungrouped suite has none
    out = tmp_path / "twins"
    result = invoke(cli, ["evaluate", "--suite", "toy-twins", "--model", weights, "--backbone", "pixels",
                          "--data-root", protocols, "--out", out, "--device", "cpu", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    assert not (out / "tradeoff.json").exists() and "trade-off" not in result.output
    # the report's fairness section states the ddof and ranks by TO; the twins row is in the accuracy table
    html_path = tmp_path / "report.html"
    result = invoke(create_cli(), ["report", tmp_path / "rfw", out, "--out", html_path])
    assert result.exit_code == 0, result.output
    html = html_path.read_text()
    fairness = html.split('<section id="sec-fairness">')[1].split("</section>")[0]
    cells = _cells(fairness, "pixels", "accuracy by group")
    assert cells[8] == f"{acc.mean() - acc.std(ddof=1):.2f}" and cells[10] == "1" and "STD (ddof=1)" in fairness
    twins_accuracy = json.loads((out / "results.json").read_text())[0]["accuracy"]
    assert f"{100 * twins_accuracy:.2f}" in html.split('<section id="sec-summary">')[1].split("</section>")[0]


def test_toy_twins_are_look_alikes_in_sotafr_layout_and_score_as_the_twins_suite(tmp_path, cli, weights,
                                                                                protocols):
    from facebench_plugins.toyfaces.protocols import TWIN_SHARED, ProtocolsConfig, twin_identities

    folder = protocols / "toy_twins"
    assert sorted(p.name for p in folder.iterdir()) == ["issame.txt", "toy_twins.npy"]
    images = np.load(folder / "toy_twins.npy")
    assert images.shape == (120, 3, 32, 32) and images.dtype == np.uint8
    flags = np.loadtxt(folder / "issame.txt").astype(bool)
    assert flags.tolist() == ([True] * 3 + [False] * 3) * 10  # 10 folds, same half first
    a, b = twin_identities(ProtocolsConfig(seed=5, twins_difference=0.25), 3)
    assert all(getattr(a, f) == getattr(b, f) for f in TWIN_SHARED)
    assert 0 < abs(b.face_w - a.face_w) and a.face_w != b.face_w

    # the `twins` suite finds the same folder under SOTA-FR's name, and its .xz conversion scores alike
    data = tmp_path / "data"
    (data / "twins_very_easy").mkdir(parents=True)
    shutil.copy(folder / "issame.txt", data / "twins_very_easy" / "issame.txt")
    shutil.copy(folder / "toy_twins.npy", data / "twins_very_easy" / "twins_very_easy.npy")
    figures = {}
    for name, suite, root in (("toy", "toy-twins", protocols), ("sotafr", "twins", data)):
        out = tmp_path / name
        result = invoke(cli, ["evaluate", "--suite", suite, "--model", weights, "--backbone", "pixels", "--data-root",
                              root, "--out", out, "--device", "cpu", "--bootstrap", "0"])
        assert result.exit_code == 0, result.output
        (row,) = json.loads((out / "results.json").read_text())
        figures[name] = (row["accuracy"], row["eer"], row["pairs"])
    assert figures["toy"] == figures["sotafr"] and figures["toy"][2] == 60
    # the same numbers by numpy from the images as SOTA-FR's loader holds them (RGB, channels first)
    hwc = images.transpose(0, 2, 3, 1)
    emb = plain_embeddings(hwc, weights)
    expected = verify(emb[0::2], emb[1::2], flags)
    assert figures["toy"][0] == pytest.approx(expected.accuracy, abs=1e-9)
    xz = tmp_path / "xz" / "twins_very_easy.xz"
    xz.parent.mkdir()
    result = invoke(create_cli(), ["data", "convert", data / "twins_very_easy", xz, "--to", "bin"])
    assert result.exit_code == 0, result.output
    with open_pairs(xz) as packed, open_pairs(data / "twins_very_easy") as prepared:
        assert np.array_equal(packed.issame, prepared.issame)
        assert np.array_equal(packed.images([0, 7, 119]), prepared.images([0, 7, 119]))
        assert prepared.format_name == "sotafr" and packed.format_name == "bin"
