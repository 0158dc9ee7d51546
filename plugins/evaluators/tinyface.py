"""TinyFace 1:N (native low resolution): every probe against the gallery matches plus the distractors.

Images are embedded as they are (resized to the model's input, flip test as in verification) and cached in
the run directory; rank-k is the share of probes whose best same-identity gallery image is among the k
highest cosine scores (CVLface's TinyFace evaluation reports rank-1, 5 and 20).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from facebench_plugins.formats.tinyface import FOLDERS, read_tinyface

from facebench.errors import ConfigError, DataError
from facebench.evaluation.protocols import ProtocolContext, benchmark_files
from facebench.metrics import MetricInputError, probe_scores, rank_rates

from .feature_cache import FileImages, cached_features
from .options import TinyFaceConfig


class TinyFaceIdentification:
    def __init__(self, config: TinyFaceConfig | None = None):
        self.config = config or TinyFaceConfig()
        if not self.config.ranks or any(k < 1 for k in self.config.ranks):
            raise ConfigError(f"tinyface.ranks must be positive ranks, got {self.config.ranks}")

    def inputs(self, path: Path) -> list[Path]:
        """The three image folders beside the located ``Probe`` folder (no meta files: the folders
        themselves identify the set). The set is read and checked here, before anything hashes the
        folders or a run folder gets results: a name that is no label is refused first."""
        root = Path(path).parent
        for name in FOLDERS:
            if (root / name).exists() and not (root / name).is_dir():
                raise DataError(root / name, "TinyFace folder is a file, not a folder")
        read_tinyface(root)
        return [root / name for name in FOLDERS]

    def evaluate(self, ctx: ProtocolContext) -> list[dict[str, Any]]:
        root = Path(ctx.path).parent
        data = read_tinyface(root)
        files = data.probes + data.gallery
        listing = hashlib.sha256("\n".join(f"{p.relative_to(root)} {p.stat().st_size}" for p in files).encode())
        params = {"protocol": "tinyface", "root": str(root.resolve()), "flip_test": ctx.flip_test,
                  "files": len(files), "listing_sha256": listing.hexdigest()}
        feats = cached_features(ctx, FileImages(root, files), "tinyface", root, params, flip_test=ctx.flip_test)
        n = len(data.probes)
        try:
            scores = probe_scores(feats[:n], data.probe_ids, feats[n:], data.gallery_ids)
            rates = rank_rates(scores, tuple(self.config.ranks))
        except MetricInputError as exc:
            raise DataError(root, str(exc)) from None
        row = {"dataset": ctx.dataset, "benchmark": ctx.bench.name, "accuracy": None, "std": None, "threshold": None,
               "eer": None, "label": ctx.bench.label, "suite": ctx.suite, "protocol": "tinyface-1:N",
               "group": ctx.bench.group, "model": ctx.model_name, "flip_test": ctx.flip_test, "probes": n,
               "gallery_matches": data.matches, "distractors": len(data.gallery) - data.matches,
               "files": benchmark_files(root, [root / name for name in FOLDERS])}
        row.update({f"rank_{k}": v for k, v in rates.items()})
        row["figures"] = {f"rank-{k}": v for k, v in rates.items()}
        return [row]
