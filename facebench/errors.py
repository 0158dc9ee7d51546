"""Errors a user can cause.

Anything raised as :class:`FacebenchError` is the user's to fix (a missing file, an unknown name, a
malformed config or dataset). The CLI prints it as one ``error: ...`` line and exits with code 2;
everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none): what a one-line
    error quotes of a library's exception."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class FacebenchError(Exception):
    """A problem with the user's input, reported as one line."""

    exit_code = 2


class ConfigError(FacebenchError):
    """A config file or ``--set`` override that does not fit the config schema."""


class UnknownComponentError(FacebenchError, KeyError):
    """A component name that no plugin registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0] if self.args else ""


class UnavailableComponentError(FacebenchError):
    """A registered component whose optional dependencies are not installed (the message says how)."""


class DuplicateComponentError(FacebenchError):
    """Two plugins registered the same name for the same kind."""


class DataError(FacebenchError):
    """A dataset file that is missing, truncated or malformed.

    The message always names the file and, where known, where in it the problem is.
    """

    def __init__(self, path: str | os.PathLike, problem: str, where: str | None = None):
        self.path = os.fspath(path)
        self.problem = problem
        self.where = where
        text = f"{self.path}: {problem}"
        if where:
            text += f" at {where}"
        super().__init__(text)


class OutputError(FacebenchError):
    """An output that could not be written: a full disk, a read-only or forbidden folder, a quota.

    The message names the final path and what was being written; nothing is left at that name.
    """

    def __init__(self, path: str | os.PathLike, what: str, exc: OSError):
        self.path = os.fspath(path)
        reason = exc.strerror or str(exc)
        super().__init__(f"{self.path}: cannot write {what}: {reason}")


class MissingFileError(FacebenchError, FileNotFoundError):
    """A file the user must supply (weights, a test pack) is not there."""

    def __init__(self, path: str | os.PathLike, what: str = "file", hint: str = ""):
        self.path = os.fspath(path)
        text = f"{self.path}: {what} not found"
        if hint:
            text += f" ({hint})"
        super().__init__(text)

    def __str__(self) -> str:
        return self.args[0]
