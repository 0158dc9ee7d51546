"""Model configurations: the released Arc2Face / SD 1.5 sizes and the tiny CPU one.

The released ones are copied from the configs the release loads (``arc2face/config.json`` is SD 1.5's
UNet config; ``encoder/config.json`` SD 1.5's CLIP ViT-L/14 text encoder; ``vae/`` and ``scheduler/``
are SD 1.5's own): they size the speed benchmark and, narrowed, the layout tests.
"""

from __future__ import annotations

from typing import Any

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
