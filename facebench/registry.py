"""One registry per component kind, filled by the plugins' ``register_*`` hooks.

A :class:`ComponentSpec` records who registered what (plugin and distribution version, for
``facebench plugins`` and for provenance) and resolves lazy ``"module:attr"`` factories on first use.
A component built on an optional extra declares the modules it needs (``requires``) and how to install
them (``install_hint``): it stays listed, is marked unavailable while a module is missing (checked with
``importlib.util.find_spec``, which imports nothing), and using it is a one-line error naming the command.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import DuplicateComponentError, UnavailableComponentError, UnknownComponentError


def missing_modules(modules: tuple[str, ...]) -> list[str]:
    """The top-level modules of ``modules`` that cannot be imported here (nothing is imported to find out)."""
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package that is missing or broken
            found = False
        if not found:
            missing.append(module)
    return missing


@dataclass(frozen=True)
class ComponentSpec:
    """A registered component: its name, how to build it and where it came from."""

    kind: str
    name: str
    factory: Callable[..., Any] | str
    description: str = ""
    plugin: str = ""
    version: str = ""
    config: type | None = None
    extras: Mapping[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()  # optional modules the component needs (an extra of its distribution)
    install_hint: str = ""  # the command that installs them

    def missing(self) -> list[str]:
        """The modules of ``requires`` that are not installed; empty when the component is available."""
        return missing_modules(self.requires)

    def ensure_available(self) -> None:
        missing = self.missing()
        if missing:
            hint = f"; install with: {self.install_hint}" if self.install_hint else ""
            raise UnavailableComponentError(
                f"{self.kind.replace('_', ' ')} '{self.name}' is unavailable: missing optional "
                f"dependenc{'ies' if len(missing) > 1 else 'y'} {', '.join(missing)}{hint}")

    def load(self) -> Callable[..., Any]:
        """The factory itself, importing it first when it was registered as ``"module:attr"``."""
        self.ensure_available()
        if callable(self.factory):
            return self.factory
        module_name, _, attr = self.factory.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
        return obj

    def create(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)

    def as_row(self) -> dict[str, Any]:
        """The public, JSON-stable description used by ``facebench plugins --json``: kind, name, plugin,
        version, description; an unavailable component adds ``available`` (false), ``missing`` and
        ``install``, so the rows of available components keep exactly their five keys."""
        row: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "version": self.version,
            "description": self.description,
        }
        missing = self.missing()
        if missing:
            row.update(available=False, missing=missing, install=self.install_hint)
        return row


def _first_doc_line(obj: Any) -> str:
    doc = inspect.getdoc(obj) if callable(obj) else None
    return doc.strip().splitlines()[0] if doc else ""


class Registry:
    """Name -> spec for one kind; unknown names get suggestions, duplicates name both plugins."""

    def __init__(self, kind: str):
        self.kind = kind
        self._specs: dict[str, ComponentSpec] = {}

    def add(
        self,
        name: str,
        factory: Callable[..., Any] | str,
        description: str = "",
        *,
        plugin: str = "",
        version: str = "",
        config: type | None = None,
        requires: tuple[str, ...] | list[str] | str = (),
        install_hint: str = "",
        **extras: Any,
    ) -> ComponentSpec:
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} names must be non-empty strings, got {name!r} from {plugin!r}")
        if name in self._specs:
            other = self._specs[name].plugin
            raise DuplicateComponentError(
                f"{self.kind} '{name}' is registered by two plugins: '{other}' and '{plugin}'; "
                f"disable one with FACEBENCH_DISABLE_PLUGINS"
            )
        spec = ComponentSpec(
            kind=self.kind,
            name=name,
            factory=factory,
            description=description or _first_doc_line(factory),
            plugin=plugin,
            version=version,
            config=config,
            extras=dict(extras),
            requires=(requires,) if isinstance(requires, str) else tuple(requires),
            install_hint=install_hint,
        )
        self._specs[name] = spec
        return spec

    def get(self, name: str) -> ComponentSpec:
        try:
            return self._specs[name]
        except KeyError:
            pass
        available = ", ".join(sorted(self._specs)) or "(none registered)"
        close = difflib.get_close_matches(name, list(self._specs), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise UnknownComponentError(f"unknown {self.kind.replace('_', ' ')} '{name}'{hint} available: {available}")

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name).create(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._specs)

    def unavailable(self) -> list[ComponentSpec]:
        """Registered components whose optional dependencies are not installed."""
        return [spec for spec in self if spec.missing()]

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[ComponentSpec]:
        return iter(sorted(self._specs.values(), key=lambda s: s.name))

    def __len__(self) -> int:
        return len(self._specs)
