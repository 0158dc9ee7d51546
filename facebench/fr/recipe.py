"""The schema of an FR training recipe (the TOML files that ``register_recipes`` plugins ship).

A recipe names a backbone and a head from the registries and fixes every number that changes the
result: batch, optimizer, schedule, augmentation, precision. Typos fail when the recipe is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import build_config
from ..errors import ConfigError


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
    #: global batch: split over the processes of a torchrun job
    batch_size: int = 128
    #: images per forward pass inside a process (gradient accumulation); 0 = the whole per-process batch
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
    fp16: bool = True
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
        if self.optim.batch_size < 1 or self.optim.epochs < 1:
            raise ConfigError(f"recipe '{self.name}': optim.batch_size and optim.epochs must be positive")
        if self.optim.name not in ("sgd", "adamw"):
            raise ConfigError(f"recipe '{self.name}': optim.name must be 'sgd' or 'adamw', got '{self.optim.name}'")


def build_recipe(data: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> FRRecipe:
    """A checked :class:`FRRecipe` from a recipe mapping plus ``--set key=value`` overrides."""
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
