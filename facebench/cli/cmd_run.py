"""``facebench run``: execute an experiment config (paper tables, the demo) end to end, resumably."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from ..console import console
from .options import examples, rerun_help


def _plan_table(cfg, steps, out: Path) -> Table:
    from ..experiments import STEPS_MANIFEST
    from ..shards import read_manifest

    done = set()
    manifest = out / STEPS_MANIFEST
    if manifest.is_file():
        done = set(read_manifest(manifest)["done"])
    table = Table(title=f"{cfg.experiment.name}: {cfg.experiment.title}".rstrip(": "))
    for col in ("step", "command", "GPU h", "state"):
        table.add_column(col, overflow="fold")
    for s in steps:
        present = all(p.exists() for p in s.outputs)
        state = "done" if present and (s.name in done or s.outputs) else "to run"
        table.add_row(s.name, "facebench " + " ".join(s.argv), f"{s.gpu_hours:g}", state)
    return table


@click.command("run", epilog=examples(
    "facebench run benchmarks/paper/table1_hsface10k.toml --dry-run",
    "facebench run benchmarks/paper/table1_hsface10k.toml --set vars.test_root=~/fr/test"))
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Run directory [default: experiment.out or runs/<name>].")
@click.option("--set", "overrides", multiple=True, help="Override a config key, e.g. --set vars.weights=~/w.")
@click.option("--step", "only", multiple=True, help="Run only this step (repeatable); earlier steps must be done.")
@click.option("--dry-run", is_flag=True, help="Print the resolved steps and which are done; run nothing.")
@click.option("--overwrite", is_flag=True,
              help="Run again every step whose command line changed since it ran, and every step after it, each "
                   "with --overwrite (a step replaces its output only where its own parameters or inputs changed).")
@rerun_help("--out", note="Step by step: a step done with the same command line is skipped (all done: nothing is "
                          "written); a step whose command line changed since it ran is refused, naming it; a step "
                          "not run yet may change freely.")
@click.pass_context
def run(ctx: click.Context, config: str, out: str | None, overrides: tuple[str, ...], only: tuple[str, ...],
        dry_run: bool, overwrite: bool) -> None:
    """Run the steps of an experiment config in order; steps finished earlier are skipped.

    Each step is a facebench command line; ${var} takes values from the config's [vars] table and
    ${out} is the run directory. Kill it at any point and run the same command again to resume.
    """
    from ..experiments import default_out, load_experiment, resolve_steps, run_experiment

    cfg = load_experiment(config, overrides)
    out_dir = Path(out) if out else default_out(cfg)
    steps = resolve_steps(cfg, out_dir)
    if dry_run:
        console.print(_plan_table(cfg, steps, out_dir))
        total = sum(s.gpu_hours for s in steps)
        click.echo(f"{len(steps)} steps, {total:g} GPU hours at full scale ({cfg.experiment.gpu or 'GPU not stated'})")
        return
    outcomes = run_experiment(ctx.find_root().command, cfg, out_dir, only=only, overwrite=overwrite)
    ran = sum(o.status == "ran" for o in outcomes)
    if outcomes and all(o.status == "skipped" for o in outcomes):
        from ..rerun import already_complete

        click.echo(already_complete(out_dir, f"{len(outcomes)} step(s) done"))
        return
    click.echo(f"{out_dir}: {ran} step(s) ran, {len(outcomes) - ran} already done")


__all__ = ["run"]
