"""The generator object behind ``facebench.load_generator("vec2face", weights=PATH)``.

It owns the model, the device, the precision policy and a seeded RNG for the masks, and offers
``generate(vectors, *, masks=None)``. Two execution paths compute the same function: the *plain* path
(explicit fp32 softmax attention, ``no_grad``) mirrors the release; the *fast* path (fused
``scaled_dot_product_attention``, ``inference_mode``, and on CUDA channels_last + autocast, optionally
``torch.compile``) is what generation uses. In fp32 the two agree to float rounding.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from facebench.errors import ConfigError, DataError
from facebench.safe_load import load_checkpoint, state_dict_in, state_dict_mismatch
from facebench.weights import resolve_weights

from .model import CONFIGS, MaskingConfig, Vec2Face, Vec2FaceConfig, dropped_count, model_config

#: Key of the generator state dict in the official ``vec2face_generator.pth`` (and in our checkpoints).
STATE_KEY = "model_vec2face"
#: Key under which facebench checkpoints also record the model configuration (absent in the official file).
CONFIG_KEY = "vec2face_config"
#: Key under which facebench's ``generator.pth`` records the feature scale it was trained on:
#: ``{"median_norm": float, "extractor": str | None, "source": "features" | "dataset" | "extractor",
#: "raw": bool}``. The official file has none (its vectors are raw ArcFace-R100 features, norm ~10-40).
FEATURE_SCALE_KEY = "feature_scale"


#: The input scale of the released generator: raw ArcFace-R100 features of WebFace4M (per-coordinate
#: std 0.967 in 512-d, norm ~22; identity centres somewhat shorter).
RELEASE_SCALE = {"median_norm": 22.0, "low": 10.0, "high": 40.0,
                 "source": "the released checkpoint was trained on raw ArcFace-R100 features"}


class GeneratorFile:
    """A Vec2Face weights file read once: the state dict, the stored model configuration (facebench
    checkpoints only) and the recorded input feature scale."""

    def __init__(self, path: str | os.PathLike):
        self.path = path
        obj = load_checkpoint(path, what="Vec2Face generator weights")
        self.state = state_dict_in(obj, path, key=STATE_KEY, what="Vec2Face generator weights")
        stored = obj.get(CONFIG_KEY)
        self.config = Vec2FaceConfig.from_dict(stored) if isinstance(stored, dict) else None
        scale = obj.get(FEATURE_SCALE_KEY)
        self.feature_scale = dict(scale) if isinstance(scale, dict) else None

    def input_scale(self) -> dict[str, Any] | None:
        """What ``generate`` checks identity vectors against: the recorded median norm (half to twice it
        is accepted), the release's ArcFace scale for the official file, None when unknown (a facebench
        file written before the scale was recorded)."""
        if self.feature_scale and self.feature_scale.get("median_norm"):
            m = float(self.feature_scale["median_norm"])
            by = self.feature_scale.get("extractor") or self.feature_scale.get("source", "its features")
            return {"median_norm": m, "low": m / 2, "high": 2 * m,
                    "source": f"recorded in {os.path.basename(self.path)}: trained on features of {by}"}
        return None if self.config is not None else dict(RELEASE_SCALE)

    def reference_extractor(self) -> dict[str, Any] | None:
        """Which extractor's features the file was trained on, for ``generate --ref-images``: the one its
        recorded feature scale names (raw or unit as recorded); for a facebench file that records none
        (features given as an array) the extractor is unknown; None for the official file (the plugin
        declares the release's ArcFace-R100)."""
        if self.feature_scale:
            name = self.feature_scale.get("extractor")
            raw = self.feature_scale.get("raw", True)
            return {"extractor": name if isinstance(name, str) and name else None,
                    "features": "unit" if raw is False else "raw",
                    "source": f"recorded in {os.path.basename(self.path)}"}
        if self.config is not None:
            return {"extractor": None, "source": f"{os.path.basename(self.path)} records no feature scale"}
        return None

    def load_into(self, model: Vec2Face) -> None:
        """``strict=True``; a layout mismatch is one line naming the file."""
        problem = state_dict_mismatch(model.state_dict(), self.state)
        if problem:
            raise DataError(self.path, f"does not match the {model_label(model.config)} layout: {problem}")
        model.load_state_dict(self.state, strict=True, assign=_on_meta(model))


def _on_meta(model: torch.nn.Module) -> bool:
    return any(t.is_meta for t in model.state_dict().values())


def model_label(config: Vec2FaceConfig) -> str:
    return next((name for name, c in CONFIGS.items() if c == config), "custom vec2face")


class Vec2FaceGenerator:
    """Identity vectors -> face images in [-1, 1] (N, 3, S, S), float32, on the generator's device."""

    def __init__(self, model: Vec2Face, *, device: Any = "cpu", seed: int = 0, fast: bool = True,
                 amp: bool | None = None, amp_dtype: str = "float16", channels_last: bool | None = None,
                 compile: bool = False, masking: MaskingConfig | None = None,
                 input_scale: dict[str, Any] | None = None, reference_extractor: dict[str, Any] | None = None):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config = model.config
        self.feature_dim = model.config.feature_dim
        self.image_size = model.config.image_size
        self.masking = masking or MaskingConfig.inference()
        self.fast = fast
        #: the identity-vector scale this generator was trained on (see facebench.generation.identity_scale)
        self.input_scale = input_scale
        #: the feature extractor its identity vectors come from, when its weights file says (generate
        #: --ref-images; the plugin's spec extra ``reference_extractor`` declares the default)
        self.reference_extractor = reference_extractor
        on_cuda = self.device.type == "cuda"
        # Reduced precision by default on CUDA (fp16); asked for explicitly it runs anywhere, e.g. bf16 on CPU.
        self.amp = on_cuda if amp is None else bool(amp)
        if amp_dtype not in ("float16", "bfloat16"):
            raise ConfigError(f"vec2face amp_dtype must be 'float16' or 'bfloat16', got '{amp_dtype}'")
        self.amp_dtype = getattr(torch, amp_dtype)
        self.channels_last = on_cuda if channels_last is None else bool(channels_last)
        self.seed = seed
        self.rng = torch.Generator().manual_seed(seed)
        self._compiled: Any = None
        if compile:
            self._compiled = torch.compile(self.model)

    def reseed(self, seed: int) -> None:
        """Restart the mask RNG (generation shards call this with a per-shard seed)."""
        self.seed = seed
        self.rng = torch.Generator().manual_seed(seed)

    def sample_masks(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(dropped, masked) drawn with the inference masking settings from this generator's RNG."""
        return self.model.random_masking(n, self.masking, self.rng)

    def _prepare(self, vectors: Any, masks: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v = torch.as_tensor(vectors)
        if v.ndim != 2 or v.shape[1] != self.feature_dim:
            raise ConfigError(f"vectors must have shape (N, {self.feature_dim}), got {tuple(v.shape)}")
        v = v.to(self.device, torch.float32)
        if masks is None:
            dropped, masked = self.sample_masks(v.shape[0])
        else:
            if not isinstance(masks, tuple | list) or len(masks) != 2:
                raise ConfigError("masks must be a pair (dropped, masked) of (N, rows) bool tensors")
            dropped, masked = (torch.as_tensor(m) for m in masks)
        self.model.check_masks(dropped, masked, v.shape[0])
        return v, dropped.to(self.device), masked.to(self.device)

    def _run(self, v: torch.Tensor, dropped: torch.Tensor, masked: torch.Tensor, fast: bool) -> torch.Tensor:
        model = self.model
        model.set_fused_attention(fast)
        if fast and self.channels_last:
            model.im_decoder.to(memory_format=torch.channels_last)
        else:
            model.im_decoder.to(memory_format=torch.contiguous_format)
        runner = self._compiled if (fast and self._compiled is not None) else model
        num_dropped = dropped_count(dropped)  # a Python int: the compiled model traces in one graph
        if fast and self.amp:
            with torch.autocast(device_type=self.device.type, dtype=self.amp_dtype):
                image = runner(v, dropped, masked, num_dropped).image
        else:
            image = runner(v, dropped, masked, num_dropped).image
        return image.float().clamp_(-1.0, 1.0).contiguous()

    def generate(self, vectors: Any, *, masks: Any = None) -> torch.Tensor:
        """Images for ``vectors`` (N, feature_dim); ``masks`` = (dropped, masked) makes the result deterministic."""
        v, dropped, masked = self._prepare(vectors, masks)
        if self.fast:
            with torch.inference_mode():
                return self._run(v, dropped, masked, fast=True)
        return self.generate_plain(v, masks=(dropped, masked))

    def generate_plain(self, vectors: Any, *, masks: Any = None) -> torch.Tensor:
        """The reference path: explicit fp32 attention under ``no_grad``, no AMP, no compile."""
        v, dropped, masked = self._prepare(vectors, masks)
        with torch.no_grad():
            return self._run(v, dropped, masked, fast=False)

    def forward_images(self, vectors: torch.Tensor, *, masks: Any = None) -> torch.Tensor:
        """Differentiable images (clipped to [-1, 1]) for optimising the input vector (AttrOP)."""
        v, dropped, masked = self._prepare(vectors, masks)  # .to() keeps the graph back to ``vectors``
        self.model.set_fused_attention(True)
        return self.model(v, dropped, masked).image.clamp(-1.0, 1.0)


def build_generator(name: str, weights: str | os.PathLike | None = None, device: Any = "cpu",
                    **options: Any) -> Vec2FaceGenerator:
    """A generator of model ``name``; a facebench checkpoint's own stored configuration wins over the name."""
    config = model_config(name)
    scale = reference = None
    if weights is not None:
        file = GeneratorFile(resolve_weights(weights))
        config = file.config or config
        scale = file.input_scale()
        reference = file.reference_extractor()
        with torch.device("meta"):  # no point initialising 174M parameters that the file overwrites
            model = Vec2Face(config)
        file.load_into(model)
    else:
        # Untrained weights, but reproducible ones: drawn from the generator's seed, not the global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(options.get("seed", 0)))
            model = Vec2Face(config)
    masking = options.pop("masking", None)
    if isinstance(masking, dict):
        masking = MaskingConfig(**masking)
    return Vec2FaceGenerator(model, device=device, masking=masking, input_scale=scale, reference_extractor=reference,
                             **options)


def vec2face(weights: str | os.PathLike | None = None, device: Any = "cpu", **options: Any) -> Vec2FaceGenerator:
    """Vec2Face ViT-Base (official layout, 112 px): loads ``weights/vec2face_generator.pth`` unchanged."""
    return build_generator("vec2face_vit_base_patch16", weights, device, **options)


def vec2face_tiny(weights: str | os.PathLike | None = None, device: Any = "cpu", **options: Any) -> Vec2FaceGenerator:
    """Tiny Vec2Face (same module names, 56 px) that trains on CPU in minutes."""
    return build_generator("vec2face_tiny", weights, device, **options)
