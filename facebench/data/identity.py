"""Which dataset a path is: the set a ``dataset.json`` folder stands for, its one name, its hash.

``facebench generate`` writes a run folder (``dataset.json`` beside the set it names under ``dataset``) and
``toyfaces build`` a world folder (``dataset.json`` naming its training set under ``train``). Every command
that takes a training set accepts either folder for the set inside, and every place that shows a dataset
(evaluation rows, report cards, analyses, the size plot) names it the same way, from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..runs import DATASET_CARD
from ..safe_load import expect, inside, read_json, resolves_inside, shown_name

#: Keys of ``dataset.json`` that name the training set inside its folder (generate, toyfaces build).
INNER_KEYS = ("dataset", "train")
#: Folder names that say nothing about the data: the name of the folder above them is shown too.
GENERIC_NAMES = {"train", "images", "data", "dataset", "imgs"}


#: A dataset card is a few kilobytes; a larger file is not one.
CARD_LIMIT = 16 << 20


def read_card(folder: str | os.PathLike) -> dict[str, Any] | None:
    """``folder/dataset.json`` as a dict, or None when there is none. A card that is there but unreadable
    (not UTF-8, not JSON, not an object), whose ``name``/``dataset``/``train`` is not a string, or that names
    a set outside its folder (absolute, ``..``) is one error naming it: a folder someone handed over must
    not silently stand for some other dataset, nor for a set elsewhere on the machine."""
    path = Path(folder) / DATASET_CARD
    if not path.is_file():
        return None
    card = read_json(path, what="dataset card", limit=CARD_LIMIT)
    for key in ("name", *INNER_KEYS):
        if key in card and card[key] is not None:
            expect(path, card[key], str, key)
    for key in INNER_KEYS:
        if isinstance(card.get(key), str) and card[key]:
            inside(folder, card[key], file=path, where=f"key {key}", what="dataset")
    return card


def inner_name(card: dict[str, Any]) -> str | None:
    """The relative name of the training set a ``dataset.json`` describes (never one leaving its folder)."""
    for key in INNER_KEYS:
        value = card.get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute() and ".." not in Path(value).parts:
            return value
    return None


def resolve_dataset_path(path: str | os.PathLike) -> Path:
    """A folder whose ``dataset.json`` names a set inside it stands for that set (a ``generate`` run
    folder, a ``toyfaces build`` world); any other path is returned unchanged. A card naming a set that is
    missing, or a link that leads out of the folder, is refused naming the card."""
    path = Path(path)
    if path.is_dir():
        card = read_card(path)
        name = inner_name(card) if card else None
        if name:

            card_path = path / DATASET_CARD
            key = next(k for k in INNER_KEYS if card.get(k) == name)  # type: ignore[union-attr]
            if not os.path.lexists(path / name):
                raise DataError(card_path, f"names the dataset '{shown_name(name)}', which is not in {path}",
                                f"key {key}")
            if not resolves_inside(path / name, path):
                raise DataError(card_path, f"dataset '{shown_name(name)}' is a link leading outside {path}; "
                                           "refused", f"key {key}")
            return path / name
    return path


def card_for(path: str | os.PathLike) -> tuple[dict[str, Any], Path] | None:
    """The ``dataset.json`` describing the dataset at ``path`` and the folder holding it: the one inside a
    run folder given as the dataset, or the one beside the set that names it."""
    path = Path(path)
    inner = resolve_dataset_path(path)
    if inner != path:
        return read_card(path), path  # type: ignore[return-value]
    try:
        card = read_card(path.parent)
    except DataError:  # the card beside the set the user named; it only adds a name, the set stands alone
        card = None
    if card is not None and inner_name(card) is not None and (path.parent / inner_name(card)).resolve() == path.resolve():
        return card, path.parent
    return None


def name_from_card(card: dict[str, Any], folder: str | os.PathLike) -> str:
    """The dataset's name: ``name`` in its ``dataset.json``, else the set's own folder name when it is
    telling (``generation.dataset_name``), else the folder holding the card (the run or world folder)."""
    name = card.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    inner = inner_name(card)
    if inner:
        stem = Path(inner).name
        if not stem.startswith("dataset.") and stem not in GENERIC_NAMES:
            return stem
    return Path(os.path.abspath(folder)).name


def plain_name(path: str | os.PathLike) -> str:
    """The name of a set without a ``dataset.json``: its folder name, with the parent's for generic names
    (``toy/train`` says more than ``train``)."""
    path = Path(os.path.abspath(path))
    if path.name in GENERIC_NAMES or path.name.startswith("dataset."):
        return f"{path.parent.name}/{path.name}" if path.parent.name else path.name
    return path.name


@dataclass(frozen=True)
class DatasetIdentity:
    """One dataset as every command and report names it."""

    name: str
    path: Path  # the training set itself (inside its run or world folder)
    card: dict[str, Any] | None = None  # its dataset.json, when it has one
    card_dir: Path | None = None  # the folder holding that dataset.json


def identify(path: str | os.PathLike) -> DatasetIdentity:
    """The identity of the dataset at ``path`` (a set, or a folder whose ``dataset.json`` names one)."""
    inner = resolve_dataset_path(path)
    found = card_for(inner)
    if found is not None:
        card, folder = found
        return DatasetIdentity(name=name_from_card(card, folder), path=inner, card=card, card_dir=folder)
    return DatasetIdentity(name=plain_name(inner), path=inner)
