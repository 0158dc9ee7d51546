"""Which dataset each run of a report is about, and one name for each dataset across all of them.

A run states its dataset in its own way: a ``generate`` run or ``toyfaces`` world by its ``dataset.json``,
an FR run by ``model.json``'s ``dataset`` (name, path, sha256), an evaluation through the model it
evaluated, an analysis by its summary and ``provenance.json``'s input hash. Runs whose datasets have the
same sha256 (else the same path, else the same name) are one dataset: one name (its ``dataset.json``'s
when there is one, or ``--label``), one row per model, one card, one point in the size plot.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.identity import identify, inner_name, name_from_card, plain_name
from ..errors import FacebenchError
from ..runs import DATASET_CARD, MODEL_CARD, PROVENANCE
from ..safe_load import read_json
from . import checks


@dataclass
class DatasetRef:
    """What one run says about its dataset."""

    name: str
    sha256: str | None = None
    path: Path | None = None  # the training set itself, absolute
    card: dict[str, Any] | None = None  # its dataset.json, when found
    card_dir: Path | None = None

    def same_as(self, other: DatasetRef) -> bool:
        if self.sha256 and other.sha256:
            return self.sha256 == other.sha256
        if self.path is not None and other.path is not None:
            return self.path == other.path
        return self.name == other.name


def _abs(path: Any) -> Path | None:
    return Path(os.path.abspath(os.path.expanduser(str(path)))) if isinstance(path, str) and path else None


def ref_of_path(path: Any, name: str | None = None, sha256: str | None = None) -> DatasetRef | None:
    """The dataset at ``path`` (its ``dataset.json`` read when it still exists), or a ref from the
    recorded name alone."""
    where = _abs(path)
    if where is not None and where.exists():
        try:
            ident = identify(where)
        except FacebenchError:  # its card is unsound: the dataset is named by its path alone (see _checked)
            return DatasetRef(name=name or plain_name(where), sha256=sha256, path=where)
        card = _checked(ident.card_dir / DATASET_CARD, ident.card, checks.dataset_card) if ident.card else None
        card_sha = (card or {}).get("sha256")
        return DatasetRef(name=name or ident.name, sha256=sha256 or card_sha, path=ident.path.absolute(),
                          card=card, card_dir=ident.card_dir if card is not None else None)
    if where is None and not name:
        return None
    if where is not None and not Path(str(path)).is_absolute():  # a name rather than a path: shown as given
        return DatasetRef(name=name or str(path), sha256=sha256)
    return DatasetRef(name=name or plain_name(where), sha256=sha256, path=where)


def ref_of_card(card: dict[str, Any], folder: Path) -> DatasetRef:
    """A run folder holding a ``dataset.json`` (``generate``, ``toyfaces build``)."""
    inner = inner_name(card)
    path = (folder / inner).absolute() if inner and (folder / inner).exists() else None
    sha = card.get("sha256") if isinstance(card.get("sha256"), str) else None
    return DatasetRef(name=name_from_card(card, folder), sha256=sha, path=path, card=card, card_dir=folder)


def ref_of_model(model: dict[str, Any], provenance: dict[str, Any] | None = None) -> DatasetRef | None:
    """The training set named by an FR run's ``model.json`` (and its provenance's input hash)."""
    dataset = model.get("dataset")
    input_sha = (((provenance or {}).get("inputs") or {}).get("dataset") or {}).get("sha256")
    if isinstance(dataset, dict):
        name = dataset.get("name") if isinstance(dataset.get("name"), str) else None
        return ref_of_path(dataset.get("path"), name, dataset.get("sha256") or input_sha)
    if isinstance(dataset, str) and dataset:
        return ref_of_path(dataset, None, input_sha)
    return None


def evaluated_model(path: Path, config: dict[str, Any] | None) -> Path | None:
    """The FR run folder an evaluation run evaluated: the folder it sits in (``RUN/eval-SUITE``), else
    the ``model`` of its parsed ``config.toml`` when that names a run folder (other commands' configs use
    ``model`` for other things: anything but a string is not a model folder)."""
    if (path.parent / MODEL_CARD).is_file():
        return path.parent.absolute()
    where = _abs((config or {}).get("model"))
    if where is not None and (where / MODEL_CARD).is_file():
        return where
    return None


def _checked(path: Path, value: Any, check: Any) -> dict[str, Any] | None:
    """``value`` when it passes ``check``, else None: a file outside the given runs, consulted only to
    name a dataset, is used when sound and otherwise left aside (the given runs' own files are refused)."""
    try:
        check(path, value)
    except FacebenchError:
        return None
    return value


def read_model(run_dir: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``model.json`` and ``provenance.json`` of the FR run folder an evaluation evaluated (None where
    absent, unreadable or malformed: see :func:`_checked`)."""
    out = []
    for name, check in ((MODEL_CARD, checks.model_card), (PROVENANCE, checks.provenance)):
        try:
            value = read_json(run_dir / name, limit=checks.CARD_LIMIT)
        except FacebenchError:
            value = None
        out.append(_checked(run_dir / name, value, check) if value is not None else None)
    return out[0], out[1]

