"""Vec2Face plugin: the native generator (official layout and a tiny CPU configuration) and its trainer.

Everything is registered lazily so that importing this module does not import torch.
"""

from __future__ import annotations

from facebench import hookimpl

#: The files Vec2Face loads: its generator, and LPIPS-VGG16's two files for train-generator.
WEIGHT_FILES = (
    ("vec2face_generator.pth", "Vec2Face generator (key 'model_vec2face')", "Vec2Face release"),
    ("vgg16-397923af.pth", "VGG16 ImageNet features for train-generator's LPIPS loss", "torchvision"),
    ("vgg.pth", "LPIPS linear layers for VGG16 (train-generator)", "LPIPS release (also in the Vec2Face repo)"),
)


#: The feature space of the identity vectors (``generate --ref-images`` embeds photos in it): the release
#: was trained on raw ArcFace-R100 features; a facebench-trained file records its own extractor.
RELEASE_REFERENCE = {"extractor": "arcface-r100", "features": "raw",
                     "source": "the release's identity vectors are raw ArcFace-R100 features"}
TINY_REFERENCE = {"features": "raw", "source": "an untrained vec2face_tiny knows no extractor"}

#: Vec2Face+'s files, where its model page (and ``download_vec2face_weights.py``) puts them.
PLUS_FILES = (
    ("vec2face_plus/pose_model.pth", "Vec2Face+ pose model (keys 'model_vec2face' with LoRA rank 8, 'pose_model')",
     "Vec2Face+ release"),
    ("vec2face_plus/main_model.pth", "Vec2Face+ main model (key 'model_vec2face'; a Vec2Face model)",
     "Vec2Face+ release"),
)


@hookimpl
def register_generators(register):
    register("vec2face", "facebench_plugins.vec2face.generator:vec2face",
             "Vec2Face ViT-Base, official layout (vec2face_generator.pth in the weights directory), 112 px",
             feature_dim=512, image_size=112, weights="vec2face_generator.pth", weight_files=WEIGHT_FILES,
             reference_extractor=RELEASE_REFERENCE)
    register("vec2face_vit_base_patch16", "facebench_plugins.vec2face.generator:vec2face",
             "Vec2Face ViT-Base under its official model name (same as 'vec2face')",
             feature_dim=512, image_size=112, weights="vec2face_generator.pth", reference_extractor=RELEASE_REFERENCE)
    register("vec2face_tiny", "facebench_plugins.vec2face.generator:vec2face_tiny",
             "Tiny Vec2Face (same module names), 56 px, trains on CPU in minutes (weights: train-generator)",
             feature_dim=512, image_size=56, weights_required=True, reference_extractor=TINY_REFERENCE)
    register("vec2face_plus", "facebench_plugins.vec2face.generator:vec2face_plus",
             "Vec2Face+, official layout, 112 px: pose_model.pth (landmark-conditioned: --pose-landmarks) or "
             "main_model.pth (as vec2face; AttrOP)",
             feature_dim=512, image_size=112, weights="vec2face_plus/pose_model.pth", weight_files=PLUS_FILES,
             reference_extractor=RELEASE_REFERENCE, pose_landmarks=True)
    register("vec2face_plus_tiny", "facebench_plugins.vec2face.generator:vec2face_plus_tiny",
             "Tiny Vec2Face+ (the release's module names: LoRA rank 8 and its pose model), 56 px, on CPU",
             feature_dim=512, image_size=56, weights_required=True, reference_extractor=TINY_REFERENCE,
             pose_landmarks=True)


@hookimpl
def register_commands(cli):
    from .cli import train_generator

    cli.add_command(train_generator)
