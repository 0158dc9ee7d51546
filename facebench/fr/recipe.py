"""The schema of an FR training recipe (the TOML files that ``register_recipes`` plugins ship).

A recipe names a backbone and a head from the registries and fixes every number that changes the
result: batch, optimizer, schedule, augmentation, precision. Typos fail when the recipe is loaded.

The batch is counted per GPU (``optim.batch_per_gpu``), as the paper's trainer and arcface_torch count
it: the BatchNorm statistics and the memory per GPU are then the recipe's on any number of GPUs, and the
global batch (what the learning rate sees) is ``batch_per_gpu x processes``, recorded in the model card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import build_config
from ..errors import ConfigError
from ..runtime.device import AMP_DTYPES


@dataclass
class ModelConfig:
    backbone: str = "se_iresnet50"
    input_size: int = 112
    embedding_size: int = 512
    #: None keeps the backbone's own default (0.4 for the SE-IResNets, 0 for insightface IResNets)
    dropout: float | None = None
    #: None = channels_last where it helps (CUDA and CPU); true/false force it
    channels_last: bool | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class HeadConfig:
    name: str = "arcface"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataConfig:
    flip: bool = True
    random_erasing: bool = False
    workers: int = 2


@dataclass
class OptimConfig:
    name: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    #: BatchNorm parameters without weight decay (the paper's trainer); false = decay everything (arcface_torch)
    no_decay_bn: bool = True
    #: images per GPU (per process) per optimizer step, as the paper's trainer counts them; the global batch
    #: is batch_per_gpu x processes (8 GPUs x 128 = 1024)
    batch_per_gpu: int = 128
    #: images per forward pass inside a process (gradient accumulation); 0 = the whole per-GPU batch
    micro_batch: int = 0
    epochs: int = 26
    #: max gradient norm (0 = no clipping)
    grad_clip: float = 5.0


@dataclass
class ScheduleConfig:
    kind: str = "step"
    milestones: list[int] = field(default_factory=lambda: [12, 20, 24])
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    min_factor: float = 0.0
    power: float = 1.0


@dataclass
class TrainConfig:
    #: mixed precision on CUDA (fp32 on CPU, where it is slower and changes results)
    fp16: bool = True
    #: the mixed-precision dtype: "fp16" (with loss scaling) or "bf16" (Ampere and newer; no scaler)
    amp_dtype: str = "fp16"
    seed: int = 0
    #: also checkpoint every N optimizer steps (0 = only at epoch end)
    checkpoint_every: int = 0
    log_every: int = 10
    val_batch_size: int = 64
    val_flip: bool = True
    #: compile the backbone with torch.compile (needs a C++ compiler on CPU; pays off on long GPU runs)
    compile: bool = False


@dataclass
class FRRecipe:
    """A complete FR training recipe."""

    name: str = "custom"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.optim.batch_per_gpu < 1 or self.optim.epochs < 1:
            raise ConfigError(f"recipe '{self.name}': optim.batch_per_gpu and optim.epochs must be positive")
        if self.train.amp_dtype not in AMP_DTYPES:
            raise ConfigError(f"recipe '{self.name}': train.amp_dtype must be one of {', '.join(AMP_DTYPES)}, "
                              f"got '{self.train.amp_dtype}'")
        if self.optim.name not in ("sgd", "adamw"):
            raise ConfigError(f"recipe '{self.name}': optim.name must be 'sgd' or 'adamw', got '{self.optim.name}'")


#: Recipe keys that were renamed, with the message that says what the new one means.
RENAMED = {
    "optim.batch_size": "optim.batch_size is now optim.batch_per_gpu: images per GPU (per process) per step, "
                        "the global batch being batch_per_gpu x processes",
}


def build_recipe(data: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> FRRecipe:
    """A checked :class:`FRRecipe` from a recipe mapping plus ``--set key=value`` overrides."""
    for key, message in RENAMED.items():
        section, name = key.split(".")
        if name in (data.get(section) or {}) or any(o.split("=", 1)[0].strip() == key for o in overrides):
            raise ConfigError(f"recipe '{data.get('name', 'custom')}': {message}")
    return build_config(FRRecipe, data, overrides)


def resolve_recipe(name_or_path: str, overrides: list[str] | tuple[str, ...] = ()) -> FRRecipe:
    """A registered recipe name, or the path of a recipe TOML file."""
    from pathlib import Path

    from ..config import read_toml
    from ..pluginmanager import registry

    path = Path(name_or_path)
    if name_or_path.endswith(".toml") or path.is_file():
        return build_recipe(read_toml(path), overrides)
    data = registry("recipe").create(name_or_path)
    return build_recipe(dict(data), overrides)
