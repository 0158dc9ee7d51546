"""Which files a report may embed as images: only those inside the folders the user named.

A report is a file people share. The images in it must come from the run folders given to ``facebench
report`` (or a folder given with ``--images-from``), never from wherever a run's files point: a
``dataset.json`` ``path``, a ``model.json`` ``dataset.path``, a ``samples.png`` that is a symbolic link,
or a dataset folder holding links could otherwise put a contact sheet of any face folder on the machine
into the report. What is not embedded is said in one warning line per item; the report is still written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..safe_load import resolves_inside


def link_out(path: str | os.PathLike, roots: list[Path]) -> Path | None:
    """The first place that leads outside every root: ``path`` itself (links followed), or a symbolic link
    anywhere below it (a dataset folder whose images link elsewhere); None when all stays inside."""
    if not any(resolves_inside(path, root) for root in roots):
        return Path(path)
    if not os.path.isdir(path):
        return None
    stack = [os.fspath(path)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.is_symlink():
                if not any(resolves_inside(entry.path, root) for root in roots):
                    return Path(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return None


@dataclass
class Confinement:
    """The folders a report may embed images from, and the warnings of the images it left out (outside
    those folders, or unreadable)."""

    roots: list[Path]
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (run folder, warning)

    def leads_out(self, path: str | os.PathLike) -> Path | None:
        return link_out(path, self.roots)

    def allows(self, path: str | os.PathLike, what: str, run: Path) -> bool:
        """Whether ``path`` may be embedded; when not, a warning naming ``run``, ``what`` and the place
        that leads out is recorded."""
        out = self.leads_out(path)
        if out is None:
            return True
        real = os.path.realpath(out)
        folder = real if os.path.isdir(real) else os.path.dirname(real)
        where = (f"{path} is outside the folders given" if out == Path(path)
                 else f"{out} inside {path} links outside the folders given")
        self.skip(run, f"{what} not embedded: {where} (add --images-from {folder} to embed it)")
        return False

    def skip(self, run: Path, text: str) -> None:
        line = f"{run}: {text}"
        if all(line != known for _, known in self.skipped):
            self.skipped.append((run, line))
