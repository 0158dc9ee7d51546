"""IDiff-Face / UIFace plugin: the released identity-conditioned latent diffusion models as facebench generators
``idiff_face`` (release layout, presets ``idiff-face``, ``uiface``, ``negfacediff``) and ``idiff_face_tiny``,
the ElasticFace-Arc feature extractor their identity vectors come from, and ``facebench idiff-face make-tiny``.

It needs nothing beyond torch (the UNet, the VQ decoder and the samplers are written out here; the releases'
einops, hydra and Lightning are not used), so it is always available. Nothing here imports torch.
"""

from __future__ import annotations

from facebench import hookimpl

#: No vector noise by default: the diffusion noise varies the images (the releases feed each identity's
#: context unchanged); ``--set generation.perturb.sigmas=[...]`` still overrides it.
GENERATION_DEFAULTS = {"perturb": {"sigmas": [0.0], "shares": [1.0]}}

#: ElasticFace-Arc (IResNet-100, MS1MV2), the model both releases' identity contexts come from (IDiff-Face's
#: README: ``utils/Elastic_R100_295672backbone.pth``; UIFace's ``dataset/elastic_embed.npy``).
ELASTICFACE = "elasticface-arc"
ELASTICFACE_FILE = "Elastic_R100_295672backbone.pth"

#: The embedding space of the identity vectors (``generate`` refuses vectors of another space,
#: facebench/generation/spaces.py; ``--ref-images`` embeds photos with this extractor), unit length (the
#: generator normalises whatever it is given, as UIFace's sample.py does).
REFERENCE = {"extractor": ELASTICFACE, "features": "unit", "space": ELASTICFACE,
             "source": "IDiff-Face and UIFace are conditioned on unit ElasticFace-Arc embeddings"}
#: The tiny model is untrained: it knows no space, so any vectors go (a pipeline check).
TINY_REFERENCE = {"features": "unit", "source": "an untrained idiff_face_tiny knows no extractor"}

#: The model folder found in the weights directory when --weights is not given (any *.ckpt in it; these names
#: are what ``facebench doctor`` looks for).
MODEL_DIR = "idiff-face"
WEIGHT_FILES = (
    ("idiff-face/ema_averaged_model.ckpt", "IDiff-Face / UIFace denoiser (EMA, DDPM module state dict)",
     "IDiff-Face release (trained_models/*/checkpoints) or UIFace's"),
    ("idiff-face/first_stage_decoder_state_dict.pt", "LDM FFHQ-256 VQ decoder as IDiff-Face ships it",
     "IDiff-Face release (models/autoencoder)"),
)


def _elasticface(weights=None, device="cpu", **kwargs):
    """ElasticFace-Arc: IResNet-100 in arcface_torch's layout, RGB in [-1, 1], no flip (as the releases
    embed)."""
    from facebench_plugins.fr.extractors import from_backbone

    kwargs.setdefault("flip_test", False)
    return from_backbone("iresnet100", weights if weights is not None else ELASTICFACE_FILE, device=device, **kwargs)


@hookimpl
def register_generators(register):
    common = {"feature_dim": 512, "generation_defaults": GENERATION_DEFAULTS, "weights_dir": True}
    register("idiff_face", "facebench_plugins.idiff_face.generator:idiff_face",
             "IDiff-Face / UIFace (latent diffusion on ElasticFace vectors; --generator-option "
             "sampler=idiff-face|uiface|negfacediff), release layout (the denoiser *.ckpt and "
             "first_stage_decoder_state_dict.pt in one folder), 128 px aligned to 112 px",
             image_size=112, reference_extractor=REFERENCE, weights=MODEL_DIR, weight_files=WEIGHT_FILES, **common)
    register("idiff_face_tiny", "facebench_plugins.idiff_face.generator:idiff_face_tiny",
             "Tiny random-weight IDiff-Face (release layout, facebench idiff-face make-tiny), 56 px: a pipeline "
             "check on CPU, not a face model", image_size=56, reference_extractor=TINY_REFERENCE, **common)


@hookimpl
def register_feature_extractors(register):
    register(ELASTICFACE, _elasticface,
             f"ElasticFace-Arc IResNet-100 (MS1MV2): the identity space of IDiff-Face and UIFace; default weights "
             f"{ELASTICFACE_FILE}", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), flip_test=False, space=ELASTICFACE,
             weights=ELASTICFACE_FILE,
             weight_files=((ELASTICFACE_FILE, "ElasticFace-Arc IResNet-100: IDiff-Face/UIFace identity vectors",
                            "ElasticFace release (github fdbtrs/ElasticFace)"),))


@hookimpl
def register_commands(cli):
    from .cli import idiff_face_group

    cli.add_command(idiff_face_group)
