"""Assemble a report: load the runs, ask every registered report section for its fragments, write one file.

Sections come from the ``report_section`` registry (built-in ones through the ``reports`` plugin), so a
third-party plugin adds a section the same way. A spec's ``title`` and ``order`` extras place it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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


def _parts(runs: Sequence[RunData], sections: Sequence[str] | None) -> list[tuple[str, str, str]]:
    """Every section's (anchor, title, body) for these runs, in the sections' order."""
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
    return parts


def _stamp() -> str:
    """When the report was made: now, or ``$SOURCE_DATE_EPOCH`` (the reproducible-builds convention), so a
    report can be made byte for byte again."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch.isdigit() else datetime.now(timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _subtitle(runs: Sequence[RunData], stamp: str) -> str:
    return f"{len(runs)} run(s): {', '.join(r.name for r in runs)} \u00b7 facebench {__version__} \u00b7 {stamp}"


def render_html(runs: Sequence[RunData], *, title: str = "facebench report", sections: Sequence[str] | None = None) -> str:
    """The report as one HTML string; ``sections`` restricts (and orders nothing: order comes from specs)."""
    return page(title, _subtitle(runs, _stamp()), _parts(runs, sections))


def build_report(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                 title: str = "facebench report", sections: Sequence[str] | None = None,
                 labels: dict[str, str] | None = None,
                 real: Sequence[str | os.PathLike] | None = None,
                 images_from: Sequence[str | os.PathLike] | None = None) -> tuple[Path, list[Finding]]:
    """What ``facebench report`` does, without the rerun contract (:func:`report_once` has it): collect the
    runs of ``run_dirs`` and their sub-folders, render, write ``out`` atomically. Returns the written path
    and what each given folder contributed (with a warning for every image left out because it lies
    outside the given folders).

    ``labels`` maps run directories to the dataset names shown for them (an override: each dataset is
    named after its ``dataset.json`` or recorded training set without it); ``real`` names the runs trained
    on real data, which GAP figures compare the others with; ``images_from`` names folders beyond the runs
    whose images (a training set's sample grid) may be embedded."""
    path, findings, _ = _report(run_dirs, out, title, sections, labels, real, images_from, None)
    return path, findings


def report_once(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, *, overwrite: bool = False,
                **options: Any) -> tuple[Path, list[Finding], bool]:
    """:func:`build_report` under the rerun contract (:mod:`facebench.rerun`), as ``facebench report`` runs
    it: the parameters are the title, the sections and the report's content as read from the runs (its
    sha256, without the title and the date), recorded in ``OUT.json`` beside ``out``. The same report
    again writes nothing (the third value is then true); another into the same ``out`` is refused unless
    ``overwrite``."""
    return _report(run_dirs, out, options.get("title", "facebench report"), options.get("sections"),
                   options.get("labels"), options.get("real"), options.get("images_from"), overwrite)


def _report(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, title: str, sections: Any, labels: Any,
            real: Any, images_from: Any, overwrite: bool | None) -> tuple[Path, list[Finding], bool]:
    """The report, written plainly (``overwrite`` None) or under the rerun contract."""
    import hashlib
    import json

    if not run_dirs:
        raise FacebenchError("no run directories given")
    collection = collect_runs(list(run_dirs), labels, list(real or []), list(images_from or []))
    parts = _parts(collection.runs, sections)
    collection.add_skipped()
    rerun = None
    if overwrite is not None:
        from ..provenance import provenance
        from ..rerun import FINISHED, Rerun

        content = json.dumps([parts, _subtitle(collection.runs, "")], sort_keys=True).encode("utf-8", "surrogatepass")
        params = {"config": {"title": title, "sections": list(sections or [])},
                  "runs": hashlib.sha256(content).hexdigest()}
        rerun = Rerun(out, command="report", params=params, what="report", folder=False, outputs=[Path(out).name],
                      overwrite=overwrite, resumable=False)
        if rerun.check() == FINISHED:
            return Path(out), collection.findings, True
        with rerun.writing():
            path = atomic.write_text(out, page(title, _subtitle(collection.runs, _stamp()), parts), "report")
    else:
        path = atomic.write_text(out, page(title, _subtitle(collection.runs, _stamp()), parts), "report")
    if rerun is not None:
        rerun.finish(record=provenance(inputs={}, extra={"runs": [str(r) for r in run_dirs]}))
    return path, collection.findings, False


def write_report(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, *, title: str = "facebench report",
                 sections: Sequence[str] | None = None, labels: dict[str, str] | None = None,
                 real: Sequence[str | os.PathLike] | None = None,
                 images_from: Sequence[str | os.PathLike] | None = None) -> Path:
    """:func:`build_report` without the findings; returns the written path."""
    return build_report(run_dirs, out, title=title, sections=sections, labels=labels, real=real,
                        images_from=images_from)[0]
