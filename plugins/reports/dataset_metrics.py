"""Report section: dataset metrics against a real set (KID, precision/recall, density/coverage), the
certainty-ratio quality histogram and identity leakage with the closest synthetic/training pairs as images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from facebench.errors import DataError
from facebench.report.html import esc, image, table
from facebench.report.loading import RunData, read_array

from . import figures
from .protocol_figures import pairs_grid

#: Most closest pairs drawn (the analysis keeps 10 by default).
MAX_PAIRS = 32


def _num(value, digits: int = 4) -> str:
    return "\u2013" if value is None else f"{float(value):.{digits}f}"


def _g(value) -> str:
    return "?" if value is None else f"{value:g}"


def _pct(value, text: str = "") -> str:
    """A checked fraction as percent with a note; absent: a dash."""
    return "\u2013" if value is None else f"{100 * value:.2f}{text}"


def _fidelity_table(runs: Sequence[RunData]) -> str | None:
    rows = []
    for run in runs:
        fidelity = ((run.summary or {}).get("analyses") or {}).get("fidelity") or {}
        for space in ("fr", "inception"):
            block = fidelity.get(space)
            if not isinstance(block, dict):
                continue
            rows.append([run.label, f"{space} ({block.get('extractor', '?')})",
                         f"{_num(block.get('kid'), 5)} \u00b1 {_num(block.get('kid_std'), 5)}",
                         _num(block.get("precision"), 3), _num(block.get("recall"), 3), _num(block.get("density"), 3),
                         _num(block.get("coverage"), 3), " / ".join(map(str, block.get("images") or ["?", "?"]))])
    if not rows:
        return None
    return table(["dataset (fake)", "feature space", "KID (mean \u00b1 std)", "precision (k=3)", "recall (k=3)",
                  "density (k=5)", "coverage (k=5)", "images fake / real"], rows, row_classes=["measured"] * len(rows))


def _leakage(runs: Sequence[RunData]) -> list[str]:
    out, rows = [], []
    for run in runs:
        leak = ((run.summary or {}).get("analyses") or {}).get("leakage") or {}
        if "leaked_at_fmr_share" not in leak:
            continue
        resolved = "" if leak.get("fmr_resolved", True) else " (FMR below the resolution of the impostor pairs)"
        threshold, fmr_threshold = leak.get("threshold"), leak.get("fmr_threshold")
        rows.append([run.label, str(leak.get("reference", "")),
                     _pct(leak.get("leaked_share"), f" (cos > {threshold:g})" if threshold is not None else ""),
                     _pct(leak["leaked_at_fmr_share"], (f" (cos > {fmr_threshold:.3f})" if fmr_threshold is not None
                                                        else "") + resolved),
                     f"{_g(leak.get('fmr'))} / {_g(leak.get('impostor_pairs'))}"])
        path = run.path / "analysis" / "leakage_pairs.npy"
        if path.is_file() and run.may_embed(path, f"closest leakage pairs of '{run.label}'"):
            pairs = _image_pairs(path)[:MAX_PAIRS]
            if len(pairs):
                scores = [c.get("cosine") for c in leak.get("closest") or []][: len(pairs)]
                out.append(image(pairs_grid(pairs, scores, run.label), f"closest pairs of {run.label}",
                                 f"{run.label}: the {len(pairs)} synthetic identities closest to a training identity "
                                 "(top row, first image of each) over their closest training identity, most similar first"))
    if rows:
        out.insert(0, table(["dataset", "reference (training set)", "leaked identities % at the fixed cosine",
                             "leaked identities % at the reference's FMR threshold", "FMR / impostor centre pairs"],
                            rows, row_classes=["measured"] * len(rows)))
    return out


def _image_pairs(path) -> np.ndarray:
    """``leakage_pairs.npy``: uint8 RGB image pairs, (pairs, 2, height, width, 3)."""
    pairs = read_array(path, what="leakage pairs")
    if pairs.dtype != np.uint8 or pairs.ndim != 5 or pairs.shape[1] != 2 or pairs.shape[4] != 3:
        raise DataError(path, "expected uint8 image pairs of shape (pairs, 2, height, width, 3), found "
                              f"{pairs.dtype} of shape {tuple(pairs.shape)}")
    return pairs


def dataset_metrics_section(runs: Sequence[RunData]) -> list[str]:
    out = []
    fidelity = _fidelity_table(runs)
    if fidelity:
        out.append("<h3>KID, precision/recall, density/coverage against the real set</h3>" + fidelity)
        out.append('<p class="muted">KID: unbiased MMD\u00b2 with the cubic kernel over random subsets (lower is '
                   "closer). Precision: share of synthetic samples inside the real k-NN manifold; recall: share of "
                   "real samples inside the synthetic one; density/coverage: the same with real-sample balls "
                   "(Naeem et al.). FR space uses L2-normalised identity features; Inception space needs its "
                   "weights file.</p>")
    series = [(r.label, a) for r in runs if (a := r.array("certainty_ratio")) is not None and len(a)]
    if series:
        out.append("<h3>Certainty-ratio quality (CR-FIQA)</h3>" + image(
            figures.histogram_plot(series, "certainty ratio CCS / (NNCCS + 1 + eps)"), "certainty ratio histogram",
            "per image: cosine to its own identity centre over one plus the highest cosine to another centre"))
    leakage = _leakage(runs)
    if leakage:
        out.append(f"<h3>{esc('Identity leakage against the training set')}</h3>")
        out += leakage
    return out
