"""The bias trade-off of a grouped suite: one row per evaluated model, ``TO = mean - SD`` of its per-group
accuracies (FRCSyn ranks bias sub-tasks by it), for every suite whose benchmarks carry a group (RFW's four,
the toy mirror's, a TOML suite's own), not for RFW alone.

``facebench evaluate`` writes the rows to ``tradeoff.json`` beside ``results.json`` and prints them; the
report's fairness section computes the same figures from the per-group result rows.
"""

from __future__ import annotations

from typing import Any

from ..metrics import TRADEOFF_FORMULA, tradeoff
from .suites import Suite

#: The file of a run directory holding the trade-off rows.
TRADEOFF_FILE = "tradeoff.json"


def tradeoff_rows(rows: list[dict[str, Any]], suite: Suite) -> list[dict[str, Any]]:
    """For each dataset label with an accuracy in every group of ``suite``: the groups' accuracies (%), their
    mean, SD (its ddof stated), TO and the formula. A dataset missing a group gets no row (a trade-off over
    fewer groups would look fairer than it is); an ungrouped suite gets none."""
    groups = suite.groups
    if len(groups) < 2:
        return []
    found: dict[str, dict[str, float]] = {}
    for row in rows:
        group, accuracy = row.get("group"), row.get("accuracy")
        if group in groups and accuracy is not None:
            found.setdefault(str(row["dataset"]), {})[group] = 100.0 * float(accuracy)
    out = []
    for dataset, accuracies in found.items():
        if set(accuracies) != set(groups):
            continue
        ordered = {g: accuracies[g] for g in groups}
        to = tradeoff(ordered)
        out.append({"dataset": dataset, "suite": suite.name, "groups": ordered, "mean": to.mean, "std": to.std,
                    "ddof": to.ddof, "trade_off": to.trade_off, "formula": TRADEOFF_FORMULA, "unit": "percent"})
    return out


def tradeoff_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The console table of :func:`tradeoff_rows`: one row per dataset, the groups then mean, SD and TO."""
    if not rows:
        return [], []
    groups = list(rows[0]["groups"])
    header = ["Training set", *groups, "mean", f"SD (ddof={rows[0]['ddof']})", "TO = mean - SD"]
    body = [[r["dataset"], *[f"{r['groups'][g]:.2f}" for g in groups], f"{r['mean']:.2f}", f"{r['std']:.2f}",
             f"{r['trade_off']:.2f}"] for r in rows]
    return header, body
