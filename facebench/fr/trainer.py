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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic
from ..config import config_to_dict, plain_name
from ..console import console, log_line, make_progress, warn
from ..errors import ConfigError, DataError, FacebenchError
from ..pluginmanager import registry
from ..runtime import (
    autocast,
    choose_device,
    configure_backends,
    env_context,
    gather_objects,
    grad_scaler,
    init_distributed,
    process_group,
    use_channels_last,
    wait_for_all,
)
from ..safe_load import expect
from ..training import (
    GlobalBatchSampler,
    LRSchedule,
    MetricsLog,
    Position,
    RunningMeans,
    build_scheduler,
    capture_rng_state,
    check_position,
    check_resume,
    load_training_checkpoint,
    restore_checkpoint,
    restoring,
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
    over ranks makes the update the mean over the global batch. Images arrive as ``uint8`` with their
    augmentation parameters (:class:`~facebench.fr.augment.AugmentedFaces`) and are normalised and
    augmented on the device; float images are used as they are.

    :meth:`step` returns the loss as a tensor on the device: nothing here waits for the GPU, so the
    caller decides when to read it (every ``log_every`` steps). ``sharded`` lists parameters split over
    the ranks (a sharded head's centres), whose squared gradient norm is summed over ranks for clipping.
    """

    def __init__(self, module: Any, optimizer: Any, scheduler: Any, scaler: Any, *, device: Any,
                 fp16: bool, micro_batch: int, grad_clip: float, channels_last: bool, amp_dtype: str = "fp16",
                 sharded: Any = (), ctx: Any = None):
        self.module = module
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler
        self.device = device
        self.fp16 = fp16
        self.amp_dtype = amp_dtype
        self.micro_batch = micro_batch
        self.grad_clip = grad_clip
        self.channels_last = channels_last
        self.sharded = {id(p) for p in sharded}
        self.ctx = ctx

    def step(self, images: Any, labels: Any, params: Any = None) -> Any:
        import contextlib

        import torch

        from .augment import AUG_COLUMNS, apply_augmentation

        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        if images.dtype == torch.uint8:
            if params is None:
                params = torch.zeros(images.shape[0], len(AUG_COLUMNS), dtype=torch.int64)
            images = apply_augmentation(images, params.to(self.device, non_blocking=True))
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        n = images.shape[0]
        micro = self.micro_batch or n
        starts = list(range(0, n, micro))
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=images.device)
        for k, lo in enumerate(starts):
            x, y = images[lo:lo + micro], labels[lo:lo + micro]
            last = k == len(starts) - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.module, "no_sync") else self.module.no_sync()
            with sync:
                with autocast(self.device, self.fp16, self.amp_dtype):
                    loss = self.module(x, y)
                weighted = loss.float() * (x.shape[0] / n)
                self.scaler.scale(weighted).backward()
            total += weighted.detach()
        if self.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            self._clip()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        return total

    def _clip(self) -> None:
        import torch

        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not self.sharded:
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            return
        from ..runtime import all_reduce_sum_

        def sq(group: list) -> Any:
            if not group:
                return torch.zeros((), device=self.device)
            return torch.stack([g.grad.detach().float().pow(2).sum() for g in group]).sum()

        shard_sq = all_reduce_sum_(self.ctx, sq([p for p in params if id(p) in self.sharded]))
        total = (sq([p for p in params if id(p) not in self.sharded]) + shard_sq).sqrt()
        coef = (self.grad_clip / (total + 1e-6)).clamp(max=1.0)  # clip_grad_norm_'s rule, on the global norm
        torch._foreach_mul_([p.grad for p in params], coef)


@dataclass
class FRTrainResult:
    out_dir: Path
    global_step: int
    accuracies: dict[str, float] = field(default_factory=dict)
    card: dict[str, Any] = field(default_factory=dict)
    recipe: str = ""
    already_complete: bool = False  # the same training was there: nothing was trained or written


#: Recipe keys that do not change what is trained (how many processes decode the images).
NOT_PARAMETERS = ("data.workers",)


def _recipe_parameters(recipe_dict: dict[str, Any]) -> str:
    """The recipe as a resume compares it: without :data:`NOT_PARAMETERS`."""
    trimmed = json.loads(json.dumps(recipe_dict, default=str))
    for key in NOT_PARAMETERS:
        head, _, last = key.rpartition(".")
        node = trimmed
        for part in head.split(".") if head else []:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return json.dumps(trimmed, sort_keys=True)


def validate(backbone: Any, packs: Mapping[str, Any], recipe: FRRecipe, device: Any,
             ctx: Any = None) -> dict[str, dict[str, float]]:
    """Verification accuracy of ``backbone`` on each pack (name -> path), scored exactly as
    ``facebench evaluate`` does (:func:`facebench.evaluation.evaluate_pack`: flip test, 10 folds).
    Under ``torchrun`` every rank calls it and embeds its share of each pack's images (no rank waits
    for another in a collective while one of them validates alone)."""
    from ..evaluation import TensorModel, evaluate_pack

    was_training = backbone.training
    backbone.eval()
    model = TensorModel(forward=backbone, input_size=recipe.model.input_size, device=str(device),
                        name=recipe.model.backbone, amp=recipe.train.fp16)
    results: dict[str, dict[str, float]] = {}
    try:
        for name, path in packs.items():
            res = evaluate_pack(model, path, batch_size=recipe.train.val_batch_size,
                                flip_test=recipe.train.val_flip, label=name, workers=recipe.data.workers, ctx=ctx)
            results[name] = {"accuracy": float(res.accuracy), "std": float(res.std)}
    finally:
        backbone.train(was_training)
    return results


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


#: Fewer images than this per forward pass make BatchNorm statistics noisy.
MIN_BN_BATCH = 32


def batch_warnings(recipe: FRRecipe, world_size: int) -> list[str]:
    """Warnings about the batch a recipe gives each process (BatchNorm sees one forward pass)."""
    o = recipe.optim
    per_pass = o.micro_batch or o.batch_per_gpu
    if per_pass >= MIN_BN_BATCH:
        return []
    what = f"optim.micro_batch {o.micro_batch}" if o.micro_batch else f"optim.batch_per_gpu {o.batch_per_gpu}"
    return [f"{what}: each forward pass sees {per_pass} images, fewer than {MIN_BN_BATCH}; BatchNorm statistics "
            f"will be noisy (global batch {o.batch_per_gpu * world_size} over {world_size} process"
            f"{'es' if world_size != 1 else ''})"]


def _without_param_state(state: Any, optimizer: Any, param: Any) -> Any:
    """A saved optimizer state without the buffers of ``param`` (found by its place in this run's groups),
    which are restored from elsewhere; a state of another structure is returned as it is, for
    :func:`load_optimizer_state` to name what is wrong with it."""
    for g, group in enumerate(optimizer.param_groups):
        for j, live in enumerate(group["params"]):
            if live is not param:
                continue
            try:
                saved_id = state["param_groups"][g]["params"][j]
                buffers = {k: v for k, v in state["state"].items() if k != saved_id}
            except (KeyError, IndexError, TypeError, AttributeError):
                return state
            return {**state, "state": buffers}
    return state


def train_fr(
    recipe: FRRecipe,
    reader: Any,
    out_dir: str | Path,
    *,
    val_packs: Mapping[str, str | Path] | None = None,
    device: str = "auto",
    resume: bool = False,
    dataset_info: Mapping[str, Any] | None = None,
    dataset_sha256: Callable[[], str] | None = None,
) -> FRTrainResult:
    """Train ``recipe`` on the train reader ``reader``; see the module docstring for the outputs.

    ``dataset_info`` (path, format, ...) goes into the model card, with ``dataset_sha256()`` (a hash
    computed in the background while training runs, see :class:`facebench.provenance.BackgroundHash`)
    asked for on rank 0 only at the end; the caller writes the run's ``config.toml``/``provenance.json``
    (the CLI does, through :class:`facebench.runs.Run`).
    """
    import torch

    out_dir = Path(out_dir)
    dev = choose_device(device, local_rank=env_context().local_rank)
    ctx = init_distributed(dev)
    configure_backends(dev, fixed_size=True)  # every batch is (B, 3, S, S): cuDNN autotuning pays off
    val_packs = dict(val_packs or {})
    ckpt_path = check_resume(out_dir, resume)
    out_dir.mkdir(parents=True, exist_ok=True)

    num_classes = int(reader.num_classes)
    labels = np.asarray(reader.labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(getattr(reader, "path", "dataset"), f"labels must lie in [0, {num_classes}), "
                        f"found {labels.min()}..{labels.max()}")
    o = recipe.optim
    sampler = GlobalBatchSampler(len(reader), o.batch_per_gpu * ctx.world_size, rank=ctx.rank,
                                 world_size=ctx.world_size, seed=recipe.train.seed)
    if o.micro_batch and sampler.local_batch % o.micro_batch:
        raise ConfigError(f"optim.micro_batch {o.micro_batch} must divide the per-GPU batch {sampler.local_batch}")
    if ctx.is_main:
        for warning in batch_warnings(recipe, ctx.world_size):
            warn(warning)

    _seed_everything(recipe.train.seed)
    backbone = build_backbone(recipe)
    head = build_head(recipe, num_classes)
    sharded = bool(getattr(head, "sharded", False))
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
    scaler = grad_scaler(dev, recipe.train.fp16, dtype=recipe.train.amp_dtype)
    log = MetricsLog(out_dir / METRICS, enabled=ctx.is_main)
    # A sharded head's centres differ per rank: the checkpoint keeps the backbone as the model and every
    # rank's shard (with its optimizer state) beside it.
    state_module = backbone if sharded else module

    position = Position()
    # This rank's losses on the device: since the last log line, and of the epoch so far (read only when
    # a line is logged: the loop never waits for the GPU otherwise).
    window, epoch_means = RunningMeans(), RunningMeans()
    recipe_dict = config_to_dict(recipe)
    if resume and ckpt_path.exists():
        data = load_training_checkpoint(ckpt_path)
        extra = data["extra"]
        saved = extra.get("recipe")
        if saved is not None and (not isinstance(saved, dict)
                                  or _recipe_parameters(saved) != _recipe_parameters(recipe_dict)):
            raise ConfigError(f"{ckpt_path}: cannot resume: the recipe differs from the interrupted run's")
        if extra.get("num_images") not in (None, len(reader)):
            raise ConfigError(f"{ckpt_path}: cannot resume: the dataset has {len(reader)} images, the "
                              f"interrupted run had {extra['num_images']}")
        saved_world = expect(ckpt_path, extra.get("world_size", ctx.world_size), int, "extra.world_size")
        if saved_world != ctx.world_size:
            raise ConfigError(f"{ckpt_path}: cannot resume on {ctx.world_size} process"
                              f"{'es' if ctx.world_size != 1 else ''}: the run was started on {saved_world} and "
                              f"its global batch is optim.batch_per_gpu x processes; resume with "
                              f"torchrun --nproc_per_node {saved_world}")
        check_position(data["position"], sampler.steps_per_epoch, o.epochs, ckpt_path)
        if sharded:  # the saved optimizer holds rank 0's head shard: each rank's comes from extra.per_rank
            data["optimizer"] = _without_param_state(data.get("optimizer"), optimizer, head.weight)
        position = restore_checkpoint(data, model=state_module, optimizer=optimizer, scheduler=scheduler,
                                      scaler=scaler, rank=ctx.rank, path=ckpt_path)
        per_rank = expect(ckpt_path, extra.get("per_rank") or [], list, "extra.per_rank")
        if ctx.rank < len(per_rank):
            with restoring(ckpt_path, "extra.per_rank"):
                window.load_state_dict(per_rank[ctx.rank]["window"], dev)
                epoch_means.load_state_dict(per_rank[ctx.rank]["epoch"], dev)
                if sharded:
                    shard = per_rank[ctx.rank]["head"]
                    if shard["weight"].shape != head.weight.shape:
                        raise ValueError(f"head shard of shape {tuple(shard['weight'].shape)}, this run's "
                                         f"{tuple(head.weight.shape)}")
                    if any(v.dim() and v.shape != head.weight.shape for v in shard["optim"].values()):
                        raise ValueError("a head shard's optimizer state has another shape than the shard")
                    with torch.no_grad():
                        head.weight.copy_(shard["weight"].to(dev))
                    optimizer.state[head.weight] = {k: v.to(dev) for k, v in shard["optim"].items()}
        log.truncate_after(position.global_step)
        if ctx.is_main:
            console.print(f"resuming {out_dir} at epoch {position.epoch + 1}, step {position.global_step}")
    else:
        # Different ranks draw different dropout masks; the model itself was built identically on all.
        torch.manual_seed(recipe.train.seed * 7919 + ctx.rank)

    wrapped: Any = module
    if ctx.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [dev.index] if dev.type == "cuda" else None
        wrapped = _HeadOutside(DDP(backbone, device_ids=ids), head) if sharded else DDP(module, device_ids=ids)
    runner = StepRunner(wrapped, optimizer, scheduler, scaler, device=dev, fp16=recipe.train.fp16,
                        amp_dtype=recipe.train.amp_dtype, micro_batch=o.micro_batch, grad_clip=o.grad_clip,
                        channels_last=channels_last, sharded=[head.weight] if sharded else (), ctx=ctx)
    dataset = AugmentedFaces(reader, input_size=recipe.model.input_size, flip=recipe.data.flip,
                             random_erasing=recipe.data.random_erasing, seed=recipe.train.seed)
    # One loader for the whole run: workers stay alive between epochs (the sampler is told the epoch).
    # A private generator: creating the iterator must not draw from the global RNG, or a run resumed
    # mid-epoch would see other dropout masks than an uninterrupted one.
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=recipe.data.workers, pin_memory=dev.type == "cuda",
        persistent_workers=recipe.data.workers > 0,
        generator=torch.Generator().manual_seed(recipe.train.seed * 1_000_003))

    def checkpoint(pos: Position) -> None:
        mine: dict[str, Any] = {"rng": capture_rng_state(), "window": window.state_dict(),
                                 "epoch": epoch_means.state_dict()}
        if sharded:
            mine["head"] = {"weight": head.weight.detach().cpu(),
                            "optim": {k: v.detach().cpu() for k, v in optimizer.state.get(head.weight, {}).items()
                                      if isinstance(v, torch.Tensor)}}
        states = gather_objects(ctx, mine)
        if ctx.is_main:
            save_checkpoint(ckpt_path, position=pos, model=state_module, optimizer=optimizer, scheduler=scheduler,
                            scaler=scaler, rng=[s.pop("rng") for s in states],
                            extra={"recipe": recipe_dict, "num_images": len(reader), "world_size": ctx.world_size,
                                   "per_rank": states})
        wait_for_all(ctx)  # rank 0 writes while the others wait: not a step collective

    log_every = max(1, recipe.train.log_every)
    accuracies: dict[str, dict[str, float]] = {}
    step = position.global_step
    with make_progress() as progress:
        for epoch in range(position.epoch, o.epochs):
            start = position.step_in_epoch if epoch == position.epoch else 0
            sampler.set_epoch(epoch, start)
            task = progress.add_task(f"epoch {epoch + 1}/{o.epochs}", total=sampler.steps_per_epoch,
                                     completed=start) if ctx.is_main else None
            module.train()
            if not start:
                epoch_means.reset()
            tick, seen = time.perf_counter(), 0  # images/s counts training only, not validation
            epoch_tick, epoch_seen = tick, 0
            for in_epoch, (images, targets, params) in enumerate(loader, start=start + 1):
                loss = runner.step(images, targets, params)
                window.add({"loss": loss})
                epoch_means.add({"loss": loss})
                step += 1
                seen += images.shape[0] * ctx.world_size
                if task is not None:
                    progress.update(task, advance=1)
                if step % log_every == 0:  # the only host sync of the loop: one all-reduce per log line
                    mean = _finite(window.means(ctx)["loss"], step)
                    window.reset()
                    now = time.perf_counter()
                    rate = seen / max(now - tick, 1e-9)
                    lr = optimizer.param_groups[0]["lr"]
                    log.log(event="train", epoch=epoch + 1, step=step, loss=mean, lr=lr, images_per_s=rate)
                    if ctx.is_main:
                        log_line(f"epoch {epoch + 1}/{o.epochs}  step {in_epoch}/{sampler.steps_per_epoch}  "
                                 f"global step {step}  loss {mean:.4f}  lr {lr:.6g}  images/s {rate:.1f}")
                    epoch_seen += seen
                    tick, seen = now, 0
                if (recipe.train.checkpoint_every and step % recipe.train.checkpoint_every == 0
                        and in_epoch < sampler.steps_per_epoch):
                    checkpoint(Position(epoch, in_epoch, step))
            epoch_seen += seen
            epoch_rate = epoch_seen / max(time.perf_counter() - epoch_tick, 1e-9)
            if task is not None:
                progress.remove_task(task)
            epoch_loss = _finite(epoch_means.means(ctx)["loss"], step)
            if val_packs:
                accuracies = validate(backbone, val_packs, recipe, dev, ctx)
            if ctx.is_main:
                summary = "  ".join(f"{k} {v['accuracy'] * 100:.2f}%" for k, v in accuracies.items())
                log_line(f"epoch {epoch + 1}/{o.epochs} done  global step {step}  loss {epoch_loss:.4f}  "
                         f"lr {optimizer.param_groups[0]['lr']:.6g}  images/s {epoch_rate:.1f}"
                         + (f"  val {summary}" if summary else ""))
                log.log(event="epoch", epoch=epoch + 1, step=step, loss=epoch_loss, images_per_s=epoch_rate,
                        val={k: v["accuracy"] for k, v in accuracies.items()})
            checkpoint(Position(epoch + 1, 0, step))

    result = FRTrainResult(out_dir=out_dir, global_step=step,
                           accuracies={k: v["accuracy"] for k, v in accuracies.items()})
    if ctx.is_main:
        if not accuracies:  # resumed after the last epoch: take the last validation from the log
            epochs = [r for r in log.read() if r.get("event") == "epoch"]
            val = epochs[-1].get("val") or {} if epochs else {}
            if not isinstance(val, dict) or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                                    for v in val.values()):
                raise DataError(log.path, "the last epoch's val must be an object of accuracies")
            result.accuracies = dict(val)
        with atomic.atomic_path(out_dir / BACKBONE, "backbone weights") as tmp:
            torch.save({k: v.detach().cpu() for k, v in backbone.state_dict().items()}, tmp)
        info = dict(dataset_info or {})
        if dataset_sha256 is not None:
            info["sha256"] = dataset_sha256()
        result.card = model_card(recipe, num_classes, len(reader), step, result.accuracies, info,
                                 world_size=ctx.world_size)
        atomic.write_json(out_dir / MODEL_CARD, result.card, "model card")
    wait_for_all(ctx)  # rank 0 may still be finishing the dataset hash
    return result


def check_batch(images: int, recipe: Any, world_size: int, path: Any) -> None:
    """A training set smaller than one global batch cannot train: say which value to change, and to what."""
    batch = recipe.optim.batch_per_gpu * world_size
    if images < batch:
        suggest = 2 ** max(0, int(math.log2(max(images // (4 * world_size), 1))))  # about four steps per epoch
        over = f" ({world_size} processes x optim.batch_per_gpu {recipe.optim.batch_per_gpu})" if world_size > 1 else ""
        raise ConfigError(f"{path}: {images} images, fewer than one batch of {batch}{over} (recipe {recipe.name}); "
                          f"pass --set optim.batch_per_gpu={suggest}")


class _HeadOutside:
    """The forward of a DDP-wrapped backbone followed by a head that DDP must not see (its parameters are
    sharded over the ranks and synchronise themselves)."""

    def __init__(self, backbone: Any, head: Any):
        self.backbone = backbone
        self.head = head

    def __call__(self, images: Any, labels: Any) -> Any:
        return self.head(self.backbone(images), labels)

    def no_sync(self) -> Any:
        return self.backbone.no_sync()


def _finite(value: float, step: int) -> float:
    if not math.isfinite(value):
        raise FacebenchError(f"training diverged by step {step}: loss is {value}; lower optim.lr or enable "
                             "grad clipping")
    return value


def train_from_paths(recipe_name: str, data: str, *, data_format: str | None = None, val: Any = (),
                     out: str | None = None, resume: bool = False, device: str = "auto",
                     overrides: Any = (), data_root: str | None = None, overwrite: bool = False) -> FRTrainResult:
    """What ``facebench train-fr`` does: the recipe (registry or TOML, then ``--set``), the training set,
    its validation packs (checked now, not after the first epoch), the process group, the run directory
    with provenance, then :func:`train_fr`. A generate run or toyfaces world folder given as ``data``
    stands for the set inside (:func:`facebench.data.identify`), which names the run and the model card.

    The rerun contract (:mod:`facebench.rerun`): the parameters are the recipe (without ``data.workers``)
    and the sha256 of the validation packs and of the training set (hashed on a background thread while
    training runs, so it is compared once a finished record holds it). The same command on a finished run
    does nothing (``already_complete``); on an unfinished one it continues from the last checkpoint
    (``resume`` is no longer needed); other parameters are refused unless ``overwrite``.

    Rank 0's one-off work (the run directory, hashing the validation packs) happens after the group is
    formed while the other ranks wait in :func:`~facebench.runtime.wait_for_all`; the training set is
    hashed on a background thread (cached by file list, size and mtime) while training runs, so neither
    counts against the collective timeout. A failure before the first checkpoint leaves no run folder."""
    from ..data import identify, open_dataset, open_pairs
    from ..evaluation.suites import resolve_validation
    from ..provenance import BackgroundHash, sha256_path
    from ..rerun import FINISHED, RESUME, Rerun, parameters
    from ..runs import Run, discard_on_failure, run_path
    from ..safe_load import read_json
    from ..training import CHECKPOINT
    from .recipe import resolve_recipe

    recipe = resolve_recipe(recipe_name, overrides)
    reader = open_dataset(data, data_format)
    identity = identify(reader.path)  # a generate run or toyfaces world folder stands for the set inside
    pack_paths = resolve_validation(val, data, data_root=data_root)
    for path in pack_paths.values():
        open_pairs(path).close()
    check_batch(len(reader), recipe, env_context().world_size, reader.path)
    # without --out the recipe's name becomes a folder under runs/: a plain name, or it could leave runs/
    out_dir = run_path(out, f"fr-{recipe.name if out else plain_name(recipe.name, 'recipe name')}-"
                            f"{identity.name.replace('/', '-')}")
    dataset_info = {"name": identity.name, "path": str(identity.path.resolve()),
                    "format": getattr(reader, "format_name", "") or data_format,
                    "images": len(reader), "identities": int(reader.num_classes)}
    dev = choose_device(device, local_rank=env_context().local_rank)
    atomic.refuse_link(out_dir / CHECKPOINT, "training checkpoint")  # a name it reopens: never a planted link
    with discard_on_failure(out_dir), process_group(dev) as ctx:
        inputs = {f"val:{k}": p for k, p in pack_paths.items()}
        rerun = Rerun(out_dir, command="train-fr", what="model", overwrite=overwrite, resume=resume,
                      params=parameters(config_to_dict(recipe), ignore=NOT_PARAMETERS, inputs=inputs),
                      outputs=[BACKBONE, MODEL_CARD], deferred={"dataset": lambda: sha256_path(identity.path)})
        state = rerun.check(discard=False)  # every rank reads the record before the main rank changes it
        wait_for_all(ctx)
        if state == FINISHED:
            card = read_json(out_dir / MODEL_CARD, what="model card")
            return FRTrainResult(out_dir=out_dir, global_step=int(card.get("steps", 0)),
                                 accuracies=dict(card.get("accuracies") or {}), card=card, recipe=recipe.name,
                                 already_complete=True)
        run = hasher = None
        if ctx.is_main:
            rerun.prepare()
            run = Run.start(out_dir, config=config_to_dict(recipe), seed=recipe.train.seed, device=device,
                            inputs=inputs, extra={"world_size": ctx.world_size,
                                                  "global_batch": recipe.optim.batch_per_gpu * ctx.world_size},
                            rerun=rerun)
            hasher = BackgroundHash(identity.path)
        wait_for_all(ctx)
        resume = resume or (state == RESUME and (out_dir / CHECKPOINT).is_file())
        result = train_fr(recipe, reader, out_dir, val_packs=pack_paths, device=str(dev), resume=resume,
                          dataset_info=dataset_info, dataset_sha256=hasher.result if hasher else None)
        if run is not None and hasher is not None:
            run.add_input("dataset", identity.path, sha256=hasher.result())
            rerun.add_input("dataset", hasher.result())
            rerun.finish(run)
    result.recipe = recipe.name
    return result


__all__ = ["FRTrainResult", "StepRunner", "build_backbone", "build_head", "build_optimizer", "batch_warnings",
           "train_from_paths", "train_fr", "validate"]
