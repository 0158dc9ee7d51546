"""Published reference numbers shipped with facebench (``published.json``) and benchmark naming.

Reports put these beside what a user measured, always labelled "published", so a reader can see
where a measured dataset would sit in the paper's tables without mistaking a copied figure for a
measurement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

#: The five-benchmark average of the literature (paper Table 1 columns, in order).
FIVE = ("lfw", "cfp_fp", "cplfw", "agedb_30", "calfw")
#: The "other tasks" of paper Table 6.
OTHER_TASKS = ("hadrian", "eclipse", "sllfw", "doppelver")

_ALIASES = {"agedb": "agedb_30", "agedb30": "agedb_30", "cfpfp": "cfp_fp", "cfp": "cfp_fp",
            "ijb": "ijbc", "ijb_1n": "ijbc_1n"}  # toy_ijb mirrors IJB-C


def canonical_benchmark(name: str) -> str:
    """``toy_agedb_30`` / ``AgeDB-30`` -> ``agedb_30``: the real benchmark a pack stands for."""
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    for prefix in ("toy_", "toy"):
        if key.startswith(prefix) and key != prefix:
            key = key[len(prefix):]
            break
    return _ALIASES.get(key, key)


def is_toy_benchmark(name: str) -> bool:
    return str(name).strip().lower().startswith("toy")


@dataclass(frozen=True)
class PublishedTable:
    """One source's rows; ``backbone`` and ``loss`` (empty where the rows' recipes differ) say which groups
    were trained alike, so a reader can tell like-for-like rows from the rest."""

    id: str
    source: str
    recipe: str
    rows: tuple[dict[str, Any], ...]
    backbone: str = ""
    loss: str = ""

    @property
    def fr_recipe(self) -> str:
        """``"SE-IResNet50 + ArcFace"``, or empty when the table's rows were trained differently."""
        return f"{self.backbone} + {self.loss}" if self.backbone and self.loss else ""


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("published.json").read_text(encoding="utf-8")
    return json.loads(text)


def benchmark_titles() -> dict[str, str]:
    """Canonical benchmark key -> column title as the paper prints it."""
    return dict(_data()["benchmarks"])


def published_tables() -> list[PublishedTable]:
    return [
        PublishedTable(t["id"], t["source"], t.get("recipe", ""), tuple(dict(r) for r in t["rows"]),
                       t.get("backbone", ""), t.get("loss", ""))
        for t in _data()["tables"]
    ]
