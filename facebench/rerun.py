"""The rerun contract: what a command does when it is run again on its own output.

Pipelines run facebench as a Makefile or a retried cluster job does: the same command, again, on the
same output. Every command that writes an output folder or file follows one rule, decided here by
:meth:`Rerun.check`:

* **same parameters, finished output**: nothing is done. The command says what is there and exits 0;
  no file is written, not even touched;
* **same parameters, unfinished output** (killed, crashed, out of time): the command resumes, or redoes
  the unfinished part, and ends with the bytes an uninterrupted run writes;
* **other parameters**: refused with one line naming the keys that differ and the two ways out,
  ``--overwrite`` (replace the output) or another ``--out``.

*The parameters* are what determines the result: the command's resolved config without the settings
that only say where or how fast it runs (``--device``, worker and thread counts, progress, ``--json``),
plus the sha256 of every input file or folder (:func:`parameters`). They are kept in the output's
*record*, the ``rerun`` entry of ``provenance.json`` in a run folder, or of ``OUT.json`` beside an output
that is one file or one dataset (:func:`sidecar`): ``{"command": ..., "params": ..., "finished": ...}``.

A command writes the record before its first output (``finished`` null), so a kill -9 at any point
leaves nothing, or an output whose record says how to finish it; after its last output it writes the
outputs' sha256 into ``finished``. A record marked finished whose outputs are missing or no longer
have those sha256 counts as unfinished: the command redoes what is not there. An output folder that
holds no record and nothing to resume from (:func:`facebench.runs.holds_work`: only start files, empty
folders, temporaries of a killed write) is started afresh; one that holds other files is refused.

``--overwrite`` replaces an output made with other parameters, or one without a record; with the same
parameters it changes nothing (a finished output is kept, an unfinished one resumed), so a job retried
with ``--overwrite`` on its command line still resumes. ``--resume`` (train-fr, train-generator) is still
accepted and no longer needed; given, it keeps its old meaning: continue the checkpoint even where
parameters changed (a capped training continued without its cap), as far as the trainer allows.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import atomic
from .errors import DataError, FacebenchError, OutputError
from .runs import PROVENANCE, holds_work
from .shards import changed_keys

#: What :meth:`Rerun.check` found: nothing to keep (start afresh), an unfinished output with the same
#: parameters (resume it), a finished output with the same parameters (do nothing).
NEW, RESUME, FINISHED = "new", "resume", "finished"

#: The key of the record in ``provenance.json`` (run folders) or ``OUT.json`` (single outputs).
KEY = "rerun"

#: How many differing keys a refusal names before it says how many there are.
SHOWN_KEYS = 6


def sidecar(path: str | os.PathLike) -> Path:
    """``OUT.json``, the record beside an output that is one file or one dataset (``ids.npy.json``,
    ``lfw.bin.json``, ``casia.lmdb.json``)."""
    return Path(os.fspath(path) + ".json")


def normalised(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, paths strings), so a record compares
    equal to the parameters it was written from."""
    from .config import config_to_dict

    return json.loads(json.dumps(config_to_dict(value), default=str))


def parameters(config: Any = None, *, inputs: Mapping[str, str | os.PathLike | None] | None = None,
               ignore: Iterable[str] = (), **extra: Any) -> dict[str, Any]:
    """The parameters of a run: ``{"config": ..., "inputs": {label: sha256}, **extra}``.

    ``config`` is the resolved config (a dataclass or a mapping) without the dotted keys in ``ignore``
    (settings that do not change the result, and paths whose content is among the inputs); each input
    (a file or folder; None is left out; a missing one is one error naming it) is hashed with
    :func:`facebench.provenance.sha256_path` (cached, so a rerun on a large dataset costs one listing)."""
    from .errors import MissingFileError
    from .provenance import sha256_path

    params: dict[str, Any] = {}
    if config is not None:
        tree = normalised(config)
        for key in ignore:
            _drop(tree, key.split("."))
        params["config"] = tree
    params["inputs"] = {}
    for label, path in (inputs or {}).items():
        if path is None:
            continue
        if not os.path.exists(path):
            raise MissingFileError(path, f"input ({label})")
        params["inputs"][label] = sha256_path(path)
    params.update(normalised(extra))
    return params


def _drop(tree: Any, keys: list[str]) -> None:
    if not isinstance(tree, dict):
        return
    if len(keys) == 1:
        tree.pop(keys[0], None)
    else:
        _drop(tree.get(keys[0]), keys[1:])


def _all_but(root: Path, kept: set[Path]) -> list[Path]:
    """The entries under ``root`` to remove so that only ``kept`` (and the folders holding them) stay."""
    holding = {parent for path in kept for parent in path.parents}
    targets = []
    for entry in sorted(root.iterdir()):
        if entry in kept:
            continue
        if entry in holding and entry.is_dir() and not entry.is_symlink():
            targets += _all_but(entry, kept)
        else:
            targets.append(entry)
    return targets


class RerunRefused(DataError):
    """An output made with other parameters (or without a record), and no ``--overwrite``: one line
    naming the output (or the state file) and why."""


def _keys(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:SHOWN_KEYS])
    return shown + (f", ... ({len(keys)} keys in all)" if len(keys) > SHOWN_KEYS else "")


def refusal(path: str | os.PathLike, keys: Sequence[str], *, what: str = "output",
            finished: bool = True) -> RerunRefused:
    """The one line that refuses other parameters: the keys that differ and the two ways out."""
    if finished:
        return RerunRefused(path, f"holds a finished {what} made with other parameters ({_keys(keys)}); pass "
                                  "--overwrite to replace it, or choose another --out")
    return RerunRefused(path, f"cannot resume: parameters differ from the interrupted run ({_keys(keys)}); pass "
                              "--overwrite to start again, or choose another --out")


def already_complete(path: str | os.PathLike, detail: str) -> str:
    """What a command prints for a finished output rerun with the same parameters."""
    return f"{path}: already complete ({detail}); nothing to do"


class Rerun:
    """One command's output, the parameters that make it, and its record (see the module docstring).

    ``folder``: the output is a run folder whose ``provenance.json`` holds the record (written through
    :class:`facebench.runs.Run`); else it is one file or dataset with its record in :func:`sidecar`.
    ``outputs``: the files or folders (relative to the record's folder) whose sha256 the finished record
    keeps; ``state``: glob patterns (same base) of the resumable state an ``--overwrite`` removes with a
    single output. ``resumable``: whether an unfinished output can be continued; when it cannot, an
    unfinished one made with other parameters is simply made again. ``resume``: an explicit ``--resume``
    (the trainers): the state in the output is continued even with other parameters or without a record
    (a release checkpoint copied in), as ``--resume`` always did; the trainer checks what its checkpoint
    allows, and the record takes the new parameters.
    ``keep``: glob patterns (inside a run folder) of caches that ``--overwrite`` leaves in place because
    they check themselves before reuse (feature caches keyed by their own parameters and rows' sha256).
    ``deferred``: inputs hashed later in the run (a training set hashed while training runs): compared
    only when a record holds them.
    """

    def __init__(self, out: str | os.PathLike, *, command: str, params: Mapping[str, Any], what: str = "output",
                 folder: bool = True, outputs: Sequence[str] = (), state: Sequence[str] = (),
                 overwrite: bool = False, resumable: bool = True, resume: bool = False,
                 keep: Sequence[str] = (), deferred: Mapping[str, Callable[[], str]] | None = None):
        self.out = Path(out)
        self.command = command
        self.params: dict[str, Any] = normalised(dict(params))
        self.what = what
        self.folder = folder
        self.record_path = self.out / PROVENANCE if folder else sidecar(self.out)
        self.outputs = list(outputs)
        self.state = list(state)
        self.overwrite = overwrite
        self.resumable = resumable
        self.resume = resume
        self.keep = list(keep)
        self.deferred = dict(deferred or {})
        self.finished: dict[str, str] | None = None
        self.replace = False  # check(discard=False) found an output to remove: the main rank calls prepare()
        self._made_base = False  # begin() made the folder of a single output (removed with it by abandon())

    @property
    def base(self) -> Path:
        """The folder the outputs and the state are named in: the record's."""
        return self.record_path.parent

    # ------------------------------------------------------------------------------------- deciding

    def check(self, *, discard: bool = True) -> str:
        """:data:`NEW`, :data:`RESUME` or :data:`FINISHED`, or :class:`RerunRefused`. Unless finished, what
        is not kept is removed here (:meth:`prepare`: the output ``--overwrite`` replaces, the temporaries of
        a killed run); with ``discard`` false (every rank of a torchrun job checks, then the main rank calls
        :meth:`prepare` after a barrier) nothing is removed and :attr:`replace` says what will be."""
        entry, problem = self._saved()
        if entry is None:
            if not self._occupied():
                if discard:
                    self.tidy()
                return NEW
            if self.overwrite:
                return self._restart(discard)
            if self.resume and self.resumable:  # --resume: continue what is there (a checkpoint copied in)
                if discard:
                    self.tidy()
                return RESUME
            raise RerunRefused(self.out, f"{problem}; pass --overwrite to replace it, or choose another --out")
        finished = entry["finished"] is not None
        if entry["command"] != self.command:
            if self.overwrite or (not finished and not self.resumable):
                return self._restart(discard)
            raise RerunRefused(self.out, f"holds the output of 'facebench {entry['command']}', not of 'facebench "
                                         f"{self.command}'; pass --overwrite to replace it, or choose another --out")
        current = self._current(entry["params"])
        keys = changed_keys(entry["params"], current)
        if keys:
            if self.overwrite or (not finished and not self.resumable):
                return self._restart(discard)
            if self.resume and self.resumable:  # --resume: continue this state with the new parameters
                if discard:
                    self.tidy()
                return RESUME
            raise refusal(self.out, keys, what=self.what, finished=finished)
        self.params = current  # with the deferred inputs the record holds
        if finished and self._intact(entry["finished"]):
            return FINISHED
        if discard:
            self.tidy()
        return RESUME

    def _restart(self, discard: bool) -> str:
        self.replace = True
        if discard:
            self.prepare()
        return NEW

    def prepare(self) -> None:
        """Before the work (on the main rank, after every rank's :meth:`check`): remove what ``--overwrite``
        replaces (:attr:`replace`) and the temporaries a killed run left (:meth:`tidy`)."""
        if self.replace:
            self.discard()
            self.replace = False
        self.tidy()

    def tidy(self) -> None:
        """Remove the temporaries of atomic writes a killed run left (``.NAME.tmp-<random>``,
        :mod:`facebench.atomic`): inside a run folder and beside it (an atomic folder's), or beside a
        single output, its record and its other outputs. A symbolic link at such a name is left alone: it
        is not one of them."""
        import glob

        from .runs import _temporary

        found: list[Path] = []
        if self.folder:
            if self.out.is_dir() and not self.out.is_symlink():
                for root, dirs, files in os.walk(self.out):
                    found += [Path(root) / n for n in dirs + files if _temporary(n)]
                    dirs[:] = [d for d in dirs if not _temporary(d)]
            beside, names = self.out.parent, {self.out.name}
        else:
            beside, names = self.base, {self.out.name, self.record_path.name, *(Path(n).name for n in self.outputs)}
        found += [Path(p) for n in names for p in glob.glob(os.path.join(glob.escape(os.fspath(beside)),
                                                                         f".{glob.escape(n)}.tmp-*"))]
        for path in found:  # a link at such a name is not one of ours (ours are made O_EXCL, or by mkdir)
            if path.is_symlink():
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    path.unlink()
                except OSError:
                    pass

    def _saved(self) -> tuple[dict[str, Any] | None, str]:
        """The record's entry (checked), or None and why there is none."""
        from .safe_load import expect, inside, read_json

        path = self.record_path
        if not os.path.lexists(path):
            return None, f"exists but holds no record of the parameters it was made with (no {path.name})"
        try:
            record = read_json(path, what="run record")
            entry = record.get(KEY)
            if entry is None:
                return None, (f"holds no record of the parameters it was made with ({path.name} has no '{KEY}' "
                              "entry: an output of an older facebench or of something else)")
            expect(path, entry, dict, KEY)
            expect(path, entry.get("command"), str, f"{KEY}.command")
            expect(path, entry.get("params"), dict, f"{KEY}.params")
            done = entry.get("finished")
            if done is not None:
                expect(path, done, dict, f"{KEY}.finished")
                for name, digest in done.items():
                    expect(path, digest, str, f"{KEY}.finished.{name}")
                    # hashed by _intact: a name leaving the record's folder ("/", "../..") is never read
                    inside(self.base, name, file=path, where=f"{KEY}.finished", what="output")
        except (DataError, OSError) as exc:
            return None, f"its record cannot be read ({exc})"
        return {**entry, "finished": done}, ""  # "finished" absent reads as unfinished

    def _occupied(self) -> bool:
        """Whether there is something at the output that a new run would replace."""
        if self.folder:
            if self.out.is_symlink() or (os.path.lexists(self.out) and not self.out.is_dir()):
                return True
            return self.out.is_dir() and holds_work(self.out)
        return os.path.lexists(self.out) or os.path.lexists(self.record_path)

    def _current(self, saved: dict[str, Any]) -> dict[str, Any]:
        """These parameters with every deferred input the saved record holds hashed now."""
        current = json.loads(json.dumps(self.params))
        for label, digest in self.deferred.items():
            saved_inputs = saved.get("inputs")  # the record's: anything but an object is a changed key below
            if isinstance(saved_inputs, dict) and label in saved_inputs and label not in current.get("inputs", {}):
                current.setdefault("inputs", {})[label] = digest()
        return current

    def _intact(self, finished: dict[str, str]) -> bool:
        """Whether every output of a finished record is there with the sha256 it was recorded with."""
        from .provenance import sha256_path

        for name, digest in finished.items():
            path = self.base / name
            if not os.path.lexists(path):
                return False
            try:
                if sha256_path(path) != digest:
                    return False
            except (OSError, FacebenchError):
                return False
        return True

    def discard(self) -> None:
        """Remove the output (``--overwrite``): a run folder as a whole (but its self-checking caches,
        ``keep``); a single output with its record, its other outputs and its resumable state. The current
        folder and the folders above it are never removed."""
        if self.folder and self.keep and self.out.is_dir() and not self.out.is_symlink():
            kept = {p for pattern in self.keep for p in self.out.glob(pattern)}
            targets = _all_but(self.out, kept)
        elif self.folder:
            targets = [self.out]
        else:
            targets = [self.out, self.record_path, *(self.base / n for n in self.outputs)]
            targets += [p for pattern in self.state for p in sorted(self.base.glob(pattern))]
        here = Path.cwd().resolve()
        for target in targets:
            if not os.path.lexists(target):
                continue
            if not target.is_symlink() and target.resolve() in (here, *here.parents, Path.home().resolve()):
                raise RerunRefused(target, "will not remove the current folder, a folder above it or the home "
                                           "folder to replace an output; choose another --out")
            try:
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                else:
                    target.unlink()
            except OSError as exc:
                raise OutputError(target, f"the {self.what} being replaced (--overwrite)", exc) from exc

    # ------------------------------------------------------------------------------------- recording

    def entry(self) -> dict[str, Any]:
        """The record's entry as it is now: ``finished`` null until :meth:`finish`."""
        return {"command": self.command, "params": self.params, "finished": self.finished}

    def add_input(self, label: str, sha256: str) -> None:
        """An input hashed during the run (a ``deferred`` one): recorded with the parameters."""
        self.params.setdefault("inputs", {})[label] = sha256

    def begin(self, record: Mapping[str, Any] | None = None) -> None:
        """Write the record of an output that is about to be made (single outputs; a run folder's record is
        written by :meth:`facebench.runs.Run.start`)."""
        if self.folder:
            raise TypeError("a run folder's record is written by Run.start(..., rerun=...)")
        self.finished = None
        self._made_base = not self.base.exists()  # a folder made for the output is removed with its record
        atomic.write_json(self.record_path, {**dict(record or {}), KEY: self.entry()}, "run record")

    @contextmanager
    def writing(self, record: Mapping[str, Any] | None = None) -> Iterator[None]:
        """:meth:`begin` for the block that makes a single output: when the block fails (an error, not a
        kill) before any output or resumable state exists, the record it wrote is removed again, so a
        refused command leaves nothing behind."""
        self.begin(record)
        try:
            yield
        except BaseException:
            self.abandon()
            raise

    def abandon(self) -> None:
        """After a failure: remove the record of a single output when no output and no resumable state of it
        exists (nothing a rerun could continue or would have to refuse)."""
        if self.folder:
            return
        left = [self.out, *(self.base / n for n in self.outputs)]
        left += [p for pattern in self.state for p in self.base.glob(pattern)]
        if not any(os.path.lexists(p) for p in left):
            self.record_path.unlink(missing_ok=True)
            if self._made_base:
                try:
                    self.base.rmdir()  # only when empty
                except OSError:
                    pass

    def finish(self, run: Any = None, record: Mapping[str, Any] | None = None,
               outputs: Sequence[str] | None = None) -> None:
        """Mark the output finished: the sha256 of every output (``outputs``, else those given at the start)
        goes into the record, written last (through ``run``'s provenance for a run folder, whose outputs are
        named relative to ``run.path``; else into :func:`sidecar` with ``record``, the command's own
        provenance, beside it)."""
        from .provenance import sha256_path

        base = Path(run.path) if run is not None else self.base
        if outputs is not None:
            self.outputs = list(outputs)
        self.finished = {name: sha256_path(base / name) for name in self.outputs}
        if run is not None:
            run.rerun = self
            run.write_provenance()
        else:
            atomic.write_json(self.record_path, {**dict(record or {}), KEY: self.entry()}, "run record")


__all__ = ["FINISHED", "KEY", "NEW", "RESUME", "Rerun", "RerunRefused", "already_complete", "normalised",
           "parameters", "refusal", "sidecar"]
