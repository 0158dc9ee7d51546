"""``--set NAME.KEY=VALUE`` for components that register their options as a ``config=`` dataclass.

``analyze`` (analyses) and ``evaluate`` (protocols such as IJB's flip fusion) read their components'
options the same way: every component gets its full option set, checked against its dataclass, so a typo
in a name or key is one error with a suggestion, and the options are recorded in the run's config.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from ..config import build_config, config_to_dict, parse_override
from ..errors import ConfigError


def option_names(spec: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(spec.config)] if spec.config is not None else []


def component_options(overrides: Iterable[str], specs: Mapping[str, Any], noun: str,
                      plural: str) -> dict[str, dict[str, Any]]:
    """``NAME.KEY=VALUE`` overrides -> ``{name: {key: value}}`` for every spec with a config."""
    per_component: dict[str, list[str]] = {}
    for text in overrides:
        keys, _ = parse_override(text)
        name = keys[0]
        if name not in specs:
            close = difflib.get_close_matches(name, list(specs), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(f"--set {text}: no {noun} '{name}' ({hint}{plural}: {', '.join(specs) or 'none'})")
        if specs[name].config is None or len(keys) < 2:
            raise ConfigError(f"--set {text}: expected {noun.upper()}.OPTION=VALUE ('{name}' options: "
                              f"{', '.join(option_names(specs[name])) or 'none'})")
        per_component.setdefault(name, []).append(text.split(".", 1)[1])
    options = {}
    for name, spec in specs.items():
        if spec.config is not None:
            try:
                options[name] = config_to_dict(build_config(spec.config, {}, per_component.get(name, ())))
            except ConfigError as exc:  # the key is checked within the component: say which one
                raise ConfigError(f"--set {name}.*: {noun} '{name}': {exc}") from None
    return options
