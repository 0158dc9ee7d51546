"""Run a suite on one model: find the benchmarks, embed, score, write tidy rows.

Pair packs are scored here (the insightface verification protocol, with bootstrap intervals); a benchmark
of another protocol (IJB, 1:N identification) is handed to its protocol component
(:mod:`facebench.evaluation.protocols`). Each finished benchmark is recorded in a :class:`ShardManifest`,
so a suite interrupted after three of five packs resumes at the fourth; the manifest's parameters
(weights hash, flip test, folds) make sure a rerun with another model starts over instead of mixing
results, and a benchmark whose protocol options changed is scored again (from cached features).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..console import console, warn
from ..errors import DataError, FacebenchError
from ..metrics import MetricInputError, VerificationResult, far_key, verification_intervals, verify
from ..metrics.verification import DEFAULT_FARS
from ..provenance import sha256_path
from ..runs import DEFAULT_RUNS_ROOT, RESULTS, discard_on_failure
from ..safe_load import expect
from ..shards import ShardManifest
from .embed import TensorModel, embed_pairs
from .protocols import VERIFICATION, ProtocolContext, benchmark_digest, build_protocol
from .suites import Benchmark, Suite
from .tradeoff import TRADEOFF_FILE, tradeoff_rows

#: The columns of ``results.csv`` (ARCHITECTURE.md "Result files"), then the extra ones facebench adds.
RESULT_COLUMNS = ["dataset", "benchmark", "accuracy", "std", "threshold", "tar_at_far_1e-3", "tar_at_far_1e-4",
                  "eer"]
EXTRA_COLUMNS = ["label", "suite", "protocol", "group", "pairs", "same_pairs", "eer_threshold", "far_resolution",
                 "flip_test", "model", "pack", "pack_sha256"]


def evaluate_pack(model: TensorModel, path: str | os.PathLike, *, batch_size: int = 64, flip_test: bool = True,
                  folds: int = 10, label: str = "", bootstrap: int = 0, seed: int = 0, workers: int | None = None,
                  ctx: Any = None) -> VerificationResult:
    """The insightface protocol on one pairs pack (any registered pairs format). ``bootstrap`` resamples
    give 95% intervals of accuracy, EER and TAR@FAR (``result.intervals``); ``workers``: decoding
    processes (default by device); ``ctx``: a distributed context whose ranks share the embedding."""
    from ..data import open_pairs

    with open_pairs(path) as reader:
        emb_a, emb_b = embed_pairs(model, reader, batch_size=batch_size, flip_test=flip_test, workers=workers,
                                   ctx=ctx, description=f"embedding {label or Path(path).name}")
        try:
            result = verify(emb_a, emb_b, reader.issame, folds=folds)
            if bootstrap:
                intervals = verification_intervals(emb_a, emb_b, reader.issame, folds=folds, fars=DEFAULT_FARS,
                                                   resamples=bootstrap, seed=seed)
                result = dataclasses.replace(result, intervals=intervals)
            return result
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
        "protocol": VERIFICATION,
        "group": bench.group,
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
    if result.intervals:
        row["ci95"] = {key: [float(lo), float(hi)] for key, (lo, hi) in result.intervals.items()}
    return row


@dataclass
class SuiteOutcome:
    rows: list[dict[str, Any]]
    missing: list[Benchmark] = field(default_factory=list)
    found: dict[str, Path] = field(default_factory=dict)
    already_complete: bool = False  # the same evaluation was there: its rows read back, nothing written


def evaluate_suite(model: TensorModel, suite: Suite, data_root: str | os.PathLike, *, dataset: str,
                   run: Any = None, weights_sha256: str = "", batch_size: int = 64, flip_test: bool = True,
                   folds: int = 10, bootstrap: int = 0, seed: int = 0,
                   options: dict[str, Any] | None = None, overwrite: bool = False) -> SuiteOutcome:
    """Evaluate every benchmark of ``suite`` present under ``data_root``; missing ones are listed, not fatal.

    ``options`` holds each protocol's options (``{protocol: {key: value}}``); a finished benchmark is
    reused only when its files and its protocol's options are unchanged.
    """
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
                  "flip_test": flip_test, "folds": folds, "bootstrap": bootstrap, "seed": seed}
        # with overwrite (a run replaced by one of other parameters) a manifest of other ones starts again
        manifest = ShardManifest(run.path / "manifest.json", params, overwrite=overwrite)
    protocols: dict[str, Any] = {}
    rows = []
    for bench in suite.benchmarks:
        if bench.name not in found:
            continue
        path = found[bench.name]
        protocol = None
        if bench.protocol != VERIFICATION:
            protocol = protocols.get(bench.protocol) or protocols.setdefault(
                bench.protocol, build_protocol(bench.protocol, options))
        inputs = list(protocol.inputs(path)) if protocol is not None else []
        digest = benchmark_digest(path, inputs)
        if run is not None:
            for file in inputs or [path]:
                label = f"pack:{bench.name}" if not inputs else f"{bench.name}:{Path(file).name}"
                run.add_input(label, file)
        used = (options or {}).get(bench.protocol, {}) if protocol is not None else {}
        done = finished_rows(manifest, bench.name) if manifest is not None else None
        if done and done[0].get("pack_sha256") == digest and done[0].get("options", {}) == used:
            rows.extend({**row, "dataset": dataset} for row in done)  # the label may differ on rerun
            console.print(f"{bench.name}: already evaluated (resumed)")
            continue
        if protocol is None:
            result = evaluate_pack(model, path, batch_size=batch_size, flip_test=flip_test, folds=folds,
                                   label=bench.name, bootstrap=bootstrap, seed=seed)
            new = [result_row(result, dataset=dataset, bench=bench, suite=suite.name, model=model.name,
                              pack=path, pack_sha256=digest, flip_test=flip_test)]
            console.print(f"{bench.name}: {100 * result.accuracy:.2f} +- {100 * result.std:.2f} "
                          f"({result.num_pairs} pairs)")
        else:
            ctx = ProtocolContext(model=model, path=path, bench=bench, suite=suite.name, dataset=dataset,
                                  model_name=model.name, weights_sha256=weights_sha256,
                                  workdir=run.path if run is not None else None, batch_size=batch_size,
                                  flip_test=flip_test, bootstrap=bootstrap, seed=seed)
            new = [{**row, "pack": str(path), "pack_sha256": digest, "options": used}
                   for row in protocol.evaluate(ctx)]
        rows.extend(new)
        if manifest is not None:
            new = json.loads(json.dumps(new, default=str))  # as the manifest holds them, hashed as such
            manifest.mark_done(bench.name, {"rows": new, "sha256": rows_sha256(new)})
    return SuiteOutcome(rows=rows, missing=missing, found=found)


def rows_sha256(rows: list[dict[str, Any]]) -> str:
    """The sha256 of result rows as JSON (keys sorted): what the manifest records of a finished benchmark."""
    text = json.dumps(rows, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def finished_rows(manifest: ShardManifest, name: str) -> list[dict[str, Any]] | None:
    """The rows the run's manifest records for benchmark ``name``, or None when it must be scored (again).

    Rows are reused only when they still hash to the sha256 recorded when they were written: rows that
    someone edited (or a manifest of an older facebench, which recorded none) are scored again with a
    warning naming the file and the benchmark. Rows of the wrong shape are one error naming the file."""
    entry = manifest.done.get(name)
    if entry is None:
        return None
    key = f"done.{name}"
    expect(manifest.path, entry, (dict, list), key)
    recorded = None
    if isinstance(entry, dict) and "rows" in entry:
        rows = expect(manifest.path, entry["rows"], list, f"{key}.rows")
        recorded = entry.get("sha256")
    else:  # an older manifest: one row (before protocols), or the rows without their hash
        rows = [entry] if isinstance(entry, dict) else entry
    for i, row in enumerate(rows):
        expect(manifest.path, row, dict, f"{key} row {i + 1}")
    if not rows:
        return None
    if recorded != rows_sha256(rows):
        why = "record no sha256" if recorded is None else "do not match the sha256 recorded when they were written"
        warn(f"{manifest.path}: the finished rows of benchmark {name} {why}; scoring it again")
        return None
    return rows


def protocol_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The rows of other protocols (IJB, 1:N): benchmark and its headline figures (``figures``, in %)."""
    body = []
    for row in rows:
        figures = row.get("figures")
        if row.get("accuracy") is None and figures:
            text = ", ".join(f"{k} {100 * v:.2f}" for k, v in figures.items() if v is not None)
            body.append([row["dataset"], row["benchmark"], str(row.get("protocol", "")), text])
    return ["Training set", "benchmark", "protocol", "figures (%)"], body


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
    """The paper's Table 1 layout: one row per dataset, one column per verification benchmark (%), then Avg."""
    rows = [r for r in rows if r.get("accuracy") is not None]
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
    bootstrap: int = 1000  # resamples for the 95% intervals of accuracy, EER and TAR@FAR (0: none)
    seed: int = 0  # of the bootstrap
    options: dict[str, Any] = field(default_factory=dict)  # each protocol's options (--set PROTOCOL.KEY=VALUE)


def _default_out(model: str, suite: str) -> Path:
    path = Path(model)
    safe_suite = Path(suite).stem
    if path.is_dir():
        return path / f"eval-{safe_suite}"
    return DEFAULT_RUNS_ROOT / f"eval-{safe_suite}-{path.stem}"


def _pack_digests(suite: Suite, found: dict[str, Path], options: dict[str, Any]) -> dict[str, str]:
    """The sha256 of every benchmark found (its pack, or the files its protocol reads), as
    :func:`evaluate_suite` records them: what the results are of."""
    protocols: dict[str, Any] = {}
    digests = {}
    for bench in suite.benchmarks:
        if bench.name not in found:
            continue
        inputs: list[Any] = []
        if bench.protocol != VERIFICATION:
            protocol = protocols.get(bench.protocol) or protocols.setdefault(
                bench.protocol, build_protocol(bench.protocol, options))
            inputs = list(protocol.inputs(found[bench.name]))
        digests[bench.name] = benchmark_digest(found[bench.name], inputs)
    return digests


def run_evaluation(config: EvaluateConfig, out: str | None = None, *,
                   overwrite: bool = False) -> tuple[Any, SuiteOutcome, Suite]:
    """What ``facebench evaluate`` does: the suite's packs under the data root, the model (an FR run
    directory or a weights file with a backbone), a run directory with provenance, every pack scored
    (resumable per pack), ``results.json``/``.csv``. Returns (run, outcome, suite).

    The rerun contract (:mod:`facebench.rerun`): the parameters are the config without the device and the
    paths of the model and the data root, the sha256 of the model's weights and of every pack found; the
    same evaluation again reads its rows back and writes nothing (``outcome.already_complete``)."""
    from ..rerun import FINISHED, Rerun, parameters
    from ..runs import Run
    from ..safe_load import read_json
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
    params = parameters(config, ignore=("device", "model", "data_root"), inputs={"weights": resolved.weights},
                        packs=_pack_digests(suite, found, config.options))
    # --overwrite keeps what checks itself before reuse: the cached features (their parameters and rows'
    # sha256) and the finished rows (reused per benchmark only with the same pack, options and hash)
    rerun = Rerun(out_dir, command="evaluate", params=params, what="evaluation", outputs=[RESULTS, "results.csv"],
                  overwrite=overwrite, keep=["features", "manifest.json", "manifest.json.journal"])
    if rerun.check() == FINISHED:
        rows = read_json(out_dir / RESULTS, what="results", expect_type=list)
        return Run(out_dir), SuiteOutcome(rows=rows, missing=missing, found=found, already_complete=True), suite
    with discard_on_failure(out_dir):
        run = Run.start(out_dir, config=config, device=config.device, inputs={"weights": resolved.weights},
                        extra={"suite": suite.name, "missing_packs": [b.name for b in missing],
                               "trained_on": resolved.dataset}, rerun=rerun)
        outcome = evaluate_suite(resolved.model, suite, config.data_root, dataset=config.label, run=run,
                                 weights_sha256=sha256_path(resolved.weights), batch_size=config.batch_size,
                                 flip_test=config.flip_test, folds=config.folds, bootstrap=config.bootstrap,
                                 seed=config.seed, options=config.options, overwrite=overwrite)
        write_results(run, outcome.rows)
        trade = tradeoff_rows(outcome.rows, suite)  # a grouped suite (RFW): its bias trade-off per model
        if trade:
            run.write_json(TRADEOFF_FILE, trade)
        rerun.finish(run, outputs=[RESULTS, "results.csv", *([TRADEOFF_FILE] if trade else [])])
    return run, outcome, suite
