"""The FR trainer: a recipe, a training set and verification packs in; a run directory out.

Components come from the registries (backbone, head), data from any train reader, validation from
verification packs scored the way ``facebench evaluate`` scores them. One loop serves one process and ``torchrun``
jobs: the global batch is split over ranks and, inside a rank, into micro-batches whose gradients are
accumulated, so a global batch gives the same update on 1 or N processes. Checkpoints hold everything
needed to continue bit-for-bit (see :mod:`.checkpoint`).

Run directory: ``config.toml``, ``provenance.json``, ``checkpoint.pt`` (latest), ``metrics.jsonl``,
``backbone.pt`` (backbone state dict only, insightface key names) and ``model.json`` (the model card).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic
from ..config import config_to_dict
from ..console import console, make_progress
from ..errors import ConfigError, DataError, FacebenchError
from ..pluginmanager import registry
from ..runtime import (
    all_reduce_mean,
    autocast,
    barrier,
    choose_device,
    env_context,
    gather_objects,
    grad_scaler,
    init_distributed,
    use_channels_last,
)
from ..training import (
    GlobalBatchSampler,
    LRSchedule,
    MetricsLog,
    Position,
    build_scheduler,
    capture_rng_state,
    check_resume,
    load_training_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from .augment import AugmentedFaces
from .model_card import BACKBONE, MODEL_CARD, model_card
from .recipe import FRRecipe

METRICS = "metrics.jsonl"


def build_backbone(recipe: FRRecipe) -> Any:
    """The recipe's backbone from the registry, sized for its input and embedding."""
    kwargs = dict(recipe.model.options)
    kwargs.update(input_size=recipe.model.input_size, num_features=recipe.model.embedding_size)
    if recipe.model.dropout is not None:
        kwargs["dropout"] = recipe.model.dropout
    return registry("backbone").create(recipe.model.backbone, **kwargs)


def build_head(recipe: FRRecipe, num_classes: int) -> Any:
    return registry("head").create(recipe.head.name, recipe.model.embedding_size, num_classes,
                                   **dict(recipe.head.options))


def _module_class():
    import torch

    class BackboneWithHead(torch.nn.Module):
        """Backbone and margin head as one module, so one DDP wrapper synchronises both."""

        def __init__(self, backbone: Any, head: Any):
            super().__init__()
            self.backbone = backbone
            self.head = head

        def forward(self, images: Any, labels: Any) -> Any:
            return self.head(self.backbone(images), labels)

    return BackboneWithHead


def parameter_groups(module: Any, weight_decay: float, no_decay_bn: bool) -> list[dict[str, Any]]:
    """Trainable parameters, BatchNorm ones without weight decay when ``no_decay_bn``."""
    import torch

    decay, plain = [], []
    for mod in module.modules():
        is_bn = isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)
        for p in mod.parameters(recurse=False):
            if p.requires_grad:
                (plain if (is_bn and no_decay_bn) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if plain:
        groups.append({"params": plain, "weight_decay": 0.0})
    return groups


def build_optimizer(recipe: FRRecipe, module: Any) -> Any:
    import torch

    o = recipe.optim
    groups = parameter_groups(module, o.weight_decay, o.no_decay_bn)
    if o.name == "adamw":
        return torch.optim.AdamW(groups, lr=o.lr)
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)


class StepRunner:
    """One optimizer step on one process's share of a global batch: micro-batches, AMP, clipping.

    ``module`` may be DDP-wrapped; ``local_batch`` is this process's share and ``global_batch`` the
    whole step, so each micro-batch loss is weighted by ``len(micro) / local_batch`` and DDP's averaging
    over ranks makes the update the mean over the global batch.
    """

    def __init__(self, module: Any, optimizer: Any, scheduler: Any, scaler: Any, *, device: Any,
                 fp16: bool, micro_batch: int, grad_clip: float, channels_last: bool):
        self.module = module
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler
        self.device = device
        self.fp16 = fp16
        self.micro_batch = micro_batch
        self.grad_clip = grad_clip
        self.channels_last = channels_last

    def step(self, images: Any, labels: Any) -> float:
        import contextlib

        import torch

        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        n = images.shape[0]
        micro = self.micro_batch or n
        starts = list(range(0, n, micro))
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for k, lo in enumerate(starts):
            x, y = images[lo:lo + micro], labels[lo:lo + micro]
            last = k == len(starts) - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.module, "no_sync") else self.module.no_sync()
            with sync:
                with autocast(self.device, self.fp16):
                    loss = self.module(x, y)
                weighted = loss.float() * (x.shape[0] / n)
                self.scaler.scale(weighted).backward()
            total += float(weighted.detach())
        if not math.isfinite(total):
            raise FacebenchError(f"training diverged: loss is {total}; lower optim.lr or enable grad clipping")
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for g in self.optimizer.param_groups for p in g["params"]], self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        return total


@dataclass
class FRTrainResult:
    out_dir: Path
    global_step: int
    accuracies: dict[str, float] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)
    recipe: str = ""


def validate(backbone: Any, packs: Mapping[str, Any], recipe: FRRecipe, device: Any) -> dict[str, dict[str, float]]:
    """Verification accuracy of ``backbone`` on each pack (name -> path), scored exactly as
    ``facebench evaluate`` does (:func:`facebench.evaluation.evaluate_pack`: flip test, 10 folds)."""
    from ..evaluation import TensorModel, evaluate_pack

    was_training = backbone.training
    backbone.eval()
    model = TensorModel(forward=backbone, input_size=recipe.model.input_size, device=str(device),
                        name=recipe.model.backbone)
    results: dict[str, dict[str, float]] = {}
    try:
        for name, path in packs.items():
            res = evaluate_pack(model, path, batch_size=recipe.train.val_batch_size,
                                flip_test=recipe.train.val_flip, label=name)
            results[name] = {"accuracy": float(res.accuracy), "std": float(res.std)}
    finally:
        backbone.train(was_training)
    return results


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def train_fr(
    recipe: FRRecipe,
    reader: Any,
    out_dir: str | Path,
    *,
    val_packs: Mapping[str, str | Path] | None = None,
    device: str = "auto",
    resume: bool = False,
    dataset_info: Mapping[str, Any] | None = None,
) -> FRTrainResult:
    """Train ``recipe`` on the train reader ``reader``; see the module docstring for the outputs.

    ``dataset_info`` (path, sha256, format, ...) goes into the model card; the caller writes the run's
    ``config.toml``/``provenance.json`` (the CLI does, through :class:`facebench.runs.Run`).
    """
    import torch

    out_dir = Path(out_dir)
    dev = choose_device(device, local_rank=env_context().local_rank)
    ctx = init_distributed(dev.type)
    val_packs = dict(val_packs or {})
    ckpt_path = check_resume(out_dir, resume)
    out_dir.mkdir(parents=True, exist_ok=True)

    num_classes = int(reader.num_classes)
    labels = np.asarray(reader.labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(getattr(reader, "path", "dataset"), f"labels must lie in [0, {num_classes}), "
                        f"found {labels.min()}..{labels.max()}")
    o = recipe.optim
    sampler = GlobalBatchSampler(len(reader), o.batch_size, rank=ctx.rank, world_size=ctx.world_size,
                                 seed=recipe.train.seed)
    if o.micro_batch and sampler.local_batch % o.micro_batch:
        raise ConfigError(f"optim.micro_batch {o.micro_batch} must divide the per-process batch {sampler.local_batch}")

    _seed_everything(recipe.train.seed)
    backbone = build_backbone(recipe)
    head = build_head(recipe, num_classes)
    channels_last = use_channels_last(dev, recipe.model.channels_last)
    module = _module_class()(backbone, head).to(dev)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    if recipe.train.compile:
        backbone.compile()  # in place: state-dict names stay those of the insightface layout
    optimizer = build_optimizer(recipe, module)
    schedule = LRSchedule.from_epochs(
        recipe.schedule.kind, epochs=o.epochs, steps_per_epoch=sampler.steps_per_epoch,
        milestones=recipe.schedule.milestones, warmup_epochs=recipe.schedule.warmup_epochs,
        gamma=recipe.schedule.gamma, min_factor=recipe.schedule.min_factor, power=recipe.schedule.power)
    scheduler = build_scheduler(optimizer, schedule)
    scaler = grad_scaler(dev, recipe.train.fp16)
    log = MetricsLog(out_dir / METRICS, enabled=ctx.is_main)

    position = Position()
    resumed_losses: list[float] = []  # losses of the epoch's steps done before a mid-epoch checkpoint
    recipe_dict = config_to_dict(recipe)
    if resume and ckpt_path.exists():
        data = load_training_checkpoint(ckpt_path)
        saved = data["extra"].get("recipe")
        if saved is not None and json.dumps(saved, sort_keys=True) != json.dumps(recipe_dict, sort_keys=True):
            raise ConfigError(f"{ckpt_path}: cannot resume: the recipe differs from the interrupted run's")
        if data["extra"].get("num_images") not in (None, len(reader)):
            raise ConfigError(f"{ckpt_path}: cannot resume: the dataset has {len(reader)} images, the "
                              f"interrupted run had {data['extra']['num_images']}")
        same_world = data["extra"].get("world_size") == ctx.world_size
        position = restore_checkpoint(data, model=module, optimizer=optimizer, scheduler=scheduler,
                                      scaler=scaler, rank=ctx.rank, restore_rng=same_world)
        resumed_losses = [float(v) for v in data["extra"].get("epoch_losses", [])] if position.step_in_epoch else []
        log.truncate_after(position.global_step)
        if ctx.is_main:
            console.print(f"resuming {out_dir} at epoch {position.epoch + 1}, step {position.global_step}")
    else:
        # Different ranks draw different dropout masks; the model itself was built identically on all.
        torch.manual_seed(recipe.train.seed * 7919 + ctx.rank)

    wrapped = module
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        wrapped = DDP(module, device_ids=[dev.index] if dev.type == "cuda" else None)
    runner = StepRunner(wrapped, optimizer, scheduler, scaler, device=dev, fp16=recipe.train.fp16,
                        micro_batch=o.micro_batch, grad_clip=o.grad_clip, channels_last=channels_last)
    dataset = AugmentedFaces(reader, input_size=recipe.model.input_size, flip=recipe.data.flip,
                             random_erasing=recipe.data.random_erasing, seed=recipe.train.seed)

    def checkpoint(pos: Position, epoch_losses: list[float]) -> None:
        rng = gather_objects(ctx, capture_rng_state())
        if ctx.is_main:
            save_checkpoint(ckpt_path, position=pos, model=module, optimizer=optimizer, scheduler=scheduler,
                            scaler=scaler, rng=rng,
                            extra={"recipe": recipe_dict, "num_images": len(reader), "world_size": ctx.world_size,
                                   "epoch_losses": list(epoch_losses)})
        barrier(ctx)

    accuracies: dict[str, dict[str, float]] = {}
    step = position.global_step
    with make_progress() as progress:
        for epoch in range(position.epoch, o.epochs):
            start = position.step_in_epoch if epoch == position.epoch else 0
            sampler.set_epoch(epoch, start)
            # A private generator: creating the iterator must not draw from the global RNG, or a run
            # resumed mid-epoch would see other dropout masks than an uninterrupted one.
            loader = torch.utils.data.DataLoader(
                dataset, batch_sampler=sampler, num_workers=recipe.data.workers,
                pin_memory=dev.type == "cuda",
                generator=torch.Generator().manual_seed(recipe.train.seed * 1_000_003 + epoch))
            task = progress.add_task(f"epoch {epoch + 1}/{o.epochs}", total=sampler.steps_per_epoch,
                                     completed=start) if ctx.is_main else None
            module.train()
            losses: list[float] = list(resumed_losses) if start else []
            tick, seen = time.perf_counter(), 0  # images/s counts training only, not validation
            for in_epoch, (images, targets) in enumerate(loader, start=start + 1):
                loss = all_reduce_mean(ctx, runner.step(images, targets))  # the global batch's mean loss
                losses.append(loss)
                step += 1
                seen += images.shape[0] * ctx.world_size
                if task is not None:
                    progress.update(task, advance=1)
                if recipe.train.log_every and step % recipe.train.log_every == 0:
                    now = time.perf_counter()
                    log.log(event="train", epoch=epoch + 1, step=step, loss=loss,
                            lr=optimizer.param_groups[0]["lr"], images_per_s=seen / max(now - tick, 1e-9))
                    tick, seen = now, 0
                if (recipe.train.checkpoint_every and step % recipe.train.checkpoint_every == 0
                        and in_epoch < sampler.steps_per_epoch):
                    checkpoint(Position(epoch, in_epoch, step), losses)
            if task is not None:
                progress.remove_task(task)
            if ctx.is_main and val_packs:
                accuracies = validate(backbone, val_packs, recipe, dev)
                summary = "  ".join(f"{k} {v['accuracy'] * 100:.2f}%" for k, v in accuracies.items())
                console.print(f"epoch {epoch + 1}: {summary}")
            if ctx.is_main:
                log.log(event="epoch", epoch=epoch + 1, step=step,
                        loss=float(np.mean(losses)) if losses else None,
                        val={k: v["accuracy"] for k, v in accuracies.items()})
            checkpoint(Position(epoch + 1, 0, step), [])

    result = FRTrainResult(out_dir=out_dir, global_step=step,
                         accuracies={k: v["accuracy"] for k, v in accuracies.items()})
    if ctx.is_main:
        if not accuracies:  # resumed after the last epoch: take the last validation from the log
            epochs = [r for r in log.read() if r.get("event") == "epoch"]
            result.accuracies = dict(epochs[-1].get("val") or {}) if epochs else {}
        with atomic.atomic_path(out_dir / BACKBONE, "backbone weights") as tmp:
            torch.save({k: v.detach().cpu() for k, v in backbone.state_dict().items()}, tmp)
        result.card = model_card(recipe, num_classes, len(reader), step, result.accuracies, dataset_info)
        atomic.write_json(out_dir / MODEL_CARD, result.card, "model card")
    barrier(ctx)
    return result


def check_batch(images: int, recipe: Any, path: Any) -> None:
    """A training set smaller than one global batch cannot train: say which value to change, and to what."""
    batch = recipe.optim.batch_size
    if images < batch:
        suggest = 2 ** max(0, int(math.log2(max(images // 4, 1))))  # about four steps per epoch
        raise ConfigError(f"{path}: {images} images, fewer than one batch of {batch} (recipe {recipe.name}); "
                          f"pass --set optim.batch_size={suggest}")


def train_from_paths(recipe_name: str, data: str, *, data_format: str | None = None, val: Any = (),
                     out: str | None = None, resume: bool = False, device: str = "auto",
                     overrides: Any = (), data_root: str | None = None) -> FRTrainResult:
    """What ``facebench train-fr`` does: the recipe (registry or TOML, then ``--set``), the training set,
    its validation packs (checked now, not after the first epoch), the run directory with provenance,
    then :func:`train_fr`."""
    from ..config import config_to_dict
    from ..data import identify, open_dataset, open_pairs
    from ..evaluation.suites import resolve_validation
    from ..runs import Run, discard_on_failure, run_path
    from ..runtime import shutdown
    from .recipe import resolve_recipe

    recipe = resolve_recipe(recipe_name, overrides)
    reader = open_dataset(data, data_format)
    identity = identify(reader.path)  # a generate run or toyfaces world folder stands for the set inside
    pack_paths = resolve_validation(val, data, data_root=data_root)
    for path in pack_paths.values():
        open_pairs(path).close()
    out_dir = run_path(out, f"fr-{recipe.name}-{identity.name.replace('/', '-')}")
    ctx = env_context()
    dataset_info = {"name": identity.name, "path": str(identity.path.resolve()),
                    "format": getattr(reader, "format_name", "") or data_format,
                    "images": len(reader), "identities": int(reader.num_classes)}
    check_batch(len(reader), recipe, reader.path)
    try:
        with discard_on_failure(out_dir):  # a failure before the first checkpoint leaves no run folder
            if ctx.is_main:
                check_resume(out_dir, resume)
                inputs = {"dataset": identity.path, **{f"val:{k}": p for k, p in pack_paths.items()}}
                run = Run.start(out_dir, config=config_to_dict(recipe), seed=recipe.train.seed, device=device,
                                inputs=inputs, extra={"world_size": ctx.world_size})
                dataset_info["sha256"] = run.provenance()["inputs"]["dataset"]["sha256"]
            result = train_fr(recipe, reader, out_dir, val_packs=pack_paths, device=device, resume=resume,
                              dataset_info=dataset_info)
    finally:
        shutdown(ctx)
    result.recipe = recipe.name
    return result


__all__ = ["FRTrainResult", "StepRunner", "build_backbone", "build_head", "build_optimizer", "train_from_paths", "train_fr", "validate"]
