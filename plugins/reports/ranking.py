"""Report section: the SDFR view, a Borda count over the benchmarks every training set of the report has.

SDFR (FG 2024) ranks by Borda count over LFW, CFP-FP, CPLFW, AgeDB-30, CALFW (accuracy) and IJB-B, IJB-C
(TAR@FAR=1e-4); toyfaces packs count for the benchmark they mirror. Only benchmarks measured for every
training set are used, so each one ranks the same sets.
"""

from __future__ import annotations

from collections.abc import Sequence

from facebench.metrics import benchmark_points, borda
from facebench.report.html import esc, table
from facebench.report.loading import RunData

from .published import FIVE, benchmark_titles
from .rows import percent, records
from .sections import _fmt

SDFR = (*FIVE, "ijbb", "ijbc")


def sdfr_scores(runs: Sequence[RunData]) -> dict[str, dict[str, float]]:
    """training set -> SDFR benchmark -> score (accuracy %, or TAR@FAR=1e-4 % for IJB)."""
    scores: dict[str, dict[str, float]] = {}
    for rec in records(runs):
        bench = rec.benchmark
        if bench not in SDFR or rec.row.get("group"):
            continue
        if rec.protocol == "verification" and "accuracy" in rec.row:
            value = float(rec.row["accuracy"])
        elif rec.protocol == "ijb-1:1" and "tar_at_far_1e-4" in rec.row:
            value = percent(rec.row["tar_at_far_1e-4"])
        else:
            continue
        scores.setdefault(rec.label, {})[bench] = value
    return scores


def borda_section(runs: Sequence[RunData]) -> list[str]:
    scores = sdfr_scores(runs)
    if len(scores) < 2:
        return []
    shared = [b for b in SDFR if all(b in s for s in scores.values())]
    if not shared:
        return []
    table_in = {b: {label: s[b] for label, s in scores.items()} for b in shared}
    totals = borda(table_in)
    points = {b: benchmark_points(table_in[b]) for b in shared}
    titles = benchmark_titles()
    rows = []
    for rank, (label, total) in enumerate(totals.items(), 1):
        rows.append([str(rank), label, *[f"{points[b][label]:g} ({_fmt(table_in[b][label])})" for b in shared],
                     f"{total:g}"])
    header = ["rank", "training set", *[titles.get(b, b) for b in shared], "Borda count"]
    note = (f"On each of the {len(shared)} shared benchmarks the {len(scores)} training sets are ranked; rank r earns "
            f"{len(scores)} - r points and tied sets share the mean of their ranks' points (the score in brackets: "
            "accuracy %, or TAR@FAR=1e-4 % for IJB). Benchmarks missing for some training set are left out: "
            f"{', '.join(titles.get(b, b) for b in SDFR if b not in shared) or 'none'}.")
    return [table(header, rows, row_classes=["measured"] * len(rows)), f'<p class="muted">{esc(note)}</p>']
