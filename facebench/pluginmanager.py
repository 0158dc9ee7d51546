"""Discovers plugins through the ``facebench`` entry-point group and fills the registries.

Built-in plugins are ordinary entry points of the ``facebench`` distribution, so they are found exactly
like a third party's. ``FACEBENCH_PLUGINS`` (comma list of entry-point names) loads only those;
``FACEBENCH_DISABLE_PLUGINS`` blocks some. Loading is lazy and cached: ``--help`` imports only the plugin
modules, which keep torch imports inside their factories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from typing import Any

import pluggy

from . import hookspecs
from .errors import FacebenchError
from .registry import Registry

ENTRY_POINT_GROUP = hookspecs.PROJECT


@dataclass(frozen=True)
class PluginInfo:
    name: str
    distribution: str
    version: str
    module: str


def _env_names(var: str) -> set[str] | None:
    raw = os.environ.get(var, "").strip()
    if not raw:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


class PluginSet:
    """The loaded plugins and one registry per component kind."""

    def __init__(self, pm: pluggy.PluginManager, infos: dict[str, PluginInfo]):
        self.pm = pm
        self.infos = infos
        self._registries: dict[str, Registry] | None = None

    def registries(self) -> dict[str, Registry]:
        if self._registries is None:
            self._registries = {kind: self._collect(kind, hook) for kind, hook in hookspecs.KIND_HOOKS.items()}
        return self._registries

    def registry(self, kind: str) -> Registry:
        regs = self.registries()
        if kind not in regs:
            raise FacebenchError(f"unknown component kind '{kind}'; kinds: {', '.join(regs)}")
        return regs[kind]

    def _collect(self, kind: str, hook_name: str) -> Registry:
        registry = Registry(kind)
        caller = getattr(self.pm.hook, hook_name)
        # Call each implementation on its own so every spec knows the plugin that provided it.
        for impl in reversed(caller.get_hookimpls()):
            info = self.infos.get(impl.plugin_name)
            plugin = info.name if info else impl.plugin_name
            version = info.version if info else ""

            def register(name, factory, description="", *, config=None, _p=plugin, _v=version, **extras):
                return registry.add(name, factory, description, plugin=_p, version=_v, config=config, **extras)

            impl.function(register=register)
        return registry

    def add_commands(self, cli: Any) -> None:
        self.pm.hook.register_commands(cli=cli)


def build_plugin_set(extra_plugins: dict[str, Any] | None = None) -> PluginSet:
    """Load every allowed entry point (plus ``extra_plugins``, name -> module or object, for tests)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    only = _env_names("FACEBENCH_PLUGINS")
    blocked = _env_names("FACEBENCH_DISABLE_PLUGINS") or set()
    infos: dict[str, PluginInfo] = {}
    seen: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in seen:
            if seen[ep.name].value == ep.value:  # the same distribution visible twice on sys.path
                continue
            raise FacebenchError(
                f"two plugins are named '{ep.name}': {seen[ep.name].value} and {ep.value}; "
                "uninstall one or block it with FACEBENCH_DISABLE_PLUGINS"
            )
        seen[ep.name] = ep
        if (only is not None and ep.name not in only) or ep.name in blocked:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken third-party plugin must not hide the others' names
            raise FacebenchError(f"plugin '{ep.name}' ({ep.value}) failed to load: {exc}") from exc
        dist = ep.dist
        infos[ep.name] = PluginInfo(
            name=ep.name,
            distribution=dist.metadata["Name"] if dist else "",
            version=dist.version if dist else "",
            module=ep.value,
        )
        pm.register(plugin, name=ep.name)
    for name, plugin in (extra_plugins or {}).items():
        if name in blocked:
            continue
        infos[name] = PluginInfo(name=name, distribution="", version="", module=getattr(plugin, "__name__", ""))
        pm.register(plugin, name=name)
    return PluginSet(pm, infos)


@lru_cache(maxsize=1)
def get_plugin_set() -> PluginSet:
    """The process-wide plugin set (``reset_plugins()`` after changing the environment)."""
    return build_plugin_set()


def reset_plugins() -> None:
    get_plugin_set.cache_clear()


def registry(kind: str) -> Registry:
    """The registry of one component kind (``"backbone"``, ``"generator"``, ...)."""
    return get_plugin_set().registry(kind)
