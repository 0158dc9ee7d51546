"""DCFace plugin: the released DCFace (CVPR 2023; dual-condition DDIM on an identity image and a style image,
with its first-stage unconditional DDPM for new identities) as facebench generators ``dcface`` and
``dcface_tiny``, and ``facebench dcface make-tiny``.

It needs nothing beyond torch (the release's UNet is guided-diffusion's, not a diffusers model; its DDIM is
written out in :mod:`.schedulers`), so it is always available. Nothing here imports torch.
"""

from __future__ import annotations

from facebench import hookimpl

#: No vector noise: the rows are identity codes, and the style image and the diffusion noise vary the images.
GENERATION_DEFAULTS = {"perturb": {"sigmas": [0.0], "shares": [1.0]}}


@hookimpl
def register_generators(register):
    common = {"feature_dim": 8, "generation_defaults": GENERATION_DEFAULTS, "weights_dir": True,
              "identity_images": True, "conditioned_on_real_appearance": True}
    register("dcface", "facebench_plugins.dcface.generator:dcface",
             "DCFace (identity image + style image, dual-condition DDIM 50 steps, eta 1), release layout "
             "(pretrained_models/: dcface_3x3.ckpt or dcface_5x5.ckpt, ffhq_10m.pt), 112 px; "
             "--generator-option style_bank=DIR", image_size=112, weights_required=True,
             weight_files=(("dcface_3x3.ckpt", "DCFace generator (3x3 style patches)", "DCFace release (pretrained_models/)"),
                           ("dcface_5x5.ckpt", "DCFace generator (5x5 style patches)", "DCFace release (pretrained_models/)"),
                           ("ffhq_10m.pt", "DCFace first stage (unconditional FFHQ DDPM)",
                            "DCFace release (pretrained_models/)")),
             **common)
    register("dcface_tiny", "facebench_plugins.dcface.generator:dcface_tiny",
             "Tiny random-weight DCFace (release layout), 56 px: a pipeline check on CPU, not a face model",
             image_size=56, **common)


@hookimpl
def register_commands(cli):
    from .cli import dcface_group

    cli.add_command(dcface_group)
