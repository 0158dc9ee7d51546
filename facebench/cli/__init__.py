"""The ``facebench`` command line: a click group built fresh by :func:`create_cli`.

Plugins add their commands through ``register_commands``. Errors a user can cause print one
``error: ...`` line and exit with code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

import click

from .. import (
    __version__,
    pluginmanager,  # looked up when called: a test may swap the plugin set
)
from ..errors import FacebenchError
from .options import examples


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class FacebenchGroup(click.Group):
    """A click group whose ``main`` turns user errors into ``error: ...`` and exit code 2."""

    def main(self, args: Any = None, prog_name: str | None = None, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv or os.environ.get("FACEBENCH_DEBUG", "") not in ("", "0")
        extra.pop("standalone_mode", None)
        try:
            return super().main(args=argv, prog_name=prog_name or "facebench", standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(130)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else str(exc))
            sys.exit(0)
        except click.ClickException as exc:
            if debug:
                traceback.print_exc()
            click.echo(f"error: {_one_line(exc.format_message())}", err=True)
            sys.exit(2)
        except (FacebenchError, OSError) as exc:
            # OSError: a file system refusal the command did not word itself (a read-only folder, a full
            # disk, a permission): still one line naming the path, never a traceback.
            if debug:
                traceback.print_exc()
            message = str(exc)
            if isinstance(exc, OSError) and not isinstance(exc, FacebenchError):
                names = [n for n in (exc.filename, getattr(exc, "filename2", None)) if n is not None]
                message = f"{' -> '.join(map(str, names)) + ': ' if names else ''}{exc.strerror or exc}"
            click.echo(f"error: {_one_line(message)}", err=True)
            sys.exit(getattr(exc, "exit_code", 2))
        except KeyboardInterrupt:
            click.echo("error: interrupted", err=True)
            sys.exit(130)


def core_commands() -> list[click.Command]:
    """Every command exported (``__all__``) by the ``facebench.cli.cmd_*`` modules, one module per area."""
    import importlib
    import pkgutil

    commands: list[click.Command] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("cmd_"):
            module = importlib.import_module(f"{__name__}.{info.name}")
            commands += [obj for name in module.__all__ if isinstance(obj := getattr(module, name), click.Command)]
    return commands


def create_cli(plugin_set: Any = None) -> click.Group:
    """A new root group with the core commands and every plugin's commands."""

    @click.group(
        cls=FacebenchGroup,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
        epilog=examples("facebench plugins --kind backbone", "facebench doctor"),
    )
    @click.version_option(__version__, "--version", prog_name="facebench")
    @click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
    @click.pass_context
    def cli(ctx: click.Context, debug: bool) -> None:
        """Generate synthetic face-recognition datasets and compare them honestly."""
        ctx.ensure_object(dict)
        ctx.obj["debug"] = debug

    for command in core_commands():
        cli.add_command(command)
    (plugin_set or pluginmanager.get_plugin_set()).add_commands(cli)
    return cli


def main() -> None:
    try:
        cli = create_cli()
    except FacebenchError as exc:  # a broken plugin set: still one line, not a traceback
        if os.environ.get("FACEBENCH_DEBUG", "") not in ("", "0") or "--debug" in sys.argv:
            traceback.print_exc()
        click.echo(f"error: {_one_line(str(exc))}", err=True)
        sys.exit(exc.exit_code)
    cli.main()
