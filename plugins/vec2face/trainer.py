"""Feature-masked-autoencoder training of Vec2Face: (image, identity feature) pairs -> generator.

Each step draws one masking ratio for the batch, generates the images from the features and combines
the configured loss terms; after ``disc_start`` a multi-scale discriminator adds a least-squares GAN
term with the adaptive weight. Checkpoints keep the official layout (``model_vec2face``) so the
weights load with ``facebench.load_generator``, plus everything needed for an exact ``--resume``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from facebench import atomic
from facebench.console import make_progress
from facebench.data.tensors import to_model_input
from facebench.errors import ConfigError, DataError
from facebench.runtime import (
    all_reduce_mean,
    autocast,
    gather_objects,
    grad_scaler,
    init_distributed,
    select_device,
    shutdown,
)
from facebench.safe_load import load_checkpoint
from facebench.training import (
    CHECKPOINT,
    GlobalBatchSampler,
    LRSchedule,
    MetricsLog,
    Position,
    build_scheduler,
    capture_rng_state,
    restore_rng_state,
)

from .generator import CONFIG_KEY, STATE_KEY
from .losses import (
    MultiScaleDiscriminator,
    adaptive_gan_weight,
    build_perceptual,
    discriminator_loss,
    generator_gan_loss,
    ssim,
)
from .model import MaskingSettings, Vec2Face, model_config
from .train_config import TrainGeneratorConfig

FINAL_NAME = "generator.pth"
TRAINING_FORMAT = 1


class FeaturePairs:
    """(image in [-1, 1] at the model's size, its identity feature) for every image of a train reader.

    Features come from an array (``--features`` or extracted up front) or, when ``features`` is None,
    from the reader itself record by record (the official generator-training LMDB stores them).
    """

    def __init__(self, reader: Any, features: np.ndarray | None, image_size: int):
        if features is not None and (features.ndim != 2 or features.shape[0] != len(reader)):
            raise DataError(getattr(reader, "path", "dataset"),
                            f"{len(reader)} images but features of shape {tuple(features.shape)}")
        self.reader = reader
        self.features = None if features is None else np.ascontiguousarray(features, dtype=np.float32)
        self.image_size = image_size

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[1]) if self.features is not None else int(self.feature(0).shape[0])

    def feature(self, index: int) -> np.ndarray:
        if self.features is not None:
            return self.features[index]
        return np.asarray(self.reader.feature(index), dtype=np.float32).reshape(-1)

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[torch.Tensor, torch.Tensor]:
        index = key[1] if isinstance(key, tuple) else key
        image = to_model_input(np.array(self.reader.image(index)), self.image_size)[0]
        return image, torch.from_numpy(np.array(self.feature(index)))


def reader_has_features(reader: Any) -> bool:
    """Whether the dataset stores a feature per image (the official generator-training LMDB does)."""
    if not callable(getattr(reader, "feature", None)):
        return False
    has = getattr(reader, "has_features", None)
    return bool(has()) if callable(has) else True


def load_features(path: str | os.PathLike, expected_rows: int) -> np.ndarray:
    """A (N, D) float ``.npy`` (never unpickled) with one row per image."""
    path = Path(path)
    if not path.is_file():
        from facebench.errors import MissingFileError

        raise MissingFileError(path, "features file")
    try:
        feats = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(path, f"not a numeric .npy array ({exc})") from None
    if feats.ndim != 2 or feats.shape[0] != expected_rows or not np.issubdtype(feats.dtype, np.floating):
        raise DataError(path, f"expected float features of shape ({expected_rows}, D), got "
                              f"{feats.dtype} {tuple(feats.shape)}")
    if not np.isfinite(feats).all():
        raise DataError(path, "features contain NaN or infinity")
    return feats.astype(np.float32)


def extract_features(reader: Any, extractor: Any, batch_size: int = 64) -> np.ndarray:
    """Embed every image of ``reader`` with ``extractor.embed`` (uint8 NHWC -> normalised features)."""
    from facebench.console import track

    out = []
    for start in track(range(0, len(reader), batch_size), "extracting features"):
        stop = min(len(reader), start + batch_size)
        out.append(np.asarray(extractor.embed(np.stack([reader.image(i) for i in range(start, stop)]))))
    return np.concatenate(out).astype(np.float32)


def identity_loss(extractor: Any, images: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """1 - cos(extractor(images), vectors), images resized to the extractor's input size."""
    size = getattr(extractor, "input_size", None)
    if isinstance(size, tuple | list):
        size = size[-1]
    if size and images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    emb = extractor.forward_tensor(images).float()
    return (1 - F.cosine_similarity(emb, vectors.float(), dim=1)).mean()


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    epochs_done: int
    last_losses: dict[str, float]
    reconstruction: dict[str, float] | None = None


class GeneratorTrainer:
    """One training job; the same object runs alone or as one rank under ``torchrun``."""

    def __init__(self, config: TrainGeneratorConfig, reader: Any, features: np.ndarray | None,
                 run_dir: str | os.PathLike,
                 *, extractor: Any = None):
        self.cfg = config
        self.run_dir = Path(run_dir)
        self.dist = init_distributed("cuda" if config.device.startswith("cuda") or
                                     (config.device == "auto" and torch.cuda.is_available()) else "cpu")
        self.device = select_device(config.device, self.dist.local_rank)
        self.amp = config.amp and self.device.type == "cuda"
        self.model_cfg = model_config(config.model)
        self.data = FeaturePairs(reader, features, self.model_cfg.image_size)
        if self.data.feature_dim != self.model_cfg.feature_dim:
            raise DataError(getattr(reader, "path", "features"),
                            f"features have {self.data.feature_dim} dimensions, the model expects "
                            f"{self.model_cfg.feature_dim}")
        weights = config.losses
        if weights.identity > 0 and extractor is None:
            raise ConfigError("the identity loss needs a frozen FR extractor (--extractor/--weights), "
                              "or switch it off with --set losses.identity=0")
        self.extractor = extractor
        if extractor is not None and hasattr(extractor, "model"):
            for p in extractor.model.parameters():
                p.requires_grad_(False)
        torch.manual_seed(config.seed)
        model = Vec2Face(self.model_cfg)
        # center_token and patch_embed exist only for the official layout; nothing trains them.
        model.center_token.requires_grad_(False)
        model.patch_embed.requires_grad_(False)
        model.set_fused_attention(True)
        self.model = model.to(self.device)
        self.disc = MultiScaleDiscriminator(config.disc_dims).to(self.device)
        self.perceptual = (build_perceptual(config.perceptual, config.vgg_weights, config.lpips_weights)
                           .to(self.device) if weights.perceptual > 0 else None)
        self.train_model, self.train_disc = self.model, self.disc
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DDP(self.model, device_ids=ids)
            self.train_disc = DDP(self.disc, device_ids=ids)
        global_batch = config.batch_size * self.dist.world_size
        self.sampler = GlobalBatchSampler(len(self.data), global_batch, rank=self.dist.rank,
                                          world_size=self.dist.world_size, seed=config.seed)
        lr = config.learning_rate(global_batch)
        self.lr = lr
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.99), weight_decay=config.weight_decay)
        self.disc_opt = torch.optim.AdamW(self.disc.parameters(), lr=lr, betas=(0.9, 0.99),
                                          weight_decay=config.weight_decay)
        schedule = LRSchedule.from_epochs("cosine", epochs=config.epochs, steps_per_epoch=self.sampler.steps_per_epoch,
                                          warmup_epochs=config.warmup_epochs,
                                          min_factor=min(1.0, config.min_lr / lr) if lr > 0 else 0.0)
        self.schedule = schedule
        self.sched = build_scheduler(self.opt, schedule)
        self.scaler = grad_scaler(self.device, self.amp)
        self.disc_scaler = grad_scaler(self.device, self.amp)
        self.position = Position()
        self.log = MetricsLog(self.run_dir / "metrics.jsonl", enabled=self.dist.is_main)
        self.grid_indices = list(range(min(config.grid_samples, len(self.data))))

    # ------------------------------------------------------------------------------------- checkpoints
    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            STATE_KEY: self.model.state_dict(),
            CONFIG_KEY: self.model_cfg.to_dict(),
            "training_format": TRAINING_FORMAT,
            "position": vars(self.position).copy(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict(),
            "discriminator": self.disc.state_dict(),
            "disc_optimizer": self.disc_opt.state_dict(),
            "disc_scaler": self.disc_scaler.state_dict(),
            "rng": gather_objects(self.dist, capture_rng_state()),
        }

    def save_checkpoint(self) -> None:
        payload = self.checkpoint_payload()  # every rank takes part in gathering the RNG states
        if not self.dist.is_main:
            return
        with atomic.atomic_path(self.run_dir / CHECKPOINT) as tmp:
            torch.save(payload, tmp)

    def resume(self) -> None:
        path = self.run_dir / CHECKPOINT
        data = load_checkpoint(path, what="generator training checkpoint")
        if not isinstance(data, dict) or data.get("training_format") != TRAINING_FORMAT:
            raise DataError(path, "not a facebench generator training checkpoint")
        if data.get(CONFIG_KEY) != self.model_cfg.to_dict():
            raise ConfigError(f"{path}: was trained with a different model configuration than '{self.cfg.model}'")
        self.model.load_state_dict(data[STATE_KEY], strict=True)
        self.opt.load_state_dict(data["optimizer"])
        self.sched.load_state_dict(data["scheduler"])
        self.scaler.load_state_dict(data["scaler"])
        self.disc.load_state_dict(data["discriminator"])
        self.disc_opt.load_state_dict(data["disc_optimizer"])
        self.disc_scaler.load_state_dict(data["disc_scaler"])
        rng = data["rng"]
        if self.dist.rank < len(rng):
            restore_rng_state(rng[self.dist.rank])
        self.position = Position(**data["position"])
        self.log.truncate_after(self.position.global_step)

    def save_final(self) -> Path:
        """``generator.pth``: only the official-layout weights and the model configuration."""
        path = self.run_dir / FINAL_NAME
        if self.dist.is_main:
            with atomic.atomic_path(path) as tmp:
                torch.save({STATE_KEY: self.model.state_dict(), CONFIG_KEY: self.model_cfg.to_dict()}, tmp)
        return path

    # ------------------------------------------------------------------------------------------ steps
    def step_masks(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks from a generator seeded by (seed, step, rank): the same after a resume."""
        g = torch.Generator().manual_seed((self.cfg.seed * 1_000_003 + self.position.global_step) * 131
                                          + self.dist.rank)
        return self.model.random_masking(n, self.cfg.masking, g)

    def train_step(self, images: torch.Tensor, vectors: torch.Tensor) -> dict[str, float]:
        cfg, w = self.cfg, self.cfg.losses
        images, vectors = images.to(self.device), vectors.to(self.device)
        dropped, masked = self.step_masks(images.shape[0])
        gan_on = w.gan > 0 and self.position.epoch >= cfg.disc_start
        self.model.train()
        with autocast(self.device, self.amp):
            out = self.train_model(vectors, dropped, masked)
            fake = out.image.float()
            losses: dict[str, torch.Tensor] = {}
            if w.pixel > 0:
                losses["pixel"] = w.pixel * F.mse_loss(fake, images)
            if w.perceptual > 0:
                losses["perceptual"] = w.perceptual * self.perceptual(fake, images).mean()
            if w.ssim > 0:
                losses["ssim"] = w.ssim * (1 - ssim(fake, images))
            if w.feature_map > 0:
                losses["feature_map"] = w.feature_map * F.mse_loss(out.rows[:, 1:].float(), out.targets[:, 1:].float())
            if w.identity > 0:
                losses["identity"] = w.identity * identity_loss(self.extractor, fake, vectors)
        total = sum(losses.values())
        if gan_on:
            # the bare discriminator (not its DDP wrapper): no discriminator gradients are wanted here
            self.disc.requires_grad_(False)
            g_loss = generator_gan_loss(self.disc(fake))
            rec_terms = [losses[k] for k in ("pixel", "perceptual") if k in losses]
            last_layer = self.model.im_decoder.last_layer
            weight = adaptive_gan_weight(sum(rec_terms), g_loss, last_layer) if rec_terms else 1.0
            losses["gan"] = w.gan * weight * g_loss
            total = total + losses["gan"]
            self.disc.requires_grad_(True)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.unscale_(self.opt)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], cfg.grad_clip)
        self.scaler.step(self.opt)
        self.scaler.update()
        self.sched.step()
        if gan_on:
            # the discriminator follows the generator's schedule (set directly: it does not step every iteration)
            for group in self.disc_opt.param_groups:
                group["lr"] = self.lr * self.schedule(self.position.global_step)
            with autocast(self.device, self.amp):
                d_loss = discriminator_loss(self.train_disc(images), self.train_disc(fake.detach()))
            self.disc_opt.zero_grad(set_to_none=True)
            self.disc_scaler.scale(d_loss).backward()
            self.disc_scaler.unscale_(self.disc_opt)
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.disc.parameters(), cfg.grad_clip)
            self.disc_scaler.step(self.disc_opt)
            self.disc_scaler.update()
            losses["disc"] = d_loss
        record = {k: float(v.detach()) for k, v in losses.items()}
        record["total"] = float(total.detach())
        return record

    # ------------------------------------------------------------------------------------------- grid
    @torch.no_grad()
    def write_grid(self, epoch: int) -> Path | None:
        """Real images (top row) and their reconstructions from features (bottom row), fixed masks."""
        if not self.dist.is_main or not self.grid_indices:
            return None
        from PIL import Image

        real = torch.stack([self.data[i][0] for i in self.grid_indices]).to(self.device)
        vec = torch.stack([self.data[i][1] for i in self.grid_indices]).to(self.device)
        g = torch.Generator().manual_seed(self.cfg.seed)
        dropped, masked = self.model.random_masking(len(self.grid_indices), MaskingSettings.inference(), g)
        self.model.eval()
        fake = self.model(vec, dropped.to(self.device), masked.to(self.device)).image.clamp(-1, 1)
        rows = [torch.cat(list(t), dim=-1) for t in (real.float().cpu(), fake.float().cpu())]
        grid = ((torch.cat(rows, dim=-2) + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
        path = self.run_dir / "grids" / f"epoch_{epoch:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(path) as tmp:
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
    def fit(self) -> TrainResult:
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
            task = progress.add_task("training vec2face", total=total_steps, completed=self.position.global_step)
            while self.position.epoch < cfg.epochs and self.position.global_step < total_steps:
                epoch = self.position.epoch
                self.sampler.set_epoch(epoch, self.position.step_in_epoch)
                # a private generator: creating the iterator must not draw from the global RNG (dropout's),
                # or a resumed run would be one draw off the uninterrupted one
                loader = DataLoader(self.data, batch_sampler=self.sampler, num_workers=cfg.num_workers,
                                    generator=torch.Generator().manual_seed(cfg.seed + epoch))
                for images, vectors in loader:
                    last = self.train_step(images, vectors)
                    self.position.step_in_epoch += 1
                    self.position.global_step += 1
                    progress.advance(task)
                    step = self.position.global_step
                    if step % max(1, cfg.log_every) == 0 or step == total_steps:
                        row = {k: all_reduce_mean(self.dist, v) for k, v in last.items()}
                        self.log.log(step=step, epoch=epoch, lr=self.opt.param_groups[0]["lr"], **row)
                    if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                        self.save_checkpoint()
                    if step >= total_steps:
                        break
                if self.position.step_in_epoch >= steps_per_epoch:
                    self.position = Position(epoch + 1, 0, self.position.global_step)
                    self.write_grid(epoch)
                else:  # stopped by max_steps inside the epoch
                    self.write_grid(epoch)
                self.save_checkpoint()
        self.save_final()
        return TrainResult(self.run_dir, self.position.global_step, self.position.epoch, last)

    def close(self) -> None:
        shutdown(self.dist)



def train_from_paths(config: TrainGeneratorConfig, data: str | os.PathLike, run_dir: str | os.PathLike, *,
                     data_format: str | None = None, features: str | os.PathLike | None = None,
                     extractor_name: str | None = None, extractor_weights: str | None = None,
                     resume: bool = False) -> TrainResult:
    """What ``facebench train-generator`` does: open the data, find the features, train, save."""
    from facebench import registry
    from facebench.data import open_dataset

    reader = open_dataset(data, format=data_format)
    extractor = None
    if extractor_name:
        from facebench.runtime import env_context

        device = select_device(config.device, env_context().local_rank)
        extractor = registry("feature_extractor").create(extractor_name, weights=extractor_weights, device=device)
    feats = None
    if features is not None:
        feats = load_features(features, len(reader))
    elif not reader_has_features(reader):
        if extractor is None:
            raise ConfigError(f"{data}: holds no features; pass --features FEATS or --extractor E --weights W")
        saved = Path(run_dir) / "features.npy"
        if resume and saved.is_file():
            feats = load_features(saved, len(reader))
        else:
            feats = extract_features(reader, extractor)
            with atomic.atomic_path(saved) as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, feats)
    trainer = GeneratorTrainer(config, reader, feats, run_dir, extractor=extractor)
    try:
        if resume:
            trainer.resume()
        result = trainer.fit()
        if extractor is not None and config.eval_samples > 0 and trainer.dist.is_main:
            result.reconstruction = trainer.check_identities(config.eval_samples)
        return result
    finally:
        trainer.close()
