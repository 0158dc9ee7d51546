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


AMP_DTYPES = ("fp16", "bf16")


def amp_dtype(name: str = "fp16") -> Any:
    """``"fp16"`` -> ``torch.float16`` (needs loss scaling), ``"bf16"`` -> ``torch.bfloat16`` (fp32's range,
    no scaler; Ampere and newer GPUs)."""
    import torch

    if name not in AMP_DTYPES:
        raise ConfigError(f"unknown mixed-precision dtype '{name}' (expected one of: {', '.join(AMP_DTYPES)})")
    return torch.float16 if name == "fp16" else torch.bfloat16


def device_type(device: Any) -> str:
    """``"cuda"`` for ``torch.device("cuda", 1)``, ``"cuda:1"`` or ``"cuda"``; likewise ``cpu``, ``mps``."""
    return getattr(device, "type", None) or str(device).split(":", 1)[0]


def amp_enabled(device: Any, requested: bool) -> bool:
    """Mixed precision is used only when asked for *and* the device is CUDA."""
    return bool(requested) and device_type(device) == "cuda"


def autocast(device: Any, enabled: bool, dtype: Any = None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on CUDA when ``enabled`` (``dtype`` a torch dtype or ``"fp16"``/``"bf16"``;
    default fp16), else a no-op context."""
    import torch

    if not amp_enabled(device, enabled):
        return contextlib.nullcontext()
    if isinstance(dtype, str):
        dtype = amp_dtype(dtype)
    return torch.autocast(device_type="cuda", dtype=dtype or torch.float16)


def grad_scaler(device: Any, enabled: bool, growth_interval: int = 100, dtype: Any = "fp16") -> Any:
    """A ``GradScaler`` that is active only for fp16 on CUDA (a disabled one is a pass-through; bf16 has
    fp32's exponent range and needs no scaling)."""
    import torch

    if isinstance(dtype, str):
        dtype = amp_dtype(dtype)
    active = amp_enabled(device, enabled) and dtype == torch.float16
    return torch.amp.GradScaler("cuda", enabled=active, growth_interval=growth_interval)


def configure_backends(device: Any, *, fixed_size: bool = True, tf32: bool = True) -> None:
    """Kernel choices for training on ``device``: cuDNN autotuning when every batch has the same shape
    (``fixed_size``; it re-tunes for each new shape, so variable sizes lose), and TF32 tensor-core
    matmuls and convolutions (about 10 mantissa bits: fine for training, never for exact thresholds, see
    :func:`exact_fp32`). Nothing changes on CPU."""
    import torch

    if device_type(device) != "cuda":
        return
    torch.backends.cudnn.benchmark = bool(fixed_size)
    torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
    torch.backends.cudnn.allow_tf32 = bool(tf32)


@contextlib.contextmanager
def exact_fp32():
    """Full fp32 matmuls inside the block (no TF32 on CUDA, no reduced-precision float32 matmuls on
    CPU), restoring the previous settings after: for products compared against a threshold."""
    import torch

    precision = torch.get_float32_matmul_precision()
    cuda_tf32 = torch.backends.cuda.matmul.allow_tf32
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = cuda_tf32
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
        torch.set_float32_matmul_precision(precision)  # last: the tf32 switch above also sets it


def use_channels_last(device: Any, requested: bool | None) -> bool:
    """``None`` means "where it helps": CUDA (tensor-core convolutions) and CPU (oneDNN convolutions;
    benchmarks/fr_train.py measured +30% for SE-IResNet50 training on CPU), not MPS."""
    if requested is None:
        return device_type(device) in ("cuda", "cpu")
    return bool(requested)
