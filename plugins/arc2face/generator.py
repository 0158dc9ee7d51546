"""The Arc2Face generator: identity vector -> prompt embeddings -> seeded diffusion -> aligned face.

Conditioning follows the release: the prompt ``photo of a id person`` is tokenised to the tokenizer's
full length, the token embedding at the ``id`` token is replaced by the L2-normalised identity vector
zero-padded to the encoder's width, and the encoder's last hidden state is the prompt embedding (here
the replacement is a forward hook on the encoder's input embedding, so the encoder's own forward, with
its position embeddings and causal mask, runs unchanged in every transformers version). Sampling is
the Stable Diffusion loop with classifier-free guidance against the empty prompt, written out so that
every image gets its own seeded noise (the only source of variation within an identity): a resumed
shard, reseeded by ``facebench generate``, repeats its images byte for byte.

Identity vectors live in Arc2Face's FR space (an ArcFace R100 trained on WebFace42M) and are
L2-normalised here, whatever their scale; Vec2Face, in contrast, takes raw features of its own model.
Photos of real people reach that space by the release's own route (its README: insightface's detector,
``norm_crop`` to 112 px, ``arcface.onnx``, the embedding normalised): ``generate --ref-images`` detects,
aligns with :func:`facebench.align` and embeds with the extractor the plugin declares (``iresnet100`` with
``arcface.onnx`` imported by ``facebench weights import``; the face alone, unit length), see
docs/arc2face.md.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facebench.config import build_config
from facebench.errors import ConfigError, DataError, FacebenchError

from . import alignment, layout
from .tiny import PROMPT, TINY_MARKER

SCHEDULERS = {"dpmsolver++": "DPMSolverMultistepScheduler", "ddim": "DDIMScheduler", "lcm": "LCMScheduler"}
#: (steps, guidance) when not given: the release's defaults, and its LCM-LoRA advice (2-4 steps, no CFG).
SCHEDULER_DEFAULTS = {"dpmsolver++": (25, 3.0), "ddim": (25, 3.0), "lcm": (4, 1.0)}
DTYPES = ("auto", "fp32", "fp16", "bf16")
FEATURE_DIM = 512


@dataclass
class Arc2FaceOptions:
    """Keyword options of the ``arc2face`` generators (``--generator-option KEY=VALUE`` in generate)."""

    scheduler: str = "dpmsolver++"  # dpmsolver++ (the release's), ddim, lcm (needs an LCM-LoRA-fused UNet)
    steps: int | None = None  # default 25 (lcm: 4)
    guidance: float | None = None  # classifier-free guidance; default 3.0 (lcm: 1.0 = none)
    batch_size: int = 8  # images per diffusion batch (GPU memory)
    dtype: str = "auto"  # auto = fp16 on CUDA; CPU always runs fp32
    seed: int = 0  # per-image noise seeds until generate reseeds
    base: str = ""  # folder holding SD 1.5's vae/, tokenizer/, scheduler/ [default: the model directory]
    output_size: int = 0  # aligned crop side [default: the generator's image_size]
    landmarks: str = ""  # feature extractor (attribute "landmarks") for per-image re-alignment
    landmark_weights: str = ""

    def __post_init__(self) -> None:
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"arc2face: scheduler must be one of {', '.join(SCHEDULERS)}, got '{self.scheduler}'")
        if self.dtype not in DTYPES:
            raise ConfigError(f"arc2face: dtype must be one of {', '.join(DTYPES)}, got '{self.dtype}'")
        steps, guidance = SCHEDULER_DEFAULTS[self.scheduler]
        self.steps = steps if self.steps is None else self.steps
        self.guidance = guidance if self.guidance is None else float(self.guidance)
        if self.steps < 1 or self.batch_size < 1 or self.output_size < 0:
            raise ConfigError("arc2face: steps and batch_size must be >= 1 and output_size >= 0")
        if self.guidance < 0:
            raise ConfigError(f"arc2face: guidance must be >= 0, got {self.guidance}")


def _torch_dtype(name: str, device: Any) -> tuple[Any, str]:
    import torch

    if device.type != "cuda":
        return torch.float32, "fp32" if name in ("auto", "fp32") else f"fp32 ({name} requested; CPU runs fp32)"
    chosen = "fp16" if name == "auto" else name
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[chosen], chosen


class Arc2FaceGenerator:
    """``prompt_embeds``, ``sample`` (native FFHQ-aligned uint8) and ``generate`` (ArcFace-aligned)."""

    feature_dim = FEATURE_DIM

    def __init__(self, model_dir: str | os.PathLike, *, device: Any = "cpu", image_size: int = 112,
                 options: Arc2FaceOptions | None = None):
        import torch

        self.options = opts = options or Arc2FaceOptions()
        self.device = torch.device(device)
        self.dtype, self.dtype_name = _torch_dtype(opts.dtype, self.device)
        self.files = files = layout.resolve_files(model_dir, opts.base or None)
        with layout.offline():
            unet, vae, encoder = layout.build_unet(files), layout.build_vae(files), layout.build_encoder(files)
            layout.check_fit(files, unet, vae, encoder)
            self.tokenizer = layout.build_tokenizer(files, encoder)
            self.scheduler_config = layout.scheduler_config(files)
            self._check_schedule()
        self.unet, self.vae, self.encoder = self._place(unet), self._place(vae), self._place(encoder)
        hidden = int(self.encoder.config.hidden_size)
        if hidden < FEATURE_DIM:
            raise DataError(files.encoder_config, f"hidden_size {hidden} is narrower than the {FEATURE_DIM}-d "
                                                  "identity vector it must hold")
        self.id_token = self.tokenizer.encode("id", add_special_tokens=False)[0]
        self.prompt_ids = self._tokens(PROMPT)
        if not bool((self.prompt_ids == self.id_token).any()):
            raise DataError(files.tokenizer, f"the tokenizer does not keep 'id' as a token of '{PROMPT}'")
        vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.latent_shape = (int(self.unet.config.in_channels), int(self.unet.config.sample_size),
                             int(self.unet.config.sample_size))
        self.native_size = self.latent_shape[-1] * vae_factor
        self.image_size = opts.output_size or image_size
        self.matrix = alignment.ffhq_to_arcface(self.native_size, self.image_size)
        self.landmarks = self._landmark_extractor(opts) if opts.landmarks else None
        marker = files.root / TINY_MARKER
        self.untrained = marker.is_file()
        self._uncond = None
        self.reseed(opts.seed)

    def _place(self, module: Any) -> Any:
        # Module.float/half/bfloat16 cast like .to(dtype) without diffusers' warning about .to(dtype)
        module = module.to(self.device)
        return {"float32": module.float, "float16": module.half, "bfloat16": module.bfloat16}[
            str(self.dtype).removeprefix("torch.")]()

    # ------------------------------------------------------------------------------------ conditioning

    def _tokens(self, text: str) -> Any:
        return self.tokenizer(text, padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids.to(self.device)

    def _vectors(self, vectors: Any) -> Any:
        """(N, 512) float32 tensor of the vectors as given, checked."""
        import torch

        v = torch.as_tensor(np.asarray(vectors.detach().cpu() if torch.is_tensor(vectors) else vectors,
                                       dtype=np.float32))
        if v.ndim != 2 or v.shape[1] != FEATURE_DIM:
            raise FacebenchError(f"arc2face: identity vectors must be (N, {FEATURE_DIM}), got {tuple(v.shape)}")
        if bool((v.norm(dim=1) == 0).any()):
            raise FacebenchError("arc2face: an identity vector is all zeros")
        return v

    def prompt_embeds(self, vectors: Any) -> Any:
        """The encoder's last hidden state for the prompt with each L2-normalised vector at ``id``."""
        import torch
        import torch.nn.functional as F

        v = self._vectors(vectors)
        unit = (v / torch.norm(v, dim=1, keepdim=True)).to(self.device)  # as the release's README does
        padded = F.pad(unit, (0, int(self.encoder.config.hidden_size) - FEATURE_DIM)).to(self.dtype)
        ids = self.prompt_ids.expand(len(unit), -1)
        at_id = self.prompt_ids[0] == self.id_token

        def put_identity(module, inputs, output):
            output = output.clone()
            output[:, at_id] = padded[:, None, :]
            return output

        handle = self.encoder.get_input_embeddings().register_forward_hook(put_identity)
        try:
            with torch.no_grad():
                return self.encoder(input_ids=ids)[0]
        finally:
            handle.remove()

    def uncond_embeds(self) -> Any:
        """The empty prompt's embedding: the unconditional branch of classifier-free guidance."""
        import torch

        if self._uncond is None:
            with torch.no_grad():
                self._uncond = self.encoder(input_ids=self._tokens(""))[0]
        return self._uncond

    # ---------------------------------------------------------------------------------------- sampling

    def reseed(self, seed: int) -> None:
        """Restart the per-image seed stream (``facebench generate`` calls this once per shard)."""
        self._seeds = np.random.default_rng(int(seed))

    def next_seeds(self, n: int) -> list[int]:
        return [int(s) for s in self._seeds.integers(0, 2**63 - 1, size=n, dtype=np.int64)]

    def make_scheduler(self) -> Any:
        """A fresh sampler of the ``scheduler`` option on the folder's (allow-listed) noise schedule."""
        import diffusers

        scheduler = getattr(diffusers, SCHEDULERS[self.options.scheduler])
        try:
            return scheduler.from_config(self.scheduler_config)
        except layout.library_errors() as exc:
            raise DataError(self.files.scheduler_config, f"cannot build the {self.options.scheduler} scheduler "
                                                         f"from it: {layout.library_reason(exc)}") from None

    def _check_schedule(self) -> None:
        """A noise schedule the sampler cannot step through fails when loading, not mid-run."""
        try:
            self.make_scheduler().set_timesteps(self.options.steps)
        except layout.library_errors() as exc:
            opts = self.options
            raise DataError(self.files.scheduler_config, f"the {opts.scheduler} scheduler cannot take {opts.steps} "
                                                         f"steps: {layout.library_reason(exc)}") from None

    def latents(self, cond: Any, seeds: list[int]) -> Any:
        """Final latents of the denoising loop for prompt embeddings ``cond``, one noise seed per image
        (drawn on the CPU, as diffusers draws from CPU generators, so any device gets the same noise)."""
        import torch

        opts = self.options
        gens = [torch.Generator("cpu").manual_seed(int(s)) for s in seeds]
        noise = torch.cat([torch.randn((1, *self.latent_shape), generator=g, dtype=self.dtype) for g in gens])
        sched = self.make_scheduler()
        sched.set_timesteps(opts.steps, device=self.device)
        latents = noise.to(self.device) * sched.init_noise_sigma
        guided = opts.guidance > 1.0
        embeds = torch.cat([self.uncond_embeds().expand(len(cond), -1, -1), cond]) if guided else cond
        accepted = inspect.signature(sched.step).parameters
        step_kw = {k: v for k, v in (("eta", 0.0), ("generator", gens)) if k in accepted}
        with torch.no_grad():
            for t in sched.timesteps:
                x = sched.scale_model_input(torch.cat([latents] * 2) if guided else latents, t)
                out = self.unet(x, t, encoder_hidden_states=embeds, return_dict=False)[0]
                if guided:
                    uncond, text = out.chunk(2)
                    out = uncond + opts.guidance * (text - uncond)
                latents = sched.step(out, t, latents, **step_kw, return_dict=False)[0]
        return latents

    def decode(self, latents: Any) -> Any:
        """Images in [0, 1], (N, 3, native, native), from latents."""
        import torch

        with torch.no_grad():
            x = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False)[0]
        return (x * 0.5 + 0.5).clamp(0, 1)

    def _batches(self, vectors: Any, seeds: list[int]):
        v = self._vectors(vectors)
        if len(seeds) != len(v):
            raise FacebenchError(f"arc2face: {len(seeds)} seeds for {len(v)} identity vectors")
        step = self.options.batch_size
        for start in range(0, len(v), step):
            chunk = v[start:start + step]
            yield self.decode(self.latents(self.prompt_embeds(chunk), seeds[start:start + step]))

    def sample(self, vectors: Any, seeds: list[int]) -> np.ndarray:
        """uint8 RGB images (N, native, native, 3) before alignment, rounded as diffusers rounds them."""
        out = [(x.permute(0, 2, 3, 1).float().cpu().numpy() * 255).round().astype(np.uint8)
               for x in self._batches(vectors, [int(s) for s in seeds])]
        return np.concatenate(out) if out else np.zeros((0, self.native_size, self.native_size, 3), np.uint8)

    # --------------------------------------------------------------------------------------- alignment

    def _landmark_extractor(self, opts: Arc2FaceOptions) -> Any:
        from facebench.pluginmanager import registry

        spec = registry("feature_extractor").get(opts.landmarks)
        if spec.extras.get("attribute") != "landmarks":
            raise ConfigError(f"arc2face: feature extractor '{opts.landmarks}' is not a landmark model "
                              "(registered with attribute='landmarks')")
        return spec.create(weights=opts.landmark_weights or None, device=str(self.device))

    def detect_landmarks(self, images01: Any) -> np.ndarray:
        """Five landmarks (N, 5, 2; pixel centres) per native image, from the landmark extractor."""
        pixels = (images01.permute(0, 2, 3, 1).float().cpu().numpy() * 255).round().astype(np.uint8)
        points = np.asarray(self.landmarks.embed(pixels), dtype=np.float64)
        if points.size != len(pixels) * 10:
            raise FacebenchError(f"arc2face: landmark extractor '{self.options.landmarks}' returned shape "
                                 f"{points.shape}, expected ({len(pixels)}, 5, 2)")
        return points.reshape(len(pixels), 5, 2)

    def align(self, images01: Any) -> Any:
        """Native FFHQ-aligned images in [0, 1] -> ArcFace-aligned crops in [0, 1]: the fixed similarity,
        or with a landmark extractor a per-image least-squares fit to the template."""
        if self.landmarks is None:
            matrices = self.matrix
        else:
            target = alignment.template(self.image_size)
            matrices = np.stack([alignment.fit_similarity(p + 0.5, target)
                                 for p in self.detect_landmarks(images01)])
        return alignment.warp(images01, matrices, self.image_size).clamp(0, 1)

    def generate(self, vectors: Any, *, masks: Any = None) -> Any:
        """(N, 3, image_size, image_size) ArcFace-aligned images in [-1, 1], float32."""
        import torch

        if masks is not None:
            raise FacebenchError("arc2face: generators without masks (Vec2Face's) take masks=None")
        n = len(vectors)
        seeds = self.next_seeds(n)
        if n == 0:
            return torch.zeros((0, 3, self.image_size, self.image_size), device=self.device)
        return torch.cat([self.align(x.float()) * 2 - 1 for x in self._batches(vectors, seeds)])

    # -------------------------------------------------------------------------------------- provenance

    @property
    def info(self) -> dict[str, Any]:
        """What ``facebench generate`` records in dataset.json (and checks on resume)."""
        opts = self.options
        info: dict[str, Any] = {
            "identity_vectors": "L2-normalised inside the generator (Arc2Face's ArcFace space)",
            "sampler": {"scheduler": opts.scheduler, "steps": opts.steps, "guidance": opts.guidance,
                        "batch_size": opts.batch_size, "dtype": self.dtype_name},
            "native_size": self.native_size,
            "alignment": (f"landmarks: {opts.landmarks}" if self.landmarks is not None
                          else "fixed FFHQ -> ArcFace similarity (docs/arc2face.md)"),
        }
        if self.untrained:
            info.update(untrained=True, pipeline_check=True)
        return info


def _options(options: dict[str, Any]) -> Arc2FaceOptions:
    return build_config(Arc2FaceOptions, options)


def arc2face(weights: str | os.PathLike | None = None, device: Any = "cpu", **options: Any) -> Arc2FaceGenerator:
    """Arc2Face from a model directory in the release layout (512 px, aligned to 112 px)."""
    if weights is None:
        raise FacebenchError("generator 'arc2face' needs its model directory: pass --weights DIR holding "
                             "arc2face/ and encoder/ (Arc2Face release) and vae/, tokenizer/, scheduler/ "
                             "(Stable Diffusion 1.5)")
    return Arc2FaceGenerator(weights, device=device, image_size=112, options=_options(options))


def arc2face_tiny(weights: str | os.PathLike | None = None, device: Any = "cpu",
                  **options: Any) -> Arc2FaceGenerator:
    """The tiny random-weight Arc2Face (56 px, aligned at 56 px, facebench's tiny size). Without
    ``weights`` a fresh seed-0 directory from ``make-tiny`` is built and loaded through the same path."""
    opts = _options(options)
    if weights is not None:
        return Arc2FaceGenerator(weights, device=device, image_size=56, options=opts)
    from .tiny import make_tiny

    with tempfile.TemporaryDirectory(prefix="arc2face-tiny-") as tmp:
        return Arc2FaceGenerator(make_tiny(Path(tmp) / "model"), device=device, image_size=56, options=opts)


__all__ = ["Arc2FaceGenerator", "Arc2FaceOptions", "arc2face", "arc2face_tiny"]
