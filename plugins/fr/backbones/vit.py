"""Vision Transformers for 112x112 faces on timm (the paper's Table 9 ViT-S / ViT-B rows).

A face embedding needs where things are, not only what is there, so (as in arcface_torch's ViTs) the
token grid is flattened into a ``fc`` layer followed by a ``features`` BatchNorm1d, instead of pooling
a class token. Patch size 8 gives a 14x14 grid at 112 px (7x7 for the 56 px tiny model).
"""

from __future__ import annotations

import torch
from torch import nn


class FaceViT(nn.Module):
    """timm ``VisionTransformer`` trunk (no class token) + flatten -> fc -> BatchNorm1d embedding head."""

    def __init__(self, *, embed_dim: int, depth: int, num_heads: int, input_size: int = 112,
                 patch_size: int = 8, num_features: int = 512, drop_path_rate: float = 0.1,
                 dropout: float = 0.0):
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer

        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not a multiple of patch_size {patch_size}")
        self.input_size = input_size
        self.num_features = num_features
        self.trunk = VisionTransformer(
            img_size=input_size, patch_size=patch_size, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, num_classes=0, global_pool="", class_token=False,
            drop_path_rate=drop_path_rate,
        )
        tokens = (input_size // patch_size) ** 2
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(tokens * embed_dim, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.trunk.forward_features(x)
        flat = self.dropout(torch.flatten(tokens, 1))
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.features(self.fc(flat.float()))


def vit_s(**kwargs) -> FaceViT:
    """ViT-S for 112x112 faces (width 384, 12 blocks, 6 heads, patch 8)."""
    return FaceViT(embed_dim=384, depth=12, num_heads=6, **kwargs)


def vit_b(**kwargs) -> FaceViT:
    """ViT-B for 112x112 faces (width 768, 12 blocks, 12 heads, patch 8)."""
    return FaceViT(embed_dim=768, depth=12, num_heads=12, **kwargs)


def vit_tiny(**kwargs) -> FaceViT:
    """Tiny ViT for CPU tests (width 64, 2 blocks, 2 heads), 56 px input by default."""
    kwargs.setdefault("input_size", 56)
    kwargs.setdefault("drop_path_rate", 0.0)
    return FaceViT(embed_dim=64, depth=2, num_heads=2, **kwargs)
