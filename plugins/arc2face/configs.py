"""Model configurations: the released Arc2Face / SD 1.5 sizes, the tiny CPU one, and what a user's
config file may say: the allow-lists the loader reads every config through (keys asking a library for
code are refused, every other key off the lists is dropped; see the section below).

The released ones are copied from the configs the release loads (``arc2face/config.json`` is SD 1.5's
UNet config; ``encoder/config.json`` SD 1.5's CLIP ViT-L/14 text encoder; ``vae/`` and ``scheduler/``
are SD 1.5's own): they size the speed benchmark and, narrowed, the layout tests.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from facebench.errors import DataError
from facebench.safe_load import expect, read_json

#: SD 1.5's ``scheduler/scheduler_config.json``, key for key: a PNDM config written by diffusers 0.6.0. It
#: also carries ``clip_sample: false`` (read by the DDIM and LCM schedulers built from it) and, being
#: that old, no ``timestep_spacing``, so each scheduler class uses its own default (as with the release).
SD15_SCHEDULER = {"_class_name": "PNDMScheduler", "_diffusers_version": "0.6.0", "beta_end": 0.012,
                  "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
                  "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None,
                  "clip_sample": False}


#: SD 1.5's UNet (the Arc2Face UNet has the same config): 860 M parameters.
SD15_UNET = {"act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
             "center_input_sample": False, "cross_attention_dim": 768,
             "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                  "DownBlock2D"],
             "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4,
             "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
             "out_channels": 4, "sample_size": 64,
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]}
#: SD 1.5's VAE: 84 M parameters, 8x downsampling, 512 px.
SD15_VAE = {"act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
            "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3, "latent_channels": 4,
            "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 512,
            "up_block_types": ["UpDecoderBlock2D"] * 4, "scaling_factor": 0.18215}
#: SD 1.5's CLIP text encoder (the Arc2Face encoder is a fine-tuned copy): 123 M parameters.
SD15_ENCODER = {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
                "layer_norm_eps": 1e-05, "projection_dim": 768, "bos_token_id": 0, "eos_token_id": 2,
                "pad_token_id": 1}


def release_configs() -> dict[str, dict[str, Any]]:
    return {"unet": dict(SD15_UNET), "vae": dict(SD15_VAE), "encoder": dict(SD15_ENCODER)}


def tiny_configs(size: int, vocab: dict[str, int], bos: str, eos: str) -> dict[str, dict[str, Any]]:
    """Configs of the tiny components. The text encoder keeps a hidden size of 512 (the identity vector
    is zero-padded to it, so it cannot be narrower); it has one layer and a 16-token context (tiny.TINY_CONTEXT). The VAE
    downsamples 4x (SD 1.5: 8x) so that a 56 px image has a 14 x 14 latent the two-level UNet halves."""
    if size % 8:
        raise ValueError(f"tiny size must be a multiple of 8, got {size}")
    return {
        "encoder": {"vocab_size": len(vocab), "hidden_size": 512, "intermediate_size": 64, "num_hidden_layers": 1,
                    "num_attention_heads": 8, "max_position_embeddings": 16, "hidden_act": "quick_gelu",
                    "projection_dim": 512, "bos_token_id": vocab[bos], "eos_token_id": vocab[eos],
                    "pad_token_id": vocab[eos]},
        "unet": {"sample_size": size // 4, "in_channels": 4, "out_channels": 4,
                 "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
                 "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "block_out_channels": [16, 32],
                 "layers_per_block": 1, "cross_attention_dim": 512, "attention_head_dim": 8, "norm_num_groups": 8},
        "vae": {"in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 3,
                "up_block_types": ["UpDecoderBlock2D"] * 3, "block_out_channels": [8, 16, 16],
                "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 4, "sample_size": size,
                "scaling_factor": 0.18215},
    }


# ------------------------------------------------------------------------- what a user's config may say
# A model folder is someone else's data. Its configs are read as plain JSON and only the keys below reach a
# library, each checked for its type and a sane range; the model is then built from those values alone.
#
# - Keys that would make a library run or fetch code (``auto_map``, ``trust_remote_code``,
#   ``attn_implementation``, ``use_kernels``, ``kernel_config``, any other key naming a kernel, a
#   quantisation backend or a custom pipeline) are REFUSED, naming the file and the key: the released
#   configs never hold them, so a folder that does is not the model it claims to be.
# - Every other key is DROPPED: metadata (``_class_name``, ``_diffusers_version``, ``transformers_version``,
#   ``architectures``, ``model_type``, ``torch_dtype``), keys naming a hub repository (``_name_or_path``,
#   which the release's own configs carry), and keys the installed library does not need. facebench never
#   passes them on, so they cannot change what is built.
# - Keys of features facebench's loop does not implement (class embeddings, guidance distillation, latent
#   shift) are accepted only at the library's default value.


#: Keys refused wherever they appear: they ask a library for code (remote, a hub kernel, an extension).
REFUSED_KEY = re.compile(r"auto_map|remote_code|kernel|attn_implementation|quantization|custom_pipeline",
                         re.IGNORECASE)
#: Flags that match REFUSED_KEY's words but name no code (transformers 4.4x saved this one): dropped.
HARMLESS_KEYS = frozenset({"_attn_implementation_autoset"})
MAX_WIDTH = 1 << 16  # any channel or embedding width; a real model is far below (SD 1.5: 1280)
MAX_BLOCKS = 8  # UNet / VAE levels (SD 1.5: 4)
MAX_DEPTH = 16  # layers in a block (SD 1.5: 2; SDXL: up to 10 transformer layers)


def shown(value: Any, limit: int = 60) -> str:
    """A value read from someone else's JSON, as an error line quotes it: one line, escaped, truncated."""
    text = value if isinstance(value, str) else json.dumps(value)
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True)
class Int:
    low: int
    high: int

    def __call__(self, path: Any, key: str, value: Any) -> None:
        expect(path, value, int, key)
        if not self.low <= value <= self.high:
            raise DataError(path, f"{key} must be between {self.low} and {self.high}, found {shown(value)}")


@dataclass(frozen=True)
class Num:
    low: float
    high: float

    def __call__(self, path: Any, key: str, value: Any) -> None:
        expect(path, value, float, key)
        if not self.low <= value <= self.high:  # NaN fails here too
            raise DataError(path, f"{key} must be between {self.low:g} and {self.high:g}, found {shown(value)}")


@dataclass(frozen=True)
class Bool:
    def __call__(self, path: Any, key: str, value: Any) -> None:
        expect(path, value, bool, key)


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    def __call__(self, path: Any, key: str, value: Any) -> None:
        if type(value) is not type(self.values[0]) or value not in self.values:
            choices = ", ".join(map(str, self.values))
            raise DataError(path, f"{key} must be one of {choices}, found {shown(value)}")


@dataclass(frozen=True)
class ListOf:
    item: Any
    max_items: int
    min_items: int = 1

    def __call__(self, path: Any, key: str, value: Any) -> None:
        expect(path, value, list, key)
        if not self.min_items <= len(value) <= self.max_items:
            raise DataError(path, f"{key} must hold {self.min_items} to {self.max_items} items, "
                                  f"found {len(value)}")
        for i, item in enumerate(value):
            self.item(path, f"{key}[{i}]", item)


@dataclass(frozen=True)
class OneOrList:
    """One value for every block, or a list with one per block (diffusers accepts both)."""

    item: Any
    max_items: int = MAX_BLOCKS

    def __call__(self, path: Any, key: str, value: Any) -> None:
        (ListOf(self.item, self.max_items) if isinstance(value, list) else self.item)(path, key, value)


@dataclass(frozen=True)
class Nullable:
    item: Any

    def __call__(self, path: Any, key: str, value: Any) -> None:
        if value is not None:
            self.item(path, key, value)


@dataclass(frozen=True)
class Default:
    """A key accepted only at the library's default (dropped then: the library applies it anyway)."""

    value: Any
    why: str = ""

    def __call__(self, path: Any, key: str, value: Any) -> None:
        if value != self.value or isinstance(value, bool) != isinstance(self.value, bool):
            raise DataError(path, f"{key} {shown(value)} is not supported"
                                  f"{' (' + self.why + ')' if self.why else ''}; facebench builds this model "
                                  f"only with {key} = {json.dumps(self.value)}")


@dataclass(frozen=True)
class Token:
    """A special token: a string, or an object with its ``content`` (as transformers saves AddedToken)."""

    def __call__(self, path: Any, key: str, value: Any) -> None:
        if isinstance(value, dict):
            value = value.get("content")
            key = f"{key}.content"
        expect(path, value, str, key)
        if not 0 < len(value) <= 256:
            raise DataError(path, f"{key} must be 1 to 256 characters, found {len(value)}")


ACTIVATIONS = Choice(("silu", "swish", "mish", "gelu", "relu"))
WIDTH = Int(1, MAX_WIDTH)
DEPTH = Int(1, MAX_DEPTH)
CHANNELS = Int(1, 64)

UNET_KEYS: dict[str, Any] = {
    "sample_size": Int(1, 256),  # the latent side (SD 1.5: 64); it sizes every generated batch
    "in_channels": CHANNELS, "out_channels": CHANNELS,
    "center_input_sample": Bool(), "flip_sin_to_cos": Bool(), "freq_shift": Int(0, 1024),
    "down_block_types": ListOf(Choice(("CrossAttnDownBlock2D", "DownBlock2D")), MAX_BLOCKS),
    "mid_block_type": Choice(("UNetMidBlock2DCrossAttn",)),
    "up_block_types": ListOf(Choice(("CrossAttnUpBlock2D", "UpBlock2D")), MAX_BLOCKS),
    "block_out_channels": ListOf(WIDTH, MAX_BLOCKS), "layers_per_block": OneOrList(DEPTH),
    "downsample_padding": Int(0, 16), "mid_block_scale_factor": Num(0, 1e6), "dropout": Num(0, 1),
    "act_fn": ACTIVATIONS, "norm_num_groups": WIDTH, "norm_eps": Num(1e-12, 1), "cross_attention_dim": WIDTH,
    "transformer_layers_per_block": OneOrList(DEPTH), "attention_head_dim": OneOrList(WIDTH),
    "use_linear_projection": Bool(), "upcast_attention": Bool(),
    "resnet_time_scale_shift": Choice(("default", "scale_shift")),
    "conv_in_kernel": Choice((1, 3, 5, 7)), "conv_out_kernel": Choice((1, 3, 5, 7)),  # convolution sizes
    **{key: Default(None) for key in (
        "class_embed_type", "addition_embed_type", "addition_time_embed_dim", "num_class_embeds", "encoder_hid_dim",
        "encoder_hid_dim_type", "num_attention_heads", "reverse_transformer_layers_per_block", "time_embedding_dim",
        "time_embedding_act_fn", "timestep_post_act", "projection_class_embeddings_input_dim",
        "mid_block_only_cross_attention", "cross_attention_norm")},
    "time_cond_proj_dim": Default(None, "a guidance-distilled UNet"),
    **{key: Default(False) for key in ("only_cross_attention", "dual_cross_attention", "resnet_skip_time_act",
                                       "class_embeddings_concat")},
    "resnet_out_scale_factor": Default(1.0), "time_embedding_type": Default("positional"),
    "attention_type": Default("default"), "addition_embed_type_num_heads": Default(64),
}

VAE_KEYS: dict[str, Any] = {
    "in_channels": CHANNELS, "out_channels": CHANNELS, "latent_channels": CHANNELS,
    "down_block_types": ListOf(Choice(("DownEncoderBlock2D",)), MAX_BLOCKS),
    "up_block_types": ListOf(Choice(("UpDecoderBlock2D",)), MAX_BLOCKS),
    "block_out_channels": ListOf(WIDTH, MAX_BLOCKS), "layers_per_block": DEPTH, "act_fn": ACTIVATIONS,
    "norm_num_groups": WIDTH, "sample_size": Int(1, MAX_WIDTH), "scaling_factor": Num(1e-6, 1e6),
    "force_upcast": Bool(), "use_quant_conv": Bool(), "use_post_quant_conv": Bool(),
    "mid_block_add_attention": Bool(),
    **{key: Default(None, "facebench decodes latents with scaling_factor alone")
       for key in ("shift_factor", "latents_mean", "latents_std")},
}

TOKEN_ID = Nullable(Int(0, 1 << 24))
ENCODER_KEYS: dict[str, Any] = {
    "vocab_size": Int(1, 1 << 24), "hidden_size": WIDTH, "intermediate_size": Int(1, 1 << 18),
    "projection_dim": WIDTH, "num_hidden_layers": Int(1, 128), "num_attention_heads": Int(1, 1024),
    "max_position_embeddings": Int(1, 4096),
    "hidden_act": Choice(("quick_gelu", "gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu")),
    "layer_norm_eps": Num(1e-12, 1), "attention_dropout": Num(0, 1), "dropout": Num(0, 1),
    "initializer_range": Num(0, 10), "initializer_factor": Num(0, 100),
    "pad_token_id": TOKEN_ID, "bos_token_id": TOKEN_ID, "eos_token_id": TOKEN_ID,
}

MAX_TIMESTEPS = 100_000
SCHEDULER_KEYS: dict[str, Any] = {
    "num_train_timesteps": Int(1, MAX_TIMESTEPS), "beta_start": Num(1e-9, 0.999), "beta_end": Num(1e-9, 0.999),
    "beta_schedule": Choice(("linear", "scaled_linear", "squaredcos_cap_v2")),
    "trained_betas": Nullable(ListOf(Num(1e-9, 0.999), MAX_TIMESTEPS)),
    "prediction_type": Choice(("epsilon", "v_prediction", "sample")),
    "timestep_spacing": Choice(("linspace", "leading", "trailing")), "steps_offset": Int(0, MAX_TIMESTEPS),
    "set_alpha_to_one": Bool(), "clip_sample": Bool(), "clip_sample_range": Num(1e-9, 1e6),
    "rescale_betas_zero_snr": Bool(), "thresholding": Default(False),
}

#: ``tokenizer_config.json`` / ``special_tokens_map.json``: the special tokens and the context length; the
#: tokenizer itself is always CLIP's (``tokenizer_class`` and the rest are dropped).
SPECIAL_TOKENS = ("bos_token", "eos_token", "unk_token", "pad_token")
TOKENIZER_KEYS: dict[str, Any] = {
    **{key: Token() for key in SPECIAL_TOKENS},
    "model_max_length": Int(1, 1 << 128),  # transformers writes 1e30 for "no limit"
    "do_lower_case": Default(True), "add_prefix_space": Default(False),
}


def allowed(path: Any, data: dict[str, Any], keys: dict[str, Any]) -> dict[str, Any]:
    """The keys of ``data`` that ``keys`` allows, each checked; a key asking for code is refused, any
    other key dropped, and keys accepted only at their default left to the library's default."""
    out = {}
    for key, value in data.items():
        check = keys.get(key)
        if check is not None:
            check(path, key, value)
            if not isinstance(check, Default):
                out[key] = value
        elif REFUSED_KEY.search(key) and key not in HARMLESS_KEYS:
            raise DataError(path, f"refused key {shown(key)}: it asks the library to load code (remote code, "
                                  "a hub kernel or an extension); facebench reads model folders as data only")
    return out


def read_config(path: Any, keys: dict[str, Any], what: str) -> dict[str, Any]:
    """``path`` read as plain JSON (UTF-8, an object, at most 1 MB) and narrowed to ``keys``."""
    return allowed(path, read_json(path, what=what, limit=1 << 20), keys)
