"""facebench: generate synthetic face-recognition training sets and compare them honestly.

Public API (stable): :data:`hookimpl`, :func:`create_backbone`, :func:`load_generator`,
:func:`registry`, and the :mod:`facebench.metrics` module.
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

__all__ = ["FacebenchError", "__version__", "create_backbone", "hookimpl", "load_generator", "registry"]


def create_backbone(name: str, **kwargs: Any):
    """Build a registered FR backbone (``torch.nn.Module``), e.g. ``create_backbone("iresnet50")``."""
    return registry("backbone").create(name, **kwargs)


def load_generator(name: str, weights: Any = None, **kwargs: Any):
    """Build a registered generator, loading ``weights`` when given; it offers ``.generate(vectors, masks=None)``."""
    return registry("generator").create(name, weights=weights, **kwargs)


def __getattr__(name: str) -> Any:
    # ``facebench.metrics`` works after a bare ``import facebench`` without importing it eagerly.
    if name in {"metrics"}:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'facebench' has no attribute {name!r}")
