"""Report section: fairness across the groups of any grouped suite (RFW, toy_rfw, a TOML suite whose
benchmarks carry a ``group``), FRCSyn style.

Per training set: the accuracy of each group, their mean, the sample STD (ddof=1, as Tencent TFace's RFW
script; the header states the ddof :func:`facebench.metrics.tradeoff` used), SER (highest error / lowest
error), the trade-off TO = mean - STD and the rank by TO (FRCSyn ranks bias sub-tasks by it); with a run
named by ``report --real``, the GAP of every other set's TO to the real-data one, with its formula and sign.
"""

from __future__ import annotations

from collections.abc import Sequence

from facebench.metrics import GAP_FORMULA, TRADEOFF_FORMULA, MetricInputError, gap, group_summary
from facebench.report.html import esc, image, table
from facebench.report.loading import RunData

from .protocol_figures import group_bars_plot
from .published import published_tables
from .rows import records
from .sections import _fmt


def _suites(runs: Sequence[RunData]) -> dict[str, dict[str, dict]]:
    """suite -> training-set label -> {"groups": {group: accuracy %}, "real": bool, "shown": label}."""
    found: dict[str, dict[str, dict]] = {}
    for rec in records(runs, "verification"):
        group = rec.row.get("group")
        if not group or "accuracy" not in rec.row:  # a row without an accuracy measured nothing to compare
            continue
        entry = found.setdefault(str(rec.row.get("suite", "")), {}).setdefault(
            rec.label, {"groups": {}, "real": False, "shown": rec.shown})
        entry["groups"][str(group)] = float(rec.row["accuracy"])
        entry["real"] = entry["real"] or rec.real
    return found


def fairness_section(runs: Sequence[RunData]) -> list[str]:
    out = []
    for suite, sets in _suites(runs).items():
        groups = list(dict.fromkeys(g for entry in sets.values() for g in entry["groups"]))
        complete = {label: e for label, e in sets.items() if list(e["groups"]) and set(e["groups"]) == set(groups)}
        if len(groups) < 2 or not complete:
            continue
        summaries = {}
        for label, entry in complete.items():
            try:
                summaries[label] = group_summary({g: entry["groups"][g] for g in groups})
            except MetricInputError:
                continue
        real = [label for label, e in complete.items() if e["real"] and label in summaries]
        rows, series = [], []
        for label, s in summaries.items():
            gap_text = "\u2013"
            if len(real) == 1 and label != real[0]:
                gap_text = _fmt(gap(summaries[real[0]].trade_off, s.trade_off))
            elif label in real:
                gap_text = "real-data baseline"
            ser = "\u221e" if s.ser == float("inf") else f"{s.ser:.3f}"
            rows.append([complete[label]["shown"], *[_fmt(s.accuracies[g]) for g in groups], _fmt(s.mean),
                         _fmt(s.std), ser, _fmt(s.trade_off), gap_text,
                         str(1 + sum(o.trade_off > s.trade_off for o in summaries.values()))])
            series.append((complete[label]["shown"], [s.accuracies[g] for g in groups], s.std))
        out.append(f"<h3>{esc(suite)}: accuracy by group</h3>")
        out.append(image(group_bars_plot(groups, series), f"{suite} per-group accuracy",
                         "accuracy (%) of each group; the legend gives the mean \u00b1 the sample STD"))
        ddof = next(iter(summaries.values())).ddof if summaries else 1
        header = ["training set", *[f"{g} %" for g in groups], "mean %", f"STD (ddof={ddof})", "SER",
                  "TO = mean - STD", "GAP of TO %", "rank by TO"]
        out.append(table(header, rows, row_classes=["measured"] * len(rows)))
        sd_kind = "the sample SD: n - 1" if ddof == 1 else "the population SD: n"
        note = (f"{TRADEOFF_FORMULA} over the {len(groups)} groups (FRCSyn), the SD with ddof={ddof} ({sd_kind} in "
                "its denominator); rank 1 is the highest TO. SER = highest error / lowest error (error = 100 - "
                f"accuracy). {GAP_FORMULA}, with REAL the TO of the run named by report --real")
        note += f" ({real[0]})." if len(real) == 1 else "; no single real-data run was named, so no GAP is shown."
        out.append(f'<p class="muted">{esc(note)}</p>')
    published = [(t, r) for t in published_tables() for r in t.rows if "rfw" in r]
    if out and published:
        out.append("<h3>Published RFW figures</h3>" + table(
            ["training set", "RFW %", "what", "source"],
            [[r["dataset"], _fmt(r["rfw"]), r.get("metric", ""), f"{r.get('reference', '')} [{r.get('tag', 'V')}]"]
             for _, r in published], row_classes=["published"] * len(published)))
    return out
