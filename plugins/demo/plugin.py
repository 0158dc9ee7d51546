"""Adds ``facebench demo``; everything heavy is imported when the command runs."""

from __future__ import annotations

import click

from facebench import hookimpl
from facebench.cli.options import examples

EPILOG = examples(
    "facebench demo --quick            # about 5 minutes on 2 CPU cores",
    "facebench demo --out demo/full    # the full demo; run it again to reuse finished steps",
)


@click.command("demo", epilog=EPILOG)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Where every run of the demo goes [demo/quick with --quick, else demo/full].")
@click.option("--quick", is_flag=True, help="A smaller world and shorter trainings (under 5 minutes on 2 cores).")
@click.option("--set", "overrides", multiple=True, metavar="vars.KEY=VALUE",
              help="Override a demo variable, e.g. --set vars.fr_epochs=12.")
@click.pass_context
def demo(ctx: click.Context, out: str | None, quick: bool, overrides: tuple[str, ...]) -> None:
    """Run the whole toolkit end to end on toyfaces and write the comparison report.

    Builds toyfaces, trains the teacher FR model, extracts identity features, trains a tiny Vec2Face,
    samples identities and generates a synthetic set, generates a baseline set, trains the same tiny FR
    recipe on real, Vec2Face and baseline data, evaluates them on the toy packs, analyses the datasets
    and writes one HTML report. Finished steps are reused when it is run again.
    """
    from pathlib import Path

    from .run import run_demo

    out_dir = Path(out) if out else Path("demo") / ("quick" if quick else "full")
    report = run_demo(ctx.find_root().command, out_dir, quick=quick, overrides=overrides)
    click.echo(str(report))


@hookimpl
def register_commands(cli):
    cli.add_command(demo)
