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
             "separability, genuine/impostor with EER, intra/inter noise, pose/quality histograms",
             title="Dataset analyses", order=30)
    register("scaling", f"{_SECTIONS}:scaling_section", "average accuracy against dataset size",
             title="Accuracy against dataset size", order=40)
    register("provenance", f"{_SECTIONS}:provenance_section",
             "versions, device, seed, command line, input hashes and config of every run",
             title="Provenance", order=90)
