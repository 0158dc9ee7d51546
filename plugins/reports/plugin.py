"""The built-in sections of ``facebench report`` (accuracy table beside published rows, dataset cards,
analyses, size plot, provenance), registered like a third party's would be.

Factories are lazy ``"module:attr"`` strings so listing plugins imports neither matplotlib nor pandas.
"""

from __future__ import annotations

from facebench import hookimpl

_SECTIONS = "facebench_plugins.reports.sections"


@hookimpl
def register_report_sections(register):
    register("summary", f"{_SECTIONS}:summary_section",
             "accuracy table: measured datasets beside published rows (paper Tables 1, 2, 6)",
             title="Accuracy", order=10)
    register("datasets", f"{_SECTIONS}:datasets_section",
             "a card per dataset: size, images per identity, generator settings, sample grid",
             title="Datasets", order=20)
    register("analysis", f"{_SECTIONS}:analysis_section",
             "separability, genuine/impostor with EER, score statistics (FDR, FMR100/1000), Vendi diversity, "
             "intra/inter noise, pose/quality histograms",
             title="Dataset analyses", order=30)
    register("pose-steering", "facebench_plugins.reports.pose_steering:pose_steering_section",
             "yaw histograms of AttrOP-steered and landmark-pose-controlled (Vec2Face+) datasets side by side",
             title="Pose steering: AttrOP and landmark pose control", order=32)
    register("scaling", f"{_SECTIONS}:scaling_section", "average accuracy against dataset size",
             title="Accuracy against dataset size", order=40)
    register("benchmarks", "facebench_plugins.reports.benchmarks:benchmarks_section",
             "IJB-B/C ROC curves and TAR@FAR table (insightface setting shown), IJB-C 1:N and TinyFace tables",
             title="IJB, 1:N identification and TinyFace", order=12)
    register("intervals", "facebench_plugins.reports.intervals:intervals_section",
             "bootstrap 95% confidence intervals of accuracy, EER and TAR@FAR", title="Confidence intervals",
             order=14)
    register("fairness", "facebench_plugins.reports.fairness:fairness_section",
             "per-group accuracy bars with STD, SER and TO; GAP to the real-data run (report --real)",
             title="Fairness across groups (RFW, FRCSyn)", order=16)
    register("borda", "facebench_plugins.reports.ranking:borda_section",
             "SDFR-style Borda count over the benchmarks the report's training sets share",
             title="Borda ranking (SDFR)", order=18)
    register("dataset-metrics", "facebench_plugins.reports.dataset_metrics:dataset_metrics_section",
             "KID / precision-recall / density-coverage table, certainty-ratio histogram, leakage pairs grid",
             title="Dataset metrics: KID, precision/recall, quality, leakage", order=35)
    register("provenance", f"{_SECTIONS}:provenance_section",
             "versions, device, seed, command line, input hashes and config of every run",
             title="Provenance", order=90)
