"""Registers the baseline generators (lazily: importing this module does not import torch)."""

from __future__ import annotations

from facebench import hookimpl


@hookimpl
def register_generators(register):
    from .config import NoiseProjectionConfig

    register(
        "noise_projection",
        "facebench_plugins.baselines.noise:NoiseProjectionGenerator",
        "class-conditional noise: a fixed random projection of the identity vector to a colour pattern",
        config=NoiseProjectionConfig,
    )
