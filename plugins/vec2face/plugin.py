"""Vec2Face plugin: the native generator (official layout and a tiny CPU configuration) and its trainer.

Everything is registered lazily so that importing this module does not import torch.
"""

from __future__ import annotations

from facebench import hookimpl


@hookimpl
def register_generators(register):
    register("vec2face", "facebench_plugins.vec2face.generator:vec2face",
             "Vec2Face ViT-Base, official layout (weights/vec2face_generator.pth), 112 px",
             feature_dim=512, image_size=112, weights="vec2face_generator.pth")
    register("vec2face_vit_base_patch16", "facebench_plugins.vec2face.generator:vec2face",
             "Vec2Face ViT-Base under its official model name (same as 'vec2face')",
             feature_dim=512, image_size=112, weights="vec2face_generator.pth")
    register("vec2face_tiny", "facebench_plugins.vec2face.generator:vec2face_tiny",
             "Tiny Vec2Face (same module names), 56 px, trains on CPU in minutes (weights: train-generator)",
             feature_dim=512, image_size=56, weights_required=True)


@hookimpl
def register_commands(cli):
    from .cli import train_generator

    cli.add_command(train_generator)
