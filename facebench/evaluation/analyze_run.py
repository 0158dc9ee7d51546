"""``facebench analyze`` end to end: features once, then every selected analysis, then the result files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..console import console
from ..errors import DataError, FacebenchError
from ..provenance import sha256_path
from ..runs import DEFAULT_RUNS_ROOT, Run
from .analysis import AnalysisContext, save_outputs, select_analyses
from .features import centers_of, dataset_features
from .models import ResolvedModel, resolve_model

#: The feature extractor used for FID when the user has its weights (see ``docs/evaluation.md``).
FID_INCEPTION = "fid-inception"
FID_INCEPTION_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"

_OPTION_OF = {
    "pair-distributions": lambda c: {"genuine": c.genuine_pairs, "impostor": c.impostor_pairs},
    "class-noise": lambda c: {"intra_threshold": c.intra_threshold, "inter_threshold": c.inter_threshold},
    "separability": lambda c: {"threshold": c.separability_threshold},
    "leakage": lambda c: {"threshold": c.leakage_threshold},
    "fid": lambda c: {"images": c.fid_images},
}


def _features_of(resolved: ResolvedModel, path: Path, out: Path, config: Any) -> tuple[np.ndarray, Any]:
    from ..data import open_dataset

    reader = open_dataset(path)
    params = {"dataset": str(path.resolve()), "model": resolved.name,
              "weights_sha256": sha256_path(resolved.weights)}
    feats = dataset_features(resolved.model, reader, out, params=params, batch_size=config.batch_size,
                             flip_test=config.flip_test)
    return feats, reader


def _fid_extractor(config: Any) -> Any:
    """``(name, model, kind)`` for FID, or ``None`` to use the identity features' model."""
    from ..evaluation.embed import as_tensor_model
    from ..pluginmanager import registry
    from ..weights import weights_dir

    name, weights = config.fid_extractor, config.fid_weights
    if name is None:
        default = weights_dir() / FID_INCEPTION_WEIGHTS
        if FID_INCEPTION in registry("feature_extractor") and default.is_file():
            name, weights = FID_INCEPTION, str(default)
        else:
            return None
    if name == FID_INCEPTION:
        extractor = registry("feature_extractor").create(name, weights=weights, device=config.device)
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
        try:
            arr = np.load(p, allow_pickle=False)
        except ValueError as exc:
            raise DataError(p, f"not a plain numeric .npy ({exc})") from None
        if arr.ndim != 2:
            raise DataError(p, f"expected an (identities, dims) array, got shape {arr.shape}")
        return arr.astype(np.float64), p.name
    return extractor_fn(p), p.name


def _save_array(run: Run, name: str, array: np.ndarray) -> None:
    with run.atomic(name) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)


def run_analyses(config: Any, out: str | os.PathLike | None) -> tuple[dict[str, Any], Path]:
    """Run the analyses ``config`` selects; returns the summary and the run directory."""
    dataset = Path(config.dataset)
    if not dataset.exists():
        from ..errors import MissingFileError

        raise MissingFileError(dataset, "dataset")
    specs = select_analyses(config.only or None)
    resolved = resolve_model(config.weights, config.extractor, device=config.device)
    run = Run.start(Path(out) if out else DEFAULT_RUNS_ROOT / f"analyze-{dataset.name}", config=config,
              seed=config.seed, device=config.device, inputs={"dataset": dataset, "weights": resolved.weights})
    features, reader = _features_of(resolved, dataset, run.file("analysis/features.npy"), config)
    labels = np.asarray(reader.labels)
    centers, classes = centers_of(features, labels)
    zero = np.linalg.norm(centers, axis=1) == 0
    if zero.any():
        raise DataError(dataset, f"identity {classes[zero][0]} has an all-zero mean feature")
    reference, reference_name = None, ""
    if config.reference:
        def centres_of_dataset(p: Path) -> np.ndarray:
            feats, ref_reader = _features_of(resolved, p, run.file("analysis/reference_features.npy"), config)
            return centers_of(feats, np.asarray(ref_reader.labels))[0]

        reference, reference_name = _load_reference(config.reference, centres_of_dataset)
        run.add_input("reference", config.reference)
    _save_array(run, "analysis/centers.npy", centers.astype(np.float32))
    if config.fid_against:
        run.add_input("fid_against", config.fid_against)
    ctx = AnalysisContext(
        dataset=dataset, reader=reader, features=features, labels=labels, centers=centers, classes=classes,
        model=resolved.model, model_name=resolved.name, seed=config.seed, device=config.device,
        batch_size=config.batch_size, reference_centers=reference, reference_name=reference_name,
        fid_against=Path(config.fid_against) if config.fid_against else None,
        fid_extractor=_fid_extractor(config) if config.fid_against else None,
        pose_extractor=_side_model(config.pose_extractor, config.pose_weights, config, "pose"),
        quality_extractor=_side_model(config.quality_extractor, config.quality_weights, config, "quality"),
    )
    outputs = {}
    for spec in specs:
        options = _OPTION_OF.get(spec.name, lambda c: {})(config)
        console.print(f"analysis: {spec.name}")
        outputs[spec.name] = spec.create(**options).run(ctx)
    header = {"dataset": str(dataset), "identities": int(classes.size), "images": int(labels.size),
              "extractor": resolved.name, "weights": str(resolved.weights), "feature_dim": int(features.shape[1])}
    summary = save_outputs(run, outputs, header)
    reader.close()
    return summary, run.path
