"""Registers the built-in verification suites and dataset analyses (lazily: no torch at import)."""

from __future__ import annotations

from facebench import hookimpl


def _suite_factory(name: str):
    def factory():
        from .suites import build_suite

        return build_suite(name)

    factory.__doc__ = f"verification suite '{name}'"
    return factory


@hookimpl
def register_evaluators(register):
    from .suites import SUITES

    for name, (benchmarks, description) in SUITES.items():
        register(name, _suite_factory(name), description, kind="suite", benchmarks=benchmarks)
    from . import options

    analyses = (
        ("pair-distributions", "PairDistributionAnalysis", options.PairDistributionConfig,
         "genuine/impostor cosine distributions (paper Fig. 11) and their statistics: FDR, EER, FMR100, FMR1000, "
         "means and SDs, with bootstrap intervals"),
        ("vendi", "VendiAnalysis", options.VendiConfig,
         "Vendi score (effective number of distinct faces) of each identity's images and of the identity centres"),
        ("class-noise", "ClassNoiseAnalysis", options.ClassNoiseConfig,
         "intra-class (image-centre < 0.3) and inter-class (centre-centre > 0.7) noise (paper Fig. 12)"),
        ("separability", "SeparabilityAnalysis", options.SeparabilityConfig,
         "identities with no earlier identity above cosine 0.4, every prefix (paper Fig. 5)"),
        ("leakage", "LeakageAnalysis", options.LeakageConfig,
         "identities above cosine 0.4 (paper section 4.4) and above the reference's FMR 1e-4 threshold to a "
         "reference identity set; the closest pairs as images"),
        ("fid", "FidAnalysis", options.FidConfig,
         "Frechet distance to another image set (Inception when its weights are present, else FR features)"),
        ("fidelity", "FidelityAnalysis", options.FidelityConfig,
         "KID, precision/recall (k=3), density/coverage (k=5) against --fid-against, in FR and Inception space"),
        ("certainty-ratio", "CertaintyRatioAnalysis", options.CertaintyRatioConfig,
         "CR-FIQA certainty ratio of every image from the set's own identity centres, as a histogram"),
        ("pose-quality", "PoseQualityAnalysis", options.PoseQualityConfig,
         "head-pose and image-quality histograms from pose/quality extractors"),
    )
    for name, cls, config, description in analyses:
        register(name, f"facebench_plugins.evaluators.analyses:{cls}", description, kind="analysis", config=config)
    protocols = (
        ("ijb", "ijb:IjbProtocol", options.IjbConfig,
         "IJB-B/C 1:1 (TAR@FAR, insightface's pick) and IJB-C 1:N (rank-k, TPIR@FPIR): aligned loose crops, "
         "media and template pooling"),
        ("tinyface-1n", "tinyface:TinyFaceIdentification", options.TinyFaceConfig,
         "TinyFace 1:N: probes against gallery matches and distractors, rank-k"),
    )
    for name, target, config, description in protocols:
        register(name, f"facebench_plugins.evaluators.{target}", description, kind="protocol", config=config)


@hookimpl
def register_feature_extractors(register):
    register("fid-inception", "facebench_plugins.evaluators.inception:FidInceptionExtractor",
             "FID Inception-v3 pool3 features (needs pt_inception-2015-12-05-6726825d.pth, checked by hash)",
             mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), flip_test=False, role="fid",
             weights="pt_inception-2015-12-05-6726825d.pth",
             weight_files=(("pt_inception-2015-12-05-6726825d.pth", "FID Inception-v3 features (checked by sha256)",
                            "pytorch-fid release"),))
