"""Generic training-loop utilities shared by every trainer (FR models, generators).

* :mod:`.device`: device choice with CPU fallback, AMP and GradScaler only on CUDA, channels_last policy.
* :mod:`.distributed`: ``torchrun`` environment -> process group (NCCL on GPU, gloo on CPU).
* :mod:`.checkpoint`: exact-resume checkpoints (model, head, optimizer, scheduler, scaler, RNGs, position).
* :mod:`.schedule`: per-step LR schedules (step, cosine, poly, warm-up) stated in epochs.
* :mod:`.sampling`: deterministic global batches split over ranks, resumable mid-epoch.
* :mod:`.data`: reader -> tensors in [-1, 1] with per-sample seeded flip / RandomErasing.
* :mod:`.metrics_log`: ``metrics.jsonl``.

Importing this package does not import torch; the submodules import it inside their functions.
"""

from __future__ import annotations

from .checkpoint import (
    Position,
    capture_rng_state,
    load_training_checkpoint,
    restore_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from .device import amp_enabled, autocast, grad_scaler, select_device, use_channels_last
from .distributed import DistContext, barrier, broadcast_object, gather_objects, init_distributed, shutdown
from .metrics_log import MetricsLog
from .sampling import GlobalBatchSampler
from .schedule import LRSchedule, build_scheduler

__all__ = [
    "DistContext",
    "GlobalBatchSampler",
    "LRSchedule",
    "MetricsLog",
    "Position",
    "amp_enabled",
    "autocast",
    "barrier",
    "broadcast_object",
    "build_scheduler",
    "capture_rng_state",
    "gather_objects",
    "grad_scaler",
    "init_distributed",
    "load_training_checkpoint",
    "restore_checkpoint",
    "restore_rng_state",
    "save_checkpoint",
    "select_device",
    "shutdown",
    "use_channels_last",
]
