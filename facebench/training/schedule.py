"""Learning-rate schedules evaluated per optimizer step: step decay, cosine, polynomial, with warm-up.

Schedules are given in epochs (as papers state them) and turned into step counts once the number of
steps per epoch is known. :class:`LRSchedule` is a plain object with only numbers in it, so
``LambdaLR`` stores it in its state dict and a resumed run continues on the same curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

KINDS = ("step", "cosine", "poly", "constant")


@dataclass
class LRSchedule:
    """Multiplier of the base learning rate at optimizer step ``s`` (0-based).

    * ``step``: divided by ``1/gamma`` at each milestone. Milestones are 1-based epoch numbers at which
      the reduced rate *starts* (the paper's "reduce LR at [12, 20, 24]" in a 26-epoch run), converted
      to step ``(m - 1) * steps_per_epoch``.
    * ``cosine``: half cosine from 1 to ``min_factor`` over the steps after warm-up.
    * ``poly``: ``(1 - progress) ** power`` (``power`` 1 = arcface_torch's linear decay).
    * ``warmup_steps``: linear ramp from ``1/warmup_steps`` to 1 before any of the above.
    """

    kind: str = "step"
    total_steps: int = 1
    warmup_steps: int = 0
    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.1
    min_factor: float = 0.0
    power: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown lr schedule '{self.kind}' (expected one of: {', '.join(KINDS)})")
        if self.total_steps < 1:
            raise ConfigError(f"lr schedule needs at least one step, got total_steps={self.total_steps}")

    def __call__(self, step: int) -> float:
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.kind == "step":
            return self.gamma ** sum(1 for m in self.milestones if step >= m)
        if self.kind == "constant":
            return 1.0
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        if self.kind == "cosine":
            return self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        return max(self.min_factor, (1 - progress) ** self.power)

    @classmethod
    def from_epochs(
        cls,
        kind: str,
        *,
        epochs: int,
        steps_per_epoch: int,
        milestones: list[int] | tuple[int, ...] = (),
        warmup_epochs: float = 0.0,
        gamma: float = 0.1,
        min_factor: float = 0.0,
        power: float = 1.0,
        **extra: Any,
    ) -> LRSchedule:
        """A schedule stated in epochs (warm-up may be fractional), converted to optimizer steps;
        ``extra`` are a subclass's own fields."""
        for m in milestones:
            if m < 1:
                raise ConfigError(f"lr milestones are 1-based epoch numbers, got {m}")
        return cls(
            kind=kind,
            total_steps=max(1, epochs * steps_per_epoch),
            warmup_steps=int(round(warmup_epochs * steps_per_epoch)),
            milestones=[(m - 1) * steps_per_epoch for m in milestones],
            gamma=gamma,
            min_factor=min_factor,
            power=power,
            **extra,
        )


@dataclass
class LinearWarmup(LRSchedule):
    """The schedule after a warm-up that ramps linearly from ``start_factor`` at step 0 towards 1 at
    ``warmup_steps`` (torch's ``LinearLR`` followed by the schedule through ``SequentialLR``, stepped per
    iteration), where :class:`LRSchedule`'s own warm-up starts at ``1/warmup_steps``."""

    start_factor: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.start_factor <= 1:
            raise ConfigError(f"warm-up start factor must lie in (0, 1], got {self.start_factor}")

    def __call__(self, step: int) -> float:
        if self.warmup_steps > 0 and step < self.warmup_steps:
            return self.start_factor + (1 - self.start_factor) * step / self.warmup_steps
        return super().__call__(step)


def build_scheduler(optimizer: Any, schedule: LRSchedule) -> Any:
    """A ``LambdaLR`` driven by ``schedule``; call ``.step()`` after every optimizer step."""
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, lr_lambda=schedule)
