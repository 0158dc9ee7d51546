"""Vec2Face+'s pose model trained as its release's ``pose_training.py`` trains it.

The generator is Vec2Face with low-rank adapters on every attention ``qkv`` and ``proj``; everything but
the adapters is frozen and in eval mode (no dropout), and the pose model (:class:`.PoseCondModel`) turns
each record's landmark image into the row that fills the masked decoder positions. One AdamW steps the
pose model's and the adapters' parameters (in the release's order, so its optimizer state dicts load
here and back) on ``rec + 0.2 x ploss + ssim_l + fid`` (:class:`.losses.Vec2FaceLoss` with the token and
GAN terms off); the learning rate follows torch's ``LinearLR`` warm-up then ``CosineAnnealingLR``, per
step (:class:`facebench.training.LinearWarmup`).

Where facebench differs from the release, and why:

* the masks come from a generator seeded by (seed, step, rank), as in the Vec2Face trainer (the release
  draws them from unseeded numpy and torch RNGs): a resumed run repeats the uninterrupted one;
* under ``torchrun`` the gradients of the adapters are averaged over ranks as well as the pose model's
  (the release wraps only the pose model in DDP, so each rank's adapters drift apart and only rank 0's
  are saved); on one process the two are the same;
* ``--init`` is the release's ``--model_weights`` (weights only, from epoch 0); ``--init main_model.pth``
  whose attention layers are stored unwrapped (``attn.qkv.weight``) loads them
  into the adapters' frozen ``base`` layers; the release's ``load_state_dict(strict=False)`` would skip
  them silently (the names differ) and train on random attention weights. Anything else that does not
  fit is an error naming the file, never skipped.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from facebench import atomic
from facebench.console import console
from facebench.errors import ConfigError, DataError
from facebench.runtime import autocast
from facebench.safe_load import shown_name, state_dict_in, state_dict_mismatch
from facebench.training import LinearWarmup, load_module_state, load_optimizer_state

from .checkpoint import (
    POSE_OPTIMIZER_KEY,
    POSE_RELEASE_KEYS,
    check_training_checkpoint,
    load_scaler_state,
    read_checkpoint_dict,
)
from .generator import (
    CONFIG_KEY,
    POSE_CONFIG_KEY,
    POSE_KEY,
    RELEASE_POSE,
    STATE_KEY,
    TINY_POSE,
)
from .landmarks import landmark_tensor
from .lora import lora_parameters
from .losses import Vec2FaceLoss
from .model import MaskingConfig, Vec2Face, dropped_count, model_config
from .pose_condition import PoseCondConfig, PoseCondModel
from .reconstruction import identity_stats
from .train_config import POSE_MODELS
from .trainer import GeneratorTrainer
from .training_data import FeaturePairs, require_landmarks

#: What the error lines call a checkpoint of this training.
WHAT = "Vec2Face+ pose training checkpoint"
#: The pose model each Vec2Face+ model is generated with (``vec2face_plus``, ``vec2face_plus_tiny``).
POSE_CONFIGS = {"vec2face_plus": RELEASE_POSE, "vec2face_plus_tiny": TINY_POSE}


def pose_model_config(name: str) -> PoseCondConfig:
    return PoseCondConfig.from_dict(POSE_CONFIGS[name].to_dict())


class PoseTriples(FeaturePairs):
    """(image, identity feature, landmark image) for every record; both images in [-1, 1] at their
    models' sizes (the release feeds both through ``ToTensor`` + ``Normalize(0.5, 0.5)``)."""

    def __init__(self, reader: Any, features: np.ndarray | None, image_size: int, landmark_size: int):
        require_landmarks(reader)
        super().__init__(reader, features, image_size)
        self.landmark_size = landmark_size

    def landmark(self, index: int) -> torch.Tensor:
        """At the pose model's size as the release converts it (``ToTensor`` + ``Normalize``, op for op);
        at another size resized as generation resizes it (:class:`.landmarks.PoseSet`)."""
        from facebench.data.tensors import to_model_input

        pixels = np.array(self.reader.landmark_image(index))
        if pixels.shape[:2] == (self.landmark_size, self.landmark_size):
            return landmark_tensor(pixels[None])[0]
        return to_model_input(pixels, self.landmark_size)[0]

    def record(self, index: int) -> tuple[torch.Tensor, ...]:
        return (*super().record(index), self.landmark(index))


class PoseStep(nn.Module):
    """The trained forward pass as one module (so DDP averages the adapters' gradients with the pose
    model's): landmark images -> pose rows -> the generator's image from the vectors."""

    def __init__(self, generator: Vec2Face, pose: PoseCondModel):
        super().__init__()
        self.generator = generator
        self.pose = pose

    def forward(self, vectors: torch.Tensor, landmarks: torch.Tensor, dropped: torch.Tensor,
                masked: torch.Tensor, num_dropped: int) -> torch.Tensor:
        cond = self.pose(landmarks)
        return self.generator(vectors, dropped, masked, num_dropped, cond=cond).image


def freeze_except_adapters(model: Vec2Face) -> list[nn.Parameter]:
    """Every generator parameter frozen but the adapters' ``A`` and ``B`` (the release's
    ``freeze_except_lora``); returns those, in registration order."""
    model.requires_grad_(False)
    params = [p for _, p in lora_parameters(model)]
    if not params:
        raise ConfigError("the generator has no LoRA adapters (lora.rank must be at least 1)")
    for p in params:
        p.requires_grad_(True)
    return params


_WRAPPED = re.compile(r"^(.*\.attn\.(?:qkv|proj))\.base\.(weight|bias)$")


def unwrapped_names(model: Vec2Face) -> dict[str, str]:
    """The plain Vec2Face name of every tensor of the adapted generator but the adapters
    (``...attn.qkv.base.weight`` -> ``...attn.qkv.weight``): the layout of a ``main_model.pth`` saved
    without adapters."""
    names = {}
    for name in model.state_dict():
        if name.endswith((".A", ".B")) and _WRAPPED.match(name.rsplit(".", 1)[0] + ".base.weight"):
            continue
        m = _WRAPPED.match(name)
        names[f"{m.group(1)}.{m.group(2)}" if m else name] = name
    return names


class PoseTrainer(GeneratorTrainer):
    """The Vec2Face trainer where the release's pose training differs: the modules, the trainable
    parameters, the optimizer, the schedule, the step, the checkpoint layout and ``--init``."""

    # ------------------------------------------------------------------------------------- the parts
    def build_model_config(self) -> Any:
        lora = self.cfg.lora
        return replace(model_config(POSE_MODELS[self.cfg.model]), lora_rank=lora.rank, lora_alpha=lora.alpha,
                       lora_dropout=lora.dropout)

    def training_data(self, reader: Any, features: np.ndarray | None) -> Any:
        self.pose_cfg = pose_model_config(self.cfg.model)
        return PoseTriples(reader, features, self.model_cfg.image_size, self.pose_cfg.input_size)

    def build_modules(self) -> None:
        """As the release builds them after ``torch.manual_seed(seed)``: the pose model first, then the
        generator (its adapters' ``A`` drawn, ``B`` zero), frozen but for the adapters."""
        cfg, weights = self.cfg, self.cfg.losses
        self.pose = PoseCondModel(self.pose_cfg).to(self.device)
        model = Vec2Face(self.model_cfg)
        self.adapters = freeze_except_adapters(model)
        model.set_fused_attention(True)
        self.model = model.to(self.device)
        self.disc = None
        self.loss = Vec2FaceLoss(
            self.perceptual_model(cfg.perceptual_dropout), self.identity_model(), disc_start=0,
            rec_weight=weights.pixel, perceptual_weight=weights.perceptual, ssim_weight=weights.ssim,
            token_weight=0.0, identity_weight=weights.identity, gan_weight=0.0)

    def wrap_modules(self) -> None:
        self.train_pose = self.ddp(PoseStep(self.model, self.pose))

    def lr_schedule(self) -> Any:
        cfg = self.cfg
        schedule = LinearWarmup.from_epochs(
            "cosine" if cfg.cosine_lr else "constant", epochs=cfg.epochs,
            steps_per_epoch=self.sampler.steps_per_epoch, warmup_epochs=cfg.warmup_epochs if cfg.cosine_lr else 0.0,
            min_factor=cfg.min_lr / cfg.lr, start_factor=cfg.warmup_start_factor)
        base = self.lr
        return lambda step: base * schedule(step)

    def trainable(self) -> list[nn.Parameter]:
        """The release's optimizer list: ``pose_model.parameters()`` then the adapters."""
        return list(self.pose.parameters()) + self.adapters

    def build_optimizers(self) -> None:
        self.opt = torch.optim.AdamW(self.trainable(), lr=self.lr, weight_decay=self.cfg.weight_decay)
        self.disc_opt = None

    # ------------------------------------------------------------------------------------------ step
    def train_step(self, images: torch.Tensor, vectors: torch.Tensor,
                   landmarks: torch.Tensor) -> dict[str, torch.Tensor]:
        """One iteration of the release's loop; returns the terms as 0-d tensors on the device."""
        images, vectors = images.to(self.device), vectors.to(self.device)
        landmarks = landmarks.to(self.device)
        dropped, masked = self.step_masks(images.shape[0])
        for group in self.opt.param_groups:
            group["lr"] = self.lr_at(self.position.global_step)
        self.model.eval()  # the release keeps the generator in eval mode: no dropout, adapters' neither
        self.pose.train()
        self.opt.zero_grad(set_to_none=True)
        with autocast(self.device, self.amp, self.amp_dtype):
            image = self.train_pose(vectors, landmarks, dropped, masked, dropped_count(dropped))
            terms = self.loss(vectors, None, None, images, image, None, self.position.epoch)
        self.scaler.scale(terms.ae_loss).backward()
        self.scaler.unscale_(self.opt)
        limit = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.trainable(), limit)
        self.scaler.step(self.opt)
        self.scaler.update()
        return {"total": terms.ae_loss.detach().float(), "rec": terms.rec_loss.detach().float().mean(),
                "fid": terms.feature_loss.detach().float(), "ploss": terms.p_loss.detach().float().mean(),
                "ssim": terms.ssim_loss.detach().float(), "grad_norm": norm}

    # ------------------------------------------------------------------------------------- checkpoints
    def release_state(self) -> dict[str, Any]:
        """The release's keys: ``epoch``, ``model_vec2face`` (with the adapters), ``pose_model``, ``optimizer``
        (not its ``args``)."""
        return {STATE_KEY: self.model.state_dict(), POSE_KEY: self.pose.state_dict(),
                POSE_OPTIMIZER_KEY: self.opt.state_dict(), "epoch": self.position.epoch - 1}

    def checkpoint_payload(self) -> dict[str, Any]:
        return {**super().checkpoint_payload(), POSE_CONFIG_KEY: self.pose_cfg.to_dict()}

    def read_checkpoint(self, path: Path) -> dict[str, Any]:
        return check_training_checkpoint(read_checkpoint_dict(path, WHAT), path, POSE_RELEASE_KEYS, WHAT)

    def same_model(self, data: dict[str, Any]) -> bool:
        return (data.get(CONFIG_KEY) == self.model_cfg.to_dict()
                and data.get(POSE_CONFIG_KEY) == self.pose_cfg.to_dict())

    def load_states(self, data: dict[str, Any], path: str | os.PathLike) -> None:
        load_module_state(self.model, data[STATE_KEY], path, STATE_KEY, f"{self.cfg.model} generator with adapters")
        load_module_state(self.pose, data[POSE_KEY], path, POSE_KEY, f"{self.cfg.model} pose model")
        load_optimizer_state(self.opt, data[POSE_OPTIMIZER_KEY], path, POSE_OPTIMIZER_KEY)
        load_scaler_state(self.scaler, data.get("scaler"), path)

    def init_from(self, path: str | os.PathLike) -> None:
        """``--init``: the release's ``--model_weights``: ``model_vec2face`` (and ``pose_model`` when there
        is one) of released weights (``main_model.pth``, ``pose_model.pth``), of a release training
        checkpoint or of a facebench file, from epoch 0 with a fresh optimizer. (A release training
        checkpoint continues its own run as ``OUT/checkpoint.pt`` with ``--resume``, as its ``--resume`` does.)"""
        self.warm_start(read_checkpoint_dict(path, "Vec2Face+ weights file"), Path(path))

    def warm_start(self, data: dict[str, Any], path: Path) -> None:
        """``model_vec2face`` with or without adapters, and ``pose_model`` when the file has one. A file
        with adapters loads strictly; one without loads every tensor but the adapters (which keep their
        fresh ``A`` and zero ``B``), the attention layers into the adapters' ``base``."""
        state = state_dict_in(data, path, key=STATE_KEY, what="Vec2Face+ weights")
        mine = self.model.state_dict()
        if set(state) == set(mine):
            load_module_state(self.model, state, path, STATE_KEY, f"{self.cfg.model} generator with adapters")
            adapters = "its adapters"
        else:
            names = unwrapped_names(self.model)
            expected = {plain: mine[name] for plain, name in names.items()}
            problem = state_dict_mismatch(expected, state)
            if problem:
                raise DataError(path, f"'{STATE_KEY}' fits neither the {self.cfg.model} layout with adapters nor "
                                      f"the one without: {problem}")
            renamed = {names[k]: v for k, v in state.items()}
            self.model.load_state_dict({**mine, **renamed}, strict=True)
            adapters = "fresh adapters"
        if POSE_KEY in data:
            load_module_state(self.pose, data[POSE_KEY], path, POSE_KEY, f"{self.cfg.model} pose model")
            pose = "its pose model"
        else:
            pose = "a fresh pose model"
        if self.dist.is_main:
            console.print(f"starting from {shown_name(os.fspath(path))}: the generator with {adapters}, {pose}")

    def final_payload(self) -> dict[str, Any]:
        """``generator.pth`` in the layout of the release's ``pose_model.pth`` (``model_vec2face`` with the
        adapters, ``pose_model``), plus both configurations and the feature scale."""
        return {**super().final_payload(), POSE_KEY: self.pose.state_dict(), POSE_CONFIG_KEY: self.pose_cfg.to_dict()}

    # ------------------------------------------------------------------------------------- looking at it
    @torch.no_grad()
    def generate(self, vectors: torch.Tensor, landmarks: torch.Tensor, masking: MaskingConfig,
                 generator: torch.Generator) -> torch.Tensor:
        """Images for ``vectors`` steered by ``landmarks``, clipped to [-1, 1], eval mode."""
        self.model.eval()
        self.pose.eval()
        dropped, masked = self.model.random_masking(vectors.shape[0], masking, generator)
        cond = self.pose(landmarks.to(self.device))
        out = self.model(vectors.to(self.device), dropped.to(self.device), masked.to(self.device), cond=cond)
        return out.image.clamp(-1, 1)

    def write_grid(self, epoch: int) -> Path | None:
        """Real images (top), their landmark images (middle) and what the model makes of the record's
        feature and landmark image (bottom), fixed masks."""
        if not self.dist.is_main or not self.grid_indices:
            return None
        from PIL import Image

        items = [self.data.record(i) for i in self.grid_indices]
        real, vec, marks = (torch.stack(t) for t in zip(*items))
        g = torch.Generator().manual_seed(self.cfg.seed)
        fake = self.generate(vec, marks, self.cfg.masking, g).float().cpu()
        size = real.shape[-1]
        marks = torch.nn.functional.interpolate(marks, size=(size, size), mode="nearest")
        rows = [torch.cat(list(t), dim=-1) for t in (real.float(), marks.float(), fake)]
        grid = ((torch.cat(rows, dim=-2) + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
        path = self.run_dir / "grids" / f"epoch_{epoch:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(path, "pose grid") as tmp:
            Image.fromarray(grid).save(tmp, format="PNG")
        return path

    def check_identities(self, samples: int) -> dict[str, float]:
        """Genuine vs unrelated cosines through the identity extractor, each image generated from its
        record's feature and landmark image; written to ``reconstruction.json``."""
        from facebench.data.tensors import to_uint8

        n = len(self.data)
        idx = np.unique(np.linspace(0, n - 1, num=min(samples, n)).round().astype(int))
        feats = np.stack([self.data.feature(int(i)) for i in idx]).astype(np.float32)
        labels = np.asarray(self.data.reader.labels)[idx]
        g = torch.Generator().manual_seed(self.cfg.seed)
        embs = []
        for start in range(0, len(idx), 32):
            chunk = idx[start:start + 32]
            marks = torch.stack([self.data.landmark(int(i)) for i in chunk])
            images = self.generate(torch.from_numpy(feats[start:start + 32]), marks, self.cfg.masking, g)
            embs.append(np.asarray(self.extractor.embed(to_uint8(images)), dtype=np.float64))
        stats = identity_stats(feats, np.concatenate(embs), labels)
        atomic.write_json(self.run_dir / "reconstruction.json", stats)
        return stats
