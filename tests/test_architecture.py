"""The layer rule of ARCHITECTURE.md, checked on every import statement of ``facebench/`` (module level and
inside functions alike): imports point down the layers only, siblings of a layer do not import each
other, the core never names a built-in plugin, and ``facebench --help`` imports no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "facebench"

#: Top to bottom, each layer a list of groups of units (``facebench.<unit>``). A module may import from
#: its own group and from any group of a lower layer; groups of one layer are siblings and may not import
#: each other.
LAYERS: list[list[set[str]]] = [
    [{"cli", "__main__"}],
    [{"fr"}, {"generation"}, {"report"}],
    [{"evaluation"}],
    [{"training"}],
    [{"data"}],
    [{"runs", "shards", "experiments", "rerun"}],
    [{"runtime"}, {"metrics"}],
    [{"errors", "config", "registry", "pluginmanager", "hookspecs", "console", "atomic", "safe_load", "weights",
      "provenance", "__init__"}],
]


def unit_of(module: str) -> str:
    """``facebench.generation.job`` -> ``generation``; ``facebench`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def place_of(unit: str) -> tuple[int, int]:
    """(layer, group) of a unit."""
    for depth, groups in enumerate(LAYERS):
        for index, group in enumerate(groups):
            if unit in group:
                return depth, index
    raise AssertionError(f"facebench.{unit} is in no layer of tests/test_architecture.py: place it")


def module_name(path: Path, root: Path = PACKAGE) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] if len(parts) > 1 else parts[:1]
    return ".".join(parts)


def is_module(name: str, root: Path) -> bool:
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    return (root / rel).with_suffix(".py").is_file() or (root / rel / "__init__.py").is_file()


def imports_of(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in the file: relative imports resolved, and
    ``from pkg import name`` counted as ``pkg.name`` when that is a module of its own."""
    module = module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub if target.startswith("facebench") and is_module(sub, root)
                              else target))
    return found


def violations(root: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        source = module_name(path, root)
        here = unit_of(source)
        for line, target in imports_of(path, root):
            where = f"{path.relative_to(root.parent)}:{line}"
            if target.split(".")[0] == "facebench_plugins":
                problems.append(f"{where}: the core imports the built-in plugin module {target}")
                continue
            if target.split(".")[0] != "facebench":
                continue
            (src_layer, src_group), (dst_layer, dst_group) = place_of(here), place_of(unit_of(target))
            if dst_layer < src_layer:
                problems.append(f"{where}: facebench.{here} imports {target} from a higher layer")
            elif dst_layer == src_layer and dst_group != src_group:
                problems.append(f"{where}: facebench.{here} imports its sibling {target}")
    return problems


def test_imports_follow_the_layers():
    assert violations() == []


def test_the_check_catches_a_forbidden_import(tmp_path):
    """The rule is not vacuous: an upward import, a sibling import and a plugin import are each caught."""
    import shutil

    copy = tmp_path / "facebench"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "data" / "bad_up.py").write_text("from ..evaluation import embed\n")
    (copy / "fr" / "bad_side.py").write_text("def f():\n    from facebench.generation import job\n")
    (copy / "metrics" / "bad_plugin.py").write_text("import facebench_plugins.vec2face\n")
    found = violations(copy)
    assert any("data/bad_up.py:1: facebench.data imports facebench.evaluation.embed from a higher layer" in p
               for p in found)
    assert any("fr/bad_side.py:2: facebench.fr imports its sibling facebench.generation.job" in p for p in found)
    assert any("metrics/bad_plugin.py:1: the core imports the built-in plugin module facebench_plugins.vec2face"
               in p for p in found)
    assert len(found) == 3


@pytest.mark.parametrize("argv", [["--help"], ["plugins"], ["generate", "--help"]])
def test_help_and_plugins_import_no_torch(argv):
    code = ("import sys\nfrom facebench.cli import main\nsys.argv = ['facebench', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert res.stderr.strip().splitlines()[-1] == "NO-TORCH", res.stderr
