"""Data-parallel setup from the environment ``torchrun`` provides (RANK, WORLD_SIZE, LOCAL_RANK).

One code path for one process and many: without those variables :func:`init_distributed` returns a
single-process context and nothing is initialised. The backend is NCCL on CUDA and gloo on CPU, so the
same multi-process run (and its tests) works on a laptop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


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


def init_distributed(device_type: str = "cpu") -> DistContext:
    """Join the process group when launched by ``torchrun``; NCCL for CUDA, gloo otherwise."""
    import torch.distributed as dist

    ctx = env_context()
    if not ctx.distributed:
        return ctx
    backend = "nccl" if device_type == "cuda" else "gloo"
    if not dist.is_initialized():
        if device_type == "cuda":
            import torch

            torch.cuda.set_device(ctx.local_rank)
        dist.init_process_group(backend=backend)
    return DistContext(ctx.rank, ctx.world_size, ctx.local_rank, backend)


def shutdown(ctx: DistContext) -> None:
    import torch.distributed as dist

    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    import torch.distributed as dist

    if ctx.distributed and dist.is_initialized():
        dist.barrier()


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
