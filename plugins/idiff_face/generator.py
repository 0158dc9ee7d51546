"""The ``idiff_face`` generator: identity vector -> seeded latent diffusion -> VQ decoder -> aligned face.

One model family, three samplers (``--generator-option sampler=NAME``), each with its release's settings:

* ``idiff-face`` (IDiff-Face, ICCV 2023, ``sample.py``): 1000-step DDPM ancestral sampling with the
  identity context, the schedule tables the checkpoint saved.
* ``uiface`` (UIFace, ICLR 2025, ``generation/uiface/sample.py`` + ``configs/sample_ddim_config.yaml``):
  two-stage DDIM, 50 of 1000 steps, eta 0; empty context (with per-sample adaptive switching) above t =
  500, identity context with guidance 1 and attention injection below (``sampling.uiface``).
* ``negfacediff`` (NegFaceDiff, ICCVW 2025, ``sample.py`` with ``neg_prompt.w 0.5``, ``is_ddim: false``,
  ``method: fc``): IDiff-Face's DDPM with ``(1 + w) eps(identity) - w eps(negative)``, the negative of an
  identity being the vector least similar to it in a bank (``negatives=FILE``; the run's own ``ids.npy``
  is the release's "Far-Neg" choice among the identities generated).

Identity vectors are L2-normalised here, whatever their scale (the releases feed unit ElasticFace
embeddings: IDiff-Face's context files are normalised, UIFace's ``sample.py`` normalises). Every image
gets its own noise stream from its own seed (the initial latent and every noise the sampler adds), drawn
on the CPU, so a shard reseeded by ``facebench generate`` repeats its images byte for byte on any device
and in any batch.

Output: the decoder's 128 px image in [0, 1] (the releases clamp to [-1, 1] and map to [0, 1]) becomes
the 112 px ArcFace crop by the model's training alignment (``alignment``): ``ffhq`` for models trained on
FFHQ (IDiff-Face's): the fixed FFHQ -> ArcFace similarity of :mod:`facebench_plugins.arc2face.alignment`
(the release instead runs MTCNN and insightface's ``norm_crop`` per image, and resizes identities where
detection fails); ``arcface`` for models trained on ArcFace-aligned crops (UIFace's CASIA-WebFace): a
bilinear resize, as UIFace's ``sample.py`` does (``F.interpolate(..., [112, 112], mode="bilinear")``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from facebench.errors import ConfigError, FacebenchError

from . import layout, sampling
from .unet import RELEASE as UNET_RELEASE
from .unet import UNetConfig
from .vq import RELEASE as DECODER_RELEASE
from .vq import DecoderConfig

FEATURE_DIM = 512
#: sampler name -> (kind, alignment, guidance) of the release it reproduces.
PRESETS = {"idiff-face": ("ddpm", "ffhq", 0.0), "uiface": ("two-stage", "arcface", 1.0),
           "negfacediff": ("ddpm", "ffhq", 0.5)}
ALIGNMENTS = ("ffhq", "arcface")
DTYPES = ("fp32", "fp16", "bf16")
#: UIFace's stage boundary (``step_th``) and adaptive-switch threshold (``MSE_th``), for T = 1000.
UIFACE_SWITCH, UIFACE_THRESHOLD, UIFACE_STEPS = 500, 0.006, 50
TINY_MARKER = "facebench_tiny.json"
#: The smallest T whose linear schedule is a valid one is 21 (beta_T = 20 / T < 1).
MIN_LINEAR_T = 20


@dataclass
class IDiffFaceOptions:
    """Keyword options of the ``idiff_face`` generators (``--generator-option KEY=VALUE``)."""

    sampler: str = "idiff-face"  # idiff-face | uiface | negfacediff
    checkpoint: str = ""  # the denoiser file in the model folder [default: its only *.ckpt]
    steps: int | None = None  # uiface: DDIM steps [50]; the DDPM samplers take every one of the T steps
    timesteps: int | None = None  # T of a freshly computed linear schedule [idiff-face: the checkpoint's
    #                               tables; uiface: 1000, as its release builds the DDPM anew]
    switch: int | None = None  # uiface: the stage boundary t [500 of 1000, scaled with T]
    threshold: float = UIFACE_THRESHOLD  # uiface: attention-map change that switches a sample to its identity
    guidance: float | None = None  # uiface: guidance g [1.0]; negfacediff: the negative weight w [0.5]
    negatives: str = ""  # negfacediff: (M, 512) .npy bank of negative identity vectors
    alignment: str = ""  # ffhq | arcface [idiff-face, negfacediff: ffhq; uiface: arcface]
    output_size: int = 0  # aligned crop side [default: the generator's image_size]
    batch_size: int = 16  # images per diffusion batch
    dtype: str = "fp32"  # fp32 (the releases'); fp16 / bf16 autocast on CUDA only
    seed: int = 0  # per-image noise seeds until generate reseeds

    def __post_init__(self) -> None:
        if self.sampler not in PRESETS:
            raise ConfigError(f"idiff_face: sampler must be one of {', '.join(PRESETS)}, got '{self.sampler}'")
        kind, alignment, guidance = PRESETS[self.sampler]
        self.alignment = self.alignment or alignment
        if self.alignment not in ALIGNMENTS:
            raise ConfigError(f"idiff_face: alignment must be one of {', '.join(ALIGNMENTS)}, got '{self.alignment}'")
        if self.dtype not in DTYPES:
            raise ConfigError(f"idiff_face: dtype must be one of {', '.join(DTYPES)}, got '{self.dtype}'")
        self.guidance = guidance if self.guidance is None else float(self.guidance)
        if kind == "ddpm" and self.steps is not None:
            raise ConfigError(f"idiff_face: the {self.sampler} sampler takes every one of the T steps (DDPM); set "
                              "timesteps=T for a shorter schedule instead of steps")
        if self.sampler != "uiface" and self.switch is not None:
            raise ConfigError("idiff_face: switch applies to the uiface sampler only")
        if self.sampler == "negfacediff" and not self.negatives:
            raise ConfigError("idiff_face: the negfacediff sampler needs negatives=FILE, an (M, 512) .npy of "
                              "identity vectors (the run's ids.npy for the release's Far-Neg choice)")
        if self.sampler != "negfacediff" and self.negatives:
            raise ConfigError("idiff_face: negatives applies to the negfacediff sampler only")
        if self.timesteps is not None and self.timesteps <= MIN_LINEAR_T:
            raise ConfigError(f"idiff_face: timesteps must be > {MIN_LINEAR_T}: the releases' linear schedule scales "
                              f"its last beta to 0.02 * 1000 / T, which reaches 1 at T = {MIN_LINEAR_T}, got "
                              f"{self.timesteps}")
        for key in ("steps", "timesteps", "switch"):
            value = getattr(self, key)
            if value is not None and value < (0 if key == "switch" else 1):
                raise ConfigError(f"idiff_face: {key} must be >= {0 if key == 'switch' else 1}, got {value}")
        if self.batch_size < 1 or self.output_size < 0 or not self.threshold >= 0 or not self.guidance >= 0:
            raise ConfigError("idiff_face: batch_size must be >= 1, output_size, threshold and guidance >= 0")

    @property
    def kind(self) -> str:
        return PRESETS[self.sampler][0]


class IDiffFaceGenerator:
    """``latents``, ``sample`` (native uint8) and ``generate`` (aligned, [-1, 1])."""

    feature_dim = FEATURE_DIM
    input_scale = None  # unit-normalised inside: any norm is accepted

    def __init__(self, model_dir: str | os.PathLike, *, device: Any = "cpu", image_size: int = 112,
                 options: IDiffFaceOptions | None = None, unet: UNetConfig = UNET_RELEASE,
                 decoder: DecoderConfig = DECODER_RELEASE, latent_size: int = 32):
        import torch

        self.options = opts = options or IDiffFaceOptions()
        self.device = torch.device(device)
        self.files = layout.resolve_files(model_dir, opts.checkpoint)
        den = layout.read_denoiser(self.files.checkpoint, unet)
        dec = layout.read_decoder(self.files.decoder, decoder)
        self.unet_config, self.prefix = den.config, den.prefix
        self.schedule = self._schedule(den).to(self.device)
        self.steps = self.schedule.T if opts.kind == "ddpm" else (opts.steps or UIFACE_STEPS)
        if self.steps > self.schedule.T:
            raise ConfigError(f"idiff_face: steps {self.steps} exceed the schedule's T = {self.schedule.T}")
        self.switch = opts.switch if opts.switch is not None else round(UIFACE_SWITCH * self.schedule.T / 1000)
        self.unet = layout.build_denoiser(den).to(self.device)
        self.decoder = layout.build_decoder(dec, decoder).to(self.device)
        self.latent_shape = (den.config.input_channels, latent_size, latent_size)
        self.native_size = latent_size * decoder.factor
        self.image_size = opts.output_size or image_size
        self.negatives = self._negatives(opts.negatives) if opts.negatives else None
        self.untrained = (self.files.root / TINY_MARKER).is_file()
        self.autocast = self.device.type == "cuda" and opts.dtype != "fp32"
        self.reseed(opts.seed)

    def _schedule(self, den: layout.Denoiser) -> sampling.Schedule:
        opts = self.options
        if opts.timesteps is not None:
            return sampling.Schedule.linear(opts.timesteps)
        if opts.kind == "ddpm" and den.buffers is not None:
            T = int(den.buffers["betas"].numel())
            return sampling.Schedule.from_buffers(den.buffers, f"the checkpoint's tables, T={T}")
        return sampling.Schedule.linear(1000)

    def _negatives(self, path: str) -> Any:
        import torch

        from facebench.generation.sampling import load_feature_matrix

        bank = load_feature_matrix(path, what="negative identity vectors")
        if bank.shape[1] != FEATURE_DIM:
            raise FacebenchError(f"{path}: negative identity vectors have {bank.shape[1]} dimensions, expected "
                                 f"{FEATURE_DIM}")
        norms = np.linalg.norm(bank, axis=1, keepdims=True)
        if (norms == 0).any():
            raise FacebenchError(f"{path}: a negative identity vector is all zeros")
        return torch.as_tensor((bank / norms).astype(np.float32), device=self.device)

    # ------------------------------------------------------------------------------------ conditioning

    def contexts(self, vectors: Any) -> Any:
        """(N, 512) unit vectors on the device, checked."""
        import torch

        v = torch.as_tensor(np.asarray(vectors.detach().cpu() if torch.is_tensor(vectors) else vectors,
                                       dtype=np.float32))
        if v.ndim != 2 or v.shape[1] != FEATURE_DIM:
            raise FacebenchError(f"idiff_face: identity vectors must be (N, {FEATURE_DIM}), got {tuple(v.shape)}")
        norms = v.norm(dim=1, keepdim=True)
        if bool((norms == 0).any()) or not bool(torch.isfinite(v).all()):
            raise FacebenchError("idiff_face: an identity vector is all zeros or not finite")
        return (v / norms).to(self.device)

    def negative_contexts(self, contexts: Any) -> Any:
        """NegFaceDiff's Far-Neg: for each identity, the bank's vector of lowest cosine to it."""
        return self.negatives[(contexts @ self.negatives.t()).argmin(dim=1)]

    # ---------------------------------------------------------------------------------------- sampling

    def reseed(self, seed: int) -> None:
        """Restart the per-image seed stream (``facebench generate`` calls this once per shard)."""
        self._seeds = np.random.default_rng(int(seed))

    def next_seeds(self, n: int) -> list[int]:
        return [int(s) for s in self._seeds.integers(0, 2**63 - 1, size=n, dtype=np.int64)]

    def noise(self, seeds: list[int]):
        """The draw function of a batch: each call the next standard normal latent of every image, from
        the image's own CPU generator."""
        import torch

        gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]

        def draw():
            return torch.stack([torch.randn(self.latent_shape, generator=g) for g in gens]).to(self.device)

        return draw

    def denoiser(self):
        """The UNet as the samplers call it (autocast on CUDA when a half dtype is asked for)."""
        import torch

        if not self.autocast:
            return self.unet
        dtype = torch.float16 if self.options.dtype == "fp16" else torch.bfloat16

        def run(*args, **kwargs):
            with torch.autocast("cuda", dtype=dtype):
                out = self.unet(*args, **kwargs)
            if isinstance(out, tuple):
                return out[0].float(), out[1]
            return out.float()

        return run

    def latents(self, contexts: Any, seeds: list[int], *, trace: Any = None) -> Any:
        """Final latents of the options' sampler for unit identity vectors ``contexts``."""
        import torch

        opts, noise, model = self.options, self.noise(seeds), self.denoiser()
        with torch.no_grad():
            if opts.sampler == "uiface":
                return sampling.uiface(model, self.schedule, contexts, noise, steps=self.steps, switch=self.switch,
                                       threshold=opts.threshold, guidance=opts.guidance, trace=trace)
            negative = self.negative_contexts(contexts) if opts.sampler == "negfacediff" else None
            return sampling.ddpm(model, self.schedule, contexts, noise, negative=negative, weight=opts.guidance)

    def decode(self, latents: Any) -> Any:
        """Native images in [0, 1]: the decoder's output clamped to [-1, 1], then mapped as the releases do."""
        import torch

        with torch.no_grad():
            images = self.decoder(latents.float())
        if not bool(torch.isfinite(images).all()):
            raise FacebenchError(f"idiff_face: the {self.options.sampler} sampler produced non-finite values "
                                 f"({self.schedule.source}); no image was written")
        return (images.clamp(-1, 1) + 1.0) / 2.0

    def _batches(self, vectors: Any, seeds: list[int]):
        contexts = self.contexts(vectors)
        if len(seeds) != len(contexts):
            raise FacebenchError(f"idiff_face: {len(seeds)} seeds for {len(contexts)} identity vectors")
        step = self.options.batch_size
        for start in range(0, len(contexts), step):
            yield self.decode(self.latents(contexts[start:start + step], seeds[start:start + step]))

    def sample(self, vectors: Any, seeds: list[int]) -> np.ndarray:
        """uint8 RGB images (N, native, native, 3) before alignment, rounded as torchvision saves them."""
        out = [(x.permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
               for x in self._batches(vectors, [int(s) for s in seeds])]
        return np.concatenate(out) if out else np.zeros((0, self.native_size, self.native_size, 3), np.uint8)

    # --------------------------------------------------------------------------------------- alignment

    def align(self, images01: Any) -> Any:
        """Native images in [0, 1] -> the ArcFace crop of ``image_size`` in [0, 1]."""
        import torch.nn.functional as F

        if self.options.alignment == "arcface":
            return F.interpolate(images01, size=[self.image_size, self.image_size], mode="bilinear")
        from facebench_plugins.arc2face import alignment

        matrix = alignment.ffhq_to_arcface(self.native_size, self.image_size)
        return alignment.warp(images01, matrix, self.image_size).clamp(0, 1)

    def generate(self, vectors: Any, *, masks: Any = None) -> Any:
        """(N, 3, image_size, image_size) ArcFace-aligned images in [-1, 1], float32."""
        import torch

        if masks is not None:
            raise FacebenchError("idiff_face: generators without masks (Vec2Face's) take masks=None")
        n = len(vectors)
        seeds = self.next_seeds(n)
        if n == 0:
            return torch.zeros((0, 3, self.image_size, self.image_size), device=self.device)
        return torch.cat([self.align(x) * 2 - 1 for x in self._batches(vectors, seeds)])

    # -------------------------------------------------------------------------------------- provenance

    @property
    def info(self) -> dict[str, Any]:
        """What ``facebench generate`` records in dataset.json (and checks on resume)."""
        opts = self.options
        sampler: dict[str, Any] = {"name": opts.sampler, "kind": opts.kind, "steps": self.steps,
                                   "schedule": self.schedule.source, "batch_size": opts.batch_size,
                                   "dtype": opts.dtype if self.autocast else "fp32"}
        if opts.sampler == "uiface":
            sampler.update(switch=self.switch, threshold=opts.threshold, guidance=opts.guidance, eta=0.0)
        if opts.sampler == "negfacediff":
            sampler.update(weight=opts.guidance, negatives=os.path.basename(opts.negatives),
                           negative_rule="least similar vector of the bank (Far-Neg)")
        info: dict[str, Any] = {
            "identity_vectors": "L2-normalised inside the generator (" + (
                "untrained: no embedding space" if self.untrained else "ElasticFace-Arc space") + ")",
            "sampler": sampler,
            "checkpoint": {"file": self.files.checkpoint.name, "keys_under": self.prefix,
                           "empty_context": "learned" if self.unet_config.learned_empty_context else "zeros"},
            "native_size": self.native_size,
            "alignment": ("bilinear resize of an ArcFace-aligned output (UIFace's)" if opts.alignment == "arcface"
                          else "fixed FFHQ -> ArcFace similarity"),
        }
        if self.untrained:
            info.update(untrained=True, pipeline_check=True)
        return info


def _options(options: dict[str, Any]) -> IDiffFaceOptions:
    from facebench.config import build_config

    return build_config(IDiffFaceOptions, options)


def idiff_face(weights: str | os.PathLike | None = None, device: Any = "cpu", **options: Any) -> IDiffFaceGenerator:
    """IDiff-Face / UIFace from a model folder in the release layout (128 px, aligned to 112 px)."""
    if weights is None:
        raise FacebenchError("generator 'idiff_face' needs its model folder: pass --weights DIR holding the denoiser "
                             f"checkpoint (ema_averaged_model.ckpt, or UIFace's) and {layout.DECODER_FILE}")
    return IDiffFaceGenerator(weights, device=device, image_size=112, options=_options(options))


def idiff_face_tiny(weights: str | os.PathLike | None = None, device: Any = "cpu",
                    **options: Any) -> IDiffFaceGenerator:
    """The tiny random-weight model (56 px, release layout, T = 50). Without ``weights`` a fresh seed-0 folder
    from :func:`~facebench_plugins.idiff_face.tiny.make_tiny` is written and loaded through the same path.
    uiface samples 4 DDIM steps unless ``steps`` says otherwise."""
    import tempfile
    from pathlib import Path

    from .tiny import TINY_DECODER, TINY_LATENT, TINY_UNET, make_tiny

    if options.get("sampler") == "uiface" and "steps" not in options:
        options = {**options, "steps": 4}
    opts = _options(options)
    kwargs = {"device": device, "image_size": 56, "options": opts, "unet": TINY_UNET, "decoder": TINY_DECODER,
              "latent_size": TINY_LATENT}
    if weights is not None:
        return IDiffFaceGenerator(weights, **kwargs)
    with tempfile.TemporaryDirectory(prefix="idiff-face-tiny-") as tmp:
        return IDiffFaceGenerator(make_tiny(Path(tmp) / "model"), **kwargs)


__all__ = ["IDiffFaceGenerator", "IDiffFaceOptions", "PRESETS", "idiff_face", "idiff_face_tiny"]
