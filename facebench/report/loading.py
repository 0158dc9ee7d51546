"""Read the result files of run directories into one object per run, for the report sections.

The file names are the contract of ARCHITECTURE.md ("Result files in a run directory"): whatever a
run holds is read, whatever it lacks is simply absent, and a file that is there but unreadable is a
one-line :class:`~facebench.errors.DataError` naming it (a report must never silently drop a result).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, MissingFileError, first_line
from ..safe_load import load_array
from .datasets import DatasetRef, evaluated_model, read_model, ref_of_card, ref_of_model, ref_of_path

#: Columns every tidy result row carries (``facebench evaluate``); more are kept when present.
RESULT_COLUMNS = ("dataset", "benchmark", "accuracy", "std", "threshold", "tar_at_far_1e-3", "tar_at_far_1e-4", "eer")

#: Arrays written by ``facebench analyze`` that the report plots, when present.
ANALYSIS_ARRAYS = ("genuine", "impostor", "intra", "inter", "separability", "yaw", "pose", "quality")

#: Image files a run may carry as its sample grid, in the order they are looked for.
SAMPLE_IMAGES = ("samples.png", "samples.jpg", "grid.png", "grid.jpg")

_MARKERS = ("results.json", "results.csv", "analysis/summary.json", "dataset.json", "model.json")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON: {exc.msg}", f"line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError:
        raise DataError(path, "not UTF-8 text") from None


def _results_frame(path: Path) -> pd.DataFrame:
    if path.suffix == ".json":
        data = read_json(path)
        rows = data.get("results", data.get("rows")) if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise DataError(path, "expected a list of result rows (objects with dataset, benchmark, accuracy)")
        frame = pd.DataFrame(rows)
    else:
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(path, f"unreadable CSV: {first_line(exc)}") from None
    missing = [c for c in ("benchmark", "accuracy") if c not in frame.columns]
    if missing:
        raise DataError(path, f"result rows lack the column(s) {', '.join(missing)}")
    try:
        raw = pd.to_numeric(frame["accuracy"], errors="raise").astype(float)
        if "std" in frame.columns:
            frame["std"] = pd.to_numeric(frame["std"], errors="raise").astype(float)
    except (TypeError, ValueError) as exc:
        raise DataError(path, f"non-numeric accuracy or std: {exc}") from None
    # Accuracies may be fractions (0.9) or percent (90.0): a fraction is never above 1, and a percent
    # accuracy at or below 1% is below chance, so the unit is unambiguous; std follows its accuracy.
    scale = np.where(raw <= 1.0, 100.0, 1.0)
    frame["accuracy"] = raw * scale
    if "std" in frame.columns:
        frame["std"] = frame["std"] * scale
    frame["benchmark"] = frame["benchmark"].astype(str)
    return frame


@dataclass
class RunData:
    """Everything the report knows about one run directory."""

    path: Path
    name: str
    results: pd.DataFrame | None = None
    summary: dict[str, Any] | None = None
    dataset: dict[str, Any] | None = None
    model: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    config_text: str | None = None
    sample_image: Path | None = None
    label_override: str | None = None
    dataset_ref: DatasetRef | None = None  # the dataset this run is about, as its files state it
    dataset_label: str | None = None  # that dataset's one name in the report (set by load_runs)
    model_dir: Path | None = None  # the FR run folder this run's model is (FR run) or evaluated (evaluation)
    real: bool = False  # named with ``report --real``: the real-data baseline GAP figures compare with
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        """The training dataset this run is about: its one name in the report (``--label`` or the
        dataset's own), else as its files name it."""
        if self.label_override:
            return self.label_override
        if self.dataset_label:
            return self.dataset_label
        if self.dataset_ref is not None:
            return self.dataset_ref.name
        for source, key in ((self.dataset, "name"), (self.dataset, "dataset"), (self.summary, "dataset"),
                            (self.model, "dataset")):
            value = (source or {}).get(key)
            if isinstance(value, dict):
                value = value.get("name")
            if isinstance(value, str) and value:
                # ``facebench analyze`` names the dataset by its path: show the folder name
                return Path(value).name if Path(value).is_absolute() or Path(value).exists() else value
        return self.name

    @property
    def pipeline_check(self) -> bool:
        """True for a dataset made by an untrained (random-weight) generator, as ``dataset.json`` records
        it (``generator_info.untrained`` or ``pipeline_check``): its numbers show that the pipeline runs,
        not how good a generator is."""
        info = (self.dataset or {}).get("generator_info") or {}
        return isinstance(info, dict) and bool(info.get("untrained") or info.get("pipeline_check"))

    def array(self, name: str) -> np.ndarray | None:
        """``analysis/<name>.npy`` as a float array, or None when the run has none."""
        if name in self._arrays:
            return self._arrays[name]
        path = self.path / "analysis" / f"{name}.npy"
        if not path.is_file():
            return None
        arr = load_array(path, what="array")
        if not np.issubdtype(arr.dtype, np.number):
            raise DataError(path, f"expected a numeric array, found dtype {arr.dtype}")
        arr = np.asarray(arr, dtype=np.float64).ravel()
        self._arrays[name] = arr
        return arr

    @property
    def card(self) -> dict[str, Any] | None:
        """The ``dataset.json`` of this run's dataset: its own, or the one beside the set it trained on."""
        if self.dataset is not None:
            return self.dataset
        return self.dataset_ref.card if self.dataset_ref is not None else None

    def size(self) -> tuple[int | None, int | None]:
        """(identities, images) of the training dataset, from dataset.json, model.json or the analysis."""
        model_ds = (self.model or {}).get("dataset")
        for source in (self.card, model_ds if isinstance(model_ds, dict) else None, self.model, self.summary):
            if isinstance(source, dict) and ("images" in source or "identities" in source):
                ids, imgs = source.get("identities"), source.get("images")
                return (int(ids) if ids is not None else None, int(imgs) if imgs is not None else None)
        if self.model and ("num_images" in self.model or "num_classes" in self.model):
            ids, imgs = self.model.get("num_classes"), self.model.get("num_images")
            return (int(ids) if ids is not None else None, int(imgs) if imgs is not None else None)
        return None, None

    @property
    def kind(self) -> str:
        """What the run is, in words (for the list ``facebench report`` prints)."""
        parts = []
        if self.dataset is not None:
            parts.append("dataset card")
        if self.model is not None:
            parts.append(f"FR model ({self.model.get('recipe', '?')})")
        if self.results is not None:
            count = self.results["benchmark"].nunique()
            parts.append(f"evaluation ({count} benchmark{'s' if count != 1 else ''})")
        if self.summary is not None:
            count = len(self.summary.get("analyses") or {})
            parts.append(f"analysis ({count} {'analyses' if count != 1 else 'analysis'})" if count else "analysis")
        return ", ".join(parts) or "run"


def has_results(path: Path) -> bool:
    """Whether ``path`` holds any of the result files a report reads."""
    return path.is_dir() and any((path / m).is_file() for m in _MARKERS)


def load_run(path: str | os.PathLike, name: str | None = None) -> RunData:
    """Read one run directory; at least one result file must be present."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(path, "run directory")
    if not path.is_dir():
        raise DataError(path, "is a file; expected a run directory")
    if not has_results(path):
        raise DataError(path, f"no result files found (looked for {', '.join(_MARKERS)})")
    run = RunData(path=path, name=name or path.resolve().name)
    if (path / "results.json").is_file():
        run.results = _results_frame(path / "results.json")
    elif (path / "results.csv").is_file():
        run.results = _results_frame(path / "results.csv")
    for attr, rel in (("summary", "analysis/summary.json"), ("dataset", "dataset.json"),
                      ("model", "model.json"), ("provenance", "provenance.json")):
        file = path / rel
        if file.is_file():
            value = read_json(file)
            if not isinstance(value, dict):
                raise DataError(file, f"expected a JSON object, found {type(value).__name__}")
            setattr(run, attr, value)
    if (path / "config.toml").is_file():
        run.config_text = (path / "config.toml").read_text(encoding="utf-8", errors="replace")
    run.sample_image = next((path / n for n in SAMPLE_IMAGES if (path / n).is_file()), None)
    _find_dataset(run)
    return run


def _find_dataset(run: RunData) -> None:
    """Set ``dataset_ref`` (and ``model_dir``) from whatever the run's files say about its dataset."""
    if run.dataset is not None:
        run.dataset_ref = ref_of_card(run.dataset, run.path.absolute())
        return
    if run.model is not None:
        run.model_dir = run.path.absolute()
        run.dataset_ref = ref_of_model(run.model, run.provenance)
        return
    if run.results is not None:
        run.model_dir = evaluated_model(run.path, run.config_text)
        if run.model_dir is not None:
            model, prov = read_model(run.model_dir)
            run.dataset_ref = ref_of_model(model or {}, prov)
        if run.dataset_ref is None and "dataset" in run.results.columns:
            names = [str(n) for n in run.results["dataset"].dropna().unique() if str(n).strip()]
            if len(names) == 1:
                run.dataset_ref = DatasetRef(name=names[0])
        if run.dataset_ref is None and (run.provenance or {}).get("trained_on"):
            run.dataset_ref = DatasetRef(name=str(run.provenance["trained_on"]))
        return
    if run.summary is not None:
        sha = ((((run.provenance or {}).get("inputs") or {}).get("dataset")) or {}).get("sha256")
        name = run.summary.get("dataset_name")
        run.dataset_ref = ref_of_path(run.summary.get("dataset"), name if isinstance(name, str) else None, sha)


def name_datasets(runs: list[RunData]) -> None:
    """Give every run the one name of its dataset: runs stating the same dataset (sha256, else path,
    else name) share a name: ``--label``'s, else the one its ``dataset.json`` gives, else the first stated."""
    groups: list[list[RunData]] = []
    for run in runs:
        if run.dataset_ref is None:
            continue
        home = next((g for g in groups if any(run.dataset_ref.same_as(o.dataset_ref) for o in g)), None)
        if home is None:
            groups.append([run])
        else:
            home.append(run)
    taken: dict[str, int] = {}
    for group in groups:
        override = next((r.label_override for r in group if r.label_override), None)
        carded = next((r.dataset_ref.name for r in group if r.dataset_ref.card is not None), None)
        name = override or carded or group[0].dataset_ref.name
        taken[name] = taken.get(name, 0) + 1
        if taken[name] > 1:  # two datasets of the same name (two worlds called "toy"): keep them apart
            name = f"{name} #{taken[name]}"
        for run in group:
            run.dataset_label = name
            run.label_override = override


def load_runs(paths: list[str | os.PathLike], labels: dict[str, str] | None = None,
              real: list[str | os.PathLike] | None = None) -> list[RunData]:
    """The runs of the given directories and of their sub-folders (``RUN/eval-SUITE`` ...), each dataset
    named once (:func:`name_datasets`); see :func:`facebench.report.discovery.collect_runs`."""
    from .discovery import collect_runs

    return collect_runs(paths, labels, real).runs


def disambiguate_names(runs: list[RunData]) -> None:
    """Two runs with the same directory name get their parent folder as a prefix."""
    names = [r.name for r in runs]
    for run in runs:
        if names.count(run.name) > 1:
            run.name = f"{run.path.resolve().parent.name}/{run.name}"
