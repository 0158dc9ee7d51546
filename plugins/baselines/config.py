"""Baseline generator options (torch-free, so listing plugins stays fast)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class NoiseProjectionConfig:
    """Options of ``noise_projection``: vector width, output size, pattern grid, contrast, noise, seed."""

    feature_dim: int = 512
    image_size: int = 112
    grid: int = 7
    gain: float = 3.0
    noise: float = 0.05
    seed: int = 0
