"""The dataset-audit tables of the analysis section: score statistics (FDR, EER, FMR100, FMR1000, genuine and
impostor mean and SD) and diversity (intra- and inter-class Vendi scores), one row per analysed dataset, each
figure with its bootstrap 95% interval when ``analyze`` stated one.

Every value comes from ``analysis/summary.json`` (checked when loaded: rates are fractions, FDR and Vendi
scores non-negative, intervals ordered); the notes repeat the definitions and the SD's ddof the runs used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from facebench.report.html import esc, image, table

from . import figures

DASH = "\u2013"


def _entry(run: Any, name: str) -> dict[str, Any]:
    entry = ((run.summary or {}).get("analyses") or {}).get(name)
    return entry if isinstance(entry, dict) and "skipped" not in entry else {}


def _cell(entry: dict[str, Any], key: str, *, percent: bool = False, digits: int = 3) -> str:
    """A figure (as percent for rates) followed by its interval ``[lo, hi]`` when one is stated."""
    value = entry.get(key)
    if key == "fdr" and key in entry and value is None and "genuine_mean" in entry:
        return "\u221e"  # analyze writes an infinite FDR (no spread in either score set) as null
    if not isinstance(value, int | float) or isinstance(value, bool):
        return DASH

    def shown(v: Any) -> str:
        if v is None:
            return "\u221e"
        return f"{v * 100:.2f}" if percent else f"{v:.{digits}f}"

    text = shown(value)
    ci = (entry.get("ci95") or {}).get(key)
    if isinstance(ci, list) and len(ci) == 2:
        text += f" [{shown(ci[0])}, {shown(ci[1])}]"
    return text


def score_stats_table(runs: Sequence[Any]) -> list[str]:
    """The mated/non-mated score statistics of every analysed dataset (``pair-distributions``)."""
    rows, ddofs, resamples = [], set(), set()
    for run in runs:
        entry = _entry(run, "pair-distributions")
        if "fdr" not in entry and "fmr100" not in entry:
            continue  # a summary of an older facebench: only the EER (shown with the distributions)
        ddofs.add(entry.get("ddof"))
        resamples.add(entry.get("bootstrap"))
        pairs = f"{entry.get('genuine_pairs', '?')} / {entry.get('impostor_pairs', '?')}"
        rows.append([run.label, pairs, _cell(entry, "genuine_mean"), _cell(entry, "genuine_std"),
                     _cell(entry, "impostor_mean"), _cell(entry, "impostor_std"), _cell(entry, "fdr", digits=2),
                     _cell(entry, "eer", percent=True), _cell(entry, "fmr100", percent=True),
                     _cell(entry, "fmr1000", percent=True)])
    if not rows:
        return []
    ddof_text = " and ".join(f"ddof={d}" for d in sorted(d for d in ddofs if d is not None)) or "ddof not stated"
    boot = sorted(r for r in resamples if r)
    note = ("FDR = (genuine mean - impostor mean)^2 / (genuine SD^2 + impostor SD^2); SDs with "
            f"{ddof_text} (0: population SD). FMR100 / FMR1000: the false non-match rate at a false match rate "
            "of 1% / 0.1% (lowest FNMR whose FMR does not exceed the target, on the tie-safe ROC); FMR1000 needs "
            "1,000 or more impostor pairs to be measured above FMR 0. Scores are cosine similarities of the "
            "sampled pairs. ")
    note += (f"Brackets: bootstrap 95% intervals ({', '.join(map(str, boot))} resamples of the pairs)."
             if boot else "No bootstrap intervals were stated.")
    header = ["dataset", "genuine / impostor pairs", "genuine mean", "genuine SD", "impostor mean", "impostor SD",
              "FDR", "EER %", "FMR100 %", "FMR1000 %"]
    return ["<h3>Score statistics: mated and non-mated comparisons</h3>" + table(header, rows)
            + f'<p class="muted">{esc(note)}</p>']


def diversity_table(runs: Sequence[Any]) -> list[str]:
    """Intra- and inter-class Vendi scores of every analysed dataset (``vendi``), with the per-identity
    scores as a histogram."""
    rows, series = [], []
    for run in runs:
        entry = _entry(run, "vendi")
        if not entry:
            continue
        scored = entry.get("identities_scored")
        rows.append([run.label, _cell(entry, "intra_vendi_mean", digits=2), _cell(entry, "intra_vendi_median", digits=2),
                     _cell(entry, "images_per_identity_mean", digits=1), f"{scored if scored is not None else '?'}",
                     _cell(entry, "inter_vendi", digits=1), f"{entry.get('identities', '?')}"])
        intra = run.array("intra_vendi")
        if intra is not None and len(intra):
            series.append((run.label, intra))
    if not rows:
        return []
    header = ["dataset", "intra-class Vendi (mean)", "median", "images per identity", "identities scored",
              "inter-class Vendi (centres)", "identities"]
    note = ("Vendi score = exp(-sum l log l) over the eigenvalues l of K/n, K the cosine kernel of n L2-normalised "
            "embeddings: the effective number of distinct faces (1 for identical images, n for orthogonal ones). "
            "Intra-class: the images of each identity with two or more images, averaged over identities "
            "(brackets: bootstrap 95% interval over identities). Inter-class: the identity centres, once for the "
            "whole set (no interval: resampling identities repeats centres, which lowers the score by construction).")
    out = ["<h3>Diversity: Vendi scores</h3>" + table(header, rows) + f'<p class="muted">{esc(note)}</p>']
    if series:
        out.append(image(figures.histogram_plot(series, "intra-class Vendi score (per identity)"),
                         "intra-class Vendi histogram", "the Vendi score of each identity's own images"))
    return out
