"""The training-loop kit both trainers (FR models, Vec2Face) share.

* :mod:`.checkpoint`: exact-resume checkpoints (model, optimizer, scheduler, scaler, RNGs, position, extras).
* :mod:`.schedule`: per-step LR schedules (step, cosine, poly, warm-up, torch's LinearLR warm-up) stated in epochs.
* :mod:`.sampling`: deterministic global batches split over ranks, resumable mid-epoch.
* :mod:`.metrics_log`: ``metrics.jsonl`` and the device-side running means logged into it.

Devices, precision and the process group are :mod:`facebench.runtime`'s; the FR trainer is in
:mod:`facebench.fr`. Importing this package does not import torch.
"""

from __future__ import annotations

from .checkpoint import (
    CHECKPOINT,
    Position,
    capture_rng_state,
    check_position,
    check_resume,
    load_like,
    load_module_state,
    load_optimizer_state,
    load_training_checkpoint,
    position_from,
    restore_checkpoint,
    restore_rng_state,
    restoring,
    save_checkpoint,
)
from .metrics_log import MetricsLog, RunningMeans
from .sampling import GlobalBatchSampler
from .schedule import LinearWarmup, LRSchedule, build_scheduler

__all__ = [
    "CHECKPOINT",
    "GlobalBatchSampler",
    "LRSchedule",
    "LinearWarmup",
    "MetricsLog",
    "Position",
    "RunningMeans",
    "build_scheduler",
    "check_position",
    "check_resume",
    "capture_rng_state",
    "load_like",
    "load_module_state",
    "load_optimizer_state",
    "load_training_checkpoint",
    "position_from",
    "restore_checkpoint",
    "restore_rng_state",
    "restoring",
    "save_checkpoint",
]
