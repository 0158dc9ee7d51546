"""Recipe TOML files shipped with the fr plugin; each is registered under its file name."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from typing import Any

RECIPES: dict[str, str] = {
    "se-ir50-arcface": "SE-IResNet50 + ArcFace, paper Table 10 (SGD 0.1, 26 epochs, /10 at 12/20/24)",
    "ir50-arcface": "insightface IResNet50 + ArcFace, arcface_torch style (20 epochs, linear decay)",
    "ir100-arcface": "insightface IResNet100 + ArcFace, arcface_torch style",
    "vit-s-arcface": "ViT-S (112 px) + ArcFace, AdamW with warm-up and cosine decay",
    "vit-b-arcface": "ViT-B (112 px) + ArcFace, AdamW with warm-up and cosine decay",
    "tiny-arcface": "tiny SE-IResNet (56 px) + ArcFace for CPU runs on toyfaces",
}


def read_recipe(name: str) -> dict[str, Any]:
    """The parsed TOML of a shipped recipe."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    text = resources.files(__name__).joinpath(f"{name}.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def recipe_factory(name: str) -> Callable[[], dict[str, Any]]:
    def factory() -> dict[str, Any]:
        return read_recipe(name)

    factory.__doc__ = RECIPES[name]
    return factory
