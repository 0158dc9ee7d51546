"""A PartialFC-style margin head: the class centres are split over the ranks of a ``torchrun`` job.

At 205k identities the centre matrix is 105M parameters; replicated under DDP it is all-reduced on every
rank every step. Here rank ``r`` owns a contiguous slice of the classes and is never wrapped in DDP: the
embeddings (and labels) of the whole global batch are gathered, each rank computes the cosines to its
own centres, and the softmax cross-entropy is computed across ranks (max, sum of exponentials and target
logit all-reduced). With ``sample_rate`` below 1 each rank scores only the positive classes of the batch
that it owns plus random negatives, ``sample_rate`` of its classes in all (Partial FC, An et al. 2022).

With ``sample_rate = 1`` the loss, the centre gradients and (after DDP's averaging) the backbone gradients
equal those of the full head on one process. In a single process it *is* the full head. The margin is any
registered cosine head's (``loss = "arcface"`` by default, with that head's options: scale, margin,
straight_through, ...).

How the pieces line up with DDP: every rank computes the same global-batch mean loss; a rank's own
embeddings receive the sum over ranks of the gradients flowing back through the gather, times the world
size, because DDP then averages the backbone's gradients over ranks.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from facebench.errors import ConfigError

_EPS = 1e-7


def _group() -> tuple[int, int]:
    """(rank, world size) of the initialised process group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherRows(torch.autograd.Function):
    """All ranks' equal-sized row blocks, concatenated in rank order; backward sums the gradient over
    ranks, keeps this rank's rows and multiplies by the world size (DDP divides it back)."""

    @staticmethod
    def forward(ctx: Any, local: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        rank, world = _group()
        ctx.rank, ctx.world, ctx.rows = rank, world, local.shape[0]
        if world == 1:
            return local.clone()
        parts = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(parts, local.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if ctx.world == 1:
            return grad
        grad = grad.contiguous()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows] * ctx.world


class _ShardedCrossEntropy(torch.autograd.Function):
    """Mean softmax cross-entropy over classes split across ranks. ``logits`` (N, local classes);
    ``labels`` the local column of each row's class, -1 where another rank owns it."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        _, world = _group()
        top = logits.max(dim=1, keepdim=True).values
        if world > 1:
            dist.all_reduce(top, op=dist.ReduceOp.MAX)
        exp = (logits - top).exp_()
        total = exp.sum(dim=1, keepdim=True)
        valid = labels >= 0
        index = labels.clamp_min(0)[:, None]
        target = torch.where(valid[:, None], logits.gather(1, index), torch.zeros_like(top))
        if world > 1:
            dist.all_reduce(total)
            dist.all_reduce(target)
        ctx.save_for_backward(exp.div_(total), labels)
        return (total.log() + top - target).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        prob, labels = ctx.saved_tensors
        valid = labels >= 0
        onehot = torch.zeros_like(prob).scatter_(1, labels.clamp_min(0)[:, None], valid[:, None].to(prob.dtype))
        return (prob - onehot) * (grad / prob.shape[0]), None


class PartialFC(nn.Module):
    """Sharded class centres + a margin softmax loss; ``forward(embeddings, labels) -> loss``.

    ``sharded`` tells the FR trainer to keep this module out of DDP and to save every rank's shard.
    """

    sharded = True

    def __init__(self, embedding_size: int, num_classes: int, *, loss: str = "arcface", sample_rate: float = 1.0,
                 **margin_options: Any):
        super().__init__()
        from facebench.pluginmanager import registry

        if not 0.0 < sample_rate <= 1.0:
            raise ConfigError(f"partial_fc: sample_rate must be in (0, 1], got {sample_rate}")
        self.rank, self.world = _group()
        self.embedding_size = embedding_size
        self.num_classes = num_classes
        self.sample_rate = float(sample_rate)
        base, extra = divmod(num_classes, self.world)
        self.num_local = base + (1 if self.rank < extra else 0)
        self.class_start = base * self.rank + min(self.rank, extra)
        # The margin of any cosine head, built for one class (only its margin_target and scale are used),
        # without drawing from the global RNG.
        with torch.random.fork_rng(devices=[]):
            self.margin = registry("head").create(loss, embedding_size, 1, **margin_options)
        if not hasattr(self.margin, "margin_target"):
            raise ConfigError(f"partial_fc: head '{loss}' is not a cosine margin head")
        self.margin.weight = None  # its one-class centre is not a parameter of this head
        self.scale = float(self.margin.scale)
        # Drawn like the full head's (C, D) matrix so both start from the same centres (and the global RNG
        # moves the same way); this rank keeps its rows.
        full = torch.empty(num_classes, embedding_size).normal_(0, 0.01)
        self.weight = nn.Parameter(full[self.class_start:self.class_start + self.num_local].clone())

    def extra_repr(self) -> str:
        return (f"classes {self.class_start}..{self.class_start + self.num_local - 1} of {self.num_classes} "
                f"(rank {self.rank} of {self.world}), sample_rate={self.sample_rate}")

    def _sample(self, labels: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(rows of this shard to score, or None for all; each label's column among them or -1)."""
        local = labels - self.class_start
        mine = (local >= 0) & (local < self.num_local)
        local = torch.where(mine, local, torch.full_like(local, -1))
        num_sample = int(self.sample_rate * self.num_local)
        if self.sample_rate >= 1.0 or num_sample >= self.num_local:
            return None, local
        # Positives first (score 2), then random negatives: the top num_sample of the scores.
        score = torch.rand(self.num_local, device=labels.device)
        score[local[mine]] = 2.0
        k = min(self.num_local, max(num_sample, int(mine.sum())))  # one host sync, only when sampling
        keep = score.topk(k, sorted=False).indices.sort().values
        column = torch.full((self.num_local,), -1, dtype=torch.long, device=labels.device)
        column[keep] = torch.arange(keep.numel(), device=labels.device)
        return keep, torch.where(mine, column[local.clamp_min(0)], local)

    def cosines(self, embeddings: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            weight = self.weight if rows is None else self.weight[rows]
            e = F.normalize(embeddings.float(), dim=1)
            return F.linear(e, F.normalize(weight.float(), dim=1)).clamp(-1 + _EPS, 1 - _EPS)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Scaled logits of this rank's classes (no margin)."""
        return self.cosines(embeddings) * self.scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        everyone = _GatherRows.apply(embeddings)
        labels = _gather_labels(labels)
        rows, local = self._sample(labels)
        cos = self.cosines(everyone, rows)
        valid = local >= 0
        index = local.clamp_min(0)[:, None]
        target = cos.gather(1, index)
        shifted = torch.where(valid[:, None], self.margin.margin_target(target), target)
        logits = cos.scatter(1, index, shifted) * self.scale
        return _ShardedCrossEntropy.apply(logits, local)


def _gather_labels(labels: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist

    _, world = _group()
    if world == 1:
        return labels
    parts = [torch.empty_like(labels) for _ in range(world)]
    dist.all_gather(parts, labels.contiguous())
    return torch.cat(parts)


def partial_fc(embedding_size: int, num_classes: int, **kwargs: Any) -> PartialFC:
    """ArcFace (by default) with class centres sharded over the ranks; ``sample_rate`` < 1 samples negatives."""
    return PartialFC(embedding_size, num_classes, **kwargs)
