"""Components built on an optional extra: listed as unavailable with the install command while a module
is missing, usable once it is there; nothing is imported to find out."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from facebench.cli import create_cli
from facebench.errors import UnavailableComponentError
from facebench.registry import Registry, missing_modules

HINT = 'pip install -e ".[arc2face]"'
ARC2FACE = {"arc2face", "arc2face_tiny"}


def test_registry_marks_a_component_with_a_missing_module_unavailable():
    reg = Registry("generator")
    # the factory names a module that does not exist either: using the component must fail on the
    # missing requirement, before anything is imported
    reg.add("needs-it", "no_such_pkg_facebench_test.gen:build", "d", plugin="p", version="1",
            requires=("no_such_pkg_facebench_test", "json"), install_hint="pip install needs-it")
    reg.add("plain", lambda **kw: "built", "d", plugin="p", version="1", requires="json")
    spec = reg.get("needs-it")
    assert spec.missing() == ["no_such_pkg_facebench_test"]
    assert spec.as_row() == {"kind": "generator", "name": "needs-it", "plugin": "p", "version": "1",
                             "description": "d", "available": False, "missing": ["no_such_pkg_facebench_test"],
                             "install": "pip install needs-it"}
    assert set(reg.get("plain").as_row()) == {"kind", "name", "plugin", "version", "description"}
    assert [s.name for s in reg.unavailable()] == ["needs-it"]
    with pytest.raises(UnavailableComponentError) as err:
        reg.create("needs-it")
    assert str(err.value) == ("generator 'needs-it' is unavailable: missing optional dependency "
                              "no_such_pkg_facebench_test; install with: pip install needs-it")
    assert reg.create("plain") == "built"


@pytest.fixture
def no_diffusers(monkeypatch):
    """This process behaves as if diffusers were not installed (for find_spec, which the registry asks);
    returns what the arc2face generators then miss (transformers too, where it is really absent)."""
    real = importlib.util.find_spec
    missing = ["diffusers", *missing_modules(("transformers", "safetensors"))]

    def find_spec(name, *args, **kwargs):
        return None if name.split(".")[0] == "diffusers" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    return missing


def test_without_the_extra_plugins_and_doctor_name_the_install_command(no_diffusers):
    runner = CliRunner()
    names = ", ".join(no_diffusers)
    rows = json.loads(runner.invoke(create_cli(), ["plugins", "--kind", "generator", "--json"]).output)
    mine = {r["name"]: r for r in rows if r["name"] in ARC2FACE}
    assert set(mine) == ARC2FACE
    for row in mine.values():
        assert row["available"] is False and row["missing"] == no_diffusers and row["install"] == HINT
    # every other component keeps exactly the five stable keys
    assert all(set(r) == {"kind", "name", "plugin", "version", "description"} for r in rows
               if r["name"] not in ARC2FACE)
    text = runner.invoke(create_cli(), ["plugins", "--kind", "generator"]).output
    assert f"generator 'arc2face' is unavailable: missing {names}; install with: {HINT}" in " ".join(text.split())
    report = json.loads(runner.invoke(create_cli(), ["doctor", "--json"]).output)
    assert {u["name"] for u in report["unavailable"]} == ARC2FACE
    assert all(u["install"] == HINT for u in report["unavailable"])
    doctor_text = " ".join(runner.invoke(create_cli(), ["doctor"]).output.split())
    assert f"generator 'arc2face_tiny' is unavailable: missing {names}; install with: {HINT}" in doctor_text
    res = runner.invoke(create_cli(), ["arc2face", "make-tiny", "never-written"])
    assert res.exit_code == 2 and not os.path.exists("never-written")
    plural = "ies" if len(no_diffusers) > 1 else "y"
    assert res.output.strip() == ("error: generator 'arc2face_tiny' is unavailable: missing optional "
                                  f"dependenc{plural} {names}; install with: {HINT}")


BLOCKER = textwrap.dedent('''
    import sys

    class _Blocked:
        """Imports of these packages fail, as if they were not installed."""

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("diffusers", "transformers"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _Blocked())
''')

PROBE = textwrap.dedent('''
    import sys
    from facebench.cli import create_cli

    try:
        create_cli().main(sys.argv[1:])
    except SystemExit:
        pass
    print("IMPORTED", sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules))
''')


def _run(args, env):
    return subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, timeout=120)


def test_a_process_without_the_extra_lists_it_and_help_imports_no_torch(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "FACEBENCH_QUIET": "1"}
    helped = _run(["--help"], env)
    assert "arc2face" in helped.stdout and "IMPORTED []" in helped.stdout, helped.stderr
    listed = _run(["plugins", "--kind", "generator", "--json"], env)
    rows = json.loads(listed.stdout.split("IMPORTED")[0])
    mine = {r["name"]: r for r in rows if r["name"] in ARC2FACE}
    assert {n: (r["available"], r["missing"], r["install"]) for n, r in mine.items()} == {
        n: (False, ["diffusers", "transformers"], HINT) for n in ARC2FACE}
    assert "IMPORTED []" in listed.stdout
    made = _run(["arc2face", "make-tiny", str(tmp_path / "tiny")], env)
    assert ("error: generator 'arc2face_tiny' is unavailable: missing optional dependencies diffusers, "
            f"transformers; install with: {HINT}") in made.stderr
    assert not (tmp_path / "tiny").exists()


def test_help_and_plugins_import_no_torch_with_the_extra_installed():
    env = {**os.environ, "FACEBENCH_QUIET": "1"}
    assert "IMPORTED []" in _run(["--help"], env).stdout
    listed = _run(["plugins", "--json"], env)
    assert "IMPORTED []" in listed.stdout
    if not missing_modules(("diffusers", "transformers")):
        rows = json.loads(listed.stdout.split("IMPORTED")[0])
        assert {r["name"] for r in rows if r["name"] in ARC2FACE and "available" not in r} == ARC2FACE


def test_model_directories_are_weights_only_for_generators_that_declare_them(tmp_path, monkeypatch):
    from facebench.errors import FacebenchError
    from facebench.weights import resolve_weights

    model = tmp_path / "weights" / "arc2face-model"
    model.mkdir(parents=True)
    monkeypatch.setenv("FACEBENCH_WEIGHTS", str(tmp_path / "weights"))
    assert resolve_weights(model, allow_dir=True) == model
    assert resolve_weights("arc2face-model", allow_dir=True) == model  # found in the weights directory
    with pytest.raises(FacebenchError, match="is a directory, expected a weights file"):
        resolve_weights(model)
