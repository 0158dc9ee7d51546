"""Resumable sharded jobs: a manifest of finished shards, rewritten atomically after each one.

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


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the values that differ between two JSON-like records (``config.perturb.sigmas``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [key for k in sorted(set(old) | set(new), key=str)
                for key in changed_keys(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [prefix.rstrip(".") or "(everything)"]


class ShardManifest:
    """``manifest.json``: the job's parameters (which must not change on resume) and finished shards."""

    def __init__(self, path: str | os.PathLike, params: dict[str, Any]):
        self.path = Path(path)
        self.params = json.loads(json.dumps(params, default=str))
        self.done: dict[str, Any] = {}
        if self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
            except json.JSONDecodeError as exc:
                raise DataError(self.path, f"unreadable manifest: {exc.msg}", f"line {exc.lineno}") from None
            if saved.get("params") != self.params:
                changed = changed_keys(saved.get("params", {}), self.params)
                raise DataError(
                    self.path,
                    f"cannot resume: parameters differ from the interrupted run ({', '.join(changed)}); "
                    "use another output or delete it",
                )
            self.done = dict(saved.get("done", {}))
        else:
            self._save()

    def is_done(self, shard: int | str) -> bool:
        return str(shard) in self.done

    def mark_done(self, shard: int | str, info: Any = None) -> None:
        self.done[str(shard)] = info if info is not None else True
        self._save()

    def _save(self) -> None:
        atomic.write_json(self.path, {"params": self.params, "done": self.done}, "shard manifest")
