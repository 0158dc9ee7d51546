"""Feature-masked-autoencoder training of Vec2Face, step by step as the release trains it.

Each step draws one masking ratio for the batch, generates the images from the raw identity features and
evaluates the release's objective (:class:`.losses.Vec2FaceLoss`); the GAN terms switch on at epoch
``disc_start``. Both optimisers are AdamW(0.9, 0.99) stepped every iteration through one GradScaler,
gradients clipped to ``grad_clip`` each; the generator's learning rate follows the release's per-step
warm-up + half-cosine, the discriminator's stays at the base rate. ``checkpoint.pt`` is the release's
training layout (``model_vec2face``, ``model_disc``, ``optimizer_*``, ``epoch``, ``scaler``) plus what an
exact ``--resume`` needs; a release training checkpoint continues with ``--init`` (or ``--resume``).

Vec2Face+'s pose model trains on the same loop: :class:`.pose_training.PoseTrainer` overrides the parts
(modules, what trains, optimizer, schedule, step, checkpoint keys) where its release differs.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facebench import atomic
from facebench.console import console, log_line, make_progress
from facebench.errors import ConfigError, DataError
from facebench.runtime import (
    amp_dtype,
    autocast,
    choose_device,
    configure_backends,
    env_context,
    gather_objects,
    grad_scaler,
    init_distributed,
    shutdown,
)
from facebench.safe_load import expect
from facebench.training import (
    CHECKPOINT,
    GlobalBatchSampler,
    MetricsLog,
    Position,
    RunningMeans,
    capture_rng_state,
    check_position,
    load_module_state,
    load_optimizer_state,
    position_from,
    restore_rng_state,
    restoring,
)

from .checkpoint import (
    DISC_KEY,
    DISC_OPTIMIZER_KEY,
    OPTIMIZER_KEY,
    TRAINING_FORMAT,
    load_scaler_state,
    read_training_checkpoint,
    release_parameters,
)
from .discriminator import Discriminator
from .generator import CONFIG_KEY, FEATURE_SCALE_KEY, STATE_KEY
from .losses import Vec2FaceLoss, build_perceptual
from .model import MaskingConfig, Vec2Face, dropped_count, model_config
from .train_config import TrainGeneratorConfig
from .training_data import (
    CarriedError,
    FeaturePairs,
    collate_records,
    extract_features,
    feature_scale,
    load_features,
    reader_has_features,
    require_landmarks,
)

FINAL_NAME = "generator.pth"
#: The release's GradScaler (``NativeScalerWithGradNormCount``) doubles its scale after 2000 clean steps.
SCALER_GROWTH_INTERVAL = 2000


@dataclass
class ReleaseLR:
    """The release's learning rate at fractional epoch ``e = step / steps_per_epoch`` (set before every
    step): ``lr x e / warmup`` during warm-up (from 0), then half-cosine from ``lr`` to ``min_lr`` at
    ``epochs``."""

    lr: float
    min_lr: float
    warmup_epochs: float
    epochs: int
    steps_per_epoch: int

    def __call__(self, step: int) -> float:
        e = step / self.steps_per_epoch
        if e < self.warmup_epochs:
            return self.lr * e / self.warmup_epochs
        span = max(self.epochs - self.warmup_epochs, 1e-12)
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * (e - self.warmup_epochs) / span))


class ExtractorIdentity(nn.Module):
    """A frozen feature extractor as the loss's identity model: images in [-1, 1] -> raw features (the
    extractor resizes to its own input size)."""

    def __init__(self, extractor: Any):
        super().__init__()
        self.extractor = extractor  # a plain object: its frozen model is not a submodule of the loss

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.extractor.forward_tensor(images).float()


@dataclass
class GeneratorTrainResult:
    run_dir: Path
    steps: int
    epochs_done: int
    last_losses: dict[str, float]
    reconstruction: dict[str, float] | None = None


class GeneratorTrainer:
    """One training job; the same object runs alone or as one rank under ``torchrun``."""

    def __init__(self, config: TrainGeneratorConfig, reader: Any, features: np.ndarray | None,
                 run_dir: str | os.PathLike, *, extractor: Any = None, scale: dict[str, Any] | None = None):
        self.cfg = config
        self.run_dir = Path(run_dir)
        self.device = choose_device(config.device, env_context().local_rank)
        self.dist = init_distributed(self.device)
        self.amp = config.amp and self.device.type == "cuda"
        self.amp_dtype = amp_dtype(config.amp_dtype)
        configure_backends(self.device)  # fixed 112 px batches: cuDNN autotuning pays; TF32 matmuls
        self.model_cfg = self.build_model_config()
        if config.feature_dim:  # a teacher of another width (the toy demo's); recorded in generator.pth's config
            self.model_cfg = replace(self.model_cfg, feature_dim=config.feature_dim)
        self.data = self.training_data(reader, features)
        self.scale = scale
        if self.data.feature_dim != self.model_cfg.feature_dim:
            raise DataError(getattr(reader, "path", "features"),
                            f"features have {self.data.feature_dim} dimensions, the model expects "
                            f"{self.model_cfg.feature_dim} (--set feature_dim={self.data.feature_dim} trains a "
                            f"model of that width)")
        weights = config.losses
        if weights.identity > 0 and extractor is None:
            raise ConfigError("the identity loss needs a frozen FR extractor (--extractor/--weights), "
                              "or switch it off with --set losses.identity=0")
        self.extractor = extractor
        if extractor is not None and hasattr(extractor, "model"):
            for p in extractor.model.parameters():
                p.requires_grad_(False)
        # Python's and numpy's global generators too (nothing here draws from them): a checkpoint records their
        # states, so the same run writes the same checkpoint bytes in any process (the rerun contract)
        random.seed(config.seed)
        np.random.seed(config.seed % 2**32)
        torch.manual_seed(config.seed)
        self.build_modules()
        # every rank built the same modules from the seed; from here on each draws its own dropout masks
        torch.manual_seed(config.seed * 7919 + self.dist.rank)
        self.wrap_modules()
        global_batch = config.batch_size * self.dist.world_size
        self.sampler = GlobalBatchSampler(len(self.data), global_batch, rank=self.dist.rank,
                                          world_size=self.dist.world_size, seed=config.seed)
        self.lr = config.learning_rate(global_batch)
        self.lr_at = self.lr_schedule()
        self.build_optimizers()
        self.scaler = grad_scaler(self.device, self.amp, growth_interval=SCALER_GROWTH_INTERVAL,
                                  dtype=self.amp_dtype)
        self.position = Position()
        self.log = MetricsLog(self.run_dir / "metrics.jsonl", enabled=self.dist.is_main)
        # per-step values summed on the device; read only when a line is logged
        self.window, self.epoch_means = RunningMeans(), RunningMeans()
        self.grid_indices = list(range(min(config.grid_samples, len(self.data))))

    # ------------------------------------------------------------------------ what the release trains
    # (the pose trainer, :mod:`.pose_training`, overrides these where Vec2Face+'s pose training differs)
    def build_model_config(self) -> Any:
        return model_config(self.cfg.model)

    def training_data(self, reader: Any, features: np.ndarray | None) -> Any:
        """The dataset the loader draws from: (image, feature) pairs."""
        return FeaturePairs(reader, features, self.model_cfg.image_size)

    def build_modules(self) -> None:
        """The generator, the discriminator and the objective, built from the seed (the same on every rank)."""
        cfg, weights = self.cfg, self.cfg.losses
        model = Vec2Face(self.model_cfg)
        # center_token and patch_embed exist only for the official layout; unused, as in the release.
        model.center_token.requires_grad_(False)
        model.patch_embed.requires_grad_(False)
        model.set_fused_attention(True)
        self.model = model.to(self.device)
        self.disc = Discriminator(cfg.disc_dims).to(self.device)
        self.loss = Vec2FaceLoss(
            self.perceptual_model(), self.identity_model(), cfg.disc_start, rec_weight=weights.pixel,
            perceptual_weight=weights.perceptual, ssim_weight=weights.ssim, token_weight=weights.feature_map,
            identity_weight=weights.identity, gan_weight=weights.gan, adaptive_weight=weights.adaptive_gan,
            disc_weight=weights.disc_weight, isolate_discriminator=cfg.isolate_discriminator)

    def perceptual_model(self, dropout: float = 0.0) -> nn.Module | None:
        cfg = self.cfg
        if cfg.losses.perceptual <= 0:
            return None
        return build_perceptual(cfg.perceptual, cfg.vgg_weights, cfg.lpips_weights, dropout).to(self.device)

    def identity_model(self) -> nn.Module | None:
        return ExtractorIdentity(self.extractor) if self.cfg.losses.identity > 0 else None

    def ddp(self, module: nn.Module) -> nn.Module:
        """``module`` wrapped for gradient averaging over the ranks (itself in a single process)."""
        if not self.dist.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(module, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def wrap_modules(self) -> None:
        self.train_model, self.train_disc = self.ddp(self.model), self.ddp(self.disc)

    def lr_schedule(self) -> Any:
        """The generator's learning rate at a global step."""
        cfg = self.cfg
        return ReleaseLR(self.lr, cfg.min_lr, cfg.warmup_epochs, cfg.epochs, self.sampler.steps_per_epoch)

    def build_optimizers(self) -> None:
        wd = self.cfg.weight_decay
        # every parameter in the release's order (its optimizer state dicts then load here and vice versa)
        params = [p for _, p in release_parameters(self.model)]
        self.opt = torch.optim.AdamW(params, lr=self.lr, betas=(0.9, 0.99), weight_decay=wd)
        # the release never schedules the discriminator: it stays at the base rate
        self.disc_opt = torch.optim.AdamW(self.disc.parameters(), lr=self.lr, betas=(0.9, 0.99), weight_decay=wd)

    # ------------------------------------------------------------------------------------- checkpoints
    def release_state(self) -> dict[str, Any]:
        """The release's keys: its ``save_model`` minus ``args`` (its argparse namespace)."""
        return {
            STATE_KEY: self.model.state_dict(),
            DISC_KEY: self.disc.state_dict(),
            "model_ema": None,
            OPTIMIZER_KEY: self.opt.state_dict(),
            DISC_OPTIMIZER_KEY: self.disc_opt.state_dict(),
            "epoch": self.position.epoch - 1,  # the last finished epoch, as the release counts
        }

    def checkpoint_payload(self) -> dict[str, Any]:
        """The release's keys and facebench's own: the scaler, the model configuration, the exact position,
        every rank's RNG states, the config."""
        return {
            **self.release_state(),
            "scaler": self.scaler.state_dict(),
            CONFIG_KEY: self.model_cfg.to_dict(),
            "training_format": TRAINING_FORMAT,
            "position": vars(self.position).copy(),
            "rng": gather_objects(self.dist, capture_rng_state()),
            "running": gather_objects(self.dist, {"window": self.window.state_dict(),
                                                  "epoch": self.epoch_means.state_dict()}),
            "config": asdict(self.cfg),
        }

    def save_checkpoint(self) -> None:
        payload = self.checkpoint_payload()  # every rank takes part in gathering the RNG states
        if not self.dist.is_main:
            return
        with atomic.atomic_path(self.run_dir / CHECKPOINT, "training checkpoint") as tmp:
            torch.save(payload, tmp)

    def load_states(self, data: dict[str, Any], path: str | os.PathLike) -> None:
        """Weights, optimizer and scaler states of a checkpoint in the release's layout, strictly (each
        checked against this run's objects first: one error naming the file and the part)."""
        for key, module, what in ((STATE_KEY, self.model, self.cfg.model),
                                  (DISC_KEY, self.disc, f"discriminator with widths {self.cfg.disc_dims}")):
            load_module_state(module, data[key], path, key, what)
        for key, opt in ((OPTIMIZER_KEY, self.opt), (DISC_OPTIMIZER_KEY, self.disc_opt)):
            load_optimizer_state(opt, data[key], path, key)
        load_scaler_state(self.scaler, data.get("scaler"), path)

    def resume(self, path: str | os.PathLike | None = None) -> None:
        """Continue a checkpoint: a facebench one exactly (position, RNG states, metrics log), a release
        one (or any file given as ``path``, i.e. ``--init``) at the start of the epoch after its ``epoch``."""
        exact = path is None
        path = Path(path) if path is not None else self.run_dir / CHECKPOINT
        data = self.read_checkpoint(path)
        mine = "training_format" in data
        if mine and not self.same_model(data):
            raise ConfigError(f"{path}: was trained with a different model configuration than '{self.cfg.model}'")
        self.load_states(data, path)
        if exact and mine:
            position = check_position(position_from(data.get("position"), path), self.sampler.steps_per_epoch,
                                      self.cfg.epochs, path)
            rng = expect(path, data.get("rng"), list, "rng")
            running = expect(path, data.get("running", []), list, "running")
            with restoring(path, "rng"):
                if self.dist.rank < len(rng):
                    restore_rng_state(rng[self.dist.rank])
            with restoring(path, "running"):
                if self.dist.rank < len(running):
                    self.window.load_state_dict(running[self.dist.rank]["window"], self.device)
                    self.epoch_means.load_state_dict(running[self.dist.rank]["epoch"], self.device)
            self.position = position
            self.log.truncate_after(self.position.global_step)
            return
        epoch = data["epoch"] + 1  # an integer of at least -1 (read_training_checkpoint checks it)
        self.position = Position(epoch, 0, epoch * self.sampler.steps_per_epoch)
        self.log.truncate_after(self.position.global_step)
        if self.dist.is_main:
            console.print(f"continuing {path} (epoch {epoch - 1} finished) at epoch {epoch}, "
                          f"step {self.position.global_step}")

    def read_checkpoint(self, path: Path) -> dict[str, Any]:
        return read_training_checkpoint(path)

    def same_model(self, data: dict[str, Any]) -> bool:
        """Whether a facebench checkpoint was written for this run's model configuration."""
        return data.get(CONFIG_KEY) == self.model_cfg.to_dict()

    def init_from(self, path: str | os.PathLike) -> None:
        """``--init``: continue another run's training checkpoint at its next epoch."""
        self.resume(path)

    def save_final(self) -> Path:
        """``generator.pth``: the official-layout weights, the model configuration and the feature scale."""
        path = self.run_dir / FINAL_NAME
        if self.dist.is_main:
            with atomic.atomic_path(path, "generator weights") as tmp:
                torch.save(self.final_payload(), tmp)
        return path

    def final_payload(self) -> dict[str, Any]:
        payload = {STATE_KEY: self.model.state_dict(), CONFIG_KEY: self.model_cfg.to_dict()}
        if self.scale is not None:
            payload[FEATURE_SCALE_KEY] = dict(self.scale)
        return payload

    # ------------------------------------------------------------------------------------------ steps
    def step_masks(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks from a generator seeded by (seed, step, rank): the same after a resume."""
        g = torch.Generator().manual_seed((self.cfg.seed * 1_000_003 + self.position.global_step) * 131
                                          + self.dist.rank)
        return self.model.random_masking(n, self.cfg.masking, g)

    def train_step(self, images: torch.Tensor, vectors: torch.Tensor) -> dict[str, torch.Tensor]:
        """One iteration of the release's ``train_one_epoch`` (AMP branch, ``accum_iter`` 1); returns each
        loss term's batch mean and both gradient norms as 0-d tensors on the device (no host copy)."""
        cfg, epoch = self.cfg, self.position.epoch
        images, vectors = images.to(self.device), vectors.to(self.device)
        dropped, masked = self.step_masks(images.shape[0])
        lr = self.lr_at(self.position.global_step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.model.train()
        self.disc.train()
        with autocast(self.device, self.amp, self.amp_dtype):
            out = self.train_model(vectors, dropped, masked, dropped_count(dropped))  # masks on the CPU: no sync
            terms = self.loss(vectors, out.targets, out.rows, images, out.image, self.train_disc, epoch,
                              last_layer=self.model.im_decoder.last_layer)
        self.opt.zero_grad(set_to_none=True)
        self.disc_opt.zero_grad(set_to_none=True)
        # one backward of the sum = the release's two (same scale); d_loss reaches only the discriminator
        self.scaler.scale(terms.ae_loss + terms.d_loss).backward()
        for p in self.disc.parameters():
            if p.grad is None:  # before disc_start the release steps D with zero gradients (weight decay only)
                p.grad = torch.zeros_like(p)
        self.scaler.unscale_(self.disc_opt)
        self.scaler.unscale_(self.opt)
        norms = {}
        for name, module in (("disc_grad_norm", self.disc), ("grad_norm", self.model)):
            params = [p for p in module.parameters() if p.grad is not None]
            norms[name] = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        self.scaler.step(self.disc_opt)
        self.scaler.step(self.opt)
        self.scaler.update()
        record = {name: getattr(terms, name).detach().float().mean() for name in terms._fields}
        record.update(norms)
        return record

    # ------------------------------------------------------------------------------------------- logs
    def log_window(self, total_steps: int, images: int, since: float) -> dict[str, float]:
        """Mean of every term since the last line (over ranks): a ``metrics.jsonl`` row and a plain line.
        ``images`` trained (all ranks) since ``since`` give the speed, timed after the reduction's sync."""
        means = self.window.means(self.dist)
        images_per_s = images / max(time.perf_counter() - since, 1e-9)
        self.window.reset()
        step, epoch, lr = self.position.global_step, self.position.epoch, self.opt.param_groups[0]["lr"]
        self.log.log(event="train", step=step, epoch=epoch, lr=lr, **means, images_per_s=images_per_s)
        if self.dist.is_main:
            log_line(f"step {step}/{total_steps} epoch {epoch + 1}/{self.cfg.epochs}  {_terms(means)}  "
                     f"lr {lr:.3e}  {images_per_s:.1f} img/s")
        return means

    def log_epoch(self, epoch: int) -> None:
        """Mean of every term over the finished epoch (over ranks)."""
        means = self.epoch_means.means(self.dist)
        self.epoch_means.reset()
        step = self.position.global_step
        self.log.log(event="epoch", step=step, epoch=epoch, **means)
        if self.dist.is_main:
            log_line(f"epoch {epoch + 1}/{self.cfg.epochs} done at step {step}, means:  {_terms(means)}")

    # ------------------------------------------------------------------------------------------- grid
    @torch.no_grad()
    def write_grid(self, epoch: int) -> Path | None:
        """Real images (top row) and their reconstructions from features (bottom row), fixed masks."""
        if not self.dist.is_main or not self.grid_indices:
            return None
        from PIL import Image

        records = [self.data.record(i) for i in self.grid_indices]
        real = torch.stack([r[0] for r in records]).to(self.device)
        vec = torch.stack([r[1] for r in records]).to(self.device)
        g = torch.Generator().manual_seed(self.cfg.seed)
        dropped, masked = self.model.random_masking(len(self.grid_indices), MaskingConfig.inference(), g)
        self.model.eval()
        fake = self.model(vec, dropped.to(self.device), masked.to(self.device)).image.clamp(-1, 1)
        rows = [torch.cat(list(t), dim=-1) for t in (real.float().cpu(), fake.float().cpu())]
        grid = ((torch.cat(rows, dim=-2) + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
        path = self.run_dir / "grids" / f"epoch_{epoch:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(path, "reconstruction grid") as tmp:
            Image.fromarray(grid).save(tmp, format="PNG")
        return path

    def check_identities(self, samples: int) -> dict[str, float]:
        """Genuine vs unrelated cosines through the identity extractor, on evenly spread training images;
        written to ``reconstruction.json``."""
        from .generator import Vec2FaceGenerator
        from .reconstruction import reconstruction_similarity

        n = len(self.data)
        idx = np.unique(np.linspace(0, n - 1, num=min(samples, n)).round().astype(int))
        feats = np.stack([self.data.feature(int(i)) for i in idx])
        labels = np.asarray(self.data.reader.labels)[idx]
        gen = Vec2FaceGenerator(self.model, device=self.device, seed=self.cfg.seed)
        stats = reconstruction_similarity(gen, self.extractor, feats, labels)
        atomic.write_json(self.run_dir / "reconstruction.json", stats)
        return stats

    # -------------------------------------------------------------------------------------------- run
    def fit(self) -> GeneratorTrainResult:
        from torch.utils.data import DataLoader

        cfg = self.cfg
        steps_per_epoch = self.sampler.steps_per_epoch
        total_steps = cfg.epochs * steps_per_epoch
        if cfg.max_steps > 0:
            total_steps = min(total_steps, cfg.max_steps)
        last: dict[str, float] = {}
        progress = make_progress()
        if not self.dist.is_main:
            progress.disable = True
        with progress:
            task = progress.add_task(f"training {self.cfg.model}", total=total_steps,
                                     completed=self.position.global_step)
            while self.position.epoch < cfg.epochs and self.position.global_step < total_steps:
                epoch = self.position.epoch
                self.sampler.set_epoch(epoch, self.position.step_in_epoch)
                # a private generator: creating the iterator must not draw from the global RNG (dropout's),
                # or a resumed run would be one draw off the uninterrupted one
                loader = DataLoader(self.data, batch_sampler=self.sampler, num_workers=cfg.num_workers,
                                    collate_fn=collate_records, generator=torch.Generator().manual_seed(cfg.seed + epoch))
                tick, seen = time.perf_counter(), 0
                for batch in loader:  # (images, vectors[, landmark images])
                    if isinstance(batch, CarriedError):
                        raise batch.error()
                    record = self.train_step(*batch)
                    self.window.add(record)
                    self.epoch_means.add(record)
                    self.position.step_in_epoch += 1
                    self.position.global_step += 1
                    seen += batch[0].shape[0] * self.dist.world_size
                    progress.advance(task)
                    step = self.position.global_step
                    if step % max(1, cfg.log_every) == 0 or step == total_steps:
                        last = self.log_window(total_steps, seen, tick)
                        tick, seen = time.perf_counter(), 0
                    if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
                    if step >= total_steps:
                        break
                if self.position.step_in_epoch >= steps_per_epoch:
                    self.position = Position(epoch + 1, 0, self.position.global_step)
                    self.log_epoch(epoch)
                # the grid of a finished epoch, or of the point where max_steps stopped it
                self.write_grid(epoch)
                self.save_checkpoint()
        self.save_final()
        return GeneratorTrainResult(self.run_dir, self.position.global_step, self.position.epoch, last)

    def close(self) -> None:
        shutdown(self.dist)


def _terms(values: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in values.items())


def train_from_paths(config: TrainGeneratorConfig | Any, data: str | os.PathLike, run_dir: str | os.PathLike, *,
                     data_format: str | None = None, features: str | os.PathLike | None = None,
                     extractor_name: str | None = None, extractor_weights: str | None = None,
                     resume: bool = False, init: str | os.PathLike | None = None) -> GeneratorTrainResult:
    """What ``facebench train-generator`` does: open the data, find the raw features, train, save. A
    :class:`.train_config.PoseTrainConfig` trains Vec2Face+'s pose model (:mod:`.pose_training`).

    ``resume`` continues the run directory's checkpoint; ``init`` starts this run from another training
    checkpoint (the release's ``checkpoint-*.pth`` or a facebench ``checkpoint.pt``) at its next epoch, or
    for the pose model also from released weights (``main_model.pth``, ``pose_model.pth``) at epoch 0.
    """
    from facebench import registry
    from facebench.data import open_dataset

    from .train_config import PoseTrainConfig

    pose = isinstance(config, PoseTrainConfig)
    reader = open_dataset(data, format=data_format)
    if pose:  # before any feature extraction
        require_landmarks(reader)
    extractor = None
    if extractor_name:
        device = choose_device(config.device, env_context().local_rank)
        extractor = registry("feature_extractor").create(extractor_name, weights=extractor_weights, device=device)
    feats = None
    if features is not None:
        feats, source = load_features(features, len(reader)), "features"
    elif reader_has_features(reader):
        source = "dataset"
    else:
        if extractor is None:
            raise ConfigError(f"{data}: holds no features; pass --features FEATS or --extractor E --weights W")
        source = "extractor"
        feats = extract_features(reader, extractor, Path(run_dir) / "features.npy", name=extractor_name,
                                 weights=extractor_weights, device=device)
    trainer_class = GeneratorTrainer
    if pose:
        from .pose_training import PoseTrainer

        trainer_class = PoseTrainer
    trainer = trainer_class(config, reader, feats, run_dir, extractor=extractor)
    try:
        trainer.scale = scale = feature_scale(trainer.data, source, extractor_name)
        if not scale["raw"] and trainer.dist.is_main:
            console.print(f"[yellow]note:[/] the {source} features are unit length (median norm "
                          f"{scale['median_norm']:.4f}); the release trains on raw features. Training anyway; "
                          f"generator.pth records raw=false")
        if resume and (Path(run_dir) / CHECKPOINT).is_file():  # killed before its first checkpoint: start over
            trainer.resume()
        elif init is not None:
            trainer.init_from(init)
        result = trainer.fit()
        if extractor is not None and config.eval_samples > 0 and trainer.dist.is_main:
            result.reconstruction = trainer.check_identities(config.eval_samples)
        return result
    finally:
        trainer.close()
