"""Dataset-level analyses: what every analysis gets, what it returns, and how the results are saved.

Analyses are ``evaluator`` components with ``extras["kind"] == "analysis"``: ``factory(**options)``
returns an object with ``run(context) -> AnalysisOutput``. ``facebench analyze`` computes the features
once and hands every selected analysis the same :class:`AnalysisContext`; each returns a summary (JSON)
and named arrays, saved as ``analysis/<name>.npy`` beside ``analysis/summary.json``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FacebenchError
from .embed import TensorModel


@dataclass
class AnalysisContext:
    """Everything the analyses share; optional inputs are ``None`` when the user did not give them."""

    dataset: Path
    reader: Any  # the training-set reader (images, labels)
    features: np.ndarray  # raw embeddings, one row per image (may be a memory map)
    labels: np.ndarray
    centers: np.ndarray  # mean raw feature of each identity, rows in ``classes`` order
    classes: np.ndarray
    model: TensorModel
    model_name: str
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 64
    reference_centers: np.ndarray | None = None  # identities to test leakage against
    reference_name: str = ""
    fid_against: Path | None = None  # a second image set for FID
    fid_extractor: Any = None  # (name, TensorModel, feature kind) or None: then the FR model is used
    pose_extractor: Any = None
    quality_extractor: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class AnalysisOutput:
    """``summary`` goes under ``analyses.<name>``; ``headline`` scalars also at the top level of summary.json
    (flat keys such as ``eer`` or ``separability_threshold`` that a report shows in one table)."""

    summary: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    headline: dict[str, Any] = field(default_factory=dict)


def skipped(reason: str) -> AnalysisOutput:
    """The output of an analysis that had nothing to work on (recorded, not an error)."""
    return AnalysisOutput(summary={"skipped": reason})


def registered_analyses() -> list[Any]:
    from ..pluginmanager import registry
    from .suites import ANALYSIS

    return [spec for spec in registry("evaluator") if spec.extras.get("kind") == ANALYSIS]


def select_analyses(only: list[str] | None) -> list[Any]:
    specs = registered_analyses()
    if not only:
        return specs
    by_name = {s.name: s for s in specs}
    unknown = [n for n in only if n not in by_name]
    if unknown:
        raise FacebenchError(f"unknown analysis '{unknown[0]}' (available: {', '.join(by_name) or 'none'})")
    return [by_name[n] for n in only]


def save_outputs(run: Any, outputs: dict[str, AnalysisOutput], header: dict[str, Any]) -> dict[str, Any]:
    """``analysis/summary.json`` (header + one entry per analysis) and every array as ``analysis/NAME.npy``."""
    summary: dict[str, Any] = dict(header)
    summary["analyses"] = {}  # filled below; headline scalars are added after the header keys
    for name, out in outputs.items():
        entry = dict(out.summary)
        files = {}
        for key, array in out.arrays.items():
            target = run.file(f"analysis/{key}.npy")
            with run.atomic(f"analysis/{key}.npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, np.asarray(array), allow_pickle=False)
            files[key] = target.name
        if files:
            entry["arrays"] = files
        summary["analyses"][name] = entry
        for key, value in out.headline.items():
            summary.setdefault(key, value)
    run.write_json("analysis/summary.json", summary)
    run.write_text("analysis/summary.csv", tidy_csv(summary))
    return summary


def tidy_csv(summary: dict[str, Any]) -> str:
    """One row per scalar figure: ``dataset, analysis, metric, value`` (pandas-friendly)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset", "analysis", "metric", "value"])
    for name, entry in summary.get("analyses", {}).items():
        for key, value in entry.items():
            if isinstance(value, bool) or not isinstance(value, int | float | str) or key == "arrays":
                continue
            writer.writerow([summary.get("dataset", ""), name, key, value])
    return buffer.getvalue()
