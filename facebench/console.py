"""The rich console and progress bars every long job uses (stderr, so stdout stays parseable)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

console = Console(stderr=True, highlight=False)


def quiet() -> bool:
    return os.environ.get("FACEBENCH_QUIET", "") not in ("", "0")


def make_progress(transient: bool = False) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
        disable=quiet(),
    )


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar (disabled when ``FACEBENCH_QUIET`` is set)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with make_progress() as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)


def warn(text: str) -> None:
    """One ``warning:`` line on stderr, never wrapped and never read as markup (paths may hold ``[``), so
    a user or a log filter sees the whole of it on one line, even with ``FACEBENCH_QUIET``."""
    from rich.text import Text

    console.print(Text.assemble(("warning:", "yellow"), " ", text.replace("\n", " ")), soft_wrap=True)


def log_line(text: str) -> None:
    """One plain progress line on stdout, flushed at once, so ``command > log.txt`` can be followed while
    the job runs (the progress bars go to stderr)."""
    print(text, flush=True)
