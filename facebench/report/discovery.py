"""From the folders a user names to the runs a report reads, and what each folder contributed.

``facebench report runs/real runs/noise`` is given training runs; their evaluations live in
``RUN/eval-SUITE/`` (where ``evaluate --model RUN`` writes them) and their training sets' cards beside the
sets. So every given folder contributes itself (when it holds result files) and each sub-folder that does;
the command prints what it found for each, and warns, naming the folder it probably meant, when a folder
contributes nothing or a model has no evaluation (no accuracy row).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, FacebenchError, MissingFileError
from ..runs import CONFIG
from ..safe_load import read_toml
from .confine import Confinement
from .datasets import evaluated_model
from .loading import _MARKERS, RunData, disambiguate_names, has_results, load_run, name_datasets


@dataclass
class Finding:
    """What one folder given on the command line contributed."""

    given: Path
    runs: list[RunData] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """``GIVEN: what`` for the folder itself and ``GIVEN/SUB: what`` for each sub-folder run."""
        out = []
        for run in self.runs:
            where = self.given if run.path == self.given else self.given / run.path.relative_to(self.given)
            about = f" of dataset '{run.label}'" if run.dataset_ref is not None or run.label_override else ""
            out.append(f"{where}: {run.kind}{about}")
        return out


@dataclass
class Collection:
    runs: list[RunData]
    findings: list[Finding]
    confinement: Confinement

    def add_skipped(self) -> None:
        """Add the warnings of images left out of the report (recorded while rendering) to the findings of
        the folders whose runs pointed at them."""
        for run_path, line in self.confinement.skipped:
            finding = next((f for f in self.findings if any(r.path == run_path for r in f.runs)), self.findings[0])
            if line not in finding.warnings:
                finding.warnings.append(line)


def run_dirs(path: Path) -> list[Path]:
    """``path`` itself when it holds result files, then each sub-folder that does (sorted)."""
    found = [path] if has_results(path) else []
    try:
        children = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        children = []
    return found + [c for c in children if has_results(c)]


def _probably_meant(path: Path) -> list[Path]:
    """Folders near ``path`` that hold result files: above it, or two levels below it."""
    if has_results(path.parent):
        return [path.parent]
    below = []
    for child in sorted(p for p in path.iterdir() if p.is_dir()) if path.is_dir() else []:
        below += run_dirs(child)
    return below[:4]


def _evaluations_of(model_dir: Path, near: Path) -> list[Path]:
    """Evaluation runs beside ``near`` (siblings) that evaluated the FR run ``model_dir``."""
    out = []
    for sibling in sorted(p for p in near.parent.iterdir() if p.is_dir() and p != near):
        for candidate in run_dirs(sibling):
            if (candidate / "results.json").is_file() or (candidate / "results.csv").is_file():
                try:  # only a hint: a sibling's unreadable config is passed over
                    config = read_toml(candidate / CONFIG) if (candidate / CONFIG).is_file() else None
                except FacebenchError:
                    config = None
                if evaluated_model(candidate, config) == model_dir:
                    out.append(candidate)
    return out


def collect_runs(paths: list[str | os.PathLike], labels: dict[str, str] | None = None,
                 real: list[str | os.PathLike] | None = None,
                 images_from: list[str | os.PathLike] | None = None) -> Collection:
    """Load every run of the given folders and their sub-folders, name each dataset once, and say what
    each folder contributed. ``labels`` maps a given folder (or one of its runs) to a dataset name;
    ``real`` lists folders (or runs) trained on real data, the baseline of GAP figures; images are
    embedded only from inside the given folders and ``images_from`` (:mod:`.confine`)."""
    given = [Path(p) for p in paths]
    for path in given:
        if not path.exists():
            raise MissingFileError(path, "run directory")
        if not path.is_dir():
            raise DataError(path, "is a file; expected a run directory")
    extra = [Path(p) for p in images_from or []]
    for path in extra:
        if not path.is_dir():
            raise (DataError(path, "--images-from must name a folder") if path.exists()
                   else MissingFileError(path, "folder of --images-from"))
    confinement = Confinement(given + extra)
    wanted = {Path(k).resolve(): v for k, v in (labels or {}).items()}
    baselines = {Path(k).resolve() for k in (real or [])}
    findings: list[Finding] = []
    seen: dict[Path, RunData] = {}
    for path in given:
        finding = Finding(given=path)
        for directory in run_dirs(path):
            key = directory.resolve()
            if key in seen:
                continue
            run = seen[key] = load_run(directory)
            run.confinement = confinement
            run.label_override = wanted.get(key) or wanted.get(path.resolve())
            run.real = key in baselines or path.resolve() in baselines
            finding.runs.append(run)
        if not finding.runs and not run_dirs(path):
            hint = _probably_meant(path)
            finding.warnings.append(
                f"{path}: nothing to report here or in its sub-folders (looked for {', '.join(_MARKERS)})"
                + (f"; did you mean {' or '.join(map(str, hint))}?" if hint else ""))
        findings.append(finding)
    runs = [r for f in findings for r in f.runs]
    reported = {r.path.resolve() for r in runs} | {p.resolve() for p in given}
    unknown = [str(k) for k in wanted if k not in reported]
    if unknown:
        raise DataError(unknown[0], "--label names a run directory that is not among the reported runs")
    unknown = [str(k) for k in baselines if k not in reported]
    if unknown:
        raise DataError(unknown[0], "--real names a run directory that is not among the reported runs")
    if not runs:
        first = findings[0]
        raise DataError(first.given, "no result files found" + first.warnings[0].split("nothing to report", 1)[1])
    name_datasets(runs)
    disambiguate_names(runs)
    evaluated = {r.model_dir for r in runs if r.results is not None and r.model_dir is not None}
    for finding in findings:
        for run in finding.runs:
            if run.model is None or run.model_dir in evaluated:
                continue
            others = _evaluations_of(run.model_dir, finding.given.absolute()) if run.path == finding.given else []
            hint = (f"did you mean to add {' or '.join(map(str, others))} (it evaluated this model)?" if others else
                    f"evaluate it with facebench evaluate --model {run.path} --suite SUITE --data-root DIR "
                    f"(it writes {run.path}/eval-SUITE, which report finds)")
            finding.warnings.append(f"{run.path}: its model has no evaluation here, so it has no accuracy row; "
                                    + hint)
    return Collection(runs=runs, findings=findings, confinement=confinement)
