"""The report sections of the newer protocols on hand-made run directories: fairness (STD ddof=1, SER, TO,
GAP), the Borda table, IJB TAR@FAR with its setting and published rows, 1:N, intervals, dataset metrics."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from click.testing import CliRunner

from facebench.cli import create_cli
from facebench.runs import Run

GROUPS = {"real": (95.0, 93.0, 97.0, 96.0), "syn": (90.0, 92.0, 96.0, 94.0)}


def _run(root, name, dataset, rows, summary=None):
    run = Run.start(root / name, config={"suite": "x"}, seed=0, device="cpu", command=["facebench", "evaluate"])
    if rows:
        run.write_json("results.json", [{"dataset": dataset, **r} for r in rows])
    if summary:
        run.write_json("analysis/summary.json", {"dataset": dataset, **summary})
    return root / name


def _rows(groups, lfw, ijb_tar):
    rows = [{"benchmark": f"toy_rfw_tone{k + 1}", "accuracy": acc / 100, "std": 0.01, "group": f"tone{k + 1}",
             "suite": "toy-rfw", "protocol": "verification", "eer": 0.1,
             "ci95": {"accuracy": [acc / 100 - 0.02, acc / 100 + 0.01], "eer": [0.05, 0.15]}}
            for k, acc in enumerate(groups)]
    rows.append({"benchmark": "toy_lfw", "accuracy": lfw, "std": 0.01, "protocol": "verification"})
    rows.append({"benchmark": "toy_ijb", "accuracy": None, "protocol": "ijb-1:1", "eer": 0.2, "pairs": 1320,
                 "tar_at_far_1e-4": ijb_tar, "tar_at_far_1e-1": 0.9, "tar_at_far_1e-6": 0.1,
                 "ijb_options": {"setting": "F2 N1 D1"},
                 "roc": {"fpr": [0.0, 1e-4, 1e-2, 1.0], "tpr": [0.0, ijb_tar, 0.8, 1.0]},
                 "ci95": {"tar_at_far_1e-4": [ijb_tar - 0.1, ijb_tar + 0.05]}})
    rows.append({"benchmark": "toy_tinyface", "accuracy": None, "protocol": "tinyface-1:N", "rank_1": 0.25,
                 "rank_5": 0.5, "rank_20": 0.75, "probes": 120, "gallery_matches": 120, "distractors": 240})
    rows.append({"benchmark": "toy_ijb_1n", "accuracy": None, "protocol": "ijb-1:N", "rank_1": 0.7, "rank_5": 0.8,
                 "rank_10": 0.9, "tpir_at_fpir_1e-2": 0.3, "tpir_at_fpir_1e-1": 0.5,
                 "galleries": {"G1": {"rank_1": 0.6}, "G2": {"rank_1": 0.8}}})
    return rows


def _section(html, name):
    return html.split(f'<section id="sec-{name}">')[1].split("</section>")[0]


def _cells(html, label):
    row = re.search(r"<tr[^>]*>(?:(?!</tr>).)*?" + re.escape(label) + r"(?:(?!</tr>).)*</tr>", html, re.S)
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)


@pytest.fixture
def report(tmp_path):
    real = _run(tmp_path, "eval-real", "real data", _rows(GROUPS["real"], 0.99, 0.6))
    syn = _run(tmp_path, "eval-syn", "synthetic", _rows(GROUPS["syn"], 0.97, 0.7))
    pairs = np.full((2, 2, 8, 8, 3), 128, np.uint8)
    analysis = _run(tmp_path, "analysis-syn", "synthetic", [], {"analyses": {
        "fidelity": {"fr": {"extractor": "fr-run", "kid": 0.0123, "kid_std": 0.001, "precision": 0.61,
                            "recall": 0.42, "density": 0.9, "coverage": 0.55, "images": [100, 120]}},
        "leakage": {"reference": "train", "threshold": 0.4, "leaked_share": 0.5, "leaked_at_fmr_share": 0.25,
                    "fmr": 1e-4, "fmr_threshold": 0.61, "impostor_pairs": 44850, "fmr_resolved": True,
                    "closest": [{"cosine": 0.93}, {"cosine": 0.91}]}}})
    np.save(analysis / "analysis" / "leakage_pairs.npy", pairs)
    np.save(analysis / "analysis" / "certainty_ratio.npy", np.linspace(0.1, 0.9, 50))
    out = tmp_path / "report.html"
    result = CliRunner().invoke(create_cli(), ["report", str(real), str(syn), str(analysis), "--out", str(out),
                                               "--real", str(real)])
    assert result.exit_code == 0, result.output
    return out.read_text()


def test_fairness_table_by_hand(report):
    # synthetic: 90, 92, 96, 94 -> mean 93, sample STD sqrt(20/3), SER 10/4, TO 93 - 2.582
    cells = _cells(_section(report, "fairness"), "synthetic")
    assert cells[1:5] == ["90.00", "92.00", "96.00", "94.00"]
    assert cells[5] == "93.00" and cells[6] == f"{math.sqrt(20 / 3):.2f}" and cells[7] == "2.500"
    real_to = 95.25 - np.std([95, 93, 97, 96], ddof=1)
    syn_to = 93 - math.sqrt(20 / 3)
    assert cells[8] == f"{syn_to:.2f}" and cells[9] == f"{(real_to - syn_to) / syn_to * 100:.2f}"
    assert "GAP = (REAL - SYN) / SYN x 100 (negative: the synthetic data did better)" in report
    assert "VariFace" in report and "93.66" in report  # published RFW row with its source


def test_borda_table_by_hand(report):
    section = _section(report, "borda")
    # shared: LFW (real 99 > syn 97) and IJB-C TAR@1e-4 (syn 70 > real 60): one point each, a tie at 1
    assert _cells(section, "real data")[-1] == "1" and _cells(section, "synthetic")[-1] == "1"
    assert "1 (99.00)" in _cells(section, "real data")[2] and "0 (60.00)" in _cells(section, "real data")[3]


def test_ijb_identification_intervals_and_dataset_metrics(report):
    ijb = _section(report, "benchmarks")
    cells = _cells(ijb, "synthetic")
    assert cells[1] == "F2 N1 D1 / 1320" and cells[4].startswith("70.00")  # TAR@FAR=1e-4 column
    assert "CASIA-WebFace (real), IR50" in ijb and "52.97" in ijb  # published IJB-C row, labelled with its source
    assert "insightface" in ijb and "data:image/png;base64" in ijb  # setting note and ROC plot
    one_n = _cells(ijb.split("IJB-C 1:N identification")[1], "synthetic")
    assert one_n[3:8] == ["70.00", "80.00", "90.00", "30.00", "50.00"] and "G1: rank-1 60.00" in one_n[8]
    tiny = _cells(ijb.split("TinyFace 1:N identification")[1], "synthetic")
    assert tiny[2:] == ["25.00", "50.00", "75.00", "120 / 120 + 240"]  # counts as integers
    intervals = _section(report, "intervals")
    assert "[68.00, 71.00]" not in intervals  # accuracy interval is per row: tone1 is 90 -> [88.00, 91.00]
    assert "[88.00, 91.00]" in intervals and "[60.00, 75.00]" in intervals
    metrics = _section(report, "dataset-metrics")
    assert "0.01230" in metrics and "0.610" in metrics and "0.550" in metrics
    assert "25.00 (cos &gt; 0.610)" in metrics and "Certainty-ratio" in metrics


def test_real_must_name_a_reported_run(tmp_path):
    run = _run(tmp_path, "eval-a", "a", _rows(GROUPS["syn"], 0.9, 0.5))
    result = CliRunner().invoke(create_cli(), ["report", str(run), "--out", str(tmp_path / "r.html"), "--real",
                                               str(tmp_path / "elsewhere")])
    assert result.exit_code == 2
    assert result.output.strip() == (f"error: {(tmp_path / 'elsewhere').resolve()}: --real names a run directory "
                                     "that is not among the reported runs")


def test_fairness_states_the_ddof_and_ranks_by_trade_off(report):
    section = _section(report, "fairness")
    assert "STD (ddof=1)" in section and "rank by TO" in section
    assert "TO = mean - SD of the per-group accuracies over the 4 groups" in section
    # TO: real 95.25 - sample STD of (95, 93, 97, 96) = 93.54 beats synthetic 93 - 2.58 = 90.42
    assert _cells(section, "real data")[10] == "1" and _cells(section, "synthetic")[10] == "2"
