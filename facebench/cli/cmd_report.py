"""``facebench report``: one self-contained HTML comparison of run directories."""

from __future__ import annotations

import click

from ..console import console
from .options import overwrite_option, rerun_help

_EPILOG = """Examples:

\b
  facebench report runs/tiny runs/noise --out reports/toy.html
  facebench report runs/tiny runs/noise --label runs/noise='noise baseline'
  facebench report runs/tiny runs/noise --images-from toy --out reports/toy.html
"""


@click.command(epilog=_EPILOG)
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", default="reports/report.html", show_default=True, type=click.Path(dir_okay=False),
              help="The HTML file to write (written atomically).")
@click.option("--title", default="facebench report", show_default=True, help="Heading of the report.")
@click.option("--section", "sections", multiple=True,
              help="Only these sections (repeatable); see `facebench plugins --kind report_section`.")
@click.option("--label", "labels", multiple=True, metavar="RUN=NAME",
              help="Show the dataset of run directory RUN as NAME instead of its own name (repeatable).")
@click.option("--real", "real", multiple=True, metavar="RUN",
              help="A run directory of a model trained on real data: the fairness view prints every other "
                   "dataset's GAP to it (repeatable; it must be among RUNS).")
@click.option("--images-from", "images_from", multiple=True, metavar="DIR", type=click.Path(file_okay=False),
              help="A folder outside RUNS whose images may be embedded (a training set's sample grid); "
                   "without it, only images inside RUNS are (repeatable).")
@overwrite_option("--out")
@rerun_help("--out", note="The parameters are --title, --section and the report's content as read from RUNS (its "
                          "sha256, recorded in OUT.json beside OUT): a run that changed since is a change. The date "
                          "printed in the report is $SOURCE_DATE_EPOCH when set, so a report can be made byte for "
                          "byte again.")
def report(runs: tuple[str, ...], out: str, title: str, sections: tuple[str, ...], labels: tuple[str, ...],
           real: tuple[str, ...], images_from: tuple[str, ...], overwrite: bool) -> None:
    """Compare run directories (evaluation, analysis, generated datasets, FR training) in one HTML file.

    Each RUN contributes itself and every sub-folder holding results: give a train-fr run and its
    evaluations (RUN/eval-SUITE, where evaluate --model RUN writes them) come along. What each RUN gave is
    printed; a RUN that gives nothing, or a model without an evaluation, gets a warning. Every dataset has
    one name (from its dataset.json, else its training set's folder): one row per model, one card and one
    point of the size plot. The file has inline CSS and embedded images, needs no network and no
    JavaScript. Published numbers of the Vec2Face paper and newer methods appear beside the measured
    rows, labelled as such. Images come only from inside RUNS (and --images-from): a sample grid of a
    dataset elsewhere, or behind a link leading elsewhere, is left out with a warning. Numbers out of
    range (an accuracy above 100, a NaN) are refused, naming the file.
    """
    from ..errors import FacebenchError
    from ..report import report_once

    names = {}
    for item in labels:
        run, sep, name = item.partition("=")
        if not sep or not run or not name:
            raise FacebenchError(f"--label expects RUN=NAME, got '{item}'")
        names[run] = name
    with console.status("rendering report"):
        path, findings, done = report_once(list(runs), out, overwrite=overwrite, title=title,
                                           sections=list(sections) or None, labels=names, real=list(real),
                                           images_from=list(images_from))
    for finding in findings:
        for line in finding.lines():
            click.echo(f"found {line}")
        for warning in finding.warnings:
            click.echo(f"warning: {warning}", err=True)
    if done:
        from ..rerun import already_complete

        click.echo(already_complete(path, f"{len(runs)} run folder(s) as they are now"))
        return
    click.echo(str(path))


__all__ = ["report"]
