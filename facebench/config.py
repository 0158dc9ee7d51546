"""Typed configs: dataclasses loaded from TOML, overridden with ``--set key.sub=value``.

Unknown keys and values of the wrong type are errors that name the key, so a typo in a 26-epoch
recipe fails in the first second instead of silently training with a default.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

import tomli_w

from .errors import ConfigError

T = TypeVar("T")


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML config file; a missing or unreadable file, bytes that are not UTF-8 or a syntax error
    is a one-line error naming the file."""
    from .errors import FacebenchError
    from .safe_load import read_text

    try:
        text = read_text(path, what="config file")
    except FacebenchError as exc:  # missing, a folder, not UTF-8: a config error like the others
        raise ConfigError(str(exc)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


#: What a name a user chooses for a file or folder (a dataset inside a run folder, a run folder under
#: ``runs/``) may not hold: it must stay one plain entry of the folder it is meant for.
_NOT_IN_NAMES = ("/", "\\", "\x00")


def plain_name(value: str, key: str, *, reserved: Iterable[str] = ()) -> str:
    """``value``, a name from a config key or option that becomes a file or folder name, when it is one
    plain entry: not empty, no path separator, NUL, ``..`` or leading ``.`` (hidden, and facebench's own
    temporary names ``.NAME.tmp-*`` / ``.OUT.partial`` start so), and none of ``reserved`` (the files
    of the run folder itself; ``fnmatch`` patterns, compared ignoring case as macOS and Windows do).
    Anything else is a :class:`ConfigError` naming the key, raised before anything is written."""
    import fnmatch

    text, reserved = str(value), tuple(reserved)
    if not text or text.startswith(".") or any(c in text for c in _NOT_IN_NAMES):
        shown = text.replace("\x00", "\\0")
        raise ConfigError(f"{key}: '{shown}' must be a plain file name (not empty; no '/', '\\', NUL, "
                          "'..' or leading '.')")
    clash = [pattern for pattern in reserved if fnmatch.fnmatch(text.casefold(), pattern.casefold())]
    if clash:
        raise ConfigError(f"{key}: '{text}' would collide with the run folder's own {clash[0]}; choose "
                          f"another name (reserved: {', '.join(reserved)})")
    return text


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=0.1"`` -> (["train", "lr"], 0.1); the value is read as TOML, else kept as a string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key.sub=value, got '{text}'")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    for item in overrides:
        keys, value = parse_override(item)
        node = data
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise ConfigError(f"config key '{'.'.join(keys)}': '{k}' is a value, not a table")
            node = child
        node[keys[-1]] = value
    return data


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"config key '{key}' expects {_type_name(tp)}, got {type(value).__name__} {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' expects a table, got {type(value).__name__} {value!r}")
        return _build(tp, value, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key '{key}' expects a list, got {type(value).__name__} {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' expects a table, got {type(value).__name__} {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"config key '{key}' expects float, got {type(value).__name__} {value!r}")
        return float(value)
    if tp is int or tp is bool or tp is str:
        if type(value) is not tp:
            raise ConfigError(f"config key '{key}' expects {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"config key '{key}' expects {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


class _UnknownKey(ConfigError):
    """An unknown key, completed with a suggestion from the whole key tree by :func:`build_config`."""

    def __init__(self, given: str, known: list[str]):
        self.given, self.known = given, known
        super().__init__(f"unknown config key '{given}' (known keys: {', '.join(sorted(known))})")


def _leaf_paths(data: Any, prefix: str = "") -> list[str]:
    if isinstance(data, Mapping) and data:
        return [p for k, v in data.items() for p in _leaf_paths(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def config_keys(cls: Any, prefix: str = "") -> list[str]:
    """Every dotted key a ``--set`` may name for the config dataclass ``cls`` (tables and their leaves)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        keys.append(f"{prefix}{f.name}")
        tp = hints[f.name]
        nested = [a for a in (typing.get_args(tp) or (tp,)) if dataclasses.is_dataclass(a)]
        if nested:
            keys += config_keys(nested[0], f"{prefix}{f.name}.")
    return keys


def _did_you_mean(cls: Any, given: str) -> str | None:
    """The key the user probably meant: one that ends with what was given (``perturb.min_cos`` ->
    ``generation.perturb.min_cos``), else the closest spelling of the whole key."""
    import difflib

    keys = config_keys(cls)
    ending = [k for k in keys if k.endswith("." + given)]
    if len(ending) == 1:
        return ending[0]
    close = difflib.get_close_matches(given, keys, n=1, cutoff=0.75)
    return close[0] if close else None


def _build(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise _UnknownKey(_leaf_paths(data[key], f"{prefix}{key}.")[0], list(fields))
    kwargs = {name: _coerce(value, hints[name], f"{prefix}{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config '{prefix.rstrip('.') or cls.__name__}': {exc}") from None


def build_config(cls: type[T], data: Mapping[str, Any] | None = None, overrides: Iterable[str] = ()) -> T:
    """Build ``cls`` from a mapping plus ``--set`` overrides, checking every key and type."""
    merged = apply_overrides(_deepcopy(dict(data or {})), overrides)
    try:
        return _build(cls, merged)
    except _UnknownKey as exc:
        close = _did_you_mean(cls, exc.given)
        hint = f"did you mean '{close}'? " if close else ""
        raise ConfigError(f"unknown config key '{exc.given}' ({hint}known keys: "
                          f"{', '.join(sorted(exc.known))})") from None


def load_config(cls: type[T], path: str | Path | None = None, overrides: Iterable[str] = ()) -> T:
    """Defaults of ``cls``, then the TOML file at ``path`` (if any), then ``--set`` overrides."""
    data = read_toml(path) if path else {}
    return build_config(cls, data, overrides)


def config_to_dict(obj: Any) -> Any:
    """A dataclass (or mapping/list of them) as plain TOML-serialisable data; ``None`` values are dropped."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: config_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if getattr(obj, f.name) is not None}
    if isinstance(obj, Mapping):
        return {str(k): config_to_dict(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [config_to_dict(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dump_toml(data: Any) -> str:
    return tomli_w.dumps(config_to_dict(data))


def _deepcopy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deepcopy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deepcopy(v) for v in data]
    return data


def table(data: dict[str, Any], key: str) -> dict[str, Any]:
    """``data[key]`` (made an empty table when absent) when it is a table, so that values can be merged into
    it; a config file whose ``key`` is a number or a string is a :class:`ConfigError` naming the key."""
    value = data.setdefault(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"config key '{key}' expects a table, got {type(value).__name__} {value!r}")
    return value


def with_defaults(defaults: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` on top of ``defaults``, table by table (a component's defaults under the user's config)."""
    merged = _deepcopy(dict(defaults))
    for key, value in data.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = with_defaults(merged[key], value)
        else:
            merged[key] = _deepcopy(value)
    return merged
