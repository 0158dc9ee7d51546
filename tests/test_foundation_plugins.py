"""The plugin system seen from a third party: entry points, listing, commands, name errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from facebench.cli import create_cli
from facebench.errors import DuplicateComponentError, UnknownComponentError
from facebench.pluginmanager import build_plugin_set, reset_plugins
from facebench.registry import Registry


def make_external_plugin(root: Path, dist: str = "facebench-hello", module: str = "fb_hello",
                         ep_name: str = "hello", backbone: str = "hellonet") -> Path:
    """An installed-looking third-party distribution outside the repository: a module + its .dist-info."""
    pkg = root / module
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(f'''
        """A third-party facebench plugin."""
        import click
        from facebench import hookimpl


        def build(**kw):
            """Hello network: a third-party backbone."""
            return ("hellonet-instance", kw)


        @hookimpl
        def register_backbones(register):
            register("{backbone}", build)


        @hookimpl
        def register_generators(register):
            register("{ep_name}-gen", "{module}:build", "A lazily imported generator")


        @hookimpl
        def register_commands(cli):
            @cli.command("hello")
            @click.argument("who", default="world")
            def hello(who):
                """Say hello from a plugin."""
                click.echo(f"hello {{who}} from {dist}")
    '''))
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[facebench]\n{ep_name} = {module}\n")
    return root


@pytest.fixture
def external_plugin(tmp_path, monkeypatch):
    root = make_external_plugin(tmp_path / "site")
    monkeypatch.syspath_prepend(str(root))
    reset_plugins()
    return root


def test_third_party_plugin_listed_in_json_and_its_command_runs(external_plugin):
    runner = CliRunner()
    result = runner.invoke(create_cli(), ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    stable = {"kind", "name", "plugin", "version", "description"}
    # an unavailable component (an optional extra not installed) adds available, missing and install
    assert all(set(row) == stable | ({"available", "missing", "install"} if "available" in row else set())
               for row in rows)
    mine = {(r["kind"], r["name"]): r for r in rows if r["plugin"] == "hello"}
    assert mine[("backbone", "hellonet")] == {
        "kind": "backbone", "name": "hellonet", "plugin": "hello", "version": "1.2.3",
        "description": "Hello network: a third-party backbone.",
    }
    assert mine[("generator", "hello-gen")]["description"] == "A lazily imported generator"

    result = runner.invoke(create_cli(), ["hello", "tester"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "hello tester from facebench-hello"


def test_plugins_kind_filter_and_public_api(external_plugin):
    import facebench

    rows = json.loads(CliRunner().invoke(create_cli(), ["plugins", "--kind", "generator", "--json"]).output)
    assert {r["kind"] for r in rows} == {"generator"}
    assert facebench.create_backbone("hellonet", depth=3) == ("hellonet-instance", {"depth": 3})
    assert facebench.load_generator("hello-gen", weights="w.pth") == ("hellonet-instance", {"weights": "w.pth"})


def test_third_party_plugin_seen_by_the_installed_console_script(tmp_path):
    root = make_external_plugin(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "facebench", "plugins", "--json"], env=env,
                         capture_output=True, text=True, check=True)
    assert {"kind": "backbone", "name": "hellonet", "plugin": "hello", "version": "1.2.3",
            "description": "Hello network: a third-party backbone."} in json.loads(out.stdout)


def test_env_filters_select_and_block_plugins(external_plugin, monkeypatch):
    monkeypatch.setenv("FACEBENCH_DISABLE_PLUGINS", "hello")
    assert "hellonet" not in build_plugin_set().registry("backbone")
    monkeypatch.delenv("FACEBENCH_DISABLE_PLUGINS")
    monkeypatch.setenv("FACEBENCH_PLUGINS", "hello")
    plugin_set = build_plugin_set()
    assert set(plugin_set.infos) == {"hello"}
    assert plugin_set.registry("backbone").names() == ["hellonet"]


def test_duplicate_name_from_two_plugins_names_both(tmp_path, monkeypatch):
    make_external_plugin(tmp_path / "a", dist="fb-one", module="fb_one", ep_name="one", backbone="twin")
    make_external_plugin(tmp_path / "b", dist="fb-two", module="fb_two", ep_name="two", backbone="twin")
    monkeypatch.syspath_prepend(str(tmp_path / "a"))
    monkeypatch.syspath_prepend(str(tmp_path / "b"))
    monkeypatch.setenv("FACEBENCH_PLUGINS", "one,two")
    reset_plugins()
    with pytest.raises(DuplicateComponentError) as err:
        build_plugin_set().registry("backbone")
    message = str(err.value)
    assert "backbone 'twin'" in message and "'one'" in message and "'two'" in message
    result = CliRunner().invoke(create_cli(), ["plugins"])
    assert result.exit_code == 2
    assert result.output.startswith("error: backbone 'twin' is registered by two plugins")


def test_unknown_name_suggests_the_closest_and_lists_available():
    reg = Registry("backbone")
    for name in ("iresnet50", "iresnet100", "vit_s"):
        reg.add(name, lambda: None, "x")
    with pytest.raises(UnknownComponentError) as err:
        reg.get("iresnt50")
    assert str(err.value) == (
        "unknown backbone 'iresnt50'; did you mean 'iresnet50'? available: iresnet100, iresnet50, vit_s"
    )
    with pytest.raises(UnknownComponentError, match=r"^unknown backbone 'zzz' available: iresnet100"):
        reg.get("zzz")


def test_lazy_factory_resolves_module_attribute():
    reg = Registry("head")
    spec = reg.add("joiner", "os.path:join", "joins paths")
    assert spec.create("a", "b") == os.path.join("a", "b")


def test_two_distributions_with_the_same_plugin_name_are_refused(tmp_path):
    make_external_plugin(tmp_path / "a", dist="fb-one", module="fb_one", ep_name="same", backbone="b1")
    make_external_plugin(tmp_path / "b", dist="fb-two", module="fb_two", ep_name="same", backbone="b2")
    path = os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b"), os.environ.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-m", "facebench", "plugins"], env={**os.environ, "PYTHONPATH": path},
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr == "error: two plugins are named 'same': fb_one and fb_two; uninstall one or block it " \
        "with FACEBENCH_DISABLE_PLUGINS\n"
