"""Data-parallel setup from the environment ``torchrun`` provides (RANK, WORLD_SIZE, LOCAL_RANK).

One code path for one process and many: without those variables :func:`init_distributed` returns a
single-process context and nothing is initialised. The backend follows the device: NCCL on CUDA, gloo
on CPU (``--device cpu`` under torchrun is gloo even on a GPU machine), so the same multi-process run
(and its tests) works on a laptop.

Two timeouts, both in seconds from the environment:

* ``FACEBENCH_DIST_TIMEOUT`` (default 1800): every collective of the process group. NCCL's own default
  (10 minutes) is too short for a first step behind a cold filesystem; a hang still ends in bounded time.
* ``FACEBENCH_WAIT_TIMEOUT`` (default 86400): :func:`wait_for_all`, the barrier where ranks wait for
  *uneven* one-off work (rank 0 writing provenance, a rank's last generation shards). It runs on a
  separate gloo group, so no NCCL watchdog fires while one rank is busy for an hour.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..errors import ConfigError

DEFAULT_TIMEOUT_S = 1800.0
DEFAULT_WAIT_TIMEOUT_S = 86400.0

_WAIT_GROUP: Any = None  # the gloo group of wait_for_all, made with the process group


@dataclass(frozen=True)
class DistContext:
    """Who this process is in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_context() -> DistContext:
    """The rank facts set by ``torchrun`` (a single process when they are absent)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ConfigError(f"malformed torchrun environment (RANK/WORLD_SIZE/LOCAL_RANK): {exc}") from None
    return DistContext(rank=rank, world_size=world, local_rank=local)


def _seconds(name: str, default: float) -> timedelta:
    text = os.environ.get(name, "").strip()
    if not text:
        return timedelta(seconds=default)
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r}: expected a number of seconds") from None
    if value <= 0:
        raise ConfigError(f"{name}={text!r}: the timeout must be positive")
    return timedelta(seconds=value)


def dist_timeout() -> timedelta:
    """The process group's collective timeout (``FACEBENCH_DIST_TIMEOUT`` seconds, default 30 minutes)."""
    return _seconds("FACEBENCH_DIST_TIMEOUT", DEFAULT_TIMEOUT_S)


def wait_timeout() -> timedelta:
    """How long :func:`wait_for_all` waits (``FACEBENCH_WAIT_TIMEOUT`` seconds, default one day)."""
    return _seconds("FACEBENCH_WAIT_TIMEOUT", DEFAULT_WAIT_TIMEOUT_S)


def init_distributed(device: Any = "cpu") -> DistContext:
    """Join the process group when launched by ``torchrun``.

    ``device`` is the rank's device (a ``torch.device``, or a type name such as ``"cuda"``, meaning
    ``cuda:LOCAL_RANK``). On CUDA the rank's GPU becomes the current device *before* the group is made
    and is passed as ``device_id``, so every rank makes its context on its own GPU (not all on GPU 0)
    and NCCL binds its communicator to it. The collective timeout is :func:`dist_timeout`.
    """
    import torch
    import torch.distributed as dist

    global _WAIT_GROUP
    ctx = env_context()
    if not ctx.distributed:
        return ctx
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", ctx.local_rank)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if not dist.is_initialized():
        options: dict[str, Any] = {"backend": backend, "timeout": dist_timeout()}
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
            options["device_id"] = dev
        dist.init_process_group(**options)
        _WAIT_GROUP = dist.new_group(backend="gloo", timeout=max(wait_timeout(), dist_timeout()))
    else:
        backend = dist.get_backend()
    return DistContext(ctx.rank, ctx.world_size, ctx.local_rank, backend)


@contextlib.contextmanager
def process_group(device: Any = "cpu") -> Iterator[DistContext]:
    """:func:`init_distributed` for the ``with`` block; the group is destroyed at its end only when the
    block created it (a library call inside a trainer's job leaves the trainer's group alone)."""
    import torch.distributed as dist

    created = env_context().distributed and not dist.is_initialized()
    ctx = init_distributed(device)
    try:
        yield ctx
    finally:
        if created:
            shutdown(ctx)


def shutdown(ctx: DistContext) -> None:
    import torch.distributed as dist

    global _WAIT_GROUP
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
    _WAIT_GROUP = None


def barrier(ctx: DistContext) -> None:
    """A barrier under the collective timeout: for ranks that arrive together (after equal work)."""
    import torch.distributed as dist

    if ctx.distributed and dist.is_initialized():
        if ctx.backend == "nccl":
            import torch

            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def wait_for_all(ctx: DistContext) -> None:
    """A barrier for *uneven* work (one rank hashing or writing while the others wait): a gloo group with
    :func:`wait_timeout`, so the wait is neither an NCCL collective nor bounded by the step timeout."""
    import torch.distributed as dist

    if not (ctx.distributed and dist.is_initialized()):
        return
    dist.barrier(group=_WAIT_GROUP) if _WAIT_GROUP is not None else dist.barrier()


def gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order (``[obj]`` in a single process)."""
    import torch.distributed as dist

    if not ctx.distributed:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(ctx: DistContext, obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank."""
    import torch.distributed as dist

    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_mean(ctx: DistContext, value: Any) -> Any:
    """The mean over ranks of a Python number (returned as a float) or of a tensor (returned as a tensor
    on its own device, so device-side sums need no host copy before the reduction)."""
    import torch
    import torch.distributed as dist

    if isinstance(value, torch.Tensor):
        if not ctx.distributed:
            return value
        t = value.detach().clone()
        dist.all_reduce(t)
        return t / ctx.world_size
    if not ctx.distributed:
        return float(value)
    t = torch.tensor([float(value)], dtype=torch.float64)
    if ctx.backend == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return float(t.item()) / ctx.world_size


def all_reduce_sum_(ctx: DistContext, tensor: Any) -> Any:
    """Sum ``tensor`` over ranks in place (on the device the backend needs) and return it."""
    import torch.distributed as dist

    if ctx is not None and ctx.distributed:
        dist.all_reduce(tensor)
    return tensor
