"""``facebench evaluate`` (verification suites on a model) and ``facebench analyze`` (dataset analyses)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from .options import device_option, examples, overwrite_option, rerun_help

_stdout = Console(highlight=False, width=max(120, shutil.get_terminal_size((120, 24)).columns))


def _device(preference: str) -> str:
    from ..runtime import choose_device

    return str(choose_device(preference))


@click.command(epilog=examples("facebench evaluate --suite toy-five --model runs/tiny --data-root toy",
                              "facebench evaluate --suite five --model runs/fr-hsface10k --data-root ~/data/eval"))
@click.option("--suite", required=True, help="Suite name (see `facebench plugins --kind evaluator`) or a suite .toml.")
@click.option("--model", "model", required=True, help="An FR run directory (model.json + backbone.pt) or a weights file.")
@click.option("--backbone", default=None, help="Backbone or feature-extractor name; required with a weights file.")
@click.option("--data-root", required=True, type=click.Path(), envvar="FACEBENCH_DATA",
              help="Folder holding the packs (lfw.bin, cfp_fp.bin, ...) [env FACEBENCH_DATA].")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Run directory for the results [default: RUN_DIR/eval-SUITE, or runs/eval-SUITE-WEIGHTS].")
@click.option("--label", default=None, help="Row label in the tables [default: the model's training set].")
@click.option("--no-flip", is_flag=True, help="Embed images only, without adding the mirrored image's embedding.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--bootstrap", default=1000, show_default=True, type=click.IntRange(min=0),
              help="Bootstrap resamples for 95% intervals of accuracy, EER and TAR@FAR (0: none).")
@click.option("--set", "overrides", multiple=True, metavar="PROTOCOL.OPTION=VALUE",
              help="A protocol option, e.g. --set ijb.flip_fusion=concat or --set ijb.detector_score=false "
                   "(an unknown option is answered with the protocol's list of options).")
@device_option()
@click.option("--json", "as_json", is_flag=True, help="Print the result rows as JSON instead of the table.")
@overwrite_option("--out")
@rerun_help("--out", note="The parameters are the suite, the model's weights' sha256, every pack's sha256, --label, "
                          "--no-flip, --batch-size, --bootstrap and --set; --device, --json and the paths of --model "
                          "and --data-root are not. Finished packs are kept: a killed run scores only the others.")
def evaluate(suite: str, model: str, backbone: str | None, data_root: str, out: str | None, label: str | None,
             no_flip: bool, batch_size: int, bootstrap: int, overrides: tuple[str, ...], device: str,
             as_json: bool, overwrite: bool) -> None:
    """Evaluate a face-recognition model on a suite: verification packs with the insightface protocol,
    IJB-B/C templates, 1:N identification (IJB-C, TinyFace), grouped sets (RFW).

    Every benchmark of the suite found under --data-root is scored (pairs: 10 folds, flip test); missing
    ones are listed and skipped. Results go to results.json / results.csv with provenance in the run directory.
    """
    from ..evaluation.protocols import protocol_options
    from ..evaluation.runner import EvaluateConfig, protocol_table, run_evaluation, table_1
    from ..evaluation.tradeoff import tradeoff_rows, tradeoff_table

    config = EvaluateConfig(suite=suite, model=str(model), data_root=str(data_root), backbone=backbone, label=label,
                            flip_test=not no_flip, batch_size=batch_size, device=_device(device), bootstrap=bootstrap,
                            options=protocol_options(overrides))
    run, outcome, the_suite = run_evaluation(config, out, overwrite=overwrite)
    if as_json:
        click.echo(json.dumps({"run": str(run.path), "missing": [b.name for b in outcome.missing],
                               "rows": outcome.rows}, indent=2))
        return
    header, body = table_1(outcome.rows, the_suite)
    if body and len(header) > 2:
        _print_table(f"{the_suite.name}: verification accuracy (%), 10-fold, "
                     f"{'flip test' if not no_flip else 'no flip'}", header, body)
    header, body = protocol_table(outcome.rows)
    if body:
        _print_table(f"{the_suite.name}: other protocols", header, body)
    header, body = tradeoff_table(tradeoff_rows(outcome.rows, the_suite))
    if body:
        _print_table(f"{the_suite.name}: bias trade-off across groups (%)", header, body)
    if outcome.missing:
        _stdout.print(f"missing ({len(outcome.missing)}): " + ", ".join(
            f"{b.label} [{' or '.join(b.files[:2])}]" for b in outcome.missing) + "; Avg covers the packs found")
    if outcome.already_complete:
        from ..rerun import already_complete

        _stdout.print(already_complete(run.path, f"{len(outcome.rows)} result rows"), markup=False)
    _stdout.print(f"results: {run.path / 'results.csv'}")


def _print_table(title: str, header: list[str], body: list[list[str]]) -> None:
    table = Table(title=title)
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in body:
        table.add_row(*row)
    _stdout.print(table)


@click.command(epilog=examples(
    "facebench analyze runs/noise-set --extractor fr-run --weights runs/tiny",
    "facebench analyze runs/hsface10k --extractor arcface-r100 --weights arcface-r100-glint360k.pth \\",
    "    --reference center_feature_examples.npy"))
@click.argument("dataset", type=click.Path())
@click.option("--extractor", required=True, help="Feature extractor (or backbone) name for identity features.")
@click.option("--weights", required=True, help="Its weights file, or an FR run directory.")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Run directory [default: runs/analyze-NAME].")
@click.option("--only", multiple=True, help="Run only these analyses (repeatable); default all.")
@click.option("--set", "overrides", multiple=True, metavar="ANALYSIS.OPTION=VALUE",
              help="An analysis option, e.g. --set class-noise.intra_threshold=0.3 or "
                   "--set pair-distributions.genuine=20000 (an unknown one is an error listing the options).")
@click.option("--reference", default=None, help="Reference identities for leakage: centres .npy or a dataset.")
@click.option("--fid-against", default=None, type=click.Path(), help="Second image set for FID.")
@click.option("--fid-extractor", default=None, help="Feature extractor for FID [default: the standard Inception features (fid-inception) if their weights file is in the weights directory, else --extractor].")
@click.option("--fid-weights", default=None, help="Weights of the FID extractor.")
@click.option("--pose-extractor", default=None, help="Head-pose extractor name (for pose histograms).")
@click.option("--pose-weights", default=None)
@click.option("--quality-extractor", default=None, help="Quality extractor name (for quality histograms).")
@click.option("--quality-weights", default=None)
@click.option("--flip/--no-flip", "flip_test", default=False, show_default=True, help="Flip-test identity features.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
@device_option()
@click.option("--json", "as_json", is_flag=True, help="Print summary.json to stdout.")
@overwrite_option("--out")
@rerun_help("--out", note="The parameters are the options that choose analyses, models and settings, and the "
                          "sha256 of the dataset, the weights and every other input file; --device, --json and the "
                          "inputs' paths are not. Cached features are kept: a killed run does not embed again.")
def analyze(dataset: str, extractor: str, weights: str, out: str | None, only: tuple[str, ...],
            overrides: tuple[str, ...], overwrite: bool, **options) -> None:
    """Dataset-level analyses: genuine/impostor distributions, class noise, separability, leakage, FID.

    Identity features are extracted once (resumable, in the run directory) and shared by every analysis.
    """
    as_json = options.pop("as_json")
    from ..evaluation.analyze import AnalyzeConfig, analysis_options, run_analyses

    config = AnalyzeConfig(dataset=str(dataset), extractor=extractor, weights=str(weights), only=list(only),
                           options=analysis_options(overrides), **options)
    config.device = _device(config.device)
    summary, run_path, done = run_analyses(config, out, overwrite=overwrite)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=f"analysis of {Path(dataset).name}")
    table.add_column("analysis")
    table.add_column("result")
    for name, entry in summary["analyses"].items():
        table.add_row(name, _short(entry))
    _stdout.print(table)
    if done:
        from ..rerun import already_complete

        _stdout.print(already_complete(run_path, f"{len(summary['analyses'])} analyses"), markup=False)
    _stdout.print(f"summary: {run_path / 'analysis' / 'summary.json'}")


def _short(entry: dict) -> str:
    if "skipped" in entry:
        return f"skipped: {entry['skipped']}"
    keys = ("eer", "fdr", "fmr100", "fmr1000", "genuine_mean", "genuine_std", "impostor_mean", "impostor_std",
            "intra_vendi_mean", "inter_vendi", "intra_noise", "inter_noise", "separable", "separable_share", "leaked",
            "leaked_share", "leaked_at_fmr", "leaked_at_fmr_share", "fid", "kid", "precision", "recall", "density", "coverage", "mean",
            "features")
    parts = []
    for k in keys:
        if k in entry:
            v = entry[k]
            parts.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
            ci = (entry.get("ci95") or {}).get(k)  # a bootstrap 95% interval, when the analysis gives one
            if isinstance(ci, list) and len(ci) == 2 and all(isinstance(b, float) for b in ci):
                parts[-1] += f" [{ci[0]:.4g}, {ci[1]:.4g}]"
    for space in ("fr", "inception"):  # the fidelity metrics, one set per feature space
        if isinstance(entry.get(space), dict):
            parts.append(f"{space}: {_short(entry[space])}")
    return ", ".join(parts) or json.dumps(entry)[:80]


__all__ = ["analyze", "evaluate"]
