"""benchmarks/paper/*.toml: every config loads, its GPU hours add up, the README lists it, and every
option it passes to an installed command is an option of that command."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from facebench.cli import create_cli
from facebench.experiments import find_command, load_experiment, resolve_steps

PAPER = Path(__file__).resolve().parents[1] / "benchmarks" / "paper"
CONFIGS = sorted(PAPER.glob("*.toml"))


def test_every_paper_table_has_a_config():
    tables = {load_experiment(p).experiment.table for p in CONFIGS}
    assert tables == {"1", "2", "4", "5", "7", "8", "9"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_resolves_and_gpu_hours_add_up(path, tmp_path):
    cfg = load_experiment(path)
    steps = resolve_steps(cfg, tmp_path)
    assert all("${" not in a for s in steps for a in s.argv)
    assert all(s.outputs for s in steps), "every step declares the outputs that prove it finished"
    assert cfg.experiment.gpu_hours == pytest.approx(sum(s.gpu_hours for s in steps), abs=0.06)
    assert steps[-1].argv[0] == "report"
    readme = (PAPER / "README.md").read_text()
    row = re.search(rf"\| \[`{re.escape(path.name)}`\]\({re.escape(path.name)}\) \| (\w+) \| (\d+) \| ([\d.]+) \|", readme)
    assert row, f"{path.name} missing from the README table"
    assert row.group(1) == cfg.experiment.table and int(row.group(2)) == len(steps)
    assert float(row.group(3)) == pytest.approx(cfg.experiment.gpu_hours)


def _options(command: click.Command) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_options_exist_on_installed_commands(path, tmp_path):
    cli = create_cli()
    checked = 0
    for step in resolve_steps(load_experiment(path), tmp_path):
        command = find_command(cli, step.argv)
        if command is None:  # provided by a plugin that is not installed here
            continue
        unknown = [a for a in step.argv if a.startswith("--") and a not in _options(command)]
        assert not unknown, f"step '{step.name}': {command.name} has no option(s) {unknown}"
        checked += 1
    assert checked >= 1  # at least the report step
