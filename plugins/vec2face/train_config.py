"""Configuration of ``facebench train-generator``: defaults are the official release's (README command
and training-script defaults); ``configs/tiny.toml`` is the CPU configuration used by tests and demos."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from facebench.errors import ConfigError
from facebench.runtime import AMP_DTYPES

from .model import CONFIGS, MaskingConfig

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class LossWeights:
    """The weight of each term of the release's objective (``losses.Vec2FaceLoss``); every default is the
    release's. 0 switches a term off (and skips its computation)."""

    pixel: float = 1.0          # mean squared error between generated and real image
    perceptual: float = 0.1     # x p_loss = 2 x LPIPS (so 0.2 x LPIPS, as released)
    ssim: float = 0.1           # x (1 - SSIM)
    feature_map: float = 1.0    # token loss: MSE between decoder rows and the detached rows before masking
    identity: float = 1.0       # mean(1 - cos(FR(generated), input vector))
    gan: float = 1.0            # weight of g = -mean(D(generated)) from epoch disc_start (0: no GAN at all)
    adaptive_gan: bool = False  # the release's (unused) adaptive weight: gan x disc_weight x grad-norm ratio
    disc_weight: float = 0.8    # the factor of the adaptive weight (the release constructs its loss with 0.8)


@dataclass
class TrainGeneratorConfig:
    model: str = "vec2face_vit_base_patch16"
    feature_dim: int = 0                 # width of the identity vectors (0: the model's, 512 as released)
    epochs: int = 100
    batch_size: int = 32                 # per process
    blr: float = 4e-5                    # lr = blr x global batch / 112 unless lr is set
    lr: float = 0.0
    min_lr: float = 0.0
    weight_decay: float = 0.01           # AdamW's (torch's default, which the release keeps), both optimisers
    warmup_epochs: float = 5.0
    grad_clip: float = 2.0               # on the generator and on the discriminator
    disc_start: int = 80                 # epoch (0-based) from which the GAN terms are on
    disc_dims: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    isolate_discriminator: bool = False  # True: D learns from its own loss only (the release also feeds it g)
    perceptual: str = "lpips-vgg16"      # or "toy" (built-in frozen net, no weights file)
    vgg_weights: str = "vgg16-397923af.pth"
    lpips_weights: str = "vgg.pth"
    masking: MaskingConfig = field(default_factory=MaskingConfig.training)
    losses: LossWeights = field(default_factory=LossWeights)
    amp: bool = True                     # autocast + one GradScaler for both optimisers, on CUDA only
    amp_dtype: str = "fp16"              # the release's fp16 (scaled), or "bf16" (Ampere and newer; no scaler)
    device: str = "auto"
    seed: int = 0
    num_workers: int = 2
    log_every: int = 20
    checkpoint_every: int = 0            # optimizer steps between mid-epoch checkpoints (0: per epoch only)
    max_steps: int = 0                   # stop after this many optimizer steps in total (0: no cap)
    grid_samples: int = 8                # images in the per-epoch reconstruction grid
    eval_samples: int = 256              # images for the final identity check (needs an extractor; 0: skip)

    def __post_init__(self) -> None:
        if self.model not in CONFIGS:
            raise ConfigError(f"config key 'model': unknown vec2face model '{self.model}' "
                              f"(known: {', '.join(CONFIGS)})")
        if self.feature_dim < 0:
            raise ConfigError(f"config key 'feature_dim' must be 0 (the model's) or positive, got {self.feature_dim}")
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}' must be at least 1, got {getattr(self, key)}")
        if len(self.disc_dims) < 2 or any(d < 8 or d % 8 for d in self.disc_dims):
            raise ConfigError(f"config key 'disc_dims' needs at least two widths, each a multiple of 8 "
                              f"(GroupNorm groups), got {self.disc_dims}")
        if self.amp_dtype not in AMP_DTYPES:
            raise ConfigError(f"config key 'amp_dtype' must be one of {', '.join(AMP_DTYPES)}, got '{self.amp_dtype}'")
        if self.perceptual not in ("lpips-vgg16", "toy"):
            raise ConfigError(f"config key 'perceptual' must be 'lpips-vgg16' or 'toy', got '{self.perceptual}'")

    def learning_rate(self, global_batch: int) -> float:
        return self.lr if self.lr > 0 else self.blr * global_batch / 112


def shipped_config(name: str) -> Path:
    """Path of a config shipped with the plugin (``base`` or ``tiny``)."""
    path = CONFIG_DIR / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
        raise ConfigError(f"no shipped vec2face config '{name}' (shipped: {known})")
    return path
