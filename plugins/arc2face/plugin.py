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


#: The feature space of the identity vectors (``generate --ref-images`` embeds photos in it): the release's
#: ``arcface.onnx`` (insightface antelopev2's ArcFace R100), imported with ``facebench weights import
#: arcface.onnx --arch iresnet100``; the face alone, unit length (docs/arc2face.md). The tiny model's is
#: the tiny IResNet at its 56 px, a pipeline check like the rest of it.
REFERENCE = {"extractor": "iresnet100", "features": "unit",
             "source": "Arc2Face is conditioned on its ArcFace R100 (arcface.onnx, imported to iresnet100)"}
TINY_REFERENCE = {"extractor": "iresnet_tiny", "features": "unit", "source": "a tiny pipeline check"}


@hookimpl
def register_generators(register):
    common = {"requires": REQUIRES, "install_hint": INSTALL_HINT, "feature_dim": 512,
              "generation_defaults": GENERATION_DEFAULTS, "weights_dir": True}
    register("arc2face", "facebench_plugins.arc2face.generator:arc2face",
             "Arc2Face (SD 1.5 UNet + CLIP encoder on L2-normalised ArcFace vectors), release layout, "
             "512 px aligned to 112 px", image_size=112, reference_extractor=REFERENCE, **common)
    register("arc2face_tiny", "facebench_plugins.arc2face.generator:arc2face_tiny",
             "Tiny random-weight Arc2Face (make-tiny layout), 56 px: a pipeline check on CPU, not a face model",
             image_size=56, reference_extractor=TINY_REFERENCE, **common)


@hookimpl
def register_commands(cli):
    from .cli import arc2face_group

    cli.add_command(arc2face_group)
