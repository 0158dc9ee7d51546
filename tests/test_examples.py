"""Every example command of README.md, docs/*.md and every command's ``--help`` parses against the real
CLI (the resolved subcommand's ``make_context``, ``--set`` keys checked against the config they set), and
those whose inputs a toy world has are run as printed, in a fresh folder holding only those inputs (the
toy world, the FR run and the generated set that the session's workflow made).

Usage lines (with ``[...]``, ``|``, ``(...)`` or ``...``) are not examples; a command named in running
text (inline code) must name a real command and real options.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import click
import torch
from click.testing import CliRunner

from facebench.cli import create_cli

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
#: Examples not run (parsed only), with the reason: a run that a test of its own already covers at size.
NOT_RUN = {
    ("demo",): "the demo takes minutes; tests/test_demo_pipeline.py runs a smaller one end to end",
}
#: Commands of the README's example plugin (not installed here): tests/test_readme_plugin.py runs them.
README_PLUGIN_COMMANDS = {"hello"}
#: Values that name files to read: extensions of data, weights and config files.
FILE_EXTENSIONS = (".npy", ".npz", ".pth", ".pt", ".toml", ".bin", ".lmdb", ".rec", ".json", ".png", ".txt", ".csv")
#: Parameters whose value is an output (removed from the example's folder before it runs).
OUTPUTS = {"out", "save_stats", "dst"}


@dataclass(frozen=True)
class Example:
    source: str  # file or command it was found in
    text: str  # the command line, continuations joined
    strict: bool = True  # a full example (code block or --help) rather than a mention in running text

    def argv(self) -> list[str]:
        words = shlex.split(self.text, comments=True)
        while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # OMP_NUM_THREADS=1 facebench ...
            words.pop(0)
        if words and words[0] == "torchrun":
            words = words[words.index("-m") + 1:]
        assert words and words[0] == "facebench", self.text
        return words[1:]

    @property
    def distributed(self) -> bool:
        return self.text.startswith("torchrun")


def _is_usage(line: str) -> bool:
    return any(mark in line for mark in ("[", "|", "...", "(")) or "facebench.." in line


def _join_continued(lines: list[str]) -> list[str]:
    out, current = [], ""
    for line in lines:
        stripped = line.strip()
        if current:
            current += " " + stripped.rstrip("\\").strip()
        else:
            current = stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


def _command_lines(text: str) -> list[str]:
    lines = [re.sub(r"^\$\s+", "", line.strip()) for line in _join_continued(text.splitlines())]
    # a command word follows (``facebench isolate_discriminator=true vs ...`` in a script's printed output is
    # not a command line)
    return [line for line in lines
            if re.match(r"^([A-Z_]+=\S+\s+)*(facebench|torchrun .* -m facebench)\s+(--?[a-z-]+|[a-z][a-z0-9-]*)(\s|$)",
                        line)]


def doc_examples() -> list[Example]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        rel = str(path.relative_to(REPO))
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
            found += [Example(rel, line) for line in _command_lines(block) if not _is_usage(line)]
        prose = re.sub(r"```.*?```", "", text, flags=re.S)
        for span in re.findall(r"`(facebench [^`]+)`", prose):
            if not _is_usage(span.replace("\\|", "|")) and span.split()[1] not in README_PLUGIN_COMMANDS:
                found.append(Example(rel, span, strict=False))
    return found


def _commands(group: click.Group, prefix: str = "facebench"):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield f"{prefix} {name}", cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{prefix} {name}")


def help_examples(cli: click.Group) -> list[Example]:
    found = []
    for name, cmd in [("facebench", cli), *_commands(cli)]:
        for line in _command_lines(cmd.epilog or ""):
            found.append(Example(f"{name} --help", line))
    return found


def resolve(cli: click.Group, argv: list[str]) -> tuple[click.Command, list[str], list[str]]:
    """(subcommand, its arguments, its command path) for a facebench command line."""
    cmd, rest, path = cli, list(argv), []
    while isinstance(cmd, click.Group):
        while rest and rest[0] == "--debug":
            rest.pop(0)
        if rest and rest[0] in ("--version", "--help", "-h") and len(rest) == 1:
            return cmd, rest, path
        assert rest, f"no subcommand after {' '.join(['facebench', *path])}"
        sub = cmd.get_command(click.Context(cmd), rest[0])
        assert sub is not None, f"facebench {' '.join(path)}: no command '{rest[0]}'"
        path.append(rest.pop(0))
        cmd = sub
    return cmd, rest, path


@contextlib.contextmanager
def files_need_not_exist():
    """Parse a command whose input files are not here: click.Path's existence check is skipped."""
    real = click.Path.convert

    def convert(self, value, param, ctx):
        saved = self.exists
        self.exists = False
        try:
            return real(self, value, param, ctx)
        finally:
            self.exists = saved

    from facebench import runtime

    real_device = runtime.select_device

    def any_device(name):  # a device this machine lacks is not a parse error of the example
        if re.fullmatch(r"cuda(:\d+)?|mps", str(name).strip().lower()):
            return real_device("cpu")
        return real_device(name)

    click.Path.convert = convert
    runtime.select_device = any_device
    try:
        yield
    finally:
        click.Path.convert = real
        runtime.select_device = real_device


def check_sets(path: list[str], params: dict) -> None:
    """Every ``--set KEY=VALUE`` of an example names a key of the config it overrides."""
    overrides = list(params.get("overrides") or ())
    if not overrides:
        return
    command = " ".join(path)
    if command == "generate":
        from facebench.generation.job import generate_config

        generate_config(params["generator_name"], {}, overrides)
    elif command == "train-fr":
        from facebench.fr.recipe import resolve_recipe

        resolve_recipe(params["recipe_name"], overrides)
    elif command == "analyze":
        from facebench.evaluation.analyze import analysis_options

        analysis_options(overrides)
    elif command == "toyfaces build":
        from facebench_plugins.toyfaces.build import ToyConfig

        from facebench.config import load_config

        load_config(ToyConfig, None, overrides)


def parse(cli: click.Group, example: Example) -> tuple[click.Context, list[str]]:
    cmd, args, path = resolve(cli, example.argv())
    if not example.strict:  # a mention: the command and each option it names exist
        names = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
        unknown = [a.split("=")[0] for a in args if a.startswith("--") and a.split("=")[0] not in names]
        assert not unknown, f"{example.source}: `{example.text}`: no option {unknown} of facebench {' '.join(path)}"
        return None, path
    with files_need_not_exist():
        try:
            ctx = cmd.make_context(" ".join(["facebench", *path]), list(args))
        except click.ClickException as exc:
            raise AssertionError(f"{example.source}: {example.text}\n  {exc.format_message()}") from None
    check_sets(path, ctx.params)
    return ctx, path


def _path_like(value) -> bool:
    return isinstance(value, str) and ("/" in value or value.endswith(FILE_EXTENSIONS) or value.startswith("~"))


def inputs_and_outputs(ctx: click.Context) -> tuple[list[str], list[str]]:
    inputs, outputs = [], []
    for param in ctx.command.params:
        values = ctx.params.get(param.name)
        values = list(values) if isinstance(values, tuple | list) else [values]
        for value in values:
            if value is None or isinstance(value, bool):
                continue
            value = str(value)
            if param.name == "labels":  # RUN=NAME
                inputs.append(value.partition("=")[0])
            elif param.name == "overrides":  # KEY=VALUE: the value may name a file
                value = value.partition("=")[2]
                if _path_like(value):
                    inputs.append(value)
            elif param.name in OUTPUTS:
                outputs.append(value)
            elif isinstance(param.type, click.Path) or _path_like(value):
                inputs.append(value)
    return inputs, outputs


def _link_tree(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst, copy_function=os.link, symlinks=True)
    else:
        os.link(src, dst)


def prepare(folder: Path, world: Path, inputs: list[str], outputs: list[str]) -> list[str]:
    """Bring the example's inputs from the toy world (or the repository) into ``folder``; returns the
    inputs that are nowhere to be found (then the example is parsed only)."""
    missing = []
    for value in inputs:
        if value.startswith("~") or Path(value).is_absolute():
            missing.append(value)
            continue
        top = Path(value).parts[0]
        for source in (world / top, REPO / top):
            if source.exists() and not (folder / top).exists():
                _link_tree(source, folder / top)
                break
        if not (folder / value).exists() and not (world / value).exists():
            missing.append(value)
    for value in outputs:
        target = folder / value
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    return missing


ALL = None


def all_examples() -> list[Example]:
    global ALL
    if ALL is None:
        ALL = list(dict.fromkeys([*doc_examples(), *help_examples(create_cli())]))
    return ALL


def test_there_are_examples_everywhere():
    examples = all_examples()
    sources = {e.source for e in examples}
    assert {"README.md", "docs/generation.md", "docs/fr.md", "docs/evaluation.md"} <= sources
    cli = create_cli()
    without = [name for name, cmd in _commands(cli) if not isinstance(cmd, click.Group)
               and not _command_lines(cmd.epilog or "")]
    assert without == []  # every command's --help shows an example


def test_help_examples_are_printed_unwrapped():
    """click rewraps epilog paragraphs: every example line must appear in --help exactly as written."""
    cli = create_cli()
    for name, cmd in [("facebench", cli), *_commands(cli)]:
        if not cmd.epilog:
            continue
        args = name.split()[1:] + ["--help"]
        shown = CliRunner().invoke(create_cli(), args, terminal_width=80).output
        shown_lines = {line.strip() for line in shown.splitlines()}
        for line in cmd.epilog.splitlines():
            if line.strip().startswith("facebench") or line.startswith("      "):
                assert line.strip() in shown_lines, f"{name} --help rewraps: {line.strip()!r}\n{shown}"


def test_generate_help_shows_a_perturb_key_that_exists():
    shown = CliRunner().invoke(create_cli(), ["generate", "--help"], terminal_width=200).output
    assert "--set generation.perturb.min_cos=0.6" in shown
    from facebench.generation.job import generate_config

    assert generate_config("vec2face", {}, ["generation.perturb.min_cos=0.6"]).generation.perturb.min_cos == 0.6


def test_every_example_parses_and_those_on_toy_data_run(workflow, tmp_path, monkeypatch):
    cli = create_cli()
    monkeypatch.setenv("FACEBENCH_WEIGHTS", str(tmp_path / "no-weights"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    ran, parsed, failed = [], [], []
    try:
        for i, example in enumerate(all_examples()):
            ctx, path = parse(cli, example)
            if ctx is None:
                continue
            if example.distributed or tuple(path) in NOT_RUN:
                parsed.append((example, NOT_RUN.get(tuple(path), "torchrun")))
                continue
            inputs, outputs = inputs_and_outputs(ctx)
            folder = tmp_path / f"ex{i:03d}"
            folder.mkdir()
            missing = prepare(folder, workflow.home, inputs, outputs)
            if missing:
                parsed.append((example, f"needs {', '.join(missing)}"))
                continue
            monkeypatch.chdir(folder)
            start = time.perf_counter()
            result = CliRunner().invoke(create_cli(), example.argv())
            seconds = time.perf_counter() - start
            (ran if result.exit_code == 0 else failed).append((example, result.output.strip()[-600:], seconds))
    finally:
        torch.set_num_threads(threads)
    print(f"\nran {len(ran)} examples on toy data, parsed {len(parsed)} more:")
    for example, _, seconds in ran:
        print(f"  ran ({seconds:.1f} s): {example.text}")
    for example, why in parsed:
        print(f"  parsed only ({why}): {example.text}")
    assert not failed, "\n\n".join(f"{e.source}: {e.text}\n{out}" for e, out, _ in failed)
    assert len(ran) >= 25
