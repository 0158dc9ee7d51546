"""Margin heads: class centres + a margin softmax loss, vectorised and safe under fp16 autocast.

Every head is ``head(embeddings, labels) -> loss`` (mean cross-entropy) and ``head.logits(embeddings)``
(scaled logits without margin, for accuracy). Cosines are computed in fp32 even under autocast: with
s=64 an fp16 logit loses the margin's effect in rounding.

ArcFace comes in the two forms found in practice (see docs/fr.md):

* ``straight_through=True`` (insightface ``arcface_torch`` since Dec 2022, and the Vec2Face paper's
  trainer): the target logit takes the value ``s*cos(theta+m)`` but the gradient flows as if it were
  ``s*cos(theta)``; no guard for ``theta+m > pi``.
* ``straight_through=False, guard=True`` (the original ArcFace formulation): exact gradient of
  ``cos(theta+m)``, and where ``theta > pi - m`` the target logit becomes ``cos(theta) - m*sin(m)`` so it
  stays monotonic in theta.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_EPS = 1e-7


class CosineClassifier(nn.Module):
    """Class centres on the unit sphere; ``cosines`` is the normalised linear layer in fp32."""

    def __init__(self, embedding_size: int, num_classes: int, scale: float = 64.0):
        super().__init__()
        self.embedding_size = embedding_size
        self.num_classes = num_classes
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_size).normal_(0, 0.01))

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            e = F.normalize(embeddings.float(), dim=1)
            w = F.normalize(self.weight.float(), dim=1)
            return F.linear(e, w).clamp(-1 + _EPS, 1 - _EPS)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.cosines(embeddings) * self.scale

    def margin_target(self, target: torch.Tensor) -> torch.Tensor:
        """The target class's cosine after the margin (unscaled); no margin here (NormFace). The sharded
        head applies the same function to the targets of its own classes."""
        return target

    def margin_logits(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        index = labels[:, None]
        return cos.scatter(1, index, self.margin_target(cos.gather(1, index))) * self.scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.cosines(embeddings)
        return F.cross_entropy(self.margin_logits(cos, labels), labels)


class ArcFace(CosineClassifier):
    """Additive angular margin: target logit ``s*cos(theta_y + m)``."""

    def __init__(self, embedding_size: int, num_classes: int, *, scale: float = 64.0, margin: float = 0.5,
                 straight_through: bool = True, guard: bool = False):
        super().__init__(embedding_size, num_classes, scale)
        self.margin = margin
        self.straight_through = straight_through
        self.guard = guard

    def margin_target(self, target: torch.Tensor) -> torch.Tensor:
        m = self.margin
        sin = torch.sqrt((1.0 - target * target).clamp_min(_EPS))
        shifted = target * math.cos(m) - sin * math.sin(m)  # cos(theta + m)
        if self.guard:
            shifted = torch.where(target > math.cos(math.pi - m), shifted, target - m * math.sin(m))
        if self.straight_through:
            shifted = target + (shifted - target).detach()
        return shifted


class CosFace(CosineClassifier):
    """Additive cosine margin: target logit ``s*(cos(theta_y) - m)``."""

    def __init__(self, embedding_size: int, num_classes: int, *, scale: float = 64.0, margin: float = 0.35):
        super().__init__(embedding_size, num_classes, scale)
        self.margin = margin

    def margin_target(self, target: torch.Tensor) -> torch.Tensor:
        return target - self.margin


class SoftmaxHead(nn.Module):
    """Plain linear classifier + cross-entropy (the no-margin baseline)."""

    def __init__(self, embedding_size: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(embedding_size, num_classes)

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return self.fc(embeddings.float())

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.logits(embeddings), labels)


def arcface(embedding_size: int, num_classes: int, **kwargs) -> ArcFace:
    """ArcFace s=64 m=0.5, straight-through gradient, no theta+m>pi guard (arcface_torch / paper trainer)."""
    return ArcFace(embedding_size, num_classes, **kwargs)


def arcface_classic(embedding_size: int, num_classes: int, **kwargs) -> ArcFace:
    """ArcFace s=64 m=0.5 as first published: exact gradient with the theta+m>pi guard."""
    kwargs.setdefault("straight_through", False)
    kwargs.setdefault("guard", True)
    return ArcFace(embedding_size, num_classes, **kwargs)


def cosface(embedding_size: int, num_classes: int, **kwargs) -> CosFace:
    """CosFace s=64 m=0.35 (the CosFace paper's margin)."""
    return CosFace(embedding_size, num_classes, **kwargs)


def cosface_m04(embedding_size: int, num_classes: int, **kwargs) -> CosFace:
    """CosFace s=64 m=0.4 (arcface_torch's Glint360K / WebFace configs)."""
    kwargs.setdefault("margin", 0.4)
    return CosFace(embedding_size, num_classes, **kwargs)


def softmax(embedding_size: int, num_classes: int, **kwargs) -> SoftmaxHead:
    """Plain softmax cross-entropy with a biased linear classifier."""
    return SoftmaxHead(embedding_size, num_classes, **kwargs)
