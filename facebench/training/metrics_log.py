"""``metrics.jsonl``: one JSON object per logged event, appended as training goes.

On resume the lines written after the checkpoint being resumed are dropped (rewritten atomically),
so a killed-and-resumed run ends with the same log as an uninterrupted one. :class:`RunningMeans` keeps
the per-step values to log as sums on the training device, so a step never waits for a host copy.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
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


class RunningMeans:
    """Sums of per-step scalar tensors, kept on their device; :meth:`means` reads them (one host copy, one
    reduction over ranks) only when a line is logged. Its state goes into checkpoints, per rank, so a run
    resumed between two log lines logs the same means as an uninterrupted one."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}
        self.count = 0

    def add(self, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            value = value.detach().float()
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.count += 1

    def means(self, ctx: Any = None) -> dict[str, float]:
        """The mean of each value over the steps added (and over the ranks of ``ctx``)."""
        import torch

        from ..runtime import all_reduce_mean

        if not self.sums:
            return {}
        keys = list(self.sums)
        stacked = torch.stack([self.sums[k] for k in keys]) / max(self.count, 1)
        if ctx is not None:
            stacked = all_reduce_mean(ctx, stacked)
        return dict(zip(keys, stacked.tolist()))

    def reset(self) -> None:
        self.sums, self.count = {}, 0

    def state_dict(self) -> dict[str, Any]:
        return {"sums": {k: float(v) for k, v in self.sums.items()}, "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any], device: Any = None) -> None:
        import torch

        self.sums = {k: torch.tensor(v, dtype=torch.float32, device=device) for k, v in state["sums"].items()}
        self.count = int(state["count"])
