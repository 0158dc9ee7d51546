"""Pretrained weight files: where facebench looks for them and what each one is for.

facebench never downloads weights. The user places files they already have in the weights directory
(``--weights-dir``, ``$FACEBENCH_WEIGHTS``, default ``~/.cache/facebench/weights``) or passes a path;
a missing file is a one-line error naming it and what it is for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import FacebenchError, MissingFileError

DEFAULT_WEIGHTS_DIR = Path("~/.cache/facebench/weights")


@dataclass(frozen=True)
class KnownWeights:
    filename: str
    purpose: str
    source: str


#: Files of the public releases that facebench components load unchanged.
KNOWN_WEIGHTS: tuple[KnownWeights, ...] = (
    KnownWeights("vec2face_generator.pth", "Vec2Face generator (key 'model_vec2face')", "Vec2Face release"),
    KnownWeights("arcface-r100-glint360k.pth", "ArcFace iresnet100: identity loss, AttrOP, analysis", "Vec2Face release"),
    KnownWeights("magface-r100-glint360k.pth", "MagFace iresnet100: image quality for AttrOP", "Vec2Face release"),
    KnownWeights("6DRepNet_300W_LP_AFLW2000.pth", "SixDRepNet head pose for AttrOP", "Vec2Face release"),
    KnownWeights("hsface10k.pth", "SE-IResNet50 FR model trained on HSFace10k", "Vec2Face release"),
    KnownWeights("hsface20k.pth", "SE-IResNet50 FR model trained on HSFace20k", "Vec2Face release"),
    KnownWeights("hsface100k.pth", "SE-IResNet50 FR model trained on HSFace100k", "Vec2Face release"),
    KnownWeights("hsface200k.pth", "SE-IResNet50 FR model trained on HSFace200k", "Vec2Face release"),
    KnownWeights("hsface300k.pth", "SE-IResNet50 FR model trained on HSFace300k", "Vec2Face release"),
    KnownWeights("vgg16-397923af.pth", "VGG16 ImageNet features for the LPIPS loss", "torchvision"),
    KnownWeights("vgg.pth", "LPIPS linear layers for VGG16", "LPIPS release"),
    KnownWeights("pt_inception-2015-12-05-6726825d.pth", "FID Inception-v3 features", "pytorch-fid release"),
)


def weights_dir(override: str | os.PathLike | None = None) -> Path:
    raw = override or os.environ.get("FACEBENCH_WEIGHTS") or DEFAULT_WEIGHTS_DIR
    return Path(raw).expanduser()


def known(filename: str) -> KnownWeights | None:
    return next((k for k in KNOWN_WEIGHTS if k.filename == filename), None)


def resolve_weights(path_or_name: str | os.PathLike, *, weights_root: str | os.PathLike | None = None,
                    allow_dir: bool = False) -> Path:
    """An existing weights file: ``path_or_name`` as given, else looked up in the weights directory.
    ``allow_dir``: a model directory (a diffusers-style layout) is accepted too; its owner checks it."""
    candidate = Path(path_or_name).expanduser()
    if candidate.is_file() or (allow_dir and candidate.is_dir()):
        return candidate
    in_dir = weights_dir(weights_root) / candidate.name
    if in_dir.is_file() or (allow_dir and in_dir.is_dir()):
        return in_dir
    if candidate.exists():
        raise FacebenchError(f"{candidate}: is a directory, expected a weights file")
    entry = known(candidate.name)
    hint = f"{entry.purpose}; from the {entry.source}" if entry else f"also looked in {weights_dir(weights_root)}"
    raise MissingFileError(candidate, "weights file", hint)


def present(weights_root: str | os.PathLike | None = None) -> list[tuple[KnownWeights, Path | None]]:
    """Each known file with its path in the weights directory, or None when absent."""
    root = weights_dir(weights_root)
    return [(k, (root / k.filename) if (root / k.filename).is_file() else None) for k in KNOWN_WEIGHTS]
