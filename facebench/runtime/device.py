"""Where training runs and in which precision: CUDA when present, CPU otherwise, AMP only on CUDA.

Mixed precision on CPU is slower than fp32 and changes results, so a recipe that asks for fp16 quietly
trains in fp32 on CPU; the decision is made here once so every trainer behaves the same.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ..errors import ConfigError


def select_device(preference: str = "auto", local_rank: int = 0) -> Any:
    """``"auto"`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``; ``"cuda"`` without CUDA is an error."""
    import torch

    preference = (preference or "auto").lower()
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{preference}' requested but CUDA is not available; use --device cpu")
        try:
            index = int(preference.split(":", 1)[1]) if ":" in preference else local_rank
        except ValueError:
            raise ConfigError(f"unknown device '{preference}' (expected cuda or cuda:N)") from None
        count = torch.cuda.device_count()
        if not 0 <= index < count:
            raise ConfigError(f"device 'cuda:{index}' requested but this machine has {count} CUDA device"
                              f"{'s' if count != 1 else ''} (cuda:0 to cuda:{count - 1})")
        return torch.device("cuda", index)
    if preference == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError("device 'mps' requested but MPS is not available; use --device cpu")
        return torch.device("mps")
    if preference != "cpu":
        raise ConfigError(f"unknown device '{preference}' (expected auto, cpu, cuda, cuda:N or mps)")
    return torch.device("cpu")


_ANNOUNCED: set[tuple[str, str]] = set()


def choose_device(preference: str = "auto", local_rank: int = 0) -> Any:
    """:func:`select_device`, and say which device ``auto`` (or a bare ``cuda``) chose, once per choice on
    the first process of a job, so a log shows whether the GPU was found. An explicit device is not echoed."""
    import os

    device = select_device(preference, local_rank)
    key = (str(preference), str(device))
    if str(preference) != str(device) and key not in _ANNOUNCED and os.environ.get("RANK", "0") == "0":
        _ANNOUNCED.add(key)
        from ..console import console

        console.print(f"device: {device} (--device {preference})")
    return device


def amp_enabled(device: Any, requested: bool) -> bool:
    """Mixed precision is used only when asked for *and* the device is CUDA."""
    return bool(requested) and getattr(device, "type", str(device)) == "cuda"


def autocast(device: Any, enabled: bool, dtype: Any = None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on CUDA when ``enabled``, else a no-op context."""
    import torch

    if not amp_enabled(device, enabled):
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype or torch.float16)


def grad_scaler(device: Any, enabled: bool, growth_interval: int = 100) -> Any:
    """A ``GradScaler`` that is active only for fp16 on CUDA (a disabled one is a pass-through)."""
    import torch

    return torch.amp.GradScaler("cuda", enabled=amp_enabled(device, enabled), growth_interval=growth_interval)


def use_channels_last(device: Any, requested: bool | None) -> bool:
    """``None`` means "where it helps": CUDA (tensor-core convolutions) and CPU (oneDNN convolutions;
    benchmarks/fr_train.py measured +30% for SE-IResNet50 training on CPU), not MPS."""
    if requested is None:
        return getattr(device, "type", str(device)) in ("cuda", "cpu")
    return bool(requested)
