"""The generator object behind ``facebench.load_generator("vec2face", weights=PATH)``.

It owns the model, the device, the precision policy and a seeded RNG for the masks, and offers
``generate(vectors, *, masks=None)``. Two execution paths compute the same function: the *plain* path
(explicit fp32 softmax attention, ``no_grad``) mirrors the release; the *fast* path (fused
``scaled_dot_product_attention``, ``inference_mode``, and on CUDA channels_last + autocast, optionally
``torch.compile``) is what generation uses. In fp32 the two agree to float rounding.

Vec2Face+ is the same object: its ``main_model.pth`` is a Vec2Face file; its ``pose_model.pth`` adds
adapters to the model's state dict and the pose model's under ``pose_model``. A generator holding a pose
model conditions every image on a landmark image (``generate(..., landmarks=)``), with the masking of the
release's ``pose_control.py``.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict
from typing import Any

import torch

from facebench.errors import ConfigError, DataError, FacebenchError
from facebench.safe_load import expect, load_checkpoint, state_dict_in, state_dict_mismatch
from facebench.weights import resolve_weights

from .model import CONFIGS, MaskingConfig, Vec2Face, Vec2FaceConfig, dropped_count, model_config
from .pose_condition import PoseCondConfig, PoseCondModel

#: Key of the generator state dict in the official ``vec2face_generator.pth`` (and in our checkpoints).
STATE_KEY = "model_vec2face"
#: Key under which facebench checkpoints also record the model configuration (absent in the official file).
CONFIG_KEY = "vec2face_config"
#: Key under which facebench's ``generator.pth`` records the feature scale it was trained on:
#: ``{"median_norm": float, "extractor": str | None, "source": "features" | "dataset" | "extractor",
#: "raw": bool}``. The official file has none (its vectors are raw ArcFace-R100 features, norm ~10-40).
FEATURE_SCALE_KEY = "feature_scale"
#: Key of the pose model's state dict in Vec2Face+'s ``pose_model.pth`` (beside its LoRA-adapted
#: ``model_vec2face``), and of its configuration in facebench's files (absent in the release's).
POSE_KEY = "pose_model"
POSE_CONFIG_KEY = "pose_config"
#: Vec2Face+'s pose model as released (``pose_control.py --use_lora --lora_r 8``; alpha and dropout are the
#: script's defaults, 32 and 0, which the file does not record).
RELEASE_LORA = {"lora_rank": 8, "lora_alpha": 32.0, "lora_dropout": 0.0}


#: The input scale of the released generator: raw ArcFace-R100 features of WebFace4M (per-coordinate
#: std 0.967 in 512-d, norm ~22; identity centres somewhat shorter).
RELEASE_SCALE = {"median_norm": 22.0, "low": 10.0, "high": 40.0,
                 "source": "the released checkpoint was trained on raw ArcFace-R100 features"}


class GeneratorFile:
    """A Vec2Face weights file read once: the state dict, the stored model configuration (facebench
    checkpoints only) and the recorded input feature scale."""

    def __init__(self, path: str | os.PathLike):
        self.path = path
        # the release's training checkpoints carry its argparse.Namespace ``args``: that class, nothing else
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = load_checkpoint(path, what="Vec2Face generator weights")
        self.state = state_dict_in(obj, path, key=STATE_KEY, what="Vec2Face generator weights")
        stored = obj.get(CONFIG_KEY)
        try:
            self.config = Vec2FaceConfig.from_dict(stored) if isinstance(stored, dict) else None
            pose_stored = obj.get(POSE_CONFIG_KEY)
            self.pose_config = PoseCondConfig.from_dict(pose_stored) if isinstance(pose_stored, dict) else None
        except (ConfigError, TypeError, ValueError) as exc:
            raise DataError(path, f"its stored model configuration is unusable: {exc}") from None
        scale = obj.get(FEATURE_SCALE_KEY)
        self.feature_scale = dict(scale) if isinstance(scale, dict) else None
        for key, types in (("median_norm", (float, type(None))), ("extractor", (str, type(None))),
                           ("source", (str, type(None))), ("raw", (bool, type(None)))):
            if self.feature_scale:  # read by input_scale and reference_extractor: a tensor there is no number
                value = expect(path, self.feature_scale.get(key), types, f"{FEATURE_SCALE_KEY}.{key}")
                if key == "median_norm" and value is not None and not 0 < value < float("inf"):
                    raise DataError(path, f"{FEATURE_SCALE_KEY}.median_norm must be a positive number, found {value}")
        #: Vec2Face+'s pose model (``pose_model.pth``), None for a plain Vec2Face file (``main_model.pth``)
        self.pose_state = (state_dict_in(obj, path, key=POSE_KEY, what="Vec2Face+ pose model")
                           if POSE_KEY in obj else None)

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
            hint = ""
            if any(k.endswith((".A", ".B")) and ".attn." in k for k in [*self.state, *model.state_dict()]):
                hint = (f" (the model has LoRA rank {model.config.lora_rank}; the release's pose model is rank 8: "
                        "--generator-option lora_rank=R chooses another)")
            raise DataError(self.path, f"does not match the {model_label(model.config)} layout: {problem}{hint}")
        model.load_state_dict(self.state, strict=True, assign=_on_meta(model))

    def load_pose_into(self, pose_model: PoseCondModel) -> None:
        """The ``pose_model`` entry, strictly, the same way."""
        problem = state_dict_mismatch(pose_model.state_dict(), self.pose_state or {})
        if problem:
            raise DataError(self.path, f"its '{POSE_KEY}' does not match the pose model's layout "
                                       f"({pose_model.config.input_size} px in, {pose_model.config.out_dim} out): "
                                       f"{problem}")
        pose_model.load_state_dict(self.pose_state, strict=True, assign=_on_meta(pose_model))


def _on_meta(model: torch.nn.Module) -> bool:
    return any(t.is_meta for t in model.state_dict().values())


def model_label(config: Vec2FaceConfig) -> str:
    return next((name for name, c in CONFIGS.items() if c == config), "custom vec2face")


class Vec2FaceGenerator:
    """Identity vectors -> face images in [-1, 1] (N, 3, S, S), float32, on the generator's device."""

    def __init__(self, model: Vec2Face, *, device: Any = "cpu", seed: int = 0, fast: bool = True,
                 amp: bool | None = None, amp_dtype: str = "float16", channels_last: bool | None = None,
                 compile: bool = False, masking: MaskingConfig | None = None,
                 input_scale: dict[str, Any] | None = None, reference_extractor: dict[str, Any] | None = None,
                 pose_model: PoseCondModel | None = None):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config = model.config
        self.feature_dim = model.config.feature_dim
        self.image_size = model.config.image_size
        #: Vec2Face+'s pose model: every image is then conditioned on a landmark image
        self.pose_model = pose_model.to(self.device).eval() if pose_model is not None else None
        if pose_model is not None and pose_model.config.out_dim != model.config.embed_dim:
            raise ConfigError(f"the pose model gives {pose_model.config.out_dim}-d rows, the model is "
                              f"{model.config.embed_dim} wide")
        self.masking = masking or (MaskingConfig.pose_control() if pose_model is not None else MaskingConfig.inference())
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
        #: what ``generate`` records of this generator in ``dataset.json`` (Vec2Face+ only: plain Vec2Face
        #: runs keep the parameters they always had)
        self.info: dict[str, Any] = {}
        if pose_model is not None or model.config.lora_rank:
            self.info = {"variant": "vec2face+ pose model" if pose_model is not None else "vec2face+ lora",
                         "lora": {"rank": model.config.lora_rank, "alpha": model.config.lora_alpha},
                         "masking": asdict(self.masking)}

    @property
    def needs_pose_landmarks(self) -> bool:
        """Whether every image needs a landmark image (a Vec2Face+ pose model is loaded)."""
        return self.pose_model is not None

    def pose_landmarks(self, value: str) -> Any:
        """The landmark images ``--pose-landmarks VALUE`` names (see :func:`.landmarks.load_pose_set`)."""
        if self.pose_model is None:
            raise FacebenchError("--pose-landmarks needs a Vec2Face+ pose model (weights holding 'pose_model', "
                                 "e.g. vec2face_plus/pose_model.pth); these weights have none")
        from .landmarks import load_pose_set

        return load_pose_set(value, input_size=self.pose_model.config.input_size)

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

    def _landmarks(self, landmarks: Any, n: int) -> torch.Tensor | None:
        """The landmark images of a batch, checked: required with a pose model, refused without one."""
        if self.pose_model is None:
            if landmarks is not None:
                raise ConfigError("landmark images given, but this generator has no pose model (Vec2Face+ "
                                  "pose_model.pth has one)")
            return None
        if landmarks is None:
            raise ConfigError("this generator holds a Vec2Face+ pose model: every image needs a landmark image "
                              "(landmarks=, --pose-landmarks)")
        x = torch.as_tensor(landmarks)
        self.pose_model.check_input(x)
        if x.shape[0] != n:
            raise ConfigError(f"{x.shape[0]} landmark images for {n} vectors")
        return x.to(self.device, torch.float32)

    def _cond(self, landmarks: torch.Tensor | None) -> torch.Tensor | None:
        """The pose rows (N, 1, D) in float32, as the release computes them (``pose_model(x).float()``)."""
        return None if landmarks is None else self.pose_model(landmarks).float()

    def _run(self, v: torch.Tensor, dropped: torch.Tensor, masked: torch.Tensor, fast: bool,
             landmarks: torch.Tensor | None = None) -> torch.Tensor:
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
                image = runner(v, dropped, masked, num_dropped, self._cond(landmarks)).image
        else:
            image = runner(v, dropped, masked, num_dropped, self._cond(landmarks)).image
        return image.float().clamp_(-1.0, 1.0).contiguous()

    def generate(self, vectors: Any, *, masks: Any = None, landmarks: Any = None) -> torch.Tensor:
        """Images for ``vectors`` (N, feature_dim); ``masks`` = (dropped, masked) makes the result deterministic.
        ``landmarks``: (N, 3, 112, 112) landmark images in [-1, 1], one per vector (Vec2Face+ pose model)."""
        v, dropped, masked = self._prepare(vectors, masks)
        lm = self._landmarks(landmarks, v.shape[0])
        if self.fast:
            with torch.inference_mode():
                return self._run(v, dropped, masked, fast=True, landmarks=lm)
        return self.generate_plain(v, masks=(dropped, masked), landmarks=lm)

    def generate_plain(self, vectors: Any, *, masks: Any = None, landmarks: Any = None) -> torch.Tensor:
        """The reference path: explicit fp32 attention under ``no_grad``, no AMP, no compile."""
        v, dropped, masked = self._prepare(vectors, masks)
        lm = self._landmarks(landmarks, v.shape[0])
        with torch.no_grad():
            return self._run(v, dropped, masked, fast=False, landmarks=lm)

    def forward_images(self, vectors: torch.Tensor, *, masks: Any = None, landmarks: Any = None) -> torch.Tensor:
        """Differentiable images (clipped to [-1, 1]) for optimising the input vector (AttrOP)."""
        v, dropped, masked = self._prepare(vectors, masks)  # .to() keeps the graph back to ``vectors``
        lm = self._landmarks(landmarks, v.shape[0])
        self.model.set_fused_attention(True)
        return self.model(v, dropped, masked, cond=self._cond(lm)).image.clamp(-1.0, 1.0)


#: ``--generator-option`` keys of Vec2Face+ that shape the model rather than the generator object.
LORA_OPTIONS = ("lora_rank", "lora_alpha", "lora_dropout")


def _lora_settings(options: dict[str, Any]) -> dict[str, Any]:
    """The release's LoRA settings, overridden by ``lora_rank``/``lora_alpha``/``lora_dropout`` options."""
    chosen = dict(RELEASE_LORA)
    for key in LORA_OPTIONS:
        if key in options:
            value = options.pop(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"vec2face_plus option {key} must be a number, got {value!r}")
            chosen[key] = int(value) if key == "lora_rank" else float(value)
    return chosen


def build_generator(name: str, weights: str | os.PathLike | None = None, device: Any = "cpu",
                    *, pose_config: PoseCondConfig | None = None, **options: Any) -> Vec2FaceGenerator:
    """A generator of model ``name``; a facebench checkpoint's own stored configuration wins over the name.

    ``pose_config``: the model is Vec2Face+ (``vec2face_plus``): a weights file holding ``pose_model`` gets the
    adapters (the release's rank 8 unless the file records its own configuration or ``lora_rank`` says
    otherwise) and this pose model; a plain file (``main_model.pth``) is Vec2Face; without weights
    (``--untrained``) the pose model is built unless the option ``pose=false`` is given.
    """
    config = model_config(name)
    scale = reference = None
    pose_model = None
    with_pose = options.pop("pose", True) if pose_config is not None else False
    if not isinstance(with_pose, bool):
        raise ConfigError(f"vec2face_plus option pose must be true or false, got {with_pose!r}")
    lora = _lora_settings(options) if pose_config is not None else None
    if weights is not None:
        file = GeneratorFile(resolve_weights(weights))
        if file.pose_state is not None and pose_config is None:
            raise DataError(file.path, f"holds a Vec2Face+ pose model ('{POSE_KEY}'): load it with the generator "
                                       "vec2face_plus (or vec2face_plus_tiny)")
        if file.config is not None:
            config = file.config
        elif file.pose_state is not None:
            config = Vec2FaceConfig(**{**config.to_dict(), **lora})
        scale = file.input_scale()
        reference = file.reference_extractor()
        with torch.device("meta"):  # no point initialising 174M parameters that the file overwrites
            model = Vec2Face(config)
            if file.pose_state is not None:
                pose_model = PoseCondModel(file.pose_config or pose_config)
        file.load_into(model)
        if pose_model is not None:
            file.load_pose_into(pose_model)
    else:
        if with_pose:
            config = Vec2FaceConfig(**{**config.to_dict(), **lora})
        # Untrained weights, but reproducible ones: drawn from the generator's seed, not the global RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(options.get("seed", 0)))
            model = Vec2Face(config)
            if with_pose:
                pose_model = PoseCondModel(pose_config)
    masking = options.pop("masking", None)
    if isinstance(masking, dict):
        masking = MaskingConfig(**masking)
    return Vec2FaceGenerator(model, device=device, masking=masking, input_scale=scale, reference_extractor=reference,
                             pose_model=pose_model, **options)


def vec2face(weights: str | os.PathLike | None = None, device: Any = "cpu", **options: Any) -> Vec2FaceGenerator:
    """Vec2Face ViT-Base (official layout, 112 px): loads ``weights/vec2face_generator.pth`` unchanged."""
    return build_generator("vec2face_vit_base_patch16", weights, device, **options)


def vec2face_tiny(weights: str | os.PathLike | None = None, device: Any = "cpu", **options: Any) -> Vec2FaceGenerator:
    """Tiny Vec2Face (same module names, 56 px) that trains on CPU in minutes."""
    return build_generator("vec2face_tiny", weights, device, **options)


#: The release's pose model (112 px landmark images, 768-d rows) and the tiny one: the same convolutions,
#: its row as wide as the tiny model (128).
RELEASE_POSE = PoseCondConfig()
TINY_POSE = PoseCondConfig(out_dim=128)


def vec2face_plus(weights: str | os.PathLike | None = None, device: Any = "cpu", **options: Any) -> Vec2FaceGenerator:
    """Vec2Face+ (112 px): ``vec2face_plus/pose_model.pth`` (LoRA rank 8 + pose model; landmark-conditioned)
    or ``vec2face_plus/main_model.pth`` (a Vec2Face model), loaded unchanged."""
    return build_generator("vec2face_vit_base_patch16", weights, device, pose_config=RELEASE_POSE, **options)


def vec2face_plus_tiny(weights: str | os.PathLike | None = None, device: Any = "cpu",
                       **options: Any) -> Vec2FaceGenerator:
    """Tiny Vec2Face+ (the tiny Vec2Face with the release's adapters and pose model; 56 px images)."""
    return build_generator("vec2face_tiny", weights, device, pose_config=TINY_POSE, **options)
