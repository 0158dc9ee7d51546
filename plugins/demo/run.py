"""The demo's orchestration: run the steps of ``demo.toml``, then report on every run that exists.

Steps whose command no installed plugin provides are skipped (with the steps that need them) and
listed at the end, so the demo always does everything the installed components allow and says
exactly what it could not do.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import click
from rich.table import Table

from facebench.console import console
from facebench.errors import FacebenchError
from facebench.experiments import StepOutcome, load_experiment, run_experiment

#: ``--quick``: a smaller world and shorter trainings, same pipeline.
QUICK = (
    "vars.identities=150", "vars.images=16", "vars.pairs=300", "vars.fr_epochs=6",
    "vars.gen_identities=150", "vars.gen_images=12", "vars.suite=toy-five",
)

#: Steps of the full demo only: the toy IJB / RFW / TinyFace protocols and the dataset metrics (KID,
#: precision/recall, leakage) of issue 13; ``--quick`` leaves them out to stay at its few minutes.
FULL_ONLY_PREFIXES = ("toy-protocols", "protocols-", "metrics-")

#: The four arms of the comparison: run-directory suffix -> the dataset name the report shows.
ARMS = {"real": "toyfaces (real)", "vec2face": "Vec2Face (tiny)", "vec2face-attrop": "Vec2Face (tiny) + AttrOP",
        "baseline": "noise_projection baseline"}

#: Run directories the report is made from, in the order the report lists them (fr-real gives the card
#: of the real training set; the synthetic sets have their gen-* directories; protocols-* hold the toy
#: IJB / RFW / TinyFace evaluations, metrics-* the synthetic sets' KID, precision/recall and leakage).
REPORT_RUNS = tuple(f"{kind}-{arm}" for kind in ("eval", "protocols", "analysis", "metrics", "gen")
                    for arm in ARMS) + ("fr-real",)
#: The runs of the model trained on real data: the baseline of the report's GAP figures.
REAL_RUNS = ("eval-real", "protocols-real")


def config_path() -> Path:
    return Path(str(resources.files(__package__).joinpath("demo.toml")))


def _summary(outcomes: Sequence[StepOutcome], elapsed: float) -> Table:
    table = Table(title=f"facebench demo: {elapsed / 60:.1f} min")
    for col in ("step", "status", "seconds", "note"):
        table.add_column(col)
    for o in outcomes:
        colour = {"ran": "green", "skipped": "green", "unavailable": "yellow", "blocked": "yellow"}[o.status]
        status = "reused" if o.status == "skipped" else o.status
        table.add_row(o.name, f"[{colour}]{status}[/]", f"{o.seconds:.1f}" if o.seconds else "", o.detail)
    return table


def run_demo(cli: click.Group, out: Path, *, quick: bool = False, overrides: Sequence[str] = ()) -> Path:
    """Run (or resume) the demo in ``out`` and write ``out/report.html``; returns the report's path."""
    from facebench.report import write_report

    cfg = load_experiment(config_path(), [*(QUICK if quick else ()), *overrides])
    only = [s.name for s in cfg.steps if not s.name.startswith(FULL_ONLY_PREFIXES)] if quick else ()
    start = time.perf_counter()
    outcomes = run_experiment(cli, cfg, out, skip_unavailable=True, only=only)
    runs = [out / name for name in REPORT_RUNS if (out / name).is_dir()]
    runs = [r for r in runs if any((r / f).is_file() for f in
                                   ("results.json", "analysis/summary.json", "dataset.json", "model.json"))]
    console.print(_summary(outcomes, time.perf_counter() - start))
    missing = [o for o in outcomes if o.status in ("unavailable", "blocked")]
    if missing:
        console.print("[yellow]not done:[/] " + "; ".join(f"{o.name} ({o.detail})" for o in missing))
    if not runs:
        raise FacebenchError(f"{out}: the demo produced no results to report "
                             f"({len(missing)} steps could not run; the table above says why)")
    title = "facebench demo on toyfaces" + (" (quick)" if quick else "")
    labels = {str(r): ARMS[r.name.split("-", 1)[1]] for r in runs}
    real = [r for r in runs if r.name in REAL_RUNS]
    # the demo made every dataset it shows (the toy world's training set under out/toyfaces included)
    return write_report(runs, out / "report.html", title=title, labels=labels, real=real, images_from=[out])
