"""Low-rank adapters on a frozen linear layer, laid out as Vec2Face+ saves them.

Vec2Face+ fine-tunes its pose model by adding ``scaling * B A x`` (``A``: rank x in, ``B``: out x rank,
``scaling = alpha / rank``) to the attention ``qkv`` and ``proj`` layers of every encoder and decoder block
while the layer itself (``base``) stays frozen. The released ``pose_model.pth`` names the tensors
``...attn.qkv.A``, ``...attn.qkv.B``, ``...attn.qkv.base.weight``, ``...attn.qkv.base.bias``, which is
what this module's attribute names give. ``B`` starts at zero, so a fresh adapter changes nothing.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from facebench.errors import ConfigError


class LoRALinear(nn.Module):
    """``base(x) + (alpha / rank) * (dropout(x) A^T) B^T``; ``base`` is frozen (only ``A`` and ``B`` train)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float = 32.0, dropout: float = 0.0):
        super().__init__()
        if rank < 1:
            raise ConfigError(f"LoRA rank must be at least 1, got {rank}")
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device,
                                          dtype=base.weight.dtype))
        self.B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device,
                                          dtype=base.weight.dtype))
        if not self.A.is_meta:
            nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))  # as nn.Linear initialises its weight
        self.rank = rank
        self.alpha = float(alpha)
        self.scaling = self.alpha / rank
        self.drop = nn.Dropout(dropout)

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """The update as a matrix (out x in): ``scaling * B A``; what merging the adapter would add."""
        return self.scaling * (self.B @ self.A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scaling * ((self.drop(x) @ self.A.t()) @ self.B.t())

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}"


def lora_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The adapters' ``A`` and ``B`` of ``model`` in registration order (what the release trains)."""
    return [(name, p) for name, p in model.named_parameters()
            if name.rsplit(".", 1)[-1] in ("A", "B") and isinstance(model.get_submodule(name.rsplit(".", 1)[0]),
                                                                  LoRALinear)]
