"""The tiny DCFace: a model directory in the release's layout with small random networks, for CPU tests.

``make_tiny(DIR)`` writes ``dcface_3x3.ckpt`` (a Lightning-style checkpoint: ``state_dict`` with every key
prefix the release saves, ``hyper_parameters`` shaped like the release's) and ``ffhq_10m.pt`` (the first
stage's state dict), so ``dcface_tiny`` goes through exactly the loading path of the released files. Sizes:
56 px faces; a UNet of 32 channels at levels (1, 2) with attention at the second; IR backbones of one block
per stage, widths 32/32/64/128, feature 128 (= the UNet's timestep-embedding width, as 512 = 4 x 128 in
the release); a 32 px first stage (its samples are moved to the 56 px crop as the 256 px ones are to
112). The release's configs cannot describe a backbone this small, so the checkpoint's hyper_parameters
carry a ``facebench_tiny`` table (the IR sizes and the 56 px input) that only facebench reads; everything
else is the release's schema. Random weights: a pipeline check, not faces.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .networks import IRConfig, UNetConfig

TINY_MARKER = "facebench_tiny.json"
TINY_SIZE = 56
TINY_IR = {"units": [1, 1, 1, 1], "widths": [32, 32, 64, 128], "stem": 32, "feature_dim": 128, "input_size": TINY_SIZE}
STAGE1_TINY = UNetConfig(model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_ds=(2,), num_heads=4,
                         num_head_channels=32, use_scale_shift_norm=True, resblock_updown=True, out_channels=6,
                         skip_downsample_level=None, conditioned=False)
STAGE1_TINY_SIZE = 32


def tiny_hparams(spatial_dim: int = 3) -> dict[str, Any]:
    """The hyper_parameters of the tiny checkpoint: the release's schema, tiny values."""
    recognition = {"backbone": "ir_50", "dataset": "webface4m", "loss_fn": "adaface", "normalize_feature": False,
                   "return_spatial": [0], "head_name": "none", "ckpt_path": None, "center_path": "centres.pth"}
    return {
        "unet_config": {"type": "ilvr", "freeze_unet": False,
                        "params": {"condition_type": "crossatt_and_stylemod",
                                   "condition_source": "patchstat_spatial_and_image", "pretrained_model_path": None,
                                   "gradient_checkpointing": False, "image_size": TINY_SIZE, "in_channels": 3,
                                   "out_channels": 3, "cross_attention_dim": 512},
                        "model_params": {"image_size": TINY_SIZE, "num_channels": 32, "num_res_blocks": 1,
                                         "channel_mult": "1,2", "learn_sigma": True, "class_cond": False,
                                         "use_checkpoint": False, "attention_resolutions": "2", "num_heads": 4,
                                         "num_head_channels": 32, "num_heads_upsample": -1,
                                         "use_scale_shift_norm": True, "dropout": 0.0, "resblock_updown": True,
                                         "use_fp16": False, "use_new_attention_order": False}},
        "sampler": {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02,
                    "variance_type": "learned_range"},
        "use_ema": True,
        "recognition": recognition,
        "recognition_eval": dict(recognition),
        "label_mapping": {"version": "v4", "out_channel": 256, "num_latent": 8,
                          "recognition_config": {**recognition, "return_spatial": [3], "center_path": None}},
        "external_mapping": {"version": "v4_dropout", "return_spatial": [0], "spatial_dim": spatial_dim,
                             "out_channel": TINY_IR["feature_dim"], "dropout_prob": 0.3},
        "facebench_tiny": dict(TINY_IR),
    }


def tiny_ir(hp: dict[str, Any]) -> IRConfig | None:
    """The IR sizes of a tiny checkpoint's ``facebench_tiny`` table (None for the release's)."""
    table = hp.get("facebench_tiny")
    if not isinstance(table, dict):
        return None
    return IRConfig(units=tuple(table["units"]), widths=tuple(table["widths"]), stem=int(table["stem"]),
                    feature_dim=int(table["feature_dim"]), input_size=int(table["input_size"]))


def tiny_state(config: Any, hp: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """Every key of the release's Lightning ``state_dict`` for ``config``, seeded random values."""
    import torch

    from .layout import expected_layout
    from .networks import DCFace, IRBackbone, UNet

    torch.manual_seed(seed)
    model = DCFace(config)
    unet = UNet(config.unet).state_dict()
    ir = IRBackbone(config.style_ir).state_dict()
    state: dict[str, Any] = {}
    for prefix in ("model.", "ema_model.averaged_model."):
        state.update({prefix + k: v.clone() for k, v in unet.items()})
    for prefix in ("recognition_model.backbone.", "recognition_model_eval.backbone."):
        state.update({prefix + k: v.clone() for k, v in ir.items()})
    for key in ("recognition_model.center.weight", "recognition_model_eval.center.weight"):
        state[key] = torch.randn(10, config.style_ir.feature_dim)
    state.update({k: v for k, v in model.state_dict().items() if k.startswith(("label_mapping.", "external_mapping."))})
    # the tiny UNet's zero-initialised output layers would make every image the same: perturb them
    gen = torch.Generator().manual_seed(seed + 1)
    for key, value in state.items():
        if value.is_floating_point() and "running_var" not in key:
            state[key] = value + 0.02 * torch.randn(value.shape, generator=gen)
    missing = set(expected_layout(config, hp)) ^ set(state)
    if missing:  # the tiny files must have exactly the release's keys
        raise RuntimeError(f"tiny layout differs from the release's: {sorted(missing)[:3]}")
    return state


def make_tiny(out: str | Path, seed: int = 0, spatial_dim: int = 3, *, overwrite: bool = False) -> Path:
    """Write a tiny model directory (``dcface_3x3.ckpt``, ``ffhq_10m.pt``, the marker) atomically and return
    it. ``spatial_dim`` 5 gives the 5x5 style patches (the file is still named as ``checkpoint`` defaults)."""
    import torch

    from facebench import atomic

    from .layout import STAGE1, config_from_hparams
    from .networks import UNet

    out = Path(out)
    hp = tiny_hparams(spatial_dim)
    config = config_from_hparams(hp, out / "dcface_3x3.ckpt")
    with atomic.atomic_dir(out, overwrite=overwrite, what="tiny DCFace model directory") as tmp, \
            torch.random.fork_rng(devices=[]):
        ckpt = {"epoch": 0, "global_step": 0, "pytorch-lightning_version": "1.7.1", "hparams_name": "kwargs",
                "state_dict": tiny_state(config, hp, seed), "hyper_parameters": hp}
        torch.save(ckpt, tmp / "dcface_3x3.ckpt")
        torch.manual_seed(seed + 2)
        stage1 = UNet(STAGE1_TINY).state_dict()
        gen = torch.Generator().manual_seed(seed + 3)
        torch.save({k: v + 0.02 * torch.randn(v.shape, generator=gen) for k, v in stage1.items()}, tmp / STAGE1)
        (tmp / TINY_MARKER).write_text(json.dumps({"untrained": True, "pipeline_check": True, "seed": seed,
                                                   "spatial_dim": spatial_dim, "made_by": "facebench dcface make-tiny",
                                                   "note": "random weights: a pipeline check, not a face model"}))
    return out
