"""Where and how work runs: device choice, mixed precision and the ``torchrun`` process group.

The only place that decides these; every command and trainer asks here. Importing this package does not
import torch (the functions import it when called).
"""

from __future__ import annotations

from .device import amp_enabled, autocast, choose_device, grad_scaler, select_device, use_channels_last
from .distributed import (
    DistContext,
    all_reduce_mean,
    barrier,
    broadcast_object,
    env_context,
    gather_objects,
    init_distributed,
    shutdown,
)

__all__ = [
    "DistContext",
    "all_reduce_mean",
    "amp_enabled",
    "autocast",
    "barrier",
    "broadcast_object",
    "choose_device",
    "env_context",
    "gather_objects",
    "grad_scaler",
    "init_distributed",
    "select_device",
    "shutdown",
    "use_channels_last",
]
