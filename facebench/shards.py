"""Resumable sharded jobs: a manifest of finished shards, written atomically (and journaled when long).

A job split into shards (generation, conversion, feature extraction) records every completed shard; a
rerun after a kill skips those and redoes only the shard that was in flight, so the final output has
no duplicate and no missing item.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import atomic
from .errors import DataError
from .safe_load import expect, read_json, read_text


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the values that differ between two JSON-like records (``config.perturb.sigmas``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [key for k in sorted(set(old) | set(new), key=str)
                for key in changed_keys(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".") or "(everything)"]


def journal_path(path: str | os.PathLike) -> Path:
    """Where a manifest appends the shards finished since it was last rewritten."""
    return Path(str(path) + ".journal")


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """``{"params": ..., "done": ...}`` of a manifest file and its journal. A manifest someone else edited
    (bytes that are not UTF-8, invalid JSON, ``params`` or ``done`` that are not objects) is one
    :class:`DataError` naming the file; in the journal only the last line may be malformed (a line cut
    short by a kill, ignored: its shard is simply redone), a malformed line before it names its line."""
    path = Path(path)
    saved = read_json(path, what="shard manifest")
    params = saved.get("params")
    if params is not None:
        expect(path, params, dict, "params")
    done = dict(expect(path, saved.get("done", {}), dict, "done"))
    journal = journal_path(path)
    if journal.exists():
        text = read_text(journal, what="shard manifest journal")
        lines = text.split("\n")
        for number, line in enumerate(lines, 1):
            if not line:
                continue
            try:
                entry = json.loads(line)
                done[str(entry["shard"])] = entry.get("info", True)
            except (ValueError, KeyError, TypeError, AttributeError, RecursionError):  # ValueError: too many digits
                if number == len(lines):  # the last line, without its newline: cut short by a kill
                    break
                raise DataError(journal, "malformed journal entry (expected {\"shard\": ..., \"info\": ...})",
                                f"line {number}") from None
    return {"params": params, "done": done}


class ShardManifest:
    """``manifest.json``: the job's parameters (which must not change on resume) and finished shards.

    A manifest of other parameters is refused as the rerun contract refuses them (:mod:`facebench.rerun`),
    or, with ``overwrite``, started again empty.

    Rewriting the whole file after every shard costs O(shards^2) bytes and fsyncs (3,000 shards of a
    15M-image generation). So the file is rewritten for the first :attr:`REWRITE_UP_TO` shards (small
    jobs keep one plain JSON file); after that each finished shard is one fsync-ed line appended to
    ``manifest.json.journal``, and the file is rewritten (and the journal emptied) only when the journal
    holds a quarter as many shards as the file: O(shards) in all. Read it with :func:`read_manifest`.
    """

    REWRITE_UP_TO = 64

    def __init__(self, path: str | os.PathLike, params: dict[str, Any], *, overwrite: bool = False):
        self.path = Path(path)
        self.params = json.loads(json.dumps(params, default=str))
        self.done: dict[str, Any] = {}
        self._journaled = 0
        if self.path.exists():
            saved = read_manifest(self.path)
            if saved.get("params") != self.params and not overwrite:
                # the rerun contract's wording: the keys, --overwrite, another --out
                from .rerun import refusal

                raise refusal(self.path, changed_keys(saved.get("params", {}), self.params), finished=False)
            if saved.get("params") != self.params:  # overwrite: the other run's shards are done again
                self._save()
                return
            self.done = dict(saved.get("done", {}))
            if journal_path(self.path).exists():
                self._save()  # fold the journal of the interrupted run into the file
        else:
            self._save()

    def is_done(self, shard: int | str) -> bool:
        return str(shard) in self.done

    def mark_done(self, shard: int | str, info: Any = None) -> None:
        key, value = str(shard), info if info is not None else True
        self.done[key] = value
        if len(self.done) <= self.REWRITE_UP_TO or 4 * (self._journaled + 1) > len(self.done):
            self._save()
            return
        line = json.dumps({"shard": key, "info": value}, default=str) + "\n"
        journal = atomic.refuse_link(journal_path(self.path), "shard manifest")  # appended to: never via a link
        try:
            with open(journal, "a", encoding="utf-8") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            from .errors import OutputError

            raise OutputError(journal, "shard manifest", exc) from exc
        self._journaled += 1

    def _save(self) -> None:
        atomic.write_json(self.path, {"params": self.params, "done": self.done}, "shard manifest")
        journal_path(self.path).unlink(missing_ok=True)  # after the file: a kill in between only repeats lines
        self._journaled = 0
