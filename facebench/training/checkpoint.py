"""Training checkpoints that resume *exactly*: weights, optimizer, schedule, scaler, RNGs and position.

Everything is stored as tensors and plain Python values so the file loads with ``weights_only=True``
(through :mod:`facebench.safe_load`); the numpy RNG key becomes a tensor for that reason. A checkpoint
is written under a temporary name and renamed, so a kill while saving leaves the previous one intact.

A checkpoint given to ``--resume`` / ``--init`` may come from anywhere: what it holds is checked against
the objects it is loaded into (a position of non-negative integers, state dicts with this model's keys and
shapes, optimizer and scheduler states shaped like this run's), and anything that does not fit is one
error naming the file and the part, never a traceback from inside torch later in training.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from .. import atomic
from ..errors import ConfigError, DataError, first_line
from ..safe_load import expect, load_checkpoint, state_dict_mismatch, type_word

CHECKPOINT_FORMAT = 1
#: The file name of the latest checkpoint in a training run directory (FR and Vec2Face trainers).
CHECKPOINT = "checkpoint.pt"


def check_resume(run_dir: str | os.PathLike, resume: bool) -> Path:
    """The checkpoint path of ``run_dir``. A fresh run refuses a directory that already holds one (both
    trainers ask here); ``resume`` without a checkpoint yet (killed before the first one) starts over."""
    path = atomic.refuse_link(Path(run_dir) / CHECKPOINT, "training checkpoint")
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


def position_from(value: Any, path: str | os.PathLike, key: str = "position") -> Position:
    """A checkpoint's saved :class:`Position`: an object of exactly its fields, each a non-negative integer."""
    names = [f.name for f in fields(Position)]
    if not isinstance(value, dict) or sorted(map(str, value)) != sorted(names):
        found = ", ".join(sorted(map(str, value))) if isinstance(value, dict) else type_word(value)
        raise DataError(path, f"{key} must be an object with {', '.join(names)}, found {found or 'nothing'}")
    for name in names:
        if expect(path, value[name], int, f"{key}.{name}") < 0:
            raise DataError(path, f"{key}.{name} is negative ({value[name]})")
    if value["step_in_epoch"] > value["global_step"]:
        raise DataError(path, f"{key}: step_in_epoch {value['step_in_epoch']} is past global_step "
                              f"{value['global_step']}")
    return Position(**{name: value[name] for name in names})


def check_position(position: Position, steps_per_epoch: int, epochs: int, path: str | os.PathLike) -> Position:
    """``position`` when this run can continue from it: inside (or at the end of) an epoch of this run's
    length, at most at the end of its last epoch."""
    if position.step_in_epoch > steps_per_epoch or position.epoch > epochs:
        raise DataError(path, f"position (epoch {position.epoch}, step {position.step_in_epoch} of it) does not "
                              f"fit this run's {epochs} epochs of {steps_per_epoch} steps")
    return position


def load_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (safely), checking its structure: the states
    themselves are checked as :func:`restore_checkpoint` loads them."""
    data = load_checkpoint(path, what="training checkpoint")
    # ``format`` compared only as a plain integer: a tensor there would compare element-wise
    if not isinstance(data, dict) or type(data.get("format")) is not int or data["format"] != CHECKPOINT_FORMAT \
            or "position" not in data:
        raise DataError(path, "not a facebench training checkpoint (missing 'format'/'position')")
    data["position"] = position_from(data["position"], path)
    expect(path, data.get("extra"), dict, "extra")
    for key in ("model", "head", "optimizer", "scheduler", "scaler"):
        expect(path, data.get(key), (dict, type(None)), key)
    expect(path, data.get("rng"), (dict, list, type(None)), "rng")
    return data


@contextlib.contextmanager
def restoring(path: str | os.PathLike, key: str) -> Iterator[None]:
    """Loading a checkpoint's ``key`` into live objects: whatever torch, numpy or ``random`` refuse on the
    way is one error naming the file and the part."""
    try:
        yield
    except DataError:
        raise
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError, OverflowError) as exc:
        raise DataError(path, f"'{key}' does not fit this run ({first_line(exc)})") from None


def _unlike(saved: Any, ref: Any, where: str) -> str | None:
    """Where ``saved`` is not shaped like ``ref`` (a freshly built object's state): types (numbers alike),
    mapping keys, list lengths, tensor shapes and dtypes; None where it is. ``None`` in ``ref`` admits
    anything (an optional value)."""
    import torch

    if ref is None:
        return None
    if isinstance(ref, torch.Tensor):
        if not isinstance(saved, torch.Tensor):
            return f"{where} must be a tensor, found {type_word(saved)}"
        if saved.shape != ref.shape or saved.dtype != ref.dtype:
            return f"{where} is {saved.dtype} {tuple(saved.shape)}, expected {ref.dtype} {tuple(ref.shape)}"
        return None
    if isinstance(ref, bool) or isinstance(ref, str):
        ok = isinstance(saved, type(ref))
    elif isinstance(ref, int | float):
        ok = isinstance(saved, int | float) and not isinstance(saved, bool)
    elif isinstance(ref, dict):
        if not isinstance(saved, dict):
            return f"{where} must be an object, found {type_word(saved)}"
        missing = [str(k) for k in ref if k not in saved]
        if missing:
            return f"{where} has no {', '.join(missing[:3])}"
        return next((p for k in ref if (p := _unlike(saved[k], ref[k], f"{where}.{k}"))), None)
    elif isinstance(ref, list | tuple):
        if not isinstance(saved, list | tuple) or len(saved) != len(ref):
            return f"{where} must be a list of {len(ref)}, found {type_word(saved)}"
        return next((p for i, (a, b) in enumerate(zip(saved, ref)) if (p := _unlike(a, b, f"{where}[{i}]"))), None)
    else:
        ok = isinstance(saved, type(ref))
    return None if ok else f"{where} must be {type_word(ref)}, found {type_word(saved)}"


def load_like(obj: Any, state: Any, path: str | os.PathLike, key: str) -> None:
    """``obj.load_state_dict(state)`` once ``state`` is shaped like ``obj``'s own (an LR scheduler or a
    GradScaler accepts anything and fails steps later)."""
    problem = _unlike(state, obj.state_dict(), key)
    if problem:
        raise DataError(path, problem)
    with restoring(path, key):
        obj.load_state_dict(state)


def load_module_state(module: Any, state: Any, path: str | os.PathLike, key: str, what: str = "model") -> None:
    """A module's weights, strictly: a state dict of tensors with exactly its keys and shapes."""
    import torch

    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(path, f"'{key}' is not a state dict of tensors")
    problem = state_dict_mismatch(module.state_dict(), state)
    if problem:
        raise DataError(path, f"'{key}' does not match the {what} layout: {problem}")
    with restoring(path, key):
        module.load_state_dict(state, strict=True)


def load_optimizer_state(optimizer: Any, state: Any, path: str | os.PathLike, key: str = "optimizer") -> None:
    """An optimizer's state, checked against its parameters: the same groups and sizes, hyper-parameters of
    the same types, and per-parameter buffers of the parameters' shapes (torch accepts a wrong shape and
    fails at the next step)."""
    import torch

    if not isinstance(state, dict) or not isinstance(state.get("state"), dict) \
            or not isinstance(state.get("param_groups"), list):
        raise DataError(path, f"'{key}' is not an optimizer state (state and param_groups)")
    current = optimizer.state_dict()["param_groups"]
    groups = state["param_groups"]
    if len(groups) != len(current) or not all(isinstance(g, dict) for g in groups):
        raise DataError(path, f"'{key}' has {len(groups)} parameter groups, this run's optimizer {len(current)}")
    params: dict[Any, Any] = {}
    for i, (saved, mine, live) in enumerate(zip(groups, current, optimizer.param_groups)):
        ids = saved.get("params")
        if not isinstance(ids, list) or len(ids) != len(mine["params"]) or not all(type(x) is int for x in ids):
            raise DataError(path, f"'{key}' group {i} does not list this run's {len(mine['params'])} parameters")
        # hyper-parameters both name (a release checkpoint from another torch may lack newer ones; torch
        # fills those in) must be of this optimizer's types
        problem = _unlike({k: v for k, v in saved.items() if k != "params"},
                          {k: v for k, v in mine.items() if k != "params" and k in saved}, f"{key}.param_groups[{i}]")
        if problem:
            raise DataError(path, problem)
        params.update(zip(ids, live["params"]))
    for pid, buffers in state["state"].items():
        if pid not in params or not isinstance(buffers, dict):
            raise DataError(path, f"'{key}' holds state for parameter {pid}, which this run's optimizer lacks")
        for name, value in buffers.items():
            if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
                continue
            if not isinstance(value, torch.Tensor):
                raise DataError(path, f"'{key}' state {name} of parameter {pid} must be a tensor or a number, "
                                      f"found {type_word(value)}")
            if value.dim() > 0 and value.shape != params[pid].shape:
                raise DataError(path, f"'{key}' state {name} of parameter {pid} has shape {tuple(value.shape)}, "
                                      f"the parameter {tuple(params[pid].shape)}")
    with restoring(path, key):
        optimizer.load_state_dict(state)


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
    path: str | os.PathLike = "checkpoint",
) -> Position:
    """Load the states in ``data`` (read by :func:`load_training_checkpoint` from ``path``) into the given
    objects, each checked first, and return the position to continue from."""
    for name, module in (("model", model), ("head", head)):
        if module is not None and data.get(name) is not None:
            load_module_state(module, data[name], path, name)
    if optimizer is not None and data.get("optimizer") is not None:
        load_optimizer_state(optimizer, data["optimizer"], path)
    if scheduler is not None and data.get("scheduler") is not None:
        # the schedule follows from the recipe and the dataset (both checked): a saved one must be the same
        # (shaped like this run's first, so a tensor in it is named rather than compared element-wise)
        saved, own = data["scheduler"].get("lr_lambdas"), scheduler.state_dict().get("lr_lambdas")
        problem = _unlike(saved, own, "scheduler.lr_lambdas")
        if problem:
            raise DataError(path, problem)
        if saved != own:
            raise DataError(path, "'scheduler' holds another learning-rate schedule than this run's recipe")
        load_like(scheduler, data["scheduler"], path, "scheduler")
    if scaler is not None and data.get("scaler"):  # {}: saved by a disabled GradScaler; an enabled one starts fresh
        load_like(scaler, data["scaler"], path, "scaler")
    rng = data.get("rng")
    if restore_rng and rng is not None:
        with restoring(path, "rng"):
            if isinstance(rng, list):
                if rank < len(rng):
                    restore_rng_state(rng[rank])
            else:
                restore_rng_state(rng)
    return data["position"]
