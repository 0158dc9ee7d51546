"""Result rows of the report's runs as plain records, for the sections of the newer protocols.

Built on :func:`.sections.measured_rows` (the same dataset labels the accuracy table shows); a record is
one row of ``results.json`` as a dict without the cells pandas filled for keys the row did not have.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from facebench.report.loading import RunData

from .published import canonical_benchmark
from .sections import measured_rows


@dataclass
class Record:
    label: str  # the training set, shared by every run that measured it (no run suffix)
    shown: str  # the label as the accuracy table shows it (with the run when two runs share a label)
    run: str
    real: bool  # from a run named with ``report --real``
    row: dict[str, Any]

    @property
    def benchmark(self) -> str:
        return canonical_benchmark(self.row["benchmark"])

    @property
    def protocol(self) -> str:
        return str(self.row.get("protocol", "verification"))


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def records(runs: Sequence[RunData], protocol: str | None = None) -> list[Record]:
    out = []
    for measured in measured_rows(runs):
        for _, rec in measured["rows"].iterrows():
            row = {k: v for k, v in rec.items() if _present(v)}
            item = Record(measured["label"], measured["dataset"], measured["run"], measured["real"], row)
            if protocol is None or item.protocol == protocol:
                out.append(item)
    return out


def percent(value: Any) -> float | None:
    """A fraction as percent; None stays None."""
    return None if not _present(value) else 100.0 * float(value)


def count(value: Any) -> str:
    """A count as an integer (the result frame turns integer columns with gaps into floats); '?' if absent."""
    return "?" if not _present(value) else str(int(value))
