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
    for name, target, description in ANALYSES:
        register(name, target, description, kind="analysis")


ANALYSES = (
    ("pair-distributions", "facebench_plugins.evaluators.analyses:PairDistributionAnalysis",
     "genuine/impostor cosine distributions and their EER (paper Fig. 11)"),
    ("class-noise", "facebench_plugins.evaluators.analyses:ClassNoiseAnalysis",
     "intra-class (image-centre < 0.3) and inter-class (centre-centre > 0.7) noise (paper Fig. 12)"),
    ("separability", "facebench_plugins.evaluators.analyses:SeparabilityAnalysis",
     "identities with no earlier identity above cosine 0.4, every prefix (paper Fig. 5)"),
    ("leakage", "facebench_plugins.evaluators.analyses:LeakageAnalysis",
     "identities above cosine 0.4 to a reference identity set (paper section 4.4)"),
    ("fid", "facebench_plugins.evaluators.analyses:FidAnalysis",
     "Frechet distance to another image set (Inception when its weights are present, else FR features)"),
    ("pose-quality", "facebench_plugins.evaluators.analyses:PoseQualityAnalysis",
     "head-pose and image-quality histograms from pose/quality extractors"),
)


@hookimpl
def register_feature_extractors(register):
    register("fid-inception", "facebench_plugins.evaluators.inception:FidInceptionExtractor",
             "FID Inception-v3 pool3 features (needs pt_inception-2015-12-05-6726825d.pth, checked by hash)",
             mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), flip_test=False)
