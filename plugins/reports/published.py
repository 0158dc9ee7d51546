"""Published reference numbers shipped with facebench (``published.json``) and benchmark naming.

Reports put these beside what a user measured, always labelled "published", so a reader can see
where a measured dataset would sit in the paper's tables without mistaking a copied figure for a
measurement.
"""

from __future__ import annotations

import json
import re
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


#: Spellings of one architecture or loss that sources use; anything else is compared as written (IR-SE50,
#: the AdaFace / face.evoLVe network, is kept apart from SE-IResNet50: the blocks differ).
_RECIPE_ALIASES = {"ir50": "iresnet50", "ir": "iresnet", "r50": "resnet50"}


def recipe_key(backbone: Any, loss: Any) -> str:
    """``("SE-IResNet50", "ArcFace")`` and ``("se_iresnet50", "arcface")`` -> the same key; empty when either
    part is unknown, so an unknown recipe is never like-for-like with anything."""
    parts = []
    for value in (backbone, loss):
        word = re.sub(r"[^a-z0-9]", "", value.lower()) if isinstance(value, str) else ""
        if not word:
            return ""
        parts.append(_RECIPE_ALIASES.get(word, word))
    return "+".join(parts)


@dataclass(frozen=True)
class Recipe:
    """The FR model a published number was measured with: backbone and loss as its source states them
    (empty where no source read states them), the tag of that statement and where it was read."""

    backbone: str = ""
    loss: str = ""
    tag: str = "V"
    reference: str = ""

    @property
    def key(self) -> str:
        return recipe_key(self.backbone, self.loss)

    @property
    def text(self) -> str:
        """``"ResNet-50 + CosFace"``, ``"? + AdaFace"`` where the backbone is not stated, ``"not stated"``."""
        if not self.backbone and not self.loss:
            return "not stated"
        text = f"{self.backbone or '?'} + {self.loss or '?'}"
        return text + (f" [{self.tag}]" if self.tag != "V" else "")


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

    def row_recipe(self, row: dict[str, Any]) -> Recipe:
        """The row's own ``recipe`` where its source gives one, else the table's."""
        own = row.get("recipe")
        if isinstance(own, dict):
            return Recipe(str(own.get("backbone", "")), str(own.get("loss", "")), str(own.get("tag", "V")),
                          str(own.get("reference", "")))
        return Recipe(self.backbone, self.loss, "V", self.source)


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
