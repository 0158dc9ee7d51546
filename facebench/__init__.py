"""facebench: generate synthetic face-recognition training sets and compare them honestly.

Public API (stable): :data:`hookimpl`, :func:`create_backbone`, :func:`load_generator`,
:func:`load_detector`, :func:`align`, :func:`registry`, and the :mod:`facebench.metrics` module.
"""

from __future__ import annotations

from typing import Any

from .errors import FacebenchError
from .hookspecs import hookimpl
from .pluginmanager import registry

try:
    from importlib.metadata import PackageNotFoundError, version

    __version__ = version("facebench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["FacebenchError", "__version__", "align", "create_backbone", "hookimpl", "load_detector", "load_generator",
           "registry"]


def create_backbone(name: str, **kwargs: Any):
    """Build a registered FR backbone (``torch.nn.Module``), e.g. ``create_backbone("iresnet50")``."""
    return registry("backbone").create(name, **kwargs)


def load_generator(name: str, weights: Any = None, **kwargs: Any):
    """Build a registered generator, loading ``weights`` when given; it offers ``.generate(vectors, masks=None)``."""
    return registry("generator").create(name, weights=weights, **kwargs)


def load_detector(name: str, weights: Any = None, device: Any = "cpu", **kwargs: Any):
    """Build a registered face detector, loading ``weights`` when given; ``.detect(image)`` returns boxes
    (K, 4) x1, y1, x2, y2, scores (K,) and landmarks (K, 5, 2), sorted by score."""
    return registry("detector").create(name, weights=weights, device=device, **kwargs)


def __getattr__(name: str) -> Any:
    # ``facebench.metrics`` and ``facebench.align`` work after a bare ``import facebench`` without importing
    # them eagerly (nor importing a higher layer into this one).
    import importlib

    if name in {"metrics"}:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "align":  # facebench.align(image, landmarks, size=112): insightface's norm_crop (data layer)
        return importlib.import_module(f"{__name__}.data.alignment").align_face
    raise AttributeError(f"module 'facebench' has no attribute {name!r}")
