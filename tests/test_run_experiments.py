"""facebench run: steps run in order through the CLI, finished steps are skipped, a failed step resumes."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from facebench import hookimpl
from facebench.cli import create_cli
from facebench.pluginmanager import build_plugin_set

CALLS: list[str] = []


class StepPlugin:
    """Adds `facebench touch PATH [--fail-once MARKER]`: writes PATH; fails the first time MARKER is absent."""

    @hookimpl
    def register_commands(self, cli):
        @cli.command("touch", epilog="Example: facebench touch out.txt")
        @click.argument("path")
        @click.option("--text", default="x")
        @click.option("--fail-once", default=None)
        @click.option("--skip-write", is_flag=True)
        def touch(path, text, fail_once, skip_write):
            """Write a file (test helper)."""
            from facebench.errors import FacebenchError

            CALLS.append(path)
            if fail_once and not Path(fail_once).exists():
                Path(fail_once).write_text("failed once")
                raise FacebenchError(f"{path}: simulated crash")
            if not skip_write:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_text(text)


def _cli():
    return create_cli(build_plugin_set(extra_plugins={"steps": StepPlugin()}))


def _write(tmp_path: Path, steps: str, vars_: str = "") -> Path:
    cfg = tmp_path / "exp.toml"
    cfg.write_text(f'[experiment]\nname = "exp"\ntitle = "a test"\ngpu_hours = 2.5\n\n[vars]\nword = "hello"\n{vars_}\n{steps}')
    return cfg


STEPS = """
[[steps]]
name = "first"
command = ["touch", "${out}/a.txt", "--text", "${word}"]
outputs = ["${out}/a.txt"]
gpu_hours = 1.0

[[steps]]
name = "second"
command = ["touch", "${out}/b.txt", "--fail-once", "${marker}"]
outputs = ["${out}/b.txt"]
needs = ["first"]

[[steps]]
name = "third"
command = ["touch", "${out}/c.txt"]
outputs = ["${out}/c.txt"]
"""


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()


def test_runs_in_order_then_resumes_after_a_crash(tmp_path):
    out = tmp_path / "run"
    cfg = _write(tmp_path, STEPS, f'marker = "{tmp_path}/crashed"')
    runner = CliRunner()
    r = runner.invoke(_cli(), ["run", str(cfg), "--out", str(out)])
    assert r.exit_code == 2 and "simulated crash" in r.output
    assert CALLS == [f"{out}/a.txt", f"{out}/b.txt"]
    assert (out / "a.txt").read_text() == "hello" and not (out / "b.txt").exists()
    assert list(json.loads((out / "steps.json").read_text())["done"]) == ["first"]
    CALLS.clear()
    r = runner.invoke(_cli(), ["run", str(cfg), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert CALLS == [f"{out}/b.txt", f"{out}/c.txt"]  # the finished first step was not run again
    assert r.output.strip().endswith(f"{out}: 2 step(s) ran, 1 already done")
    CALLS.clear()
    r = runner.invoke(_cli(), ["run", str(cfg), "--out", str(out)])
    assert r.exit_code == 0 and CALLS == []
    assert (out / "config.toml").is_file() and json.loads((out / "provenance.json").read_text())["experiment"] == "exp"


def test_a_deleted_output_is_made_again(tmp_path):
    out = tmp_path / "run"
    cfg = _write(tmp_path, STEPS, f'marker = "{tmp_path}/m"')
    (tmp_path / "m").write_text("no crash")
    assert CliRunner().invoke(_cli(), ["run", str(cfg), "--out", str(out)]).exit_code == 0
    (out / "c.txt").unlink()
    CALLS.clear()
    assert CliRunner().invoke(_cli(), ["run", str(cfg), "--out", str(out)]).exit_code == 0
    assert CALLS == [f"{out}/c.txt"]


def test_set_overrides_vars_and_changed_config_refuses_to_resume(tmp_path):
    out = tmp_path / "run"
    cfg = _write(tmp_path, STEPS, f'marker = "{tmp_path}/m"')
    (tmp_path / "m").write_text("no crash")
    r = CliRunner().invoke(_cli(), ["run", str(cfg), "--out", str(out), "--set", "vars.word=bye", "--step", "first"])
    assert r.exit_code == 0, r.output
    assert (out / "a.txt").read_text() == "bye" and not (out / "b.txt").exists()
    r = CliRunner().invoke(_cli(), ["run", str(cfg), "--out", str(out)])
    assert r.exit_code == 2 and (f"error: {out}: cannot resume: parameters differ from the interrupted run "
                                 "(steps.first.command); pass --overwrite") in " ".join(r.output.split())
    # keeping the changed value, the later steps run and the first is reused
    CALLS.clear()
    r = CliRunner().invoke(_cli(), ["run", str(cfg), "--out", str(out), "--set", "vars.word=bye"])
    assert r.exit_code == 0, r.output
    assert CALLS == [f"{out}/b.txt", f"{out}/c.txt"]


def test_config_errors_are_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run folder would be runs/exp here
    cli = _cli()
    bad_var = _write(tmp_path, '[[steps]]\nname = "s"\ncommand = ["touch", "${nope}"]\n')
    r = CliRunner().invoke(cli, ["run", str(bad_var)])
    assert r.exit_code == 2 and "step 's': unknown variable ${nope}" in r.output
    bad_cmd = _write(tmp_path, '[[steps]]\nname = "s"\ncommand = ["teleport", "x"]\n')
    r = CliRunner().invoke(cli, ["run", str(bad_cmd)])
    assert r.exit_code == 2 and "step 's': 'facebench teleport'" in r.output
    bad_need = _write(tmp_path, '[[steps]]\nname = "s"\ncommand = ["touch", "x"]\nneeds = ["t"]\n')
    r = CliRunner().invoke(cli, ["run", str(bad_need)])
    assert r.exit_code == 2 and "step 's' needs 't', which is not an earlier step" in r.output
    typo = _write(tmp_path, '[[steps]]\nname = "s"\ncommand = ["touch", "x"]\noutput = ["x"]\n')
    r = CliRunner().invoke(cli, ["run", str(typo)])
    assert r.exit_code == 2 and "unknown config key 'steps[0].output'" in r.output
    assert not (tmp_path / "runs").exists()  # a refused experiment leaves no half-made run folder
    out = tmp_path / "typo-run"
    r = CliRunner().invoke(cli, ["run", str(bad_need), "--out", str(out), "--set", "vars.wrod=bye"])
    assert r.exit_code == 2 and (f"--set vars.wrod=bye: {bad_need} has no variable 'wrod' (did you mean "
                                 "'vars.word'? variables: word)") in r.output
    assert not out.exists()  # a mistyped variable never starts the run with the value it meant to change


def test_missing_declared_output_is_an_error(tmp_path):
    cfg = _write(tmp_path, '[[steps]]\nname = "s"\ncommand = ["touch", "${out}/x", "--skip-write"]\noutputs = ["${out}/x"]\n')
    r = CliRunner().invoke(_cli(), ["run", str(cfg), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and f"{tmp_path / 'o' / 'x'}: step 's' finished but did not write" in r.output


def test_dry_run_lists_steps_and_gpu_hours(tmp_path):
    cfg = _write(tmp_path, STEPS, 'marker = "m"')
    r = CliRunner().invoke(_cli(), ["run", str(cfg), "--out", str(tmp_path / "o"), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "3 steps, 1 GPU hours" in r.output
    assert not (tmp_path / "o").exists()


def test_skip_unavailable_reports_missing_and_blocked_steps(tmp_path):
    from facebench.experiments import load_experiment, run_experiment

    cfg_path = _write(tmp_path, """
[[steps]]
name = "gen"
command = ["generate-something", "--out", "${out}/g"]
outputs = ["${out}/g"]

[[steps]]
name = "use"
command = ["touch", "${out}/u"]
needs = ["gen"]

[[steps]]
name = "free"
command = ["touch", "${out}/f"]
outputs = ["${out}/f"]
""")
    outcomes = run_experiment(_cli(), load_experiment(cfg_path), tmp_path / "o", skip_unavailable=True)
    assert [(o.name, o.status) for o in outcomes] == [("gen", "unavailable"), ("use", "blocked"), ("free", "ran")]
    assert (tmp_path / "o" / "f").exists() and not (tmp_path / "o" / "u").exists()
