"""Training checkpoints that resume *exactly*: weights, optimizer, schedule, scaler, RNGs and position.

Everything is stored as tensors and plain Python values so the file loads with ``weights_only=True``
(through :mod:`facebench.safe_load`); the numpy RNG key becomes a tensor for that reason. A checkpoint
is written under a temporary name and renamed, so a kill while saving leaves the previous one intact.
"""

from __future__ import annotations

import os
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import ConfigError, DataError
from ..safe_load import load_checkpoint

CHECKPOINT_FORMAT = 1
#: The file name of the latest checkpoint in a training run directory (FR and Vec2Face trainers).
CHECKPOINT = "checkpoint.pt"


def check_resume(run_dir: str | os.PathLike, resume: bool) -> Path:
    """The checkpoint path of ``run_dir``. A fresh run refuses a directory that already holds one (both
    trainers ask here); ``resume`` without a checkpoint yet (killed before the first one) starts over."""
    path = Path(run_dir) / CHECKPOINT
    if path.exists() and not resume:
        raise ConfigError(f"{run_dir}: holds a checkpoint of an earlier run; pass --resume to continue it "
                          "or choose another --out")
    return path


@dataclass
class Position:
    """Where training stands: ``epoch`` (0-based) and optimizer steps done in it and in total."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0


def capture_rng_state() -> dict[str, Any]:
    """The Python, numpy and torch (CPU and every CUDA device) random states of this process."""
    import numpy as np
    import torch

    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    ns = state["numpy"]
    np.random.set_state({
        "bit_generator": ns["bit_generator"],
        "state": {"key": ns["key"].numpy().astype(np.uint32), "pos": ns["pos"]},
        "has_gauss": ns["has_gauss"],
        "gauss": ns["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        # A run saved on more GPUs than this process sees (CUDA_VISIBLE_DEVICES, a smaller node) restores
        # the devices it has; a device it saved no state for keeps its own.
        saved = list(state["cuda"])
        for index in range(min(len(saved), torch.cuda.device_count())):
            torch.cuda.set_rng_state(saved[index], index)


def _state(obj: Any) -> Any:
    return obj.state_dict() if obj is not None else None


def save_checkpoint(
    path: str | os.PathLike,
    *,
    position: Position,
    model: Any = None,
    head: Any = None,
    optimizer: Any = None,
    scheduler: Any = None,
    scaler: Any = None,
    rng: list[dict[str, Any]] | dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write one checkpoint atomically; ``rng`` defaults to this process's state (a list = one per rank)."""
    import torch

    payload = {
        "format": CHECKPOINT_FORMAT,
        "position": asdict(position),
        "model": _state(model),
        "head": _state(head),
        "optimizer": _state(optimizer),
        "scheduler": _state(scheduler),
        "scaler": _state(scaler),
        "rng": rng if rng is not None else capture_rng_state(),
        "extra": dict(extra or {}),
    }
    path = Path(path)
    with atomic.atomic_path(path, "training checkpoint") as tmp:
        torch.save(payload, tmp)
    return path


def load_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (safely), checking its structure."""
    data = load_checkpoint(path, what="training checkpoint")
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT or "position" not in data:
        raise DataError(path, "not a facebench training checkpoint (missing 'format'/'position')")
    data["position"] = Position(**data["position"])
    return data


def restore_checkpoint(
    data: dict[str, Any],
    *,
    model: Any = None,
    head: Any = None,
    optimizer: Any = None,
    scheduler: Any = None,
    scaler: Any = None,
    rank: int = 0,
    restore_rng: bool = True,
) -> Position:
    """Load the states in ``data`` into the given objects and return the position to continue from."""
    for name, obj in (("model", model), ("head", head), ("optimizer", optimizer),
                      ("scheduler", scheduler), ("scaler", scaler)):
        if obj is not None and data.get(name) is not None:
            if name == "scaler" and not data[name]:
                continue  # saved by a disabled GradScaler (CPU, or AMP off): an enabled one starts fresh
            obj.load_state_dict(data[name])
    rng = data.get("rng")
    if restore_rng and rng is not None:
        if isinstance(rng, list):
            if rank < len(rng):
                restore_rng_state(rng[rank])
        else:
            restore_rng_state(rng)
    return data["position"]
