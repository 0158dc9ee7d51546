"""Report section: IJB-B/C 1:1 (ROC curves, TAR@FAR table with the insightface setting), IJB-C 1:N and
TinyFace 1:N tables, with the published IJB rows beside the measured ones."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from facebench.report.html import esc, image, table
from facebench.report.loading import RunData

from .protocol_figures import roc_plot
from .published import benchmark_titles, published_tables
from .rows import count, percent, records
from .sections import _fmt, _group_rows

RANK = re.compile(r"rank_(\d+)$")
FARS = ("1e-6", "1e-5", "1e-4", "1e-3", "1e-2", "1e-1")
SETTING_NOTE = ("Setting (insightface eval_ijbc.py names): F2 = image and mirror features added (its default), "
                "F1 = concatenated, 'no flip' = image only; N1 = each image keeps its feature norm, N0 = "
                "normalised first; D1 = images weighted by the detector's faceness score, D0 = not. Numbers "
                "differ between settings, so compare rows of one setting. TAR is read at the ROC point whose FAR "
                "is nearest the target (insightface's pick), as the published IJB numbers are.")


def _ijb_tables(runs: Sequence[RunData]) -> list[str]:
    out = []
    by_bench: dict[str, list] = {}
    for rec in records(runs, "ijb-1:1"):
        by_bench.setdefault(rec.benchmark, []).append(rec)
    titles = benchmark_titles()
    for bench, items in by_bench.items():
        title = titles.get(bench, bench.upper())
        curves = [(r.shown, np.asarray(r.row["roc"]["fpr"]), np.asarray(r.row["roc"]["tpr"]))
                  for r in items if isinstance(r.row.get("roc"), dict)]
        header = ["training set", "setting / pairs", *[f"TAR@FAR={f} %" for f in FARS], "EER %"]
        labels = [(r.shown, f"{r.row.get('ijb_options', {}).get('setting', '?')} / {count(r.row.get('pairs'))}")
                  for r in items]
        matrix = [[percent(r.row.get(f"tar_at_far_{f}")) for f in FARS] + [percent(r.row.get("eer"))]
                  for r in items]
        body = _group_rows(f"Measured here: {', '.join(sorted({r.row['benchmark'] for r in items}))}", "measured",
                           labels, matrix, len(header))
        for ptable in published_tables():
            rows = [r for r in ptable.rows if bench in r]
            if rows:
                body += _group_rows(f"Published ({ptable.source}); TAR@FAR=1e-4 only", "published",
                                    [(f"{r['dataset']} [{r.get('tag', 'V')}]", r.get("reference", "")) for r in rows],
                                    [[None, None, r[bench], None, None, None, None] for r in rows], len(header))
        head = "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>"
        out.append(f"<h3>{esc(title)} 1:1 verification</h3>")
        if curves:
            out.append(image(roc_plot(curves, f"{title}: ROC"), f"{title} ROC curves",
                             "TAR against FAR, log scale; dotted lines mark the table's FAR targets"))
        out.append(f"<table>{head}<tbody>{''.join(body)}</tbody></table>")
    if out:
        out.append(f'<p class="muted">{esc(SETTING_NOTE)}</p>')
    return out


def _identification_tables(runs: Sequence[RunData]) -> list[str]:
    out = []
    ijb = records(runs, "ijb-1:N")
    if ijb:
        rows = []
        for r in ijb:
            galleries = r.row.get("galleries") or {}
            per = "; ".join(f"{g}: rank-1 {_fmt(percent(v.get('rank_1')))}" for g, v in galleries.items())
            rows.append([r.shown, r.row["benchmark"], r.row.get("ijb_options", {}).get("setting", "?"),
                         *[_fmt(percent(r.row.get(k))) for k in ("rank_1", "rank_5", "rank_10", "tpir_at_fpir_1e-2",
                                                                  "tpir_at_fpir_1e-1")], per])
        out.append("<h3>IJB-C 1:N identification (mean of galleries G1 and G2)</h3>" + table(
            ["training set", "benchmark", "setting", "rank-1 %", "rank-5 %", "rank-10 %", "TPIR@FPIR=1e-2 %",
             "TPIR@FPIR=1e-1 %", "per gallery"], rows, row_classes=["measured"] * len(rows)))
        out.append('<p class="muted">Rank-k: share of mated mixed-media probes whose enrolled template is among '
                   "the k best; TPIR at FPIR: share of mated probes ranked first above the threshold that lets "
                   "that share of non-mated probes (enrolled in the other gallery) through (NIST's open-set "
                   "definition).</p>")
    tiny = records(runs, "tinyface-1:N")
    if tiny:
        ranks = sorted({int(m.group(1)) for r in tiny for k in r.row if (m := RANK.match(k))})
        rows = [[r.shown, r.row["benchmark"], *[_fmt(percent(r.row.get(f"rank_{k}"))) for k in ranks],
                 f"{count(r.row.get('probes'))} / {count(r.row.get('gallery_matches'))} + {count(r.row.get('distractors'))}"]
                for r in tiny]
        out.append("<h3>TinyFace 1:N identification</h3>" + table(
            ["training set", "benchmark", *[f"rank-{k} %" for k in ranks], "probes / gallery + distractors"], rows,
            row_classes=["measured"] * len(rows)))
    return out


def benchmarks_section(runs: Sequence[RunData]) -> list[str]:
    return _ijb_tables(runs) + _identification_tables(runs)
