"""Read the result files of run directories into one object per run, for the report sections.

The file names are the contract of ARCHITECTURE.md ("Result files in a run directory"): whatever a
run holds is read, whatever it lacks is simply absent, and a file that is there but unreadable is a
one-line :class:`~facebench.errors.DataError` naming it (a report must never silently drop a result).
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, MissingFileError, first_line
from ..runs import CONFIG, DATASET_CARD, MODEL_CARD, PROVENANCE
from ..safe_load import load_array, npy_header, read_json, read_text, read_toml
from . import checks
from .confine import Confinement
from .datasets import DatasetRef, evaluated_model, read_model, ref_of_card, ref_of_model, ref_of_path

#: Columns every tidy result row carries (``facebench evaluate``); more are kept when present.
RESULT_COLUMNS = ("dataset", "benchmark", "accuracy", "std", "threshold", "tar_at_far_1e-3", "tar_at_far_1e-4", "eer")

#: Arrays written by ``facebench analyze`` that the report plots, when present.
ANALYSIS_ARRAYS = ("genuine", "impostor", "intra", "inter", "separability", "yaw", "pose", "quality", "intra_vendi")

#: Image files a run may carry as its sample grid, in the order they are looked for.
SAMPLE_IMAGES = ("samples.png", "samples.jpg", "grid.png", "grid.jpg")

#: Most values of one analysis array (an intra-class array of a 42M-image set fits; a header claiming
#: more is refused before anything is allocated).
MAX_ARRAY_ITEMS = 100_000_000

#: Largest magnitude of a value in an analysis array: no score, count, angle or ratio a report plots comes
#: near it, and a finite value near the float limit (1.7e308) overflows the axis span a plot computes.
MAX_ARRAY_MAGNITUDE = 1e12

_MARKERS = ("results.json", "results.csv", "analysis/summary.json", "dataset.json", "model.json")

#: The JSON files of a run folder: (attribute, file, what it is, its check).
_JSON_FILES = (("summary", "analysis/summary.json", "analysis summary", checks.summary),
               ("dataset", DATASET_CARD, "dataset card", checks.dataset_card),
               ("model", MODEL_CARD, "model card", checks.model_card),
               ("provenance", PROVENANCE, "provenance", checks.provenance))


def _json_rows(path: Path) -> list[tuple[str, Any]]:
    data = read_json(path, what="results", expect_type=None, limit=checks.RESULTS_LIMIT)
    rows = data.get("results", data.get("rows")) if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise DataError(path, "expected a list of result rows (objects with dataset, benchmark, accuracy)")
    return [(f"row {i + 1}", row) for i, row in enumerate(rows)]


def _csv_rows(path: Path) -> list[tuple[str, Any]]:
    text = read_text(path, what="results", limit=checks.RESULTS_LIMIT)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = []
    try:
        header = next(reader, None)
        if not header:
            return []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(header):
                raise DataError(path, f"{len(cells)} cells, but the header names {len(header)} columns",
                                f"line {reader.line_num}")
            where = f"line {reader.line_num}"
            rows.append((where, checks.csv_row(path, dict(zip(header, cells)), reader.line_num)))
    except csv.Error as exc:
        raise DataError(path, f"unreadable CSV: {first_line(exc)}", f"line {reader.line_num}") from None
    return rows


def _results_frame(path: Path) -> pd.DataFrame:
    """The result rows of ``results.json`` / ``results.csv``, each checked (:func:`checks.result_row`)."""
    rows = _json_rows(path) if path.suffix == ".json" else _csv_rows(path)
    for where, row in rows:
        checks.result_row(path, row, where)
    frame = pd.DataFrame([row for _, row in rows])
    missing = [c for c in ("benchmark", "accuracy") if c not in frame.columns]
    if missing:
        raise DataError(path, f"result rows lack the column(s) {', '.join(missing)}")
    raw = pd.to_numeric(frame["accuracy"]).astype(float)
    if "std" in frame.columns:
        frame["std"] = pd.to_numeric(frame["std"]).astype(float)
    # Accuracies may be fractions (0.9) or percent (90.0): a fraction is never above 1, and a percent
    # accuracy at or below 1% is below chance, so the unit is unambiguous; std follows its accuracy.
    scale = np.where(raw <= 1.0, 100.0, 1.0)
    frame["accuracy"] = raw * scale
    if "std" in frame.columns:
        frame["std"] = frame["std"] * scale
    frame["benchmark"] = frame["benchmark"].astype(str)
    return frame


def _array_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file from its header alone, so a pickled, oversized or truncated
    array is refused before anything is loaded or allocated."""
    shape, _, dtype, offset = npy_header(path)
    if dtype.hasobject:
        raise DataError(path, "cannot read array: it holds Python objects (a pickle), which a report never unpickles")
    items = math.prod(shape)
    if items > MAX_ARRAY_ITEMS:
        raise DataError(path, f"array of {items} values is larger than a report reads (at most {MAX_ARRAY_ITEMS})")
    if offset + items * dtype.itemsize > os.path.getsize(path):
        raise DataError(path, f"array is truncated: its header declares shape {tuple(shape)}")
    return tuple(shape), dtype


def read_array(path: str | os.PathLike, *, what: str = "array") -> np.ndarray:
    """An analysis array a report plots or shows: a plain ``.npy`` (never unpickled), checked by its header
    first (:func:`_array_header`)."""
    path = Path(path)
    _array_header(path)
    return load_array(path, what=what)


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
    config: dict[str, Any] | None = None  # config.toml, parsed
    config_text: str | None = None  # config.toml as written (shown in the provenance section)
    sample_image: Path | None = None
    label_override: str | None = None
    dataset_ref: DatasetRef | None = None  # the dataset this run is about, as its files state it
    dataset_label: str | None = None  # that dataset's one name in the report (set by load_runs)
    model_dir: Path | None = None  # the FR run folder this run's model is (FR run) or evaluated (evaluation)
    real: bool = False  # named with ``report --real``: the real-data baseline GAP figures compare with
    fr_model: dict[str, Any] | None = None  # the model card of the FR model this run is or evaluated
    #: the folders whose images the report may embed (the run folders given): see :meth:`may_embed`
    confinement: Confinement | None = field(default=None, repr=False)
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
        """``analysis/<name>.npy`` as a 1-D float array of finite values, or None when the run has none."""
        if name in self._arrays:
            return self._arrays[name]
        path = self.path / "analysis" / f"{name}.npy"
        if not path.is_file():
            return None
        arr = read_array(path)
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise DataError(path, f"expected an array of numbers, found dtype {arr.dtype}")
        if arr.ndim != 1:
            raise DataError(path, f"expected a 1-D array, found shape {tuple(arr.shape)}")
        arr = np.asarray(arr, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise DataError(path, f"holds NaN or infinite values ({int((~np.isfinite(arr)).sum())} of {arr.size})")
        if arr.size and np.abs(arr).max() > MAX_ARRAY_MAGNITUDE:
            raise DataError(path, f"holds values beyond +-{MAX_ARRAY_MAGNITUDE:g} (largest {np.abs(arr).max():g}); "
                                  "no analysis figure is that large")
        self._arrays[name] = arr
        return arr

    def skip_image(self, text: str) -> None:
        """Say (one warning line naming this run) that an image was left out of the report, and why."""
        if self.confinement is None:
            self.confinement = Confinement([self.path])
        self.confinement.skip(self.path, text)

    def may_embed(self, path: str | os.PathLike, what: str, *, warn: bool = True) -> bool:
        """Whether the image(s) at ``path`` may go into the report: only from inside the folders the user
        gave (:mod:`.confine`); when not (and ``warn``), a warning says what was skipped."""
        if self.confinement is None:
            self.confinement = Confinement([self.path])
        if warn:
            return self.confinement.allows(path, what, self.path)
        return self.confinement.leads_out(path) is None

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
    run = RunData(path=path, name=name or path.resolve().name, confinement=Confinement([path]))
    if (path / "results.json").is_file():
        run.results = _results_frame(path / "results.json")
    elif (path / "results.csv").is_file():
        run.results = _results_frame(path / "results.csv")
    for attr, rel, what, check in _JSON_FILES:
        file = path / rel
        if file.is_file():
            value = read_json(file, what=what, limit=checks.CARD_LIMIT if attr != "summary" else checks.RESULTS_LIMIT)
            check(file, value)
            setattr(run, attr, value)
    config = path / CONFIG
    if config.is_file():
        run.config_text = read_text(config, what="run config", limit=checks.CARD_LIMIT)
        run.config = read_toml(config, what="run config")
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
        run.fr_model = run.model
        run.dataset_ref = ref_of_model(run.model, run.provenance)
        return
    if run.results is not None:
        run.model_dir = evaluated_model(run.path, run.config)
        if run.model_dir is not None:
            model, prov = read_model(run.model_dir)
            run.fr_model = model
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
