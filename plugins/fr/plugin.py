"""The built-in ``fr`` plugin: backbones, margin heads, training recipes and feature extractors.

Everything is registered lazily (``"module:attr"`` strings or light closures) so loading this plugin
does not import torch.
"""

from __future__ import annotations

from facebench import hookimpl

_BB = "facebench_plugins.fr.backbones"
_HEADS = "facebench_plugins.fr.heads"

#: name -> (factory, description)
BACKBONES: dict[str, tuple[str, str]] = {
    "iresnet18": (f"{_BB}.iresnet:iresnet18", "insightface IResNet-18 (arcface_torch layout)"),
    "iresnet34": (f"{_BB}.iresnet:iresnet34", "insightface IResNet-34 (arcface_torch layout)"),
    "iresnet50": (f"{_BB}.iresnet:iresnet50", "insightface IResNet-50 (arcface_torch layout)"),
    "iresnet100": (f"{_BB}.iresnet:iresnet100", "insightface IResNet-100 (ArcFace-R100 / MagFace-R100 layout)"),
    "iresnet200": (f"{_BB}.iresnet:iresnet200", "insightface IResNet-200 (arcface_torch layout)"),
    "se_iresnet18": (f"{_BB}.iresnet:se_iresnet18", "SE-IResNet-18 of the Vec2Face paper's trainer"),
    "se_iresnet50": (f"{_BB}.iresnet:se_iresnet50", "SE-IResNet-50 of the Vec2Face paper's trainer (HSFace FR weights)"),
    "se_iresnet100": (f"{_BB}.iresnet:se_iresnet100", "SE-IResNet-100 of the Vec2Face paper's trainer"),
    "se_iresnet200": (f"{_BB}.iresnet:se_iresnet200", "SE-IResNet-200 of the Vec2Face paper's trainer"),
    "iresnet_tiny": (f"{_BB}.iresnet:iresnet_tiny", "tiny IResNet for CPU tests (56 px)"),
    "se_iresnet_tiny": (f"{_BB}.iresnet:se_iresnet_tiny", "tiny SE-IResNet for CPU tests (56 px)"),
    "vit_s": (f"{_BB}.vit:vit_s", "ViT-S for 112x112 faces (timm)"),
    "vit_b": (f"{_BB}.vit:vit_b", "ViT-B for 112x112 faces (timm)"),
    "vit_tiny": (f"{_BB}.vit:vit_tiny", "tiny ViT for CPU tests (56 px, timm)"),
    "mbf": (f"{_BB}.mobilefacenet:mbf", "MobileFaceNet (arcface_torch get_mbf layout)"),
    "mbf_large": (f"{_BB}.mobilefacenet:mbf_large", "MobileFaceNet-large (arcface_torch get_mbf_large layout)"),
    "mbf_y1": (f"{_BB}.mobilefacenet:mbf_y1", "MobileFaceNet of insightface's MXNet zoo (model-y1-test2, 128-d)"),
    "mbf_tiny": (f"{_BB}.mobilefacenet:mbf_tiny", "tiny MobileFaceNet for CPU tests (56 px)"),
}

#: backbones ``facebench weights import`` converts insightface's ONNX and MXNet files into (spec extra
#: ``importer``: the function that does it, found through the registry by the core command)
IMPORTABLE = ("iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200", "iresnet_tiny",
              "mbf", "mbf_large", "mbf_y1", "mbf_tiny")
_IMPORTER = "facebench_plugins.fr.importers:import_weights"

HEADS: dict[str, tuple[str, str]] = {
    "arcface": (f"{_HEADS}:arcface", "ArcFace s=64 m=0.5, straight-through gradient (arcface_torch)"),
    "arcface-classic": (f"{_HEADS}:arcface_classic", "ArcFace s=64 m=0.5, exact gradient + theta+m>pi guard"),
    "cosface": (f"{_HEADS}:cosface", "CosFace s=64 m=0.35"),
    "cosface-m0.4": (f"{_HEADS}:cosface_m04", "CosFace s=64 m=0.4 (arcface_torch configs)"),
    "softmax": (f"{_HEADS}:softmax", "plain softmax cross-entropy"),
    "partial_fc": ("facebench_plugins.fr.partial_fc:partial_fc",
                   "ArcFace (or options.loss) with class centres sharded over torchrun ranks, optional "
                   "negative sampling (options.sample_rate)"),
}

#: released weight files (declared to ``facebench doctor``) and the backbone each one loads into
RELEASED_EXTRACTORS: dict[str, tuple[str, str, str]] = {
    "arcface-r100": ("iresnet100", "arcface-r100-glint360k.pth",
                     "ArcFace IResNet-100 (Glint360K): identity loss, AttrOP, analysis"),
    "magface-r100": ("iresnet100", "magface-r100-glint360k.pth", "MagFace IResNet-100 (feature norm = quality)"),
    **{f"hsface{n}-se-ir50": ("se_iresnet50", f"hsface{n}.pth", f"SE-IResNet50 trained on HSFace{n.upper()}")
       for n in ("10k", "20k", "100k", "200k", "300k")},
}


@hookimpl
def register_backbones(register):
    for name, (factory, description) in BACKBONES.items():
        register(name, factory, description, **({"importer": _IMPORTER} if name in IMPORTABLE else {}))


@hookimpl
def register_heads(register):
    for name, (factory, description) in HEADS.items():
        register(name, factory, description)


@hookimpl
def register_recipes(register):
    from .recipes import RECIPES, recipe_factory

    for name, description in RECIPES.items():
        register(name, recipe_factory(name), description)


def _extractor(backbone: str, default_weights: str | None = None):
    def factory(weights=None, device="cpu", **kwargs):
        from .extractors import from_backbone

        return from_backbone(backbone, weights if weights is not None else default_weights, device=device, **kwargs)

    factory.__doc__ = f"{backbone} + a weights file"
    return factory


def _run_extractor(weights=None, device="cpu", **kwargs):
    """The backbone of a facebench FR training run (--weights RUN_DIR)."""
    from .extractors import from_run

    return from_run(weights, device=device, **kwargs)


@hookimpl
def register_feature_extractors(register):
    extras = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "flip_test": True}
    for name, (_, description) in BACKBONES.items():
        register(name, _extractor(name), f"{description} + --weights FILE", **extras)
    for name, (backbone, filename, description) in RELEASED_EXTRACTORS.items():
        register(name, _extractor(backbone, filename), f"{description}; default weights {filename}", **extras,
                 weights=filename, weight_files=((filename, description, "Vec2Face release"),))
    register("fr-run", _run_extractor, "a facebench train-fr run directory (--weights RUN_DIR)", **extras)
