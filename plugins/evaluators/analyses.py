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
    CertaintyRatioConfig,
    ClassNoiseConfig,
    FidConfig,
    FidelityConfig,
    LeakageConfig,
    PairDistributionConfig,
    PoseQualityConfig,
    SeparabilityConfig,
    VendiConfig,
)


def _intervals(values: dict[str, tuple[float, float]]) -> dict[str, list[float | None]]:
    """Bootstrap intervals as JSON lists (an infinite bound, from a resample whose scores did not overlap at
    all, is written as null)."""
    return {key: [float(v) if np.isfinite(v) else None for v in bounds] for key, bounds in values.items()}


class PairDistributionAnalysis:
    """Cosine similarities of sampled genuine and impostor pairs and their statistics (``score_stats``: FDR,
    EER, FMR100, FMR1000, means and SDs), with bootstrap intervals over the sampled pairs."""

    def __init__(self, config: PairDistributionConfig | None = None):
        config = config or PairDistributionConfig()
        self.genuine = config.genuine
        self.impostor = config.impostor
        self.ddof = config.ddof
        self.bootstrap = config.bootstrap

    def run(self, ctx: AnalysisContext) -> AnalysisOutput:
        from facebench.metrics import score_stats, score_stats_intervals

        dist = pair_distributions(ctx.features, ctx.labels, self.genuine, self.impostor, seed=ctx.seed)
        stats = score_stats(dist.genuine, dist.impostor, ddof=self.ddof)
        figures = stats.as_dict()
        summary = {
            "genuine_pairs": stats.genuine_pairs,
            "impostor_pairs": stats.impostor_pairs,
            **{k: figures[k] for k in ("genuine_mean", "genuine_std", "impostor_mean", "impostor_std", "fdr",
                                       "eer", "eer_threshold", "fmr100", "fmr1000", "fmr1000_resolved")},
            "ddof": stats.ddof,
            "eer_estimator": stats.eer_estimator,
            "fnmr_estimator": stats.fnmr_estimator,
            "definitions": {"fdr": "(genuine_mean - impostor_mean)^2 / (genuine_std^2 + impostor_std^2)",
                            "fmr100": "FNMR at FMR 1e-2", "fmr1000": "FNMR at FMR 1e-3",
                            "std": f"standard deviation with ddof={stats.ddof}"},
            "seed": ctx.seed,
        }
        if self.bootstrap:
            summary["ci95"] = _intervals(score_stats_intervals(dist.genuine, dist.impostor, ddof=self.ddof,
                                                               resamples=self.bootstrap, seed=ctx.seed))
            summary["bootstrap"] = self.bootstrap
        headline = {"eer": stats.eer, "fdr": figures["fdr"], "fmr100": stats.fmr100, "fmr1000": stats.fmr1000}
        return AnalysisOutput(summary, {"genuine": dist.genuine, "impostor": dist.impostor}, headline=headline)


class VendiAnalysis:
    """Diversity as the Vendi score of unit embeddings: of each identity's own images (intra-class: how many
    distinct-looking images an identity has) and of the identity centres (inter-class: how many distinct
    identities the set has)."""

    def __init__(self, config: VendiConfig | None = None):
        config = config or VendiConfig()
        self.bootstrap = config.bootstrap
        self.block = config.block

    def run(self, ctx: AnalysisContext) -> AnalysisOutput:
        from facebench.metrics import percentile_interval, vendi_by_identity, vendi_score
        from facebench.metrics.vendi import VENDI_DEFINITION

        classes, intra = vendi_by_identity(ctx.features, ctx.labels, block=self.block)
        counts = np.unique(np.asarray(ctx.labels), return_counts=True)[1]
        several = counts >= 2  # one image is one distinct face by definition: not a measurement
        summary: dict = {"definition": VENDI_DEFINITION, "identities": int(classes.size),
                         "identities_scored": int(several.sum())}
        headline: dict = {}
        if several.any():
            scored = intra[several]
            summary.update({"intra_vendi_mean": float(scored.mean()), "intra_vendi_median": float(np.median(scored)),
                            "intra_vendi_min": float(scored.min()), "intra_vendi_max": float(scored.max()),
                            "images_per_identity_mean": float(counts[several].mean()),
                            "intra_vendi_share_mean": float((scored / counts[several]).mean())})
            headline["intra_vendi"] = summary["intra_vendi_mean"]
            if self.bootstrap and scored.size >= 2:
                rng = np.random.default_rng(ctx.seed)
                means = [float(scored[rng.integers(0, scored.size, scored.size)].mean())
                         for _ in range(self.bootstrap)]
                summary["ci95"] = {"intra_vendi_mean": list(percentile_interval(means))}
                summary["bootstrap"] = self.bootstrap
        else:
            summary["intra_skipped"] = "no identity has two images"
        if ctx.centers.shape[0] >= 2:
            inter = vendi_score(ctx.centers)
            summary.update({"inter_vendi": inter, "inter_vendi_share": inter / ctx.centers.shape[0]})
            headline["inter_vendi"] = inter
        else:
            summary["inter_skipped"] = "only one identity"
        return AnalysisOutput(summary, {"intra_vendi": intra.astype(np.float32)}, headline)


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
    """Identities whose centre matches a reference identity (e.g. the generator's training set): above the
    paper's fixed cosine, and above the reference's own impostor threshold at an FMR (1e-4), estimated from
    centre-to-centre cosines of different reference identities; the closest pairs are kept as images."""

    def __init__(self, config: LeakageConfig | None = None):
        config = config or LeakageConfig()
        self.threshold = config.threshold
        self.block = config.block
        self.fmr = config.fmr
        self.impostor_pairs = config.impostor_pairs
        self.pairs = config.pairs

    def impostor_scores(self, reference: np.ndarray, seed: int) -> np.ndarray:
        """Cosines of distinct reference identity pairs: all of them, or a seeded sample of that many."""
        unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
        n = unit.shape[0]
        if n * (n - 1) // 2 <= self.impostor_pairs:
            i, j = np.triu_indices(n, 1)
        else:
            rng = np.random.default_rng(seed)
            i = rng.integers(0, n, self.impostor_pairs)
            j = (i + rng.integers(1, n, self.impostor_pairs)) % n
        return np.einsum("ij,ij->i", unit[i], unit[j])

    def run(self, ctx: AnalysisContext) -> AnalysisOutput:
        from facebench.metrics import impostor_threshold

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
        arrays = {"leakage": best.astype(np.float32), "leakage_match": which}
        if ctx.reference_centers.shape[0] >= 2:
            impostor = self.impostor_scores(np.asarray(ctx.reference_centers, np.float64), ctx.seed)
            at_fmr = impostor_threshold(impostor, self.fmr)
            above = best > at_fmr
            summary.update({"fmr": self.fmr, "fmr_threshold": at_fmr, "impostor_pairs": int(impostor.size),
                            "fmr_resolved": bool(impostor.size * self.fmr >= 1),
                            "leaked_at_fmr": int(above.sum()), "leaked_at_fmr_share": float(above.mean())})
            headline.update({"leaked_at_fmr_share": summary["leaked_at_fmr_share"], "leakage_fmr": self.fmr})
        closest = np.argsort(-best, kind="stable")[: self.pairs]
        ref_labels = self.reference_labels(ctx)
        summary["closest"] = [{"identity": int(ctx.classes[k]), "reference_index": int(which[k]),
                               "reference_identity": int(ref_labels[which[k]]) if ref_labels is not None else None,
                               "cosine": float(best[k])} for k in closest]
        images = self.pair_images(ctx, closest, which, ref_labels)
        if images is not None:
            arrays["leakage_pairs"] = images
        return AnalysisOutput(summary, arrays, headline)

    @staticmethod
    def reference_labels(ctx: AnalysisContext) -> np.ndarray | None:
        """Identity label of each reference centre row (centres are in sorted-label order)."""
        if ctx.reference_dataset is None:
            return None
        from facebench.data import open_dataset

        with open_dataset(ctx.reference_dataset) as reader:
            return np.unique(np.asarray(reader.labels))

    @staticmethod
    def pair_images(ctx: AnalysisContext, closest: np.ndarray, which: np.ndarray,
                    ref_labels: np.ndarray | None, side: int = 112) -> np.ndarray | None:
        """(pairs, 2, side, side, 3) uint8: the first image of each synthetic identity beside the first image
        of its closest reference identity; None without reference images."""
        if ref_labels is None or closest.size == 0:
            return None
        from PIL import Image

        from facebench.data import decode_image, open_dataset

        def first_image(reader, labels, label):
            index = int(np.flatnonzero(labels == label)[0])
            image = decode_image(reader.image_bytes(index), path=reader.path, where=reader.where(index))
            return np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))

        own_labels = np.asarray(ctx.reader.labels)
        out = np.zeros((closest.size, 2, side, side, 3), np.uint8)
        with open_dataset(ctx.reference_dataset) as ref:
            ref_all = np.asarray(ref.labels)
            for row, k in enumerate(closest):
                out[row, 0] = first_image(ctx.reader, own_labels, ctx.classes[k])
                out[row, 1] = first_image(ref, ref_all, ref_labels[which[k]])
        return out


def draw_features(ctx: AnalysisContext, name: str, model, kind: str, images: int) -> tuple[np.ndarray, np.ndarray]:
    """Features of up to ``images`` images drawn from this dataset and from ``--fid-against`` (seeded),
    L2-normalised for FR models; kept in ``ctx.extras`` so FID and the fidelity metrics share one draw."""
    from facebench.data import open_dataset
    from facebench.evaluation.embed import embed_encoded

    key = ("drawn-features", name, kind, images)
    if key in ctx.extras:
        return ctx.extras[key]
    rng = np.random.default_rng(ctx.seed)

    def features(reader):
        count = min(images, len(reader))
        picks = np.sort(rng.choice(len(reader), size=count, replace=False))
        items = ((reader.image_bytes(int(i)), reader.where(int(i))) for i in picks)
        feats = embed_encoded(model, items, count, path=reader.path, batch_size=ctx.batch_size,
                              flip_test=False, description=f"{kind} features {reader.path}")
        if kind == "fr":  # FR embeddings carry meaning in direction only
            feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)
        return feats

    own = features(ctx.reader)
    with open_dataset(ctx.fid_against) as other_reader:
        other = features(other_reader)
    ctx.extras[key] = (own, other)
    return own, other


class FidAnalysis:
    """Fréchet distance between this dataset's images and another image set, on named features."""

    def __init__(self, config: FidConfig | None = None):
        self.images = (config or FidConfig()).images

    def run(self, ctx: AnalysisContext) -> AnalysisOutput:
        if ctx.fid_against is None:
            return skipped("no second image set given (--fid-against)")
        name, model, kind = ctx.fid_extractor or (ctx.model_name, ctx.model, "fr")
        own, other = draw_features(ctx, name, model, kind, self.images)
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


class FidelityAnalysis:
    """KID, improved precision/recall and density/coverage of this set (fake) against ``--fid-against``
    (real), in the FR model's feature space and, when the Inception weights are present, in Inception's."""

    def __init__(self, config: FidelityConfig | None = None):
        self.config = config or FidelityConfig()

    def spaces(self, ctx: AnalysisContext) -> list[tuple[str, str, object, str]]:
        fr = (ctx.model_name, ctx.model, "fr")
        if ctx.fid_extractor is not None and ctx.fid_extractor[2] == "fr":
            fr = ctx.fid_extractor  # the user named another FR model for set-level metrics
        spaces = [("fr", *fr)]
        if ctx.fid_extractor is not None and ctx.fid_extractor[2] == "inception":
            spaces.append(("inception", *ctx.fid_extractor))
        return spaces

    def run(self, ctx: AnalysisContext) -> AnalysisOutput:
        from facebench.metrics import density_coverage, kid, precision_recall

        if ctx.fid_against is None:
            return skipped("no real image set given (--fid-against)")
        c = self.config
        summary: dict = {"against": str(ctx.fid_against), "fake": "this dataset", "real": "--fid-against",
                         "pr_k": c.pr_k, "dc_k": c.dc_k, "kid_subsets": c.kid_subsets}
        headline: dict = {}
        for space, name, model, kind in self.spaces(ctx):
            fake, real = draw_features(ctx, name, model, kind, c.images)
            size = min(c.kid_subset_size, fake.shape[0], real.shape[0])
            kid_mean, kid_std = kid(real, fake, subsets=c.kid_subsets, subset_size=size, seed=ctx.seed)
            precision, recall = precision_recall(real, fake, k=c.pr_k)
            density, coverage = density_coverage(real, fake, k=c.dc_k)
            summary[space] = {"extractor": name, "images": [int(fake.shape[0]), int(real.shape[0])],
                              "kid": kid_mean, "kid_std": kid_std, "kid_subset_size": int(size),
                              "precision": precision, "recall": recall, "density": density, "coverage": coverage}
            if space == "fr" or not headline:
                headline = {"kid": kid_mean, "precision": precision, "recall": recall, "density": density,
                            "coverage": coverage, "fidelity_features": f"{space}:{name}"}
        return AnalysisOutput(summary, headline=headline)


class CertaintyRatioAnalysis:
    """CR-FIQA's certainty ratio of every image from the set's own identity centres, as a histogram."""

    def __init__(self, config: CertaintyRatioConfig | None = None):
        self.config = config or CertaintyRatioConfig()

    def run(self, ctx: AnalysisContext) -> AnalysisOutput:
        from facebench.metrics import certainty_ratio

        if ctx.classes.size < 2:
            return skipped("the certainty ratio needs at least two identities")
        cr = certainty_ratio(ctx.features, ctx.labels, eps=self.config.eps)
        counts, edges = np.histogram(cr, bins=self.config.bins)
        quantiles = np.quantile(cr, [0.05, 0.25, 0.5, 0.75, 0.95])
        summary = {"mean": float(cr.mean()), "std": float(cr.std()), "quantiles": {
            q: float(v) for q, v in zip(("5%", "25%", "50%", "75%", "95%"), quantiles)},
            "images": int(cr.size), "definition": "CCS / (NNCCS + 1 + eps) from the set's own identity centres"}
        arrays = {"certainty_ratio": cr.astype(np.float32), "certainty_ratio_hist": counts,
                  "certainty_ratio_edges": edges}
        return AnalysisOutput(summary, arrays, headline={"certainty_ratio_mean": float(cr.mean())})


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
