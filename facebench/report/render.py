"""Assemble a report: load the runs, ask every registered report section for its fragments, write one file.

Sections come from the ``report_section`` registry (built-in ones through the ``reports`` plugin), so a
third-party plugin adds a section the same way. A spec's ``title`` and ``order`` extras place it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__, atomic
from ..errors import FacebenchError
from ..pluginmanager import registry
from .discovery import Finding, collect_runs
from .html import page
from .loading import RunData


def _fragments(result) -> list[str]:
    if result is None:
        return []
    if isinstance(result, str):
        return [result] if result else []
    return [str(f) for f in result if f]


def render_html(runs: Sequence[RunData], *, title: str = "facebench report", sections: Sequence[str] | None = None) -> str:
    """The report as one HTML string; ``sections`` restricts (and orders nothing: order comes from specs)."""
    reg = registry("report_section")
    names = list(sections) if sections else reg.names()
    specs = [reg.get(n) for n in names]
    specs.sort(key=lambda s: (s.extras.get("order", 50), s.name))
    parts = []
    for spec in specs:
        body = "".join(_fragments(spec.create(list(runs))))
        if body:
            parts.append((f"sec-{spec.name}", str(spec.extras.get("title", spec.name)), body))
    if not parts:
        raise FacebenchError("nothing to report: no registered report section produced output for these runs")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = f"{len(runs)} run(s): {', '.join(r.name for r in runs)} \u00b7 facebench {__version__} \u00b7 {stamp}"
    return page(title, subtitle, parts)


def build_report(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                 title: str = "facebench report", sections: Sequence[str] | None = None,
                 labels: dict[str, str] | None = None,
                 real: Sequence[str | os.PathLike] | None = None,
                 images_from: Sequence[str | os.PathLike] | None = None) -> tuple[Path, list[Finding]]:
    """What ``facebench report`` does: collect the runs of ``run_dirs`` and their sub-folders, render,
    write ``out`` atomically. Returns the written path and what each given folder contributed (with a
    warning for every image left out because it lies outside the given folders).

    ``labels`` maps run directories to the dataset names shown for them (an override: each dataset is
    named after its ``dataset.json`` or recorded training set without it); ``real`` names the runs trained
    on real data, which GAP figures compare the others with; ``images_from`` names folders beyond the runs
    whose images (a training set's sample grid) may be embedded."""
    if not run_dirs:
        raise FacebenchError("no run directories given")
    collection = collect_runs(list(run_dirs), labels, list(real or []), list(images_from or []))
    text = render_html(collection.runs, title=title, sections=sections)
    collection.add_skipped()
    return atomic.write_text(out, text, "report"), collection.findings


def write_report(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, *, title: str = "facebench report",
                 sections: Sequence[str] | None = None, labels: dict[str, str] | None = None,
                 real: Sequence[str | os.PathLike] | None = None,
                 images_from: Sequence[str | os.PathLike] | None = None) -> Path:
    """:func:`build_report` without the findings; returns the written path."""
    return build_report(run_dirs, out, title=title, sections=sections, labels=labels, real=real,
                        images_from=images_from)[0]
