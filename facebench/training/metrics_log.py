"""``metrics.jsonl``: one JSON object per logged event, appended as training goes.

On resume the lines written after the checkpoint being resumed are dropped (rewritten atomically),
so a killed-and-resumed run ends with the same log as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from .. import atomic


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class MetricsLog:
    """Append-only JSON-lines log; ``enabled=False`` (non-main ranks) makes every call a no-op."""

    def __init__(self, path: str | os.PathLike, *, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def log(self, **record: Any) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(_clean(record), sort_keys=False) + "\n")
            fh.flush()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        rows = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a kill
                break
        return rows

    def truncate_after(self, global_step: int) -> None:
        """Keep only records with ``step <= global_step`` (records without a step are kept)."""
        if not self.enabled or not self.path.exists():
            return
        kept = [r for r in self.read() if int(r.get("step", 0)) <= global_step]
        atomic.write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept), "metrics log")
