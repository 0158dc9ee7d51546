"""A head-pose model for the toy world: the tiny SixDRepNet trained on toy faces of known pose.

AttrOP needs a pose estimator; on real faces that is the released SixDRepNet. Toy faces are drawn, so
their pitch, yaw and roll are known exactly: rendering faces of fresh identities at yaw spread uniformly
over [-max_yaw, max_yaw] (the training set's own yaw rarely passes 45 degrees) gives a labelled set on
which the tiny SixDRepNet learns, with SixDRepNet's geodesic loss, to read poses up to profile. The file
it writes is an ordinary ``sixdrepnet-tiny`` weights file (``--attrop-pose sixdrepnet-tiny
--attrop-pose-weights OUT/pose.pth``), so the toy run steers pose by the same code path as a real one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from facebench.errors import ConfigError

from .params import Difficulty, rng_for, sample_identity, sample_nuisance, stream_key
from .render import render_face

#: Generator stream of the pose set: its identities are disjoint from the training set's and the packs'.
POSE_STREAM = "pose"


@dataclass
class PoseModelConfig:
    """What ``facebench toyfaces pose-model`` trains (every field can be set with ``--set``)."""

    size: int = 56
    images: int = 4000
    val_images: int = 600
    max_yaw: float = 85.0
    #: blur radius drawn uniformly up to this (px of a 112 px face; the world's own blur goes to 0.6), so
    #: that the model also reads the soft faces a small generator draws
    max_blur: float = 6.0
    epochs: int = 10
    batch_size: int = 64
    lr: float = 6e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if not 16 <= self.size <= 512:
            raise ConfigError(f"pose-model: size must be in [16, 512], got {self.size}")
        if self.images < self.batch_size or self.val_images < 1 or self.batch_size < 1 or self.epochs < 1:
            raise ConfigError("pose-model: need images >= batch_size >= 1, val_images >= 1 and epochs >= 1")
        if not 0 < self.max_yaw < 90:
            raise ConfigError(f"pose-model: max_yaw must be in (0, 90) degrees, got {self.max_yaw}")
        if self.max_blur < 0:
            raise ConfigError(f"pose-model: max_blur must be >= 0, got {self.max_blur}")
        if self.lr <= 0:
            raise ConfigError("pose-model: lr must be > 0")


def render_pose_set(cfg: PoseModelConfig, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Faces ``start..start+count`` of the pose stream: uint8 (N,H,W,3) images and (N,3) degrees.

    Every face is a new identity under the world's general nuisances, with its yaw and blur replaced by
    uniform draws; angles are (pitch, yaw, roll) as the renderer used them. Keyed draws: any range of
    faces renders the same in any order.
    """
    difficulty = Difficulty()
    key = stream_key(POSE_STREAM)
    images = np.empty((count, cfg.size, cfg.size, 3), np.uint8)
    angles = np.empty((count, 3), np.float32)
    for row, index in enumerate(range(start, start + count)):
        ident = sample_identity(rng_for(cfg.seed, key, index), difficulty.identity_spread)
        rng = rng_for(cfg.seed, key + 1, index)
        nuisance = replace(sample_nuisance(rng, ident, difficulty), yaw=float(rng.uniform(-cfg.max_yaw, cfg.max_yaw)),
                           blur=float(rng.uniform(0, cfg.max_blur)))
        images[row] = render_face(ident, nuisance, cfg.size)
        angles[row] = (nuisance.pitch, nuisance.yaw, nuisance.roll)
    return images, angles


def pose_errors(extractor: Any, images: np.ndarray, angles: np.ndarray, batch_size: int = 256) -> dict[str, float]:
    """Mean absolute error (degrees) of pitch, yaw, roll, and of |yaw| on faces past 45 degrees."""
    predicted = np.concatenate([extractor.embed(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    err = np.abs(predicted - angles)
    wide = np.abs(angles[:, 1]) > 45
    return {
        "pitch_mae": float(err[:, 0].mean()),
        "yaw_mae": float(err[:, 1].mean()),
        "roll_mae": float(err[:, 2].mean()),
        "abs_yaw_mae_beyond_45": float(np.abs(np.abs(predicted[wide, 1]) - np.abs(angles[wide, 1])).mean())
        if wide.any() else math.nan,
        "faces_beyond_45": int(wide.sum()),
    }


def _init_for_training(model: Any, seed: int) -> None:
    """He initialisation: the deploy-form RepVGG has no batch norm, and PyTorch's default convolution
    init shrinks the signal through its layers until the head only learns the mean pose."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                torch.nn.init.zeros_(module.bias)


def train_pose_model(cfg: PoseModelConfig, out: str | Path, *, overwrite: bool = False) -> tuple[dict[str, Any], bool]:
    """Render the pose set, train the tiny SixDRepNet, write ``pose.pth`` and ``pose.json`` into ``out``;
    returns the ``pose.json`` record and whether ``out`` held it already (the same settings: nothing is
    trained or written, :mod:`facebench.rerun`).

    Faces are rendered at ``cfg.size`` and read by the model at its own input size (56 px), exactly as
    the extractor reads them when AttrOP or ``analyze`` use the weights.
    """
    import torch
    from facebench_plugins.attributes.sixdrepnet import (
        TINY,
        TINY_INPUT_SIZE,
        geodesic_distance,
        rotation_from_euler,
        sixdrepnet_tiny_extractor,
    )

    from facebench.console import make_progress
    from facebench.data.tensors import to_model_input
    from facebench.rerun import FINISHED, Rerun, parameters
    from facebench.runs import Run
    from facebench.safe_load import read_json

    out = Path(out)
    rerun = Rerun(out, command="toyfaces pose-model", params=parameters(cfg), what="pose model",
                  outputs=["pose.pth", "pose.json"], overwrite=overwrite, resumable=False)
    if rerun.check() == FINISHED:
        return read_json(out / "pose.json", what="pose model record"), True
    run = Run.start(out, config=asdict(cfg), seed=cfg.seed, device="cpu", rerun=rerun)
    with make_progress(transient=True) as progress:
        task = progress.add_task("render pose faces", total=2)
        train_x, train_y = render_pose_set(cfg, 0, cfg.images)
        progress.advance(task)
        val_x, val_y = render_pose_set(cfg, cfg.images, cfg.val_images)
        progress.advance(task)

    extractor = sixdrepnet_tiny_extractor(seed=cfg.seed)
    model = extractor.model
    _init_for_training(model, cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = cfg.images // cfg.batch_size
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=0.15)
    x_all, target_all = to_model_input(train_x), rotation_from_euler(torch.from_numpy(train_y))
    generator = torch.Generator().manual_seed(cfg.seed)
    history = []
    with make_progress() as progress:
        task = progress.add_task("train pose model", total=cfg.epochs * steps_per_epoch)
        for epoch in range(cfg.epochs):
            model.train()
            order = torch.randperm(cfg.images, generator=generator)
            total = 0.0
            for step in range(steps_per_epoch):
                idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
                loss = geodesic_distance(extractor.rotation(x_all[idx]), target_all[idx]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach())
                progress.advance(task)
            history.append({"epoch": epoch + 1, "geodesic_loss_deg": math.degrees(total / steps_per_epoch)})
    model.eval()
    errors = pose_errors(extractor, val_x, val_y)
    record = {
        "extractor": "sixdrepnet-tiny",
        "architecture": asdict(TINY),
        "input_size": TINY_INPUT_SIZE,
        "weights": "pose.pth",
        "use": f"--attrop-pose sixdrepnet-tiny --attrop-pose-weights {out / 'pose.pth'}",
        "train_faces": cfg.images,
        "validation_faces": cfg.val_images,
        "validation": errors,
        "history": history,
    }
    with run.atomic("pose.pth") as tmp:
        torch.save(model.state_dict(), tmp)
    run.write_json("pose.json", record)
    rerun.finish(run)
    return record, False
