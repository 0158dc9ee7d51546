"""Run a verification suite on one model: find the packs, embed, score, write tidy rows.

Each finished pack is recorded in a :class:`ShardManifest`, so a suite interrupted after three of five
packs resumes at the fourth; the manifest's parameters (weights hash, flip test, folds) make sure a
rerun with another model starts over instead of mixing results.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..console import console
from ..errors import DataError, FacebenchError
from ..metrics import MetricInputError, VerificationResult, far_key, verify
from ..metrics.verification import DEFAULT_FARS
from ..provenance import sha256_path
from ..runs import DEFAULT_RUNS_ROOT, RESULTS, discard_on_failure
from ..shards import ShardManifest
from .embed import TensorModel, embed_pairs
from .suites import Benchmark, Suite

#: The columns of ``results.csv`` (ARCHITECTURE.md "Result files"), then the extra ones facebench adds.
RESULT_COLUMNS = ["dataset", "benchmark", "accuracy", "std", "threshold", "tar_at_far_1e-3", "tar_at_far_1e-4",
                  "eer"]
EXTRA_COLUMNS = ["label", "suite", "pairs", "same_pairs", "eer_threshold", "far_resolution", "flip_test", "model",
                 "pack", "pack_sha256"]


def evaluate_pack(model: TensorModel, path: str | os.PathLike, *, batch_size: int = 64, flip_test: bool = True,
                  folds: int = 10, label: str = "", workers: int | None = None, ctx: Any = None) -> VerificationResult:
    """The insightface protocol on one pairs pack (any registered pairs format). ``workers``: decoding
    processes (default by device); ``ctx``: a distributed context whose ranks share the embedding."""
    from ..data import open_pairs

    with open_pairs(path) as reader:
        emb_a, emb_b = embed_pairs(model, reader, batch_size=batch_size, flip_test=flip_test, workers=workers,
                                   ctx=ctx, description=f"embedding {label or Path(path).name}")
        try:
            return verify(emb_a, emb_b, reader.issame, folds=folds)
        except MetricInputError as exc:
            raise DataError(path, str(exc)) from None


def result_row(result: VerificationResult, *, dataset: str, bench: Benchmark, suite: str, model: str,
               pack: Path, pack_sha256: str, flip_test: bool) -> dict[str, Any]:
    """One tidy row: accuracy, std, EER and TARs are fractions in [0, 1]; threshold is squared L2."""
    row: dict[str, Any] = {
        "dataset": dataset,
        "benchmark": bench.name,
        "accuracy": result.accuracy,
        "std": result.std,
        "threshold": result.threshold,
    }
    for far in DEFAULT_FARS:
        row[far_key(far)] = result.tar_at_far.get(far)
    row.update({
        "eer": result.eer,
        "label": bench.label,
        "suite": suite,
        "pairs": result.num_pairs,
        "same_pairs": result.num_same,
        "eer_threshold": result.eer_threshold,
        "far_resolution": result.far_resolution,
        "flip_test": flip_test,
        "model": model,
        "pack": str(pack),
        "pack_sha256": pack_sha256,
        "fold_accuracies": [float(a) for a in result.fold_accuracies],
        "fold_thresholds": [float(t) for t in result.thresholds],
    })
    return row


@dataclass
class SuiteOutcome:
    rows: list[dict[str, Any]]
    missing: list[Benchmark] = field(default_factory=list)
    found: dict[str, Path] = field(default_factory=dict)


def evaluate_suite(model: TensorModel, suite: Suite, data_root: str | os.PathLike, *, dataset: str,
                   run: Any = None, weights_sha256: str = "", batch_size: int = 64, flip_test: bool = True,
                   folds: int = 10) -> SuiteOutcome:
    """Evaluate every pack of ``suite`` present under ``data_root``; missing ones are listed, not fatal."""
    found, missing = suite.locate(data_root)
    if not found:
        tried = "; ".join(f"{b.name}: {', '.join(b.files)}" for b in missing)
        raise FacebenchError(f"{data_root}: none of the packs of suite '{suite.name}' is there (looked for {tried})")
    if missing:
        console.print("[yellow]missing packs[/] (skipped): "
                      + ", ".join(f"{b.name} ({b.files[0]})" for b in missing))
    manifest = None
    if run is not None:
        # no data root: each finished pack is checked by its own hash, so moved packs still resume
        params = {"suite": suite.name, "model": model.name, "weights_sha256": weights_sha256,
                  "flip_test": flip_test, "folds": folds}
        manifest = ShardManifest(run.path / "manifest.json", params)
    rows = []
    for bench in suite.benchmarks:
        if bench.name not in found:
            continue
        path = found[bench.name]
        digest = sha256_path(path)
        if run is not None:
            run.add_input(f"pack:{bench.name}", path)
        if manifest is not None and manifest.is_done(bench.name) and manifest.done[bench.name].get("pack_sha256") == digest:
            rows.append({**manifest.done[bench.name], "dataset": dataset})  # the label may differ on rerun
            console.print(f"{bench.name}: already evaluated (resumed)")
            continue
        result = evaluate_pack(model, path, batch_size=batch_size, flip_test=flip_test, folds=folds,
                               label=bench.name)
        row = result_row(result, dataset=dataset, bench=bench, suite=suite.name, model=model.name, pack=path,
                         pack_sha256=digest, flip_test=flip_test)
        rows.append(row)
        if manifest is not None:
            manifest.mark_done(bench.name, row)
        console.print(f"{bench.name}: {100 * result.accuracy:.2f} +- {100 * result.std:.2f} "
                      f"({result.num_pairs} pairs)")
    return SuiteOutcome(rows=rows, missing=missing, found=found)


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    """CSV of the scalar columns (lists such as fold accuracies stay in the JSON)."""
    columns = RESULT_COLUMNS + [c for c in EXTRA_COLUMNS if any(c in r for r in rows)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return buffer.getvalue()


def write_results(run: Any, rows: list[dict[str, Any]]) -> None:
    """``results.json`` (list of rows) and ``results.csv``, both atomic."""
    run.write_json(RESULTS, rows)
    run.write_text("results.csv", rows_to_csv(rows))


def table_1(rows: list[dict[str, Any]], suite: Suite) -> tuple[list[str], list[list[str]]]:
    """The paper's Table 1 layout: one row per dataset, one column per benchmark (%), then Avg."""
    labels = {b.name: b.label for b in suite.benchmarks}
    order = [b.name for b in suite.benchmarks if any(r["benchmark"] == b.name for r in rows)]
    header = ["Training set", *[labels[n] for n in order], "Avg"]
    body = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        accs = {r["benchmark"]: r["accuracy"] for r in rows if r["dataset"] == dataset}
        cells = [f"{100 * accs[n]:.2f}" if n in accs else "-" for n in order]
        present = [accs[n] for n in order if n in accs]
        avg = f"{100 * float(np.mean(present)):.2f}" if present else "-"
        body.append([dataset, *cells, avg])
    return header, body


@dataclass
class EvaluateConfig:
    suite: str
    model: str
    data_root: str
    backbone: str | None = None
    label: str | None = None
    flip_test: bool = True
    folds: int = 10
    batch_size: int = 64
    device: str = "auto"


def _default_out(model: str, suite: str) -> Path:
    path = Path(model)
    safe_suite = Path(suite).stem
    if path.is_dir():
        return path / f"eval-{safe_suite}"
    return DEFAULT_RUNS_ROOT / f"eval-{safe_suite}-{path.stem}"


def run_evaluation(config: EvaluateConfig, out: str | None = None) -> tuple[Any, SuiteOutcome, Suite]:
    """What ``facebench evaluate`` does: the suite's packs under the data root, the model (an FR run
    directory or a weights file with a backbone), a run directory with provenance, every pack scored
    (resumable per pack), ``results.json``/``.csv``. Returns (run, outcome, suite)."""
    from ..runs import Run
    from .models import resolve_model
    from .suites import get_suite

    suite = get_suite(config.suite)
    found, missing = suite.locate(config.data_root)
    if not found:
        tried = "; ".join(f"{b.name}: {', '.join(b.files)}" for b in missing)
        raise FacebenchError(f"{config.data_root}: none of the packs of suite '{suite.name}' is there "
                             f"(looked for {tried})")
    resolved = resolve_model(config.model, config.backbone, device=config.device)
    config.label = config.label or resolved.dataset
    config.backbone = resolved.name
    out_dir = Path(out) if out else _default_out(config.model, config.suite)
    with discard_on_failure(out_dir):
        run = Run.start(out_dir, config=config, device=config.device, inputs={"weights": resolved.weights},
                        extra={"suite": suite.name, "missing_packs": [b.name for b in missing],
                               "trained_on": resolved.dataset})
        outcome = evaluate_suite(resolved.model, suite, config.data_root, dataset=config.label, run=run,
                                 weights_sha256=sha256_path(resolved.weights), batch_size=config.batch_size,
                                 flip_test=config.flip_test)
        write_results(run, outcome.rows)
    return run, outcome, suite
