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


__all__: list[str] = []
