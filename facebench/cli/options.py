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


def examples(*lines: str) -> str:
    """A command's epilog: example command lines printed exactly as written. click rewraps epilog
    paragraphs to the terminal width, which breaks a pasted command; a ``\\b`` paragraph is kept as is.
    A long command continues on the next line after a trailing backslash, indented."""
    return f"Example{'s' if len(lines) > 1 else ''}:\n\n\b\n" + "".join(f"  {line}\n" for line in lines)


__all__: list[str] = []
