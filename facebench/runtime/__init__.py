"""Where and how work runs: device choice, mixed precision and the ``torchrun`` process group.

The only place that decides these; every command and trainer asks here. Importing this package does not
import torch (the functions import it when called).
"""

from __future__ import annotations

from .device import (
    AMP_DTYPES,
    amp_dtype,
    amp_enabled,
    autocast,
    choose_device,
    configure_backends,
    device_type,
    exact_fp32,
    grad_scaler,
    select_device,
    use_channels_last,
)
from .distributed import (
    DistContext,
    all_reduce_mean,
    all_reduce_sum_,
    barrier,
    broadcast_object,
    dist_timeout,
    env_context,
    gather_objects,
    init_distributed,
    process_group,
    shutdown,
    wait_for_all,
    wait_timeout,
)

__all__ = [
    "AMP_DTYPES",
    "DistContext",
    "all_reduce_mean",
    "all_reduce_sum_",
    "amp_dtype",
    "amp_enabled",
    "autocast",
    "barrier",
    "broadcast_object",
    "choose_device",
    "configure_backends",
    "device_type",
    "dist_timeout",
    "env_context",
    "exact_fp32",
    "gather_objects",
    "grad_scaler",
    "init_distributed",
    "process_group",
    "select_device",
    "shutdown",
    "use_channels_last",
    "wait_for_all",
    "wait_timeout",
]
