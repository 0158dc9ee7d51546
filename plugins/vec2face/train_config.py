"""Configuration of ``facebench train-generator``: defaults are the official release's (README command
and training-script defaults); ``configs/tiny.toml`` is the CPU configuration used by tests and demos.

A config whose ``model`` is a Vec2Face+ model (``vec2face_plus``, ``vec2face_plus_tiny``) trains Vec2Face+'s
pose model (:class:`PoseTrainConfig`, shipped as ``vec2face_plus_pose`` and ``vec2face_plus_pose_tiny``);
any other trains Vec2Face itself (:class:`TrainGeneratorConfig`, shipped as ``base`` and ``tiny``)."""

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
        if CONFIGS[self.model].lora_rank:
            raise ConfigError(f"config key 'model': '{self.model}' has LoRA adapters, which Vec2Face+ trains with its "
                              "pose model: --config vec2face_plus_pose (model = \"vec2face_plus\")")
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


@dataclass
class LoRASettings:
    """The adapters on every block's attention ``qkv`` and ``proj`` (``--lora_r``, ``--lora_alpha``,
    ``--lora_dropout`` of the release's ``pose_training.py``; the README trains with rank 8, the script's
    default is 4)."""

    rank: int = 8
    alpha: float = 32.0
    dropout: float = 0.0


@dataclass
class PoseLossWeights:
    """The release's pose objective ``rec + 0.2 x ploss + ssim_l + fid`` with ``ploss = 2 x LPIPS``: the
    terms of :class:`LossWeights` without the token and GAN terms. 0 switches a term off."""

    pixel: float = 1.0        # mean squared error between generated and real image
    perceptual: float = 0.2   # x p_loss = 2 x LPIPS (so 0.4 x LPIPS)
    ssim: float = 1.0         # x (1 - SSIM)
    identity: float = 1.0     # mean(1 - cos(FR(generated), input feature)): the release's "fid"


#: Vec2Face+ models whose pose model ``train-generator`` trains, and the Vec2Face layout each adapts.
POSE_MODELS = {"vec2face_plus": "vec2face_vit_base_patch16", "vec2face_plus_tiny": "vec2face_tiny"}


def pose_masking() -> MaskingConfig:
    """``pose_training.py``'s masking: ratio ~ truncated normal, mean 0.7, std 0.1, on [0.6, 0.8]."""
    return MaskingConfig(ratio_min=0.6, ratio_max=0.8, mean=0.7, std=0.1)


@dataclass
class PoseTrainConfig:
    """Vec2Face+'s pose model (PoseCondModel + LoRA on the frozen generator) as ``pose_training.py`` trains
    it with the README's command: AdamW (lr 1e-4, weight decay 0.05) over the pose model and the adapters,
    per-step linear warm-up from 1e-3 x lr over one epoch, then cosine to ``min_lr`` 1e-6 over 10 epochs,
    64 images per process. The README passes ``--use_amp``, which that script's ``store_false`` flag turns
    *off*: the release trains this model in fp32 (``amp = false``)."""

    model: str = "vec2face_plus"
    feature_dim: int = 0                 # width of the identity vectors (0: the model's, 512 as released)
    epochs: int = 10
    batch_size: int = 64                 # per process
    lr: float = 1e-4                     # not scaled with the batch (the release uses --lr as given)
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    cosine_lr: bool = True               # the README's --cosine_lr; false: constant lr, no warm-up (as released)
    warmup_epochs: float = 1.0           # linear warm-up (only with cosine_lr, as released)
    warmup_start_factor: float = 1e-3    # LinearLR's start_factor: the warm-up starts at lr x 1e-3
    grad_clip: float = 0.0               # the release clips nothing (0: none; the norm is still logged)
    lora: LoRASettings = field(default_factory=LoRASettings)
    perceptual: str = "lpips-vgg16"      # or "toy" (built-in frozen net, no weights file)
    perceptual_dropout: float = 0.5      # the release's LPIPS stays in training mode: dropout 0.5 on each depth
    vgg_weights: str = "vgg16-397923af.pth"
    lpips_weights: str = "vgg.pth"
    masking: MaskingConfig = field(default_factory=pose_masking)
    losses: PoseLossWeights = field(default_factory=PoseLossWeights)
    amp: bool = False                    # as the README's command runs it (see above); true: fp16 + GradScaler
    amp_dtype: str = "fp16"
    device: str = "auto"
    seed: int = 0
    num_workers: int = 2
    log_every: int = 20
    checkpoint_every: int = 0            # optimizer steps between mid-epoch checkpoints (0: per epoch only)
    max_steps: int = 0                   # stop after this many optimizer steps in total (0: no cap)
    grid_samples: int = 8                # images in the per-epoch grid (real, landmark image, generated)
    eval_samples: int = 256              # images for the final identity check (needs an extractor; 0: skip)

    def __post_init__(self) -> None:
        if self.model not in POSE_MODELS:
            raise ConfigError(f"config key 'model': unknown Vec2Face+ model '{self.model}' "
                              f"(known: {', '.join(POSE_MODELS)})")
        if self.feature_dim < 0:
            raise ConfigError(f"config key 'feature_dim' must be 0 (the model's) or positive, got {self.feature_dim}")
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"config key '{key}' must be at least 1, got {getattr(self, key)}")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ConfigError(f"config keys 'lr' and 'min_lr' need 0 <= min_lr <= lr and lr > 0, got "
                              f"{self.lr} and {self.min_lr}")
        if not 0 < self.warmup_start_factor <= 1 or self.warmup_epochs < 0:
            raise ConfigError("config key 'warmup_start_factor' must lie in (0, 1] and 'warmup_epochs' be >= 0")
        if self.lora.rank < 1:
            raise ConfigError(f"config key 'lora.rank' must be at least 1 (the pose model trains adapters), "
                              f"got {self.lora.rank}")
        if not 0 <= self.lora.dropout < 1 or not 0 <= self.perceptual_dropout < 1:
            raise ConfigError("config keys 'lora.dropout' and 'perceptual_dropout' must lie in [0, 1)")
        if self.amp_dtype not in AMP_DTYPES:
            raise ConfigError(f"config key 'amp_dtype' must be one of {', '.join(AMP_DTYPES)}, got '{self.amp_dtype}'")
        if self.perceptual not in ("lpips-vgg16", "toy"):
            raise ConfigError(f"config key 'perceptual' must be 'lpips-vgg16' or 'toy', got '{self.perceptual}'")

    def learning_rate(self, global_batch: int) -> float:
        return self.lr


def config_class(data: dict, overrides: list[str]) -> type:
    """Which config a TOML table (plus ``--set`` overrides) describes: a Vec2Face+ ``model`` trains the pose
    model, any other Vec2Face. The last ``model=`` override wins, as it does when the config is built."""
    model = data.get("model")
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key.strip() == "model":
            model = value.strip().strip('"').strip("'")
    return PoseTrainConfig if model in POSE_MODELS else TrainGeneratorConfig


def shipped_config(name: str) -> Path:
    """Path of a config shipped with the plugin (``base``, ``tiny``, ``vec2face_plus_pose``,
    ``vec2face_plus_pose_tiny``)."""
    path = CONFIG_DIR / f"{name}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.toml")))
        raise ConfigError(f"no shipped vec2face config '{name}' (shipped: {known})")
    return path
