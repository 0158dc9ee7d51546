"""Options shared by several commands, so each means the same thing and is checked the same way."""

from __future__ import annotations

from typing import Any

import click


class DeviceParam(click.ParamType):
    """A device name checked when the command line is parsed: asking for a device this machine lacks
    (``cuda`` without CUDA, ``cuda:3`` with two GPUs) is one ``error:`` line before any work starts.
    The value stays a string (``auto`` is resolved per rank by the command)."""

    name = "device"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from ..errors import ConfigError
        from ..runtime import select_device

        text = str(value).strip().lower()
        try:
            select_device(text)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)
        return text


DEVICE = DeviceParam()


def device_option(default: str | None = "auto", help: str = "auto, cpu, cuda, cuda:N or mps.") -> Any:
    return click.option("--device", type=DEVICE, default=default, show_default=default is not None, help=help)


def overwrite_option(what: str = "OUT") -> Any:
    """``--overwrite`` as every command that writes an output means it (:mod:`facebench.rerun`)."""
    return click.option("--overwrite", is_flag=True,
                        help=f"Replace {what} when it was made with other parameters (or holds no record of them); "
                             "with the same parameters nothing changes: finished stays, unfinished resumes.")


def rerun_help(output: str = "OUT", note: str = "") -> Any:
    """Append to a command's help what running it again does (the rerun contract, :mod:`facebench.rerun`);
    ``note`` says what is not a parameter or what resumes. Put it below ``@click.command``."""
    text = (f"Rerun: the same command again does nothing once {output} is finished (it says what is there); "
            f"an unfinished {output} (killed, crashed) is resumed to the bytes of an uninterrupted run; other "
            f"parameters are refused, naming them (--overwrite replaces {output}, or choose another one).")
    if note:
        text += f" {note}"

    def add(function: Any) -> Any:
        import inspect

        doc = inspect.cleandoc(function.__doc__ or "")
        function.__doc__ = f"{doc}\n\n{text}" if doc else text
        return function

    return add


def examples(*lines: str) -> str:
    """A command's epilog: example command lines printed exactly as written. click rewraps epilog
    paragraphs to the terminal width, which breaks a pasted command; a ``\\b`` paragraph is kept as is.
    A long command continues on the next line after a trailing backslash, indented."""
    return f"Example{'s' if len(lines) > 1 else ''}:\n\n\b\n" + "".join(f"  {line}\n" for line in lines)


__all__: list[str] = []


def make_tiny_model(out: str, *, command: str, params: dict[str, Any], overwrite: bool, make: Any,
                    finished: str, wrote: str, what: str = "tiny model folder") -> None:
    """What every ``make-tiny`` command does on the rerun contract (:mod:`facebench.rerun`): nothing when
    ``out`` was made with ``params``, else ``make(out)`` (which writes the folder whole or not at all) and
    its record. ``finished`` describes the model for "already complete"; ``wrote`` is the line printed after
    writing, its ``{mb}`` the folder's size in MB."""
    from pathlib import Path

    from ..provenance import provenance
    from ..rerun import FINISHED, Rerun, already_complete, parameters

    path = Path(out)
    rerun = Rerun(path, command=command, what=what, folder=False, outputs=[path.name],
                  params=parameters(params), overwrite=overwrite, resumable=False)
    if rerun.check() == FINISHED:
        click.echo(already_complete(path, finished))
        return
    with rerun.writing():  # what is at OUT may be replaced: Rerun.check said so
        make(path)
    rerun.finish(record=provenance(seed=params["seed"]))
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    click.echo(wrote.format(mb=f"{total / 1e6:.1f}") + f" to {path}")
    click.echo("its weights are untrained: generated sets are pipeline checks, not results")
