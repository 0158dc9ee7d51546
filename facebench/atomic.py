"""Atomic outputs: write under a temporary name, rename when complete.

An interrupted command must never leave a file that looks finished, so every output of facebench goes
through :func:`atomic_path` (files) or :func:`atomic_dir` (dataset folders, LMDB environments). When the
writing itself fails (a full disk, a read-only or forbidden folder, a quota), the temporary is removed
and the error becomes one :class:`~facebench.errors.OutputError` naming the final path and ``what`` was
being written, so the command ends with one ``error:`` line and a rerun resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import OutputError

#: errno values that always mean "this output cannot be written here" (as opposed to a failed read).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def is_write_failure(exc: OSError, path: Path, *places: Path) -> bool:
    """A full disk, quota or read-only file system, or any failure on ``path``, on a temporary sibling of
    it (``.NAME.tmp-...``) or on one of ``places``: the output could not be written (not a failed read)."""
    if exc.errno in _WRITE_ERRNOS:
        return True
    for name in (exc.filename, getattr(exc, "filename2", None)):
        if name is None:
            continue
        name = Path(name)
        if name.name.startswith(f".{path.name}.tmp") or any(name == p or p in name.parents for p in (path, *places)):
            return True
    return False


@contextlib.contextmanager
def _worded(path: Path, what: str, tmp: Path) -> Iterator[None]:
    """Turn a failure to write ``path`` (through ``tmp``) into one :class:`OutputError`."""
    try:
        yield
    except OSError as exc:
        if is_write_failure(exc, path, tmp):
            raise OutputError(path, what, exc) from exc
        raise


def _make_parent(path: Path, what: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(path, what, exc) from exc


#: ``open`` flags of a new temporary file: created here and now (never an existing file, never through a
#: symbolic link planted at its name).
_NEW_FILE = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def _tmp_name(path: Path, suffix: str = "") -> Path:
    """``.NAME.tmp-<random>``: unpredictable, so nobody can plant a file or link there beforehand."""
    return path.with_name(f".{path.name}.tmp-{secrets.token_hex(8)}{suffix}")


def _create_unique(path: Path, make: Any) -> Path:
    for _ in range(100):
        tmp = _tmp_name(path)
        try:
            make(tmp)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path.parent))


def temp_file(path: str | os.PathLike) -> Path:
    """A new empty file beside ``path`` (``.NAME.tmp-<random>``), created with ``O_CREAT|O_EXCL|O_NOFOLLOW``
    and mode ``0666`` under the user's umask (as any file the user makes). The caller may reopen it by name:
    the name was free and unguessable, so what is there is the file made here."""
    return _create_unique(Path(path), lambda tmp: os.close(os.open(tmp, _NEW_FILE, 0o666)))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, what: str = "output") -> Iterator[Path]:
    """Yield a new empty temporary file beside ``path`` (:func:`temp_file`); on success it is renamed onto
    ``path`` (a rename replaces a symbolic link at ``path``, never writes through it), else removed."""
    path = Path(path)
    _make_parent(path, what)
    try:
        tmp = temp_file(path)
    except OSError as exc:
        raise OutputError(path, what, exc) from exc
    try:
        with _worded(path, what, tmp):
            yield tmp
            os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()


def temp_dir(path: str | os.PathLike) -> Path:
    """A new empty directory beside ``path`` (``.NAME.tmp-<random>``) with the permissions a plain ``mkdir``
    gives under the user's umask: ``tempfile.mkdtemp`` makes it ``0700``, which the final rename would
    keep, so collaborators on a shared server could not read a finished dataset. ``mkdir`` never follows
    a link, and the name is unguessable."""
    return _create_unique(Path(path), lambda tmp: os.mkdir(tmp, 0o777))  # the umask applies


def refuse_link(path: str | os.PathLike, what: str = "output") -> Path:
    """``path`` itself, after checking it is not a symbolic link: the fixed names a resumable job reopens
    (``*.partial.npy``, ``.OUT.partial/``) must be the job's own files, never a link planted to redirect
    its writes elsewhere."""
    path = Path(path)
    if path.is_symlink():
        raise OutputError(path, what, OSError(errno.ELOOP, "is a symbolic link; refusing to write through it"))
    return path


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False, what: str = "output") -> Iterator[Path]:
    """Yield an empty temporary directory that becomes ``path`` only when the block completes."""
    path = Path(path)
    _make_parent(path, what)
    try:
        tmp = temp_dir(path)
    except OSError as exc:
        raise OutputError(path, what, exc) from exc
    try:
        with _worded(path, what, tmp):
            yield tmp
            if path.exists():
                if not overwrite:
                    raise FileExistsError(f"{path} exists")
                old = _tmp_name(path, ".old")
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_bytes(path: str | os.PathLike, data: bytes, what: str = "output") -> Path:
    with atomic_path(path, what) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def write_text(path: str | os.PathLike, text: str, what: str = "output") -> Path:
    return write_bytes(path, text.encode("utf-8"), what)


def write_json(path: str | os.PathLike, data: Any, what: str = "output") -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", what)
