"""Report section: bootstrap 95% confidence intervals of accuracy, EER and TAR@FAR for every measured row."""

from __future__ import annotations

from collections.abc import Sequence

from facebench.report.html import esc, table
from facebench.report.loading import RunData

from .rows import records

COLUMNS = (("accuracy", "accuracy %"), ("eer", "EER %"), ("tar_at_far_1e-3", "TAR@FAR=1e-3 %"),
           ("tar_at_far_1e-4", "TAR@FAR=1e-4 %"))


def _interval(ci) -> str:
    if not isinstance(ci, list | tuple) or len(ci) != 2:
        return "\u2013"
    return f"[{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"


def intervals_section(runs: Sequence[RunData]) -> list[str]:
    rows = []
    for rec in records(runs):
        ci = rec.row.get("ci95")
        if not isinstance(ci, dict):
            continue
        rows.append([rec.shown, str(rec.row["benchmark"]), *[_interval(ci.get(key)) for key, _ in COLUMNS]])
    if not rows:
        return []
    note = ("Percentile intervals over bootstrap resamples of the pairs (evaluate --bootstrap); the 10-fold "
            "protocol, the EER and TAR@FAR are recomputed on each resample with the same rule as the point value "
            "(IJB: insightface's nearest-FAR pick).")
    return [table(["training set", "benchmark", *[title for _, title in COLUMNS]], rows,
                  row_classes=["measured"] * len(rows)), f'<p class="muted">{esc(note)}</p>']
