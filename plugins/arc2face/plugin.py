"""Arc2Face plugin: the released Arc2Face model (SD 1.5 UNet + CLIP text encoder conditioned on ArcFace
vectors) as a facebench generator, and ``facebench arc2face make-tiny``.

It needs the optional extra ``arc2face`` (diffusers, transformers). Everything is registered lazily with
``requires=``: without the extra the generators are listed as unavailable with the install command, and
nothing here imports torch, diffusers or transformers.
"""

from __future__ import annotations

from facebench import hookimpl

REQUIRES = ("diffusers", "transformers", "safetensors")
INSTALL_HINT = 'pip install -e ".[arc2face]"'

#: ``facebench generate`` defaults for these generators: no vector noise, the diffusion noise varies the
#: images (the issue's "0 by default"); ``--set generation.perturb.sigmas=[...]`` still overrides them.
GENERATION_DEFAULTS = {"perturb": {"sigmas": [0.0], "shares": [1.0]}}


@hookimpl
def register_generators(register):
    common = {"requires": REQUIRES, "install_hint": INSTALL_HINT, "feature_dim": 512,
              "generation_defaults": GENERATION_DEFAULTS, "weights_dir": True}
    register("arc2face", "facebench_plugins.arc2face.generator:arc2face",
             "Arc2Face (SD 1.5 UNet + CLIP encoder on L2-normalised ArcFace vectors), release layout, "
             "512 px aligned to 112 px", image_size=112, **common)
    register("arc2face_tiny", "facebench_plugins.arc2face.generator:arc2face_tiny",
             "Tiny random-weight Arc2Face (make-tiny layout), 56 px: a pipeline check on CPU, not a face model",
             image_size=56, **common)


@hookimpl
def register_commands(cli):
    from .cli import arc2face_group

    cli.add_command(arc2face_group)
