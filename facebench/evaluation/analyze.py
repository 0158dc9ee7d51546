"""``facebench analyze``: features once, then every selected dataset analysis, then the result files.

Analyses are ``evaluator`` components with ``extras["kind"] == "analysis"``: ``factory(config)`` (or
``factory()`` for one without options) returns an object with ``run(context) -> AnalysisOutput``. Each
registers its options as the registry's ``config=`` dataclass; ``--set NAME.KEY=VALUE`` sets them
(``--set class-noise.intra_threshold=0.3``) and they are recorded in the run's ``config.toml``. The
features are computed once (resumable, in the run directory) and every selected analysis gets the same
:class:`AnalysisContext`; each returns a summary (JSON) and named arrays, saved as ``analysis/<name>.npy``
beside ``analysis/summary.json``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic
from ..config import build_config
from ..console import console
from ..errors import DataError, FacebenchError
from ..provenance import sha256_path
from ..runs import DEFAULT_RUNS_ROOT, Run, discard_on_failure
from ..safe_load import load_array
from .embed import TensorModel
from .features import centers_of, dataset_features
from .models import ResolvedModel, resolve_model
from .options import component_options


@dataclass
class AnalyzeConfig:
    """What ``facebench analyze`` was asked: the dataset, the identity-feature model, the inputs some
    analyses need, and each analysis's own options (``options[name]``, from ``--set name.key=value``)."""

    dataset: str
    extractor: str
    weights: str
    only: list[str] = field(default_factory=list)
    reference: str | None = None
    fid_against: str | None = None
    fid_extractor: str | None = None
    fid_weights: str | None = None
    pose_extractor: str | None = None
    pose_weights: str | None = None
    quality_extractor: str | None = None
    quality_weights: str | None = None
    flip_test: bool = False
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"
    options: dict[str, Any] = field(default_factory=dict)


def analysis_options(overrides: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``NAME.KEY=VALUE`` overrides -> ``{analysis: {key: value}}`` with every analysis's full option set,
    checked against its registered config (an unknown analysis or key is an error with a suggestion)."""
    return component_options(overrides, {s.name: s for s in registered_analyses()}, "analysis", "analyses")


@dataclass
class AnalysisContext:
    """Everything the analyses share; optional inputs are ``None`` when the user did not give them."""

    dataset: Path
    reader: Any  # the training-set reader (images, labels)
    features: np.ndarray  # raw embeddings, one row per image (may be a memory map)
    labels: np.ndarray
    centers: np.ndarray  # mean raw feature of each identity, rows in ``classes`` order
    classes: np.ndarray
    model: TensorModel
    model_name: str
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 64
    reference_centers: np.ndarray | None = None  # identities to test leakage against
    reference_name: str = ""
    reference_dataset: Path | None = None  # the reference's images, when it was given as a dataset
    fid_against: Path | None = None  # a second image set for FID
    fid_extractor: Any = None  # (name, TensorModel, feature kind) or None: then the FR model is used
    pose_extractor: Any = None
    quality_extractor: Any = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class AnalysisOutput:
    """``summary`` goes under ``analyses.<name>``; ``headline`` scalars also at the top level of summary.json
    (flat keys such as ``eer`` or ``separability_threshold`` that a report shows in one table)."""

    summary: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    headline: dict[str, Any] = field(default_factory=dict)


def skipped(reason: str) -> AnalysisOutput:
    """The output of an analysis that had nothing to work on (recorded, not an error)."""
    return AnalysisOutput(summary={"skipped": reason})


def registered_analyses() -> list[Any]:
    from ..pluginmanager import registry
    from .suites import ANALYSIS

    return [spec for spec in registry("evaluator") if spec.extras.get("kind") == ANALYSIS]


def select_analyses(only: list[str] | None) -> list[Any]:
    specs = registered_analyses()
    if not only:
        return specs
    by_name = {s.name: s for s in specs}
    unknown = [n for n in only if n not in by_name]
    if unknown:
        raise FacebenchError(f"unknown analysis '{unknown[0]}' (available: {', '.join(by_name) or 'none'})")
    return [by_name[n] for n in only]


def save_outputs(run: Any, outputs: dict[str, AnalysisOutput], header: dict[str, Any]) -> dict[str, Any]:
    """``analysis/summary.json`` (header + one entry per analysis) and every array as ``analysis/NAME.npy``."""
    summary: dict[str, Any] = dict(header)
    summary["analyses"] = {}  # filled below; headline scalars are added after the header keys
    for name, out in outputs.items():
        entry = dict(out.summary)
        files = {}
        for key, array in out.arrays.items():
            target = run.file(f"analysis/{key}.npy")
            with run.atomic(f"analysis/{key}.npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, np.asarray(array), allow_pickle=False)
            files[key] = target.name
        if files:
            entry["arrays"] = files
        summary["analyses"][name] = entry
        for key, value in out.headline.items():
            summary.setdefault(key, value)
    run.write_json("analysis/summary.json", summary)
    run.write_text("analysis/summary.csv", tidy_csv(summary))
    return summary


def tidy_csv(summary: dict[str, Any]) -> str:
    """One row per scalar figure: ``dataset, analysis, metric, value`` (pandas-friendly)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset", "analysis", "metric", "value"])
    for name, entry in summary.get("analyses", {}).items():
        for key, value in entry.items():
            if isinstance(value, bool) or not isinstance(value, int | float | str) or key == "arrays":
                continue
            writer.writerow([summary.get("dataset", ""), name, key, value])
    return buffer.getvalue()


def _features_of(resolved: ResolvedModel, path: Path, out: Path, config: Any) -> tuple[np.ndarray, Any]:
    from ..data import open_dataset

    reader = open_dataset(path)
    # the dataset by its content, not its path: a moved or copied run folder resumes its features
    params = {"dataset_sha256": sha256_path(path), "model": resolved.name,
              "weights_sha256": sha256_path(resolved.weights)}
    feats = dataset_features(resolved.model, reader, out, params=params, batch_size=config.batch_size,
                             flip_test=config.flip_test)
    return feats, reader


def _fid_extractor(config: Any) -> Any:
    """``(name, model, kind)`` for FID, or ``None`` to use the identity features' model.

    Without ``--fid-extractor``, a registered extractor of role ``fid`` (the standard Inception features)
    is used when its declared weights file is in the weights directory.
    """
    from ..pluginmanager import registry
    from ..weights import weights_dir
    from .embed import as_tensor_model

    name, weights = config.fid_extractor, config.fid_weights
    extractors = registry("feature_extractor")
    if name is None:
        standard = [s for s in extractors if s.extras.get("role") == "fid" and s.extras.get("weights")
                    and (weights_dir() / s.extras["weights"]).is_file()]
        if not standard:
            return None
        name, weights = standard[0].name, str(weights_dir() / standard[0].extras["weights"])
    if extractors.get(name).extras.get("role") == "fid":
        extractor = extractors.create(name, weights=weights, device=config.device)
        return name, as_tensor_model(extractor, config.device, name), "inception"
    if weights is None:
        raise FacebenchError(f"--fid-extractor {name} needs --fid-weights")
    resolved = resolve_model(weights, name, device=config.device)
    return name, resolved.model, "fr"


def _side_model(name: str | None, weights: str | None, config: Any, what: str) -> Any:
    if name is None:
        return None
    if weights is None:
        raise FacebenchError(f"--{what}-extractor {name} needs --{what}-weights")
    return name, resolve_model(weights, name, device=config.device).model


def _load_reference(path: str, extractor_fn) -> tuple:
    """Reference identities: a centres ``.npy`` (identities x dims) or a dataset whose centres are computed."""
    from ..errors import MissingFileError

    p = Path(path)
    if not p.exists():
        raise MissingFileError(p, "reference identities")
    if p.is_file() and p.suffix == ".npy":
        arr = load_array(p, what="reference identities")
        if arr.ndim != 2:
            raise DataError(p, f"expected an (identities, dims) array, got shape {arr.shape}")
        return arr.astype(np.float64), p.name
    return extractor_fn(p), p.name


def _save_array(run: Run, name: str, array: np.ndarray) -> None:
    with run.atomic(name) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


def run_analyses(config: Any, out: str | os.PathLike | None, *,
                 overwrite: bool = False) -> tuple[dict[str, Any], Path, bool]:
    """Run the analyses ``config`` selects; returns the summary, the run directory and whether it was
    there already. The rerun contract (:mod:`facebench.rerun`): the parameters are the config without the
    device and the input paths, plus the sha256 of the dataset, the model's weights and every other input
    file; the same analysis again reads its summary back and writes nothing."""
    from ..data import identify

    if not Path(config.dataset).exists():
        from ..errors import MissingFileError

        raise MissingFileError(config.dataset, "dataset")
    identity = identify(config.dataset)  # a generate run or toyfaces world folder stands for the set inside
    dataset = identity.path
    specs = select_analyses(config.only or None)

    resolved = resolve_model(config.weights, config.extractor, device=config.device)
    out_dir = Path(out) if out else DEFAULT_RUNS_ROOT / f"analyze-{identity.name.replace('/', '-')}"
    from ..rerun import FINISHED, Rerun, parameters
    from ..safe_load import read_json

    paths = ("dataset", "weights", "reference", "fid_against", "fid_weights", "pose_weights", "quality_weights")
    inputs = {"dataset": dataset, "weights": resolved.weights,
              **{key: found for key in paths[2:] if (found := _input_file(getattr(config, key)))}}
    rerun = Rerun(out_dir, command="analyze", what="analysis", outputs=["analysis"], overwrite=overwrite,
                  params=parameters(config, ignore=("device", *paths), inputs=inputs),
                  keep=["analysis/*features.npy", "analysis/*features.partial.npy",  # --overwrite keeps the
                        "analysis/*features.manifest*.json*"])  # features: they check themselves before reuse
    if rerun.check() == FINISHED:
        return read_json(out_dir / "analysis" / "summary.json", what="analysis summary"), out_dir, True
    with discard_on_failure(out_dir):
        run = Run.start(out_dir, config=config, seed=config.seed, device=config.device,
                        inputs={"dataset": dataset, "weights": resolved.weights}, rerun=rerun)
        summary, path = _analyze_in(run, config, identity, resolved, specs)
        rerun.finish(run)
        return summary, path, False


def _input_file(value: str | None) -> Path | None:
    """An optional input as the rerun record hashes it: the path, or a weights file found in the weights
    directory; None when it is not there (the analysis that reads it names it)."""
    from ..weights import resolve_weights

    if not value:
        return None
    if Path(value).exists():
        return Path(value)
    try:
        return resolve_weights(value, allow_dir=True)
    except FacebenchError:
        return None


def _analyze_in(run: Run, config: Any, identity: Any, resolved: ResolvedModel,
                specs: list[Any]) -> tuple[dict[str, Any], Path]:
    """The analyses of ``run_analyses`` inside their started run directory (its ``analysis/`` folder is
    the run's own, never a link leading elsewhere; its cached features are checked before reuse)."""
    dataset = identity.path
    atomic.refuse_link(run.path / "analysis", "analysis folder")
    features, reader = _features_of(resolved, dataset, run.file("analysis/features.npy"), config)
    labels = np.asarray(reader.labels)
    centers, classes = centers_of(features, labels)
    zero = np.linalg.norm(centers, axis=1) == 0
    if zero.any():
        raise DataError(dataset, f"identity {classes[zero][0]} has an all-zero mean feature")
    reference, reference_name, reference_dataset = None, "", None
    if config.reference:
        def centres_of_dataset(p: Path) -> np.ndarray:
            feats, ref_reader = _features_of(resolved, p, run.file("analysis/reference_features.npy"), config)
            return centers_of(feats, np.asarray(ref_reader.labels))[0]

        reference, reference_name = _load_reference(config.reference, centres_of_dataset)
        run.add_input("reference", config.reference)
        if not (Path(config.reference).is_file() and Path(config.reference).suffix == ".npy"):
            reference_dataset = Path(config.reference)
    _save_array(run, "analysis/centers.npy", centers.astype(np.float32))
    if config.fid_against:
        run.add_input("fid_against", config.fid_against)
    ctx = AnalysisContext(
        dataset=dataset, reader=reader, features=features, labels=labels, centers=centers, classes=classes,
        model=resolved.model, model_name=resolved.name, seed=config.seed, device=config.device,
        batch_size=config.batch_size, reference_centers=reference, reference_name=reference_name,
        reference_dataset=reference_dataset,
        fid_against=Path(config.fid_against) if config.fid_against else None,
        fid_extractor=_fid_extractor(config) if config.fid_against else None,
        pose_extractor=_side_model(config.pose_extractor, config.pose_weights, config, "pose"),
        quality_extractor=_side_model(config.quality_extractor, config.quality_weights, config, "quality"),
    )
    outputs = {}
    for spec in specs:
        console.print(f"analysis: {spec.name}")
        options = build_config(spec.config, config.options.get(spec.name, {})) if spec.config else None
        analysis = spec.create(options) if spec.config is not None else spec.create()
        outputs[spec.name] = analysis.run(ctx)
    header = {"dataset": str(dataset.absolute()), "dataset_name": identity.name, "identities": int(classes.size), "images": int(labels.size),
              "extractor": resolved.name, "weights": str(resolved.weights), "feature_dim": int(features.shape[1])}
    summary = save_outputs(run, outputs, header)
    reader.close()
    return summary, run.path
