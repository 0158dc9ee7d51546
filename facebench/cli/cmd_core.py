"""Commands about facebench itself: ``plugins`` and ``doctor``."""

from __future__ import annotations

import json
import os

import click
from rich import box
from rich.console import Console
from rich.table import Table

from .. import pluginmanager  # looked up when called: a test may swap the plugin set
from ..hookspecs import KIND_HOOKS
from ..weights import present
from .options import examples

_stdout = Console(highlight=False)


@click.command(epilog=examples("facebench plugins --kind generator --json"))
@click.option("--kind", type=click.Choice(list(KIND_HOOKS)), help="Only this kind of component.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list (keys kind, name, plugin, version, description; an unavailable component "
                   "adds available=false, missing and install).")
def plugins(kind: str | None, as_json: bool) -> None:
    """List every registered component and the plugin that provides it."""
    regs = pluginmanager.get_plugin_set().registries()
    rows = [spec.as_row() for k, reg in regs.items() if kind in (None, k) for spec in reg]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for name in dict.fromkeys(row["kind"] for row in rows):  # one table per kind, readable at 80 columns
        _stdout.print(_kind_table(name, [row for row in rows if row["kind"] == name]))
    if not rows:
        _stdout.print("no components registered (check FACEBENCH_PLUGINS / FACEBENCH_DISABLE_PLUGINS)")
    for line in _unavailable_lines(rows):
        _stdout.print(line, markup=False, style="yellow")


def _kind_table(kind: str, rows: list[dict]) -> Table:
    """The components of one kind: the name and the plugin (with its version) are never broken, so at
    80 columns only the description wraps, at word boundaries."""
    table = Table(title=f"{kind} ({len(rows)})", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False,
                  expand=False)
    table.add_column("name", no_wrap=True)
    table.add_column("plugin", no_wrap=True)
    table.add_column("description", overflow="fold", ratio=1)
    for row in rows:
        description = row["description"]
        if row.get("available") is False:
            description = f"[yellow]unavailable[/] (missing {', '.join(row['missing'])}): {description}"
        table.add_row(row["name"], f"{row['plugin']} {row['version']}", description)
    return table


def _unavailable(regs) -> list[dict]:
    return [{"kind": s.kind, "name": s.name, "missing": s.missing(), "install": s.install_hint}
            for reg in regs.values() for s in reg.unavailable()]


def _unavailable_lines(rows: list[dict]) -> list[str]:
    """One line per unavailable component: what is missing and the command that installs it."""
    return [f"{r['kind']} '{r['name']}' is unavailable: missing {', '.join(r['missing'])}"
            + (f"; install with: {r['install']}" if r.get("install") else "")
            for r in rows if r.get("missing")]


@click.command(epilog=examples("facebench doctor", "facebench doctor --weights-dir ~/weights --json"))
@click.option(
    "--weights-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Where pretrained weight files are looked for [env FACEBENCH_WEIGHTS; default ~/.cache/facebench/weights].",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor(weights_dir: str | None, as_json: bool) -> None:
    """Check the installation: torch, devices, registered components and weight files."""
    import torch

    from ..weights import weights_dir as resolve_dir

    root = resolve_dir(weights_dir)
    devices = {
        "cuda": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()),
        "cpu_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    regs = pluginmanager.get_plugin_set().registries()
    counts = {k: len(r) for k, r in regs.items()}
    unavailable = _unavailable(regs)
    files = [
        {"file": k.filename, "purpose": k.purpose, "source": k.source, "declared_by": k.component,
         "path": str(p) if p else None}
        for k, p in present(root)
    ]
    report = {"torch": torch.__version__, "devices": devices, "components": counts, "unavailable": unavailable,
              "weights_dir": str(root), "weights_dir_exists": root.is_dir(), "weights": files,
              "toy_world_needs": []}
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    _stdout.print(f"[bold]torch[/] {torch.__version__}")
    cuda = ", ".join(devices["cuda_devices"]) if devices["cuda"] else "not available"
    _stdout.print(f"[bold]CUDA[/] {cuda}   [bold]MPS[/] {'yes' if devices['mps'] else 'no'}   "
                  f"[bold]CPU threads[/] {devices['cpu_threads']} of {devices['cpu_count']} cores")
    comp = Table(title="registered components")
    comp.add_column("kind")
    comp.add_column("count", justify="right")
    for k, n in counts.items():
        comp.add_row(k, str(n))
    _stdout.print(comp)
    for line in _unavailable_lines(unavailable):
        _stdout.print(line, markup=False, style="yellow")
    note = "" if root.is_dir() else " (does not exist)"
    wt = Table(title=f"weight files the plugins declare, looked for in the weights directory {root}{note}")
    for col in ("file", "present", "for", "declared by"):
        wt.add_column(col, overflow="fold")
    for f in files:
        wt.add_row(f["file"], "yes" if f["path"] else "no", f["purpose"], f["declared_by"])
    _stdout.print(wt)
    _stdout.print("The toyfaces world and the demo need none of these files: they train every model they use.")


__all__ = ["doctor", "plugins"]
