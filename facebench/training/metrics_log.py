"""``metrics.jsonl``: one JSON object per logged event, appended as training goes.

On resume the lines written after the checkpoint being resumed are dropped (rewritten atomically),
so a killed-and-resumed run ends with the same log as an uninterrupted one. A resumed run folder may have
been handled by others: the log is appended to only as the run's own file (never through a symbolic
link), and a line that is not a JSON object with an integer ``step`` is one error naming the file and
line (only the last line may be cut short, by a kill; it is dropped). :class:`RunningMeans` keeps
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
from ..errors import DataError, OutputError
from ..safe_load import read_text, type_word


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


#: ``open`` flags of an append to the log: never through a symbolic link at its name.
_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class MetricsLog:
    """Append-only JSON-lines log; ``enabled=False`` (non-main ranks) makes every call a no-op."""

    def __init__(self, path: str | os.PathLike, *, enabled: bool = True):
        self.path = Path(path)
        self.enabled = enabled

    def log(self, **record: Any) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(_clean(record), sort_keys=False) + "\n").encode("utf-8")
        try:  # O_NOFOLLOW: a link planted at this fixed name must not redirect the appends
            fd = os.open(self.path, _APPEND, 0o666)
        except OSError as exc:
            raise OutputError(self.path, "metrics log", exc) from exc
        with os.fdopen(fd, "ab") as fh:
            fh.write(line)
            fh.flush()

    def read(self) -> list[dict[str, Any]]:
        if not os.path.lexists(self.path):
            return []
        lines = read_text(self.path, what="metrics log").splitlines()
        rows = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):  # ValueError: invalid JSON or an integer of too many digits
                if number == len(lines):
                    break  # a line cut short by a kill
                raise DataError(self.path, "not a JSON line", f"line {number}") from None
            if not isinstance(row, dict):
                raise DataError(self.path, f"a record must be an object, found {type_word(row)}", f"line {number}")
            step = row.get("step", 0)
            if type(step) is not int:
                raise DataError(self.path, f"step must be an integer, found {type_word(step)}", f"line {number}")
            rows.append(row)
        return rows

    def truncate_after(self, global_step: int) -> None:
        """Keep only records with ``step <= global_step`` (records without a step are kept)."""
        if not self.enabled or not os.path.lexists(self.path):
            return
        atomic.refuse_link(self.path, "metrics log")
        kept = [r for r in self.read() if r.get("step", 0) <= global_step]
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
        """The sums and count :meth:`state_dict` saved; anything else (a checkpoint handed over by someone
        else) is a ValueError, which the checkpoint loader reports naming the file."""
        import torch

        sums, count = state["sums"], state["count"]
        numbers = isinstance(sums, Mapping) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in sums.values())
        if not numbers or type(count) is not int or count < 0:
            raise ValueError("running means must be numbers and a non-negative count")
        self.sums = {k: torch.tensor(v, dtype=torch.float32, device=device) for k, v in sums.items()}
        self.count = count
