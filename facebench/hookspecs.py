"""Hook specifications: the whole contract between facebench and its plugins.

Every component hook is called with a ``register`` callable::

    register(name, factory, description="", *, config=None, requires=(), install_hint="", **extras)

``factory`` is a callable or a lazy ``"module:attribute"`` string, so a plugin can register many
components without importing torch; it is resolved on first use. ``config`` is an optional dataclass
describing the factory's keyword arguments. ``requires`` names optional modules the component needs
(checked without importing them) and ``install_hint`` the command that installs them: while one is
missing the component is listed as unavailable and using it is an error quoting that command.
``extras`` are kind-specific facts (for example the input normalisation of a feature extractor) that the
framework stores and passes on unchanged.
"""

from __future__ import annotations

import pluggy

PROJECT = "facebench"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: Component kinds, in the order ``facebench plugins`` lists them, mapped to their hook names.
KIND_HOOKS: dict[str, str] = {
    "generator": "register_generators",
    "backbone": "register_backbones",
    "head": "register_heads",
    "recipe": "register_recipes",
    "evaluator": "register_evaluators",
    "format": "register_formats",
    "feature_extractor": "register_feature_extractors",
    "detector": "register_detectors",
    "report_section": "register_report_sections",
}


@hookspec
def register_generators(register):
    """Register face generators: ``factory(weights=None, **kw)`` returns an object with ``generate``."""


@hookspec
def register_backbones(register):
    """Register FR backbones: ``factory(**kw)`` returns a ``torch.nn.Module`` mapping images to embeddings."""


@hookspec
def register_heads(register):
    """Register margin heads (ArcFace, CosFace, ...): ``factory(embedding_size, num_classes, **kw)``."""


@hookspec
def register_recipes(register):
    """Register FR training recipes: ``factory()`` returns the recipe's config mapping."""


@hookspec
def register_evaluators(register):
    """Register evaluators: verification suites and dataset-level analyses."""


@hookspec
def register_formats(register):
    """Register dataset formats: ``factory()`` returns a format object with a reader and a writer."""


@hookspec
def register_feature_extractors(register):
    """Register feature extractors: ``factory(weights=..., **kw)`` returns a model with its preprocessing."""


@hookspec
def register_detectors(register):
    """Register face detectors: ``factory(weights=None, device="cpu", **kw)`` returns an object whose
    ``detect(image)`` gives boxes, scores and five landmarks per face (:mod:`facebench.data.detection`)."""


@hookspec
def register_report_sections(register):
    """Register report sections: ``factory(runs)`` returns HTML fragments for ``facebench report``."""


@hookspec
def register_commands(cli):
    """Add click commands or groups to the ``facebench`` CLI (``cli`` is the root click group)."""
