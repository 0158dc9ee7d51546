"""The built-in dataset analyses (Vec2Face paper Fig. 5, 11, 12, section 4.4, FID, pose/quality).

Each class is an ``evaluator`` component of kind ``analysis``: built with its options, run on the shared
:class:`~facebench.evaluation.analysis.AnalysisContext`, returning a JSON summary and the arrays the
report plots (array names are the file names of ARCHITECTURE.md "Result files").
"""

from __future__ import annotations

import numpy as np

from facebench.evaluation.analyze import AnalysisContext, AnalysisOutput, skipped
from facebench.metrics import identity, separability
from facebench.metrics.distributions import pair_distributions
from facebench.metrics.frechet import frechet_distance
from facebench.metrics.rows import row_blocks

from .options import (
    ClassNoiseConfig,
    FidConfig,
    LeakageConfig,
    PairDistributionConfig,
    PoseQualityConfig,
    SeparabilityConfig,
)


class PairDistributionAnalysis:
    """Cosine similarities of sampled genuine and impostor pairs and the EER between them."""

    def __init__(self, config: PairDistributionConfig | None = None):
        config = config or PairDistributionConfig()
        self.genuine = config.genuine
        self.impostor = config.impostor

    def run(self, ctx: AnalysisContext) -> AnalysisOutput:
        dist = pair_distributions(ctx.features, ctx.labels, self.genuine, self.impostor, seed=ctx.seed)
        summary = {
            "genuine_pairs": int(dist.genuine.size),
            "impostor_pairs": int(dist.impostor.size),
            "genuine_mean": float(dist.genuine.mean()),
            "impostor_mean": float(dist.impostor.mean()),
            "eer": dist.eer,
            "eer_threshold": dist.eer_threshold,
            "eer_estimator": dist.estimator,
            "seed": ctx.seed,
        }
        return AnalysisOutput(summary, {"genuine": dist.genuine, "impostor": dist.impostor},
                              headline={"eer": dist.eer})


class ClassNoiseAnalysis:
    """Intra-class noise (images far from their centre) and inter-class noise (centres close together)."""

    def __init__(self, config: ClassNoiseConfig | None = None):
        config = config or ClassNoiseConfig()
        self.intra_threshold = config.intra_threshold
        self.inter_threshold = config.inter_threshold
        self.block = config.block

    def run(self, ctx: AnalysisContext) -> AnalysisOutput:
        unit_centers = ctx.centers / np.linalg.norm(ctx.centers, axis=1, keepdims=True)
        index = np.searchsorted(ctx.classes, ctx.labels)
        intra = np.empty(ctx.features.shape[0], dtype=np.float32)
        for start, f in row_blocks(ctx.features):  # features may be a memory map: stream it
            stop = start + f.shape[0]
            f /= np.linalg.norm(f, axis=1, keepdims=True)
            intra[start:stop] = np.einsum("ij,ij->i", f, unit_centers[index[start:stop]])
        summary = {
            "intra_threshold": self.intra_threshold,
            "intra_noise": float((intra < self.intra_threshold).mean()),
            "intra_noisy_images": int((intra < self.intra_threshold).sum()),
            "images": int(intra.size),
            "intra_mean": float(intra.mean()),
        }
        arrays = {"intra": intra}
        if ctx.centers.shape[0] >= 2:
            inter = identity.inter_class_noise(ctx.centers, self.inter_threshold, block=self.block)
            summary.update({
                "inter_threshold": self.inter_threshold,
                "inter_noise": inter.share,
                "inter_pairs_above": inter.pairs_above,
                "identity_pairs": inter.pairs_total,
                "nearest_mean": float(inter.nearest.mean()),
            })
            arrays["inter"] = inter.nearest.astype(np.float32)
        else:
            summary["inter_skipped"] = "only one identity"
        headline = {k: summary[k] for k in ("intra_noise", "intra_threshold", "inter_noise", "inter_threshold")
                    if k in summary}
        return AnalysisOutput(summary, arrays, headline)


class SeparabilityAnalysis:
    """For every prefix size n: identities among the first n with no earlier identity above the threshold."""

    def __init__(self, config: SeparabilityConfig | None = None):
        config = config or SeparabilityConfig()
        self.threshold = config.threshold
        self.block = config.block

    def run(self, ctx: AnalysisContext) -> AnalysisOutput:
        curve = separability.separability_curve(ctx.centers, self.threshold, block=self.block, device=ctx.device)
        n = curve.size
        marks = sorted({m for m in (1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000, 300_000) if m <= n}
                       | {n})
        summary = {
            "threshold": self.threshold,
            "identities": int(n),
            "separable": int(curve[-1]),
            "separable_share": float(curve[-1] / n),
            "at": {str(m): int(curve[m - 1]) for m in marks},
            "order": "identity label order (the generation order for generated sets)",
        }
        headline = {"separability_threshold": self.threshold, "separable": int(curve[-1]),
                    "separable_share": float(curve[-1] / n)}
        return AnalysisOutput(summary, {"separability": curve}, headline)


class LeakageAnalysis:
    """Identities whose centre is above the threshold to a reference identity (e.g. the generator's training set)."""

    def __init__(self, config: LeakageConfig | None = None):
        config = config or LeakageConfig()
        self.threshold = config.threshold
        self.block = config.block

    def run(self, ctx: AnalysisContext) -> AnalysisOutput:
        if ctx.reference_centers is None:
            return skipped("no reference identities given (--reference)")
        best, which = identity.nearest_reference(ctx.centers, ctx.reference_centers, block=self.block)
        leaked = best > self.threshold
        summary = {
            "threshold": self.threshold,
            "reference": ctx.reference_name,
            "reference_identities": int(ctx.reference_centers.shape[0]),
            "identities": int(best.size),
            "leaked": int(leaked.sum()),
            "leaked_share": float(leaked.mean()),
            "leaked_labels": [int(c) for c in ctx.classes[leaked][:1000]],
        }
        headline = {"leakage_threshold": self.threshold, "leaked": summary["leaked"],
                    "leaked_share": summary["leaked_share"]}
        return AnalysisOutput(summary, {"leakage": best.astype(np.float32), "leakage_match": which}, headline)


class FidAnalysis:
    """Fréchet distance between this dataset's images and another image set, on named features."""

    def __init__(self, config: FidConfig | None = None):
        self.images = (config or FidConfig()).images

    def run(self, ctx: AnalysisContext) -> AnalysisOutput:
        from facebench.data import open_dataset
        from facebench.evaluation.embed import embed_encoded

        if ctx.fid_against is None:
            return skipped("no second image set given (--fid-against)")
        name, model, kind = ctx.fid_extractor or (ctx.model_name, ctx.model, "fr")
        rng = np.random.default_rng(ctx.seed)

        def features(reader):
            count = min(self.images, len(reader))
            picks = np.sort(rng.choice(len(reader), size=count, replace=False))
            items = ((reader.image_bytes(int(i)), reader.where(int(i))) for i in picks)
            feats = embed_encoded(model, items, count, path=reader.path, batch_size=ctx.batch_size,
                                  flip_test=False, description=f"FID features {reader.path}")
            if kind == "fr":  # FR embeddings carry meaning in direction only
                feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)
            return feats

        own = features(ctx.reader)
        with open_dataset(ctx.fid_against) as other_reader:
            other = features(other_reader)
        value = frechet_distance(own, other)
        summary = {
            "fid": value,
            "features": "inception-v3 pool3 (2048-d, FID standard)" if kind == "inception"
            else f"FR embeddings of '{name}' (L2-normalised); not comparable with Inception FID",
            "extractor": name,
            "against": str(ctx.fid_against),
            "images": [int(own.shape[0]), int(other.shape[0])],
        }
        return AnalysisOutput(summary, headline={"fid": value, "fid_features": kind if kind == "inception"
                                                 else f"fr:{name}"})


class PoseQualityAnalysis:
    """Histograms of head-pose angles (degrees) and image quality, when pose/quality extractors are given.

    A pose extractor's ``forward_tensor`` returns one column per angle, named by its ``outputs`` attribute
    (SixDRepNet: pitch, yaw, roll); quality is the L2 norm of a quality model's raw feature (MagFace).
    """

    def __init__(self, config: PoseQualityConfig | None = None):
        config = config or PoseQualityConfig()
        self.images = config.images
        self.bins = config.bins

    def run(self, ctx: AnalysisContext) -> AnalysisOutput:
        from facebench.evaluation.embed import embed_encoded

        if ctx.pose_extractor is None and ctx.quality_extractor is None:
            return skipped("no pose or quality extractor given (--pose-extractor / --quality-extractor)")
        rng = np.random.default_rng(ctx.seed)
        count = min(self.images, len(ctx.reader))
        picks = np.sort(rng.choice(len(ctx.reader), size=count, replace=False))
        summary: dict = {"images": int(count)}
        arrays: dict = {}

        def raw_outputs(name, model, role):
            items = ((ctx.reader.image_bytes(int(i)), ctx.reader.where(int(i))) for i in picks)
            return embed_encoded(model, items, count, path=ctx.reader.path, batch_size=ctx.batch_size,
                                 flip_test=False, description=f"{role} ({name})")

        def histogram(key, values, lo, hi, extractor):
            counts, edges = np.histogram(np.clip(values, lo, hi), bins=self.bins, range=(lo, hi))
            arrays[key] = values.astype(np.float32)
            arrays[f"{key}_hist"] = counts
            arrays[f"{key}_edges"] = edges
            summary[key] = {"extractor": extractor, "mean": float(values.mean()), "std": float(values.std()),
                            "abs_mean": float(np.abs(values).mean())}

        if ctx.pose_extractor is not None:
            name, model = ctx.pose_extractor
            raw = raw_outputs(name, model, "pose")
            columns = model.outputs or (("yaw",) if raw.shape[1] == 1 else tuple(f"angle{i}" for i in range(raw.shape[1])))
            for k, column in enumerate(columns[: raw.shape[1]]):
                histogram(column, raw[:, k], -90.0, 90.0, name)
        if ctx.quality_extractor is not None:
            name, model = ctx.quality_extractor
            quality = np.linalg.norm(raw_outputs(name, model, "quality"), axis=1)
            histogram("quality", quality, float(quality.min()), float(quality.max()) + 1e-9, name)
        return AnalysisOutput(summary, arrays)
