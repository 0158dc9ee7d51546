"""Verification suites: named lists of benchmarks, each found under a data root by its usual file names.

Suites are components of the ``evaluator`` registry (``extras["kind"] == "suite"``) so a plugin can ship
more; a user can also describe one in a TOML file (see :func:`suite_from_toml`) without writing code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import read_toml
from ..errors import ConfigError, FacebenchError

SUITE = "suite"
ANALYSIS = "analysis"


@dataclass(frozen=True)
class Benchmark:
    """One test set: ``name`` is its key in results, ``label`` its table column. ``protocol`` says how it
    is scored (``verification``: the insightface pairs protocol; any other name: a registered protocol
    component, see :mod:`facebench.evaluation.protocols`); ``group`` marks the demographic group of a
    grouped suite (RFW), so fairness views can gather its rows."""

    name: str
    label: str
    files: tuple[str, ...]  # candidate paths relative to the data root, the first present wins
    description: str = ""
    protocol: str = "verification"
    group: str = ""

    def locate(self, data_root: str | os.PathLike) -> Path | None:
        root = Path(data_root)
        for rel in self.files:
            candidate = root / rel
            if candidate.exists():
                return candidate
        return None


@dataclass(frozen=True)
class Suite:
    name: str
    benchmarks: tuple[Benchmark, ...]
    description: str = ""

    @property
    def groups(self) -> tuple[str, ...]:
        """The groups the suite's benchmarks carry, in order (RFW: its four); empty for an ungrouped suite.
        A suite with two or more groups gets a bias trade-off row (:mod:`facebench.evaluation.tradeoff`)."""
        return tuple(dict.fromkeys(b.group for b in self.benchmarks if b.group))

    def locate(self, data_root: str | os.PathLike) -> tuple[dict[str, Path], list[Benchmark]]:
        """Found packs by benchmark name, and the benchmarks whose files are absent."""
        root = Path(data_root)
        if not root.is_dir():
            raise FacebenchError(f"{root}: data root is not a directory")
        found: dict[str, Path] = {}
        missing: list[Benchmark] = []
        for bench in self.benchmarks:
            path = bench.locate(root)
            if path is None:
                missing.append(bench)
            else:
                found[bench.name] = path
        return found, missing


def default_files(name: str) -> tuple[str, ...]:
    """Where a benchmark called ``name`` usually lives: an insightface pack, else a pair-list folder."""
    return (f"{name}.bin", f"{name}.xz", name)


def benchmark_from_mapping(entry: Mapping[str, Any], known: Mapping[str, Benchmark], where: str) -> Benchmark:
    """A benchmark from a TOML table; a known name inherits the built-in label and file names."""
    allowed = {"name", "label", "files", "description", "protocol", "group"}
    extra = sorted(set(entry) - allowed)
    if extra:
        raise ConfigError(f"{where}: unknown key '{extra[0]}' (known keys: {', '.join(sorted(allowed))})")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: every benchmark needs a non-empty 'name'")
    base = known.get(name)
    files = entry.get("files", list(base.files) if base else list(default_files(name)))
    if isinstance(files, str):
        files = [files]
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
        raise ConfigError(f"{where}: benchmark '{name}': 'files' must be a non-empty list of paths")
    label = entry.get("label", base.label if base else name)
    if not isinstance(label, str):
        raise ConfigError(f"{where}: benchmark '{name}': 'label' must be a string")
    description = entry.get("description", base.description if base else "")
    protocol = entry.get("protocol", base.protocol if base else "verification")
    group = entry.get("group", base.group if base else "")
    if not isinstance(protocol, str) or not isinstance(group, str):
        raise ConfigError(f"{where}: benchmark '{name}': 'protocol' and 'group' must be strings")
    return Benchmark(name=name, label=label, files=tuple(files), description=str(description), protocol=protocol,
                     group=group)


def suite_from_toml(path: str | os.PathLike, known: Mapping[str, Benchmark] | None = None) -> Suite:
    """A user suite::

        name = "mine"
        description = "LFW plus our in-house pairs"
        benchmarks = ["lfw", "cfp_fp"]          # built-in benchmarks by name, and/or
        [[benchmark]]                          # benchmarks of your own
        name = "office"
        label = "Office"
        files = ["office.bin", "office_pairs"]
    """
    data = read_toml(path)
    known = dict(known or {})
    allowed = {"name", "description", "benchmarks", "benchmark"}
    extra = sorted(set(data) - allowed)
    if extra:
        raise ConfigError(f"{path}: unknown key '{extra[0]}' (known keys: {', '.join(sorted(allowed))})")
    benches: list[Benchmark] = []
    names = data.get("benchmarks", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"{path}: 'benchmarks' must be a list of benchmark names")
    for name in names:
        if name not in known:
            raise ConfigError(f"{path}: unknown benchmark '{name}' (known: {', '.join(sorted(known)) or 'none'})")
        benches.append(known[name])
    tables = data.get("benchmark", [])
    if not isinstance(tables, list):
        raise ConfigError(f"{path}: 'benchmark' must be an array of tables ([[benchmark]])")
    for i, entry in enumerate(tables):
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{path}: benchmark {i + 1} is not a table")
        benches.append(benchmark_from_mapping(entry, known, f"{path}: benchmark {i + 1}"))
    if not benches:
        raise ConfigError(f"{path}: the suite lists no benchmarks")
    seen: set[str] = set()
    for bench in benches:
        if bench.name in seen:
            raise ConfigError(f"{path}: benchmark '{bench.name}' is listed twice")
        seen.add(bench.name)
    name = data.get("name", Path(path).stem)
    return Suite(name=str(name), benchmarks=tuple(benches), description=str(data.get("description", "")))


def registered_suites() -> list[Any]:
    """Specs of the evaluators that are suites."""
    from ..pluginmanager import registry

    return [spec for spec in registry("evaluator") if spec.extras.get("kind") == SUITE]


def known_benchmarks(specs: Iterable[Any] | None = None) -> dict[str, Benchmark]:
    """Every benchmark of every registered suite, by name (what a TOML suite may refer to)."""
    found: dict[str, Benchmark] = {}
    for spec in specs if specs is not None else registered_suites():
        for bench in spec.create().benchmarks:
            found.setdefault(bench.name, bench)
    return found


def get_suite(name_or_path: str | os.PathLike) -> Suite:
    """A registered suite by name, or a user suite from a ``.toml`` file."""
    from ..pluginmanager import registry

    text = os.fspath(name_or_path)
    if text.endswith(".toml") or os.sep in text:
        if not Path(text).is_file():
            raise FacebenchError(f"{text}: suite file not found")
        return suite_from_toml(text, known_benchmarks())
    evaluators = registry("evaluator")
    if text not in evaluators:  # name the suites only: analyses are not what --suite takes
        import difflib

        names = [s.name for s in registered_suites()]
        close = difflib.get_close_matches(text, names, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise FacebenchError(f"unknown suite '{text}' ({hint}suites: {', '.join(names)}; or a suite .toml file)")
    spec = evaluators.get(text)
    if spec.extras.get("kind") != SUITE:
        names = ", ".join(s.name for s in registered_suites())
        raise FacebenchError(f"evaluator '{text}' is not a verification suite (suites: {names})")
    suite = spec.create()
    if not isinstance(suite, Suite):
        raise FacebenchError(f"suite '{text}' from plugin '{spec.plugin}' did not build a Suite")
    return suite


#: The environment variable naming a folder of verification packs (as ``--data-root`` does).
DATA_ENV = "FACEBENCH_DATA"


def pack_places(data: str | os.PathLike, data_root: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """Where a pack named by ``--val`` is looked for, in order, each with its description: beside the
    training set (its folder and the folder above it; for a ``generate`` run or ``toyfaces`` world folder
    also that folder), the current directory, ``--data-root`` and ``$FACEBENCH_DATA``."""
    from ..data import resolve_dataset_path

    given = Path(data)
    inner = resolve_dataset_path(given)
    places = [("the training set's folder", inner if inner.is_dir() else inner.parent),
              ("the folder above it", inner.parent)]
    if inner != given:
        places.append(("the dataset's run folder", given))
    places.append(("the current directory", Path.cwd()))
    if data_root:
        places.append(("--data-root", Path(data_root).expanduser()))
    if os.environ.get(DATA_ENV):
        places.append((f"${DATA_ENV}", Path(os.environ[DATA_ENV]).expanduser()))
    seen: dict[Path, str] = {}
    for what, place in places:
        seen.setdefault(place.resolve(), what)
    return [(what, place) for place, what in seen.items()]


def _looked(places: list[tuple[str, Path]]) -> str:
    text = "; ".join(f"{what} ({place})" for what, place in places)
    if not os.environ.get(DATA_ENV):
        text += f"; --data-root DIR or ${DATA_ENV} adds a folder"
    return text


def resolve_pack(name_or_path: str, data: str, data_root: str | os.PathLike | None = None) -> Path:
    """A verification pack given as a path, or as a name (``toy_lfw``) looked up as ``<name>.bin`` (or a
    pair-list folder of that name) in the places :func:`pack_places` lists."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    filename = name_or_path if name_or_path.endswith(".bin") else f"{name_or_path}.bin"
    places = pack_places(data, data_root)
    for _, place in places:
        for candidate in (place / filename, place / name_or_path):
            if candidate.exists():
                return candidate
    raise FacebenchError(f"verification pack '{name_or_path}' not found: looked for {filename} and a folder "
                         f"{Path(name_or_path).name} in {_looked(places)}")


def resolve_validation(items: tuple[str, ...] | list[str], data: str,
                       data_root: str | os.PathLike | None = None) -> dict[str, Path]:
    """``--val`` values -> {benchmark name: pack path}. Each value is a pack (path or name) or the name of
    a verification suite from the evaluator registry (e.g. ``toy-five``), whose packs are looked up in the
    places :func:`pack_places` lists, the way ``facebench evaluate`` finds them under ``--data-root``."""
    from ..pluginmanager import registry

    evaluators = registry("evaluator")
    packs: dict[str, Path] = {}
    for item in items:
        if item in evaluators and evaluators.get(item).extras.get("kind") == SUITE:
            suite = get_suite(item)
            found: dict[str, Path] = {}
            places = pack_places(data, data_root)
            for _, place in places:
                if not place.is_dir():
                    continue
                located, _ = suite.locate(place)
                for name, path in located.items():
                    found.setdefault(name, path)
            absent = [b for b in suite.benchmarks if b.name not in found]
            if absent:
                what = (f"verification pack '{item}'" if [b.name for b in suite.benchmarks] == [item]
                        else f"suite '{item}': pack(s) {', '.join(b.files[0] for b in absent)}")
                raise FacebenchError(f"{what} not found: looked for {', '.join(b.files[0] for b in absent)} in "
                                     f"{_looked(places)}")
            packs.update(found)
            continue
        path = resolve_pack(item, data, data_root)
        name = path.name[:-4] if path.name.endswith(".bin") else path.name
        packs[name] = path
    return packs
