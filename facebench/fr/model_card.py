"""``model.json``, the model card of an FR training run: what the model is, how it was trained, on what,
and how well it verifies. Feature extractors (``fr-run``) and reports read it; only the trainer writes it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import config_to_dict
from ..errors import DataError, MissingFileError
from ..runs import MODEL_CARD
from ..safe_load import expect, inside, read_json, resolves_inside

BACKBONE = "backbone.pt"
#: input normalisation of every facebench FR model: (x/255 - 0.5) / 0.5
INPUT_MEAN = (0.5, 0.5, 0.5)
INPUT_STD = (0.5, 0.5, 0.5)


def model_card(recipe: Any, num_classes: int, num_images: int, steps: int,
               accuracies: Mapping[str, float], dataset_info: Mapping[str, Any] | None,
               world_size: int = 1) -> dict[str, Any]:
    """``model.json``: what the model is, how it was trained, on what, and how well it verifies."""
    options = dict(recipe.model.options)
    options.update(input_size=recipe.model.input_size, num_features=recipe.model.embedding_size)
    if recipe.model.dropout is not None:
        options["dropout"] = recipe.model.dropout
    return {
        "backbone": recipe.model.backbone,
        "backbone_options": options,
        "weights": BACKBONE,
        "embedding_size": recipe.model.embedding_size,
        "input_size": recipe.model.input_size,
        "mean": list(INPUT_MEAN),
        "std": list(INPUT_STD),
        "head": recipe.head.name,
        "recipe": recipe.name,
        "recipe_config": config_to_dict(recipe),
        "dataset": dict(dataset_info or {}),
        "num_classes": num_classes,
        "num_images": num_images,
        "epochs": recipe.optim.epochs,
        "steps": steps,
        "processes": world_size,
        "global_batch": recipe.optim.batch_per_gpu * world_size,
        "accuracies": dict(accuracies),
    }


def read_model_card(run_dir: str | Path) -> dict[str, Any]:
    """The model card of an FR training run directory, checked for the fields extractors need: a run
    folder handed over by someone else is data, so every field is type-checked where it is read and the
    weights file it names must lie inside the run folder (one error naming ``model.json`` otherwise)."""
    run = Path(run_dir)
    path = run / MODEL_CARD
    if not path.exists():
        raise MissingFileError(path, "FR model card", "an FR training run directory holds model.json")
    card = read_json(path, what="FR model card")
    for key in ("backbone", "backbone_options", "input_size"):
        if key not in card:
            raise DataError(path, f"model card lacks '{key}'")
    if not expect(path, card["backbone"], str, "backbone"):
        raise DataError(path, "backbone must name a registered backbone, found an empty string")
    expect(path, card["backbone_options"], dict, "backbone_options")  # built by the backbone, which checks them
    if expect(path, card["input_size"], int, "input_size") < 1:
        raise DataError(path, f"input_size must be a positive number of pixels, found {card['input_size']}")
    weights = expect(path, card.get("weights", BACKBONE), str, "weights")
    file = inside(run, weights, file=path, what="weights")
    if file.exists() and not resolves_inside(file, run):
        raise DataError(path, f"weights file {weights} leads outside the run folder {run}; refusing to read it")
    dataset = expect(path, card.get("dataset"), (dict, str, type(None)), "dataset")
    if isinstance(dataset, dict):
        for key in ("name", "path", "sha256"):
            expect(path, dataset.get(key), (str, type(None)), f"dataset.{key}")
    return card
