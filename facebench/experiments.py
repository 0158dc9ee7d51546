"""Experiments: a TOML list of facebench commands run in order, resumable step by step.

An experiment config (``benchmarks/paper/*.toml``, the demo's config) names its steps as the command
lines a user would type, so every step runs through the same registered commands and components as
by hand. ``${name}`` in a step is replaced by a ``[vars]`` value (``--set vars.name=...``) or by
``${out}``, the experiment's run directory. A step is done when it finished in an earlier run (recorded
in ``steps.json``, a :class:`~facebench.shards.ShardManifest`, with its command line) and its declared
outputs exist; done steps are skipped, so a rerun after a kill continues where it stopped (a step whose
outputs exist but which is not recorded runs: its own contract keeps what it finished).

The rerun contract (:mod:`facebench.rerun`) applies step by step, since an experiment's output is its
steps' outputs: every step done with the same command line is a no-op (the whole experiment done: nothing
is written at all); a step whose command line changed since it ran is refused, naming it
(``steps.NAME.command``), and a step not run yet may change freely. With ``overwrite`` the first changed
step and every step after it run again with ``--overwrite``, so each replaces its output only where its
own parameters (or inputs) changed.
"""

from __future__ import annotations

import os
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from .config import load_config, plain_name
from .console import console
from .errors import ConfigError, DataError, FacebenchError
from .safe_load import expect
from .shards import ShardManifest

STEPS_MANIFEST = "steps.json"


@dataclass
class StepConfig:
    """One command line (without the leading ``facebench``) and the files that prove it finished."""

    name: str
    command: list[str]
    outputs: list[str] = field(default_factory=list)
    needs: list[str] = field(default_factory=list)
    gpu_hours: float = 0.0
    description: str = ""


@dataclass
class ExperimentInfo:
    name: str
    title: str = ""
    table: str = ""
    description: str = ""
    gpu: str = ""
    gpu_hours: float = 0.0
    published_avg: float | None = None
    out: str = ""


@dataclass
class ExperimentConfig:
    experiment: ExperimentInfo
    vars: dict[str, Any] = field(default_factory=dict)
    steps: list[StepConfig] = field(default_factory=list)


@dataclass
class ResolvedStep:
    name: str
    argv: list[str]
    outputs: list[Path]
    needs: list[str]
    gpu_hours: float
    description: str


@dataclass
class StepOutcome:
    name: str
    status: str  # "ran", "skipped" (done before), "unavailable" (command missing), "blocked" (a need not done)
    seconds: float = 0.0
    detail: str = ""


def _check_vars(path: str | os.PathLike, overrides: Sequence[str]) -> None:
    """``--set vars.NAME=...`` must name a variable of the experiment: a typo would be ignored (no step
    uses it) and the run would go ahead with the value the user meant to change."""
    import difflib

    from .config import parse_override, read_toml

    declared = read_toml(path).get("vars") or {}
    if not isinstance(declared, dict):
        return  # load_config names the key ('vars' expects a table)
    for text in overrides:
        keys, _ = parse_override(text)
        if keys[0] != "vars" or len(keys) != 2 or keys[1] in declared:
            continue
        close = difflib.get_close_matches(keys[1], list(declared), n=1)
        hint = f"did you mean 'vars.{close[0]}'? " if close else ""
        raise ConfigError(f"--set {text}: {path} has no variable '{keys[1]}' ({hint}variables: "
                          f"{', '.join(declared) or 'none'})")


def load_experiment(path: str | os.PathLike, overrides: Sequence[str] = ()) -> ExperimentConfig:
    _check_vars(path, overrides)
    cfg = load_config(ExperimentConfig, path, overrides)
    if not cfg.steps:
        raise ConfigError(f"{path}: an experiment needs at least one [[steps]] table")
    names = [s.name for s in cfg.steps]
    for step in cfg.steps:
        if names.count(step.name) > 1:
            raise ConfigError(f"{path}: two steps are named '{step.name}'")
        if not step.command:
            raise ConfigError(f"{path}: step '{step.name}' has an empty command")
        for need in step.needs:
            if need not in names[: names.index(step.name)]:
                raise ConfigError(f"{path}: step '{step.name}' needs '{need}', which is not an earlier step")
    return cfg


def default_out(cfg: ExperimentConfig) -> Path:
    """``experiment.out``, else ``runs/<experiment.name>`` (a plain name: it must stay under ``runs/``)."""
    if cfg.experiment.out:
        return Path(cfg.experiment.out)
    return Path("runs") / plain_name(cfg.experiment.name, "experiment.name")


def _substitute(text: str, values: dict[str, str], where: str) -> str:
    try:
        return string.Template(text).substitute(values)
    except KeyError as exc:
        known = ", ".join(sorted(values))
        raise ConfigError(f"{where}: unknown variable ${{{exc.args[0]}}} (known: {known})") from None
    except ValueError as exc:
        raise ConfigError(f"{where}: bad $ placeholder in '{text}' ({exc})") from None


def resolve_steps(cfg: ExperimentConfig, out: Path) -> list[ResolvedStep]:
    """Steps with every ``${var}`` replaced; vars may use ``${out}`` and earlier vars."""
    values: dict[str, str] = {"out": str(out)}
    for key, raw in cfg.vars.items():
        values[key] = _substitute(str(raw), values, f"vars.{key}")
    resolved = []
    for step in cfg.steps:
        where = f"step '{step.name}'"
        argv = [_substitute(str(a), values, where) for a in step.command]
        outputs = [Path(os.path.expanduser(_substitute(o, values, where))) for o in step.outputs]
        resolved.append(ResolvedStep(step.name, argv, outputs, list(step.needs), step.gpu_hours, step.description))
    return resolved


def find_command(cli: click.Group, argv: Sequence[str]) -> click.Command | None:
    """The (sub)command ``argv`` names in ``cli``, following groups; None when it is not registered."""
    command: click.Command = cli
    ctx = click.Context(cli, info_name="facebench")
    for token in argv:
        if not isinstance(command, click.Group):
            return command
        if token.startswith("-"):
            return command
        sub = command.get_command(ctx, token)
        if sub is None:
            return None
        command = sub
    return command if command is not cli else None


def invoke(cli: click.Group, argv: Sequence[str]) -> None:
    """Run ``facebench ARGV`` in this process; user errors propagate as they would from the shell."""
    try:
        with cli.make_context("facebench", list(argv)) as ctx:
            cli.invoke(ctx)
    except click.exceptions.Exit as exc:
        if exc.exit_code:
            raise FacebenchError(f"'facebench {' '.join(argv)}' exited with code {exc.exit_code}") from None
    except click.ClickException as exc:
        raise FacebenchError(f"'facebench {' '.join(argv[:2])} ...': {exc.format_message()}") from None


def _outputs_present(step: ResolvedStep) -> bool:
    return all(p.exists() for p in step.outputs)


def _read_steps(out: Path, params: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    """What ``steps.json`` records as done (read strictly, nothing written): ``{}`` when there is none, or
    when it is another experiment's and ``overwrite`` (else that is refused)."""
    from .rerun import refusal
    from .shards import changed_keys, read_manifest

    path = out / STEPS_MANIFEST
    if not path.is_file():
        return {}
    saved = read_manifest(path)
    if saved.get("params") != params:
        if overwrite:
            return {}
        raise refusal(path, changed_keys(saved.get("params") or {}, params), finished=False)
    return saved["done"]


def _recorded_argv(path: Path, done: dict[str, Any], name: str) -> Any:
    """What ``steps.json`` records of a finished step: an object whose ``argv`` (the command line it ran
    with) is a list of strings; anything else is one error naming the file."""
    recorded = done.get(name)
    if isinstance(recorded, dict) and recorded.get("argv") is not None:
        argv = expect(path, recorded["argv"], list, f"done.{name}.argv")
        if not all(isinstance(a, str) for a in argv):
            raise DataError(path, f"done.{name}.argv must be a list of strings")
    elif recorded is not None and not isinstance(recorded, dict | bool):
        expect(path, recorded, dict, f"done.{name}")
    return recorded


def _with_overwrite(cli: click.Group, argv: list[str]) -> list[str]:
    """``argv`` with ``--overwrite`` added when its command takes it (every command that writes does)."""
    command = find_command(cli, argv)
    takes = command is not None and any("--overwrite" in getattr(p, "opts", ()) for p in command.params)
    return [*argv, "--overwrite"] if takes and "--overwrite" not in argv else list(argv)


def run_experiment(
    cli: click.Group,
    cfg: ExperimentConfig,
    out: Path,
    *,
    skip_unavailable: bool = False,
    only: Sequence[str] = (),
    overwrite: bool = False,
    runner: Callable[[click.Group, Sequence[str]], None] = invoke,
) -> list[StepOutcome]:
    """Execute the steps not done yet, in order (see the module docstring for reruns and ``overwrite``).

    With ``skip_unavailable`` a step whose command no installed plugin provides is reported and skipped
    (and so is every step that needs it) instead of stopping the run before it starts; the demo uses
    this to do everything the installed components allow. When every step (of ``only``, if given) is
    done with its command line, nothing is run or written: every outcome is "skipped".
    """
    from .rerun import refusal

    steps = resolve_steps(cfg, out)
    missing = [s for s in steps if find_command(cli, s.argv) is None]
    if missing and not skip_unavailable:
        listed = "; ".join(f"step '{s.name}': 'facebench {s.argv[0]}'" for s in missing)
        raise ConfigError(f"unknown command(s) in the experiment: {listed} (is the plugin that provides it installed?)")
    unknown_only = [n for n in only if n not in {s.name for s in steps}]
    if unknown_only:
        raise ConfigError(f"unknown step(s) {', '.join(unknown_only)}; steps: {', '.join(s.name for s in steps)}")
    from .runs import Run

    # the record of an earlier run is read (and checked) before anything of this one is written
    params = {"experiment": cfg.experiment.name}
    done_before = _read_steps(out, params, overwrite)
    recorded = {s.name: _recorded_argv(out / STEPS_MANIFEST, done_before, s.name) for s in steps}
    changed = [s for s in steps if isinstance(recorded[s.name], dict)
               and recorded[s.name].get("argv") not in (None, s.argv)]
    wanted = [s for s in steps if not only or s.name in only]
    finished = all(recorded[s.name] is not None and _outputs_present(s) and s not in changed for s in wanted)
    if changed and not overwrite:
        raise refusal(out, [f"steps.{s.name}.command" for s in changed], what="experiment", finished=finished)
    if finished and wanted:
        for i, step in enumerate(steps, 1):
            if step in wanted:
                console.print(f"[{i}/{len(steps)}] {step.name}: [green]done before[/], reusing "
                              f"{', '.join(map(str, step.outputs)) or 'it'}")
        return [StepOutcome(s.name, "skipped", detail="outputs already complete") for s in wanted]
    # only now that every step resolved: a config error leaves no half-made run folder
    out.mkdir(parents=True, exist_ok=True)
    manifest = ShardManifest(out / STEPS_MANIFEST, params, overwrite=overwrite)
    Run.start(out, config=cfg, extra={"experiment": cfg.experiment.name})
    outcomes: list[StepOutcome] = []
    done: set[str] = set()
    missing_names = {s.name for s in missing}
    # --overwrite: from the first step whose command line changed, every step runs (with --overwrite)
    again_from = min((steps.index(s) for s in changed), default=len(steps)) if overwrite else len(steps)
    for i, step in enumerate(steps, 1):
        head = f"[{i}/{len(steps)}] {step.name}"
        record = recorded[step.name] if step.name in manifest.done else None
        again = i - 1 >= again_from
        if only and step.name not in only:
            if record is not None and _outputs_present(step) and step not in changed:
                done.add(step.name)
            continue
        if step.name in missing_names:
            outcomes.append(StepOutcome(step.name, "unavailable", detail=f"no command 'facebench {step.argv[0]}'"))
            console.print(f"{head}: [yellow]skipped[/], command 'facebench {step.argv[0]}' is not installed")
            continue
        blocked = [n for n in step.needs if n not in done]
        if blocked:
            outcomes.append(StepOutcome(step.name, "blocked", detail=f"needs {', '.join(blocked)}"))
            console.print(f"{head}: [yellow]skipped[/], needs {', '.join(blocked)}")
            continue
        # a step is done when steps.json records it and its outputs are there; outputs without a record (a
        # kill before it was recorded, or made by hand) are handed to the step itself, whose rerun contract
        # keeps a finished output and finishes an unfinished one
        if not again and record is not None and _outputs_present(step):
            outcomes.append(StepOutcome(step.name, "skipped", detail="outputs already complete"))
            console.print(f"{head}: [green]done before[/], reusing {', '.join(map(str, step.outputs)) or 'it'}")
            done.add(step.name)
            continue
        argv = _with_overwrite(cli, step.argv) if again else step.argv
        console.rule(f"{head}: facebench {' '.join(argv)}")
        start = time.perf_counter()
        runner(cli, argv)
        seconds = time.perf_counter() - start
        absent = [str(p) for p in step.outputs if not p.exists()]
        if absent:
            raise DataError(absent[0], f"step '{step.name}' finished but did not write this declared output")
        manifest.mark_done(step.name, {"argv": step.argv, "seconds": round(seconds, 3)})
        outcomes.append(StepOutcome(step.name, "ran", seconds))
        console.print(f"{head}: [green]finished[/] in {seconds:.1f} s")
        done.add(step.name)
    return outcomes
