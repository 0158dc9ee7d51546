"""Evaluation: verification suites run on a model, and dataset-level analyses run on a feature set.

The science is in :mod:`facebench.metrics`; this package finds test packs, turns images into
embeddings (flip test), resolves ``--model`` arguments and writes the result files of a run directory.
"""

from __future__ import annotations

from .analyze import AnalysisContext, AnalysisOutput, skipped
from .embed import TensorModel, as_tensor_model, embed_arrays, embed_pairs
from .runner import evaluate_pack, evaluate_suite, table_1, write_results
from .suites import ANALYSIS, SUITE, Benchmark, Suite, get_suite, suite_from_toml

__all__ = [
    "ANALYSIS",
    "SUITE",
    "AnalysisContext",
    "AnalysisOutput",
    "Benchmark",
    "Suite",
    "TensorModel",
    "as_tensor_model",
    "embed_arrays",
    "embed_pairs",
    "evaluate_pack",
    "evaluate_suite",
    "get_suite",
    "skipped",
    "suite_from_toml",
    "table_1",
    "write_results",
]
