"""Run directories with synthetic result files, shaped as ARCHITECTURE.md "Result files" describes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from facebench.runs import Run

TOY_PACKS = ("toy_lfw", "toy_cfp_fp", "toy_cplfw", "toy_agedb_30", "toy_calfw")


def eval_run(root: Path, name: str, dataset: str, accuracies: dict[str, float], *, fraction: bool = True,
             images: int | None = None, identities: int | None = None) -> Path:
    """An evaluation run: results.json rows (accuracy as a fraction unless ``fraction`` is False)."""
    path = root / name
    run = Run.start(path, config={"suite": "toy-five", "model": f"runs/{name}"}, seed=1, device="cpu",
              command=["facebench", "evaluate", "--suite", "toy-five"])
    rows = []
    for bench, acc in accuracies.items():
        rows.append({"dataset": dataset, "benchmark": bench, "accuracy": acc if fraction else acc * 100,
                     "std": 0.01 if fraction else 1.0, "threshold": 1.42, "tar_at_far_1e-3": 0.5,
                     "tar_at_far_1e-4": 0.25, "eer": 0.08})
    run.write_json("results.json", rows)
    if images is not None:
        run.write_json("model.json", {"backbone": "tiny", "recipe": "tiny-arcface",
                                      "dataset": {"name": dataset, "images": images, "identities": identities}})
    return path


def analysis_run(root: Path, name: str, dataset: str, seed: int = 0, *, n_ids: int = 200, nested: bool = False) -> Path:
    """Analysis arrays plus a summary, flat or nested under ``analyses`` as ``facebench analyze`` writes it."""
    rng = np.random.default_rng(seed)
    path = root / name
    run = Run.start(path, seed=seed, device="cpu", command=["facebench", "analyze", dataset])
    (path / "analysis").mkdir(parents=True, exist_ok=True)
    np.save(path / "analysis" / "genuine.npy", rng.normal(0.6, 0.1, 500))
    np.save(path / "analysis" / "impostor.npy", rng.normal(0.05, 0.1, 2000))
    np.save(path / "analysis" / "intra.npy", rng.normal(0.6, 0.15, 800))
    np.save(path / "analysis" / "inter.npy", rng.normal(0.1, 0.2, 1500))
    np.save(path / "analysis" / "separability.npy", np.minimum(np.arange(1, n_ids + 1), 0.9 * np.arange(1, n_ids + 1) + 3).astype(np.int64))
    if nested:
        run.write_json("analysis/summary.json", {
            "dataset": f"/data/{dataset}", "identities": n_ids, "images": 800, "analyses": {
                "pair-distributions": {"eer": 0.042, "eer_estimator": "tie-safe ROC", "genuine_mean": 0.6},
                "class-noise": {"intra_noise": 0.125, "inter_noise": 0.0005, "nearest_mean": 0.3},
                "separability": {"threshold": 0.35, "separable_share": 0.9}}})
    else:
        run.write_json("analysis/summary.json", {"dataset": dataset, "eer": 0.031, "intra_noise": 0.02,
                                                 "inter_noise": 0.001, "separability_threshold": 0.4})
    return path


def dataset_run(root: Path, name: str, dataset: str, generator: str, png: bytes | None = None) -> Path:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "dataset.json").write_text(json.dumps({
        "name": dataset, "identities": 40, "images": 800, "generator": generator,
        "settings": {"sigma": [0.3, 0.5, 0.7], "share": [0.4, 0.4, 0.2], "attrop": "pose=60:0.4"}}))
    if png is not None:
        (path / "samples.png").write_bytes(png)
    return path
