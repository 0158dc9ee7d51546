"""IJB-B / IJB-C template verification (1:1) and IJB-C identification (1:N), as evaluation protocols.

Images: each loose crop is aligned to the ArcFace crop from its five landmarks (``facebench.align``,
insightface's ``norm_crop``); the image and its mirror
are embedded separately (raw features, cached in the run directory). Scoring follows insightface's
``eval_ijbc.py``: flip fusion, optional norm removal and detector-score weighting (recorded with every
result, with insightface's names: F2 = add, F1 = concatenate; N1 = keep the norm, N0 = drop it; D1 = weight
by the faceness score, D0 = not), media means, template sums, L2. 1:1 reports TAR at FAR 1e-6 ... 1e-1 with
insightface's nearest-FPR pick plus the ROC; 1:N reports, for each gallery (G1, G2) and their mean,
rank-1/5/10 of the mated mixed-media probes and TPIR at FPIR 1e-2 and 1e-1 (NIST's open-set definition).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from facebench_plugins.formats.ijb import GALLERIES, IjbMeta, detect_target, meta_file, read_ijb, target_of

from facebench.data.alignment import AlignmentError, align_face
from facebench.data.images import decode_image
from facebench.errors import DataError, MissingFileError
from facebench.evaluation.protocols import ProtocolContext, benchmark_files
from facebench.metrics import (
    IJB_FARS,
    MetricInputError,
    corner_roc,
    eer,
    far_key,
    fuse_image_features,
    probe_scores,
    rank_rates,
    roc_curve,
    roc_intervals,
    tar_at_far,
    template_features,
    template_pair_scores,
    tpir_at_fpir,
)
from facebench.metrics.roc import EER_ESTIMATOR, NEAREST_ESTIMATOR
from facebench.metrics.templates import FLIP_FUSIONS, template_rows

from .feature_cache import FileImages, cached_features, with_mirror
from .options import IjbConfig

FUSION_NAMES = {"add": "F2", "concat": "F1", "none": "no flip"}
RANKS = (1, 5, 10)
FPIRS = (1e-2, 1e-1)
ROC_POINTS = 400  # ROC points kept in the result row for the report's curve


def root_of(path: Path) -> Path:
    """The IJB root of a located meta file (``<root>/meta/<file>``), or the located folder itself."""
    path = Path(path)
    return path if path.is_dir() else path.parent.parent


def located_target(path: Path) -> tuple[Path, str]:
    """``(IJB root, target)`` of a located benchmark. The target is the benchmark's: the prefix of the meta
    file it was located by (``IJBB/meta/ijbb_template_pair_label.txt`` -> ``ijbb``, whatever ``ijbc_*`` files
    lie beside it); a benchmark located by its folder is the one target that folder holds."""
    path = Path(path)
    if path.is_dir():
        target = detect_target(path)
        if target is None:
            raise MissingFileError(path / "meta" / "ijbc_face_tid_mid.txt", "IJB image list",
                                   "expected <root>/meta/ijbc_* or ijbb_* files and <root>/loose_crop/")
        return path, target
    return root_of(path), target_of(path)


def setting_name(config: IjbConfig) -> str:
    return (f"{FUSION_NAMES[config.flip_fusion]} {'N1' if config.keep_norm else 'N0'} "
            f"{'D1' if config.detector_score else 'D0'}")


class _IjbProtocol:
    def __init__(self, config: IjbConfig | None = None):
        self.config = config or IjbConfig()
        if self.config.flip_fusion not in FLIP_FUSIONS:
            from facebench.errors import ConfigError

            raise ConfigError(f"ijb.flip_fusion must be one of {', '.join(FLIP_FUSIONS)}, "
                              f"got '{self.config.flip_fusion}'")

    def options(self) -> dict[str, Any]:
        return {"flip_fusion": self.config.flip_fusion, "keep_norm": self.config.keep_norm,
                "detector_score": self.config.detector_score, "setting": setting_name(self.config)}

    def template_features(self, ctx: ProtocolContext, meta: IjbMeta) -> tuple[np.ndarray, np.ndarray]:
        feats = image_features(ctx, meta)
        fused = fuse_image_features(feats, meta.faceness, flip_fusion=self.config.flip_fusion,
                                    keep_norm=self.config.keep_norm, detector_score=self.config.detector_score)
        return template_features(fused, meta.templates, meta.medias)

    def _row(self, ctx: ProtocolContext, meta: IjbMeta, protocol: str) -> dict[str, Any]:
        return {"dataset": ctx.dataset, "benchmark": ctx.bench.name, "accuracy": None, "std": None,
                "threshold": None, "label": ctx.bench.label, "suite": ctx.suite, "protocol": protocol,
                "group": ctx.bench.group, "model": ctx.model_name, "flip_test": self.config.flip_fusion != "none",
                "ijb_options": self.options(), "images": int(meta.names.size),
                "templates": int(np.unique(meta.templates).size), "target": meta.target,
                "files": benchmark_files(meta.root, meta.files.values())}


def image_features(ctx: ProtocolContext, meta: IjbMeta) -> np.ndarray:
    """Raw features of every aligned image and of its mirror, (N, 2D), from the run's cache."""

    def aligned(i: int, data: bytes) -> np.ndarray:
        where = f"line {i + 1} of {meta.files['landmarks'].name}"
        image = decode_image(data, path=meta.image_path(i), where=where)
        try:  # float32 landmarks, as insightface's eval_ijbc.py reads them
            return align_face(image, np.asarray(meta.landmarks[i], dtype=np.float32))
        except AlignmentError as exc:
            raise DataError(meta.files["landmarks"], f"the five landmarks do not determine an alignment ({exc})",
                            f"line {i + 1}") from None

    reader = FileImages(meta.images, [meta.image_path(i) for i in range(meta.names.size)], aligned)
    params = {"protocol": "ijb", "root": str(meta.root.resolve()), "alignment": "arcface-112 norm_crop",
              "meta_sha256": {k: _sha(v) for k, v in meta.files.items() if k in ("media", "landmarks")}}
    return cached_features(ctx, reader, f"ijb-{meta.target}", meta.root, params, model=with_mirror(ctx.model))


def _sha(path: Path) -> str:
    from facebench.provenance import sha256_file

    return sha256_file(path)


def roc_points(fpr: np.ndarray, tpr: np.ndarray, points: int = ROC_POINTS) -> dict[str, list[float]]:
    """At most ``points`` ROC points, spread evenly over log FPR (for plotting)."""
    targets = np.logspace(-7, 0, points)
    idx = np.unique(np.minimum(np.searchsorted(fpr, targets), fpr.size - 1))
    return {"fpr": [float(v) for v in fpr[idx]], "tpr": [float(v) for v in tpr[idx]]}


class IjbProtocol(_IjbProtocol):
    """The ``ijb`` protocol: a benchmark located by its pair list is 1:1, by its 1:N probe list 1:N; both
    share the options (``--set ijb.flip_fusion=concat``) and the cached image features."""

    @staticmethod
    def is_identification(path: Path) -> bool:
        return Path(path).name.endswith("_1N_probe_mixed.csv")

    def inputs(self, path: Path) -> list[Path]:
        """The meta files of the benchmark's own target (never the other target's beside them); a missing
        one is refused here, before anything is embedded."""
        root, target = located_target(path)
        names = {"face_tid_mid.txt": "IJB image list", "name_5pts_score.txt": "IJB landmark list"}
        if self.is_identification(path):
            names.update({n: "IJB 1:N template list"
                          for n in ["1N_probe_mixed.csv"] + [f"1N_gallery_{g}.csv" for g in GALLERIES]})
        else:
            names["template_pair_label.txt"] = "IJB template pair list"
        files = [meta_file(root, target, n) for n in names]
        for file, what in zip(files, names.values()):
            if file.is_dir():
                raise DataError(file, f"{what} is a folder, not a file")
            if not file.is_file():
                raise MissingFileError(file, what, f"an {target} benchmark reads {target}_* files only")
        return files

    def evaluate(self, ctx: ProtocolContext) -> list[dict[str, Any]]:
        if self.is_identification(ctx.path):
            return self.identification(ctx)
        return self.verification(ctx)

    def verification(self, ctx: ProtocolContext) -> list[dict[str, Any]]:
        """1:1: template pairs, TAR at FAR 1e-6 ... 1e-1 (insightface's pick), EER, ROC, intervals."""
        meta = read_ijb(*located_target(ctx.path))
        t1, t2, label = meta.pairs()
        unique, feats = self.template_features(ctx, meta)
        try:
            scores = template_pair_scores(feats, unique, t1, t2)
            tars = tar_at_far(label, scores, IJB_FARS)
            roc = roc_curve(scores, label)
        except MetricInputError as exc:
            raise DataError(meta.files["pairs"], str(exc)) from None
        rate, at = eer(roc)
        corners = corner_roc(scores, label)
        row = self._row(ctx, meta, "ijb-1:1")
        row.update({far_key(f): t for f, t in tars.items()})
        row.update({"eer": rate, "eer_threshold": at, "pairs": int(label.size), "same_pairs": int(label.sum()),
                    "far_resolution": 1.0 / int((~label).sum()), "roc": roc_points(corners.fpr, corners.tpr),
                    "estimators": {"tar_at_far": NEAREST_ESTIMATOR, "eer": EER_ESTIMATOR},
                    "figures": {"TAR@FAR=1e-4": tars[1e-4], "TAR@FAR=1e-5": tars[1e-5]}})
        resamples = min(ctx.bootstrap, self.config.bootstrap)
        if resamples >= 2:
            ci = roc_intervals(label, scores, fars=IJB_FARS, rule="nearest", resamples=resamples, seed=ctx.seed)
            row["ci95"] = {k: [lo, hi] for k, (lo, hi) in ci.items()}
            row["bootstrap"] = resamples
        return [row]

    def identification(self, ctx: ProtocolContext) -> list[dict[str, Any]]:
        """1:N: galleries G1 and G2, mixed-media probes; rank-1/5/10 and TPIR at FPIR 1e-2, 1e-1."""
        meta = read_ijb(*located_target(ctx.path))
        probes = meta.subject_list("1N_probe_mixed.csv")
        galleries = {g: meta.subject_list(f"1N_gallery_{g}.csv") for g in GALLERIES}
        unique, feats = self.template_features(ctx, meta)
        probe_feats = feats[template_rows(unique, probes.templates, "probes")]
        per_gallery: dict[str, dict[str, float]] = {}
        for name, gallery in galleries.items():
            where = meta.files[f"1N_gallery_{name}.csv"]
            try:
                scores = probe_scores(probe_feats, probes.subjects, feats[template_rows(unique, gallery.templates, name)],
                                      gallery.subjects)
                ranks = rank_rates(scores, RANKS)
                tpirs = tpir_at_fpir(scores, FPIRS)
            except MetricInputError as exc:
                raise DataError(where, str(exc)) from None
            per_gallery[name] = {**{f"rank_{k}": v for k, v in ranks.items()},
                                 **{f"tpir_at_fpir_{_exp(f)}": v for f, v in tpirs.items()},
                                 "mated_probes": int(scores.is_mated.sum()),
                                 "nonmated_probes": int((~scores.is_mated).sum()),
                                 "gallery_templates": int(gallery.templates.size)}
        row = self._row(ctx, meta, "ijb-1:N")
        keys = [k for k in next(iter(per_gallery.values())) if k.startswith(("rank_", "tpir_"))]
        row.update({k: float(np.mean([g[k] for g in per_gallery.values()])) for k in keys})
        row.update({"eer": None, "probes": int(probes.templates.size), "galleries": per_gallery,
                    "figures": {"rank-1": row["rank_1"], "TPIR@FPIR=1e-2": row["tpir_at_fpir_1e-2"]},
                    "estimators": {"tpir": "NIST open set: mated probe ranked first and above the threshold; "
                                           "threshold admits floor(FPIR x non-mated probes) false alarms; "
                                           "mean of galleries G1 and G2"}})
        return [row]


def _exp(value: float) -> str:
    return far_key(value).removeprefix("tar_at_far_")
