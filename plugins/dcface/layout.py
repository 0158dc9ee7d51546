"""The release's files, read as data: the Lightning checkpoints ``dcface_3x3.ckpt`` / ``dcface_5x5.ckpt``
and the first-stage DDPM ``ffhq_10m.pt``, checked and loaded strictly.

A checkpoint's ``hyper_parameters`` say how the networks were built (``unet_config.model_params``, the
condition, the recognition backbones, ``external_mapping.spatial_dim``, the noise schedule); they are read
through :func:`config_from_hparams` (each value typed and range-checked; a condition other than the
released one is refused). The ``state_dict`` is the whole Lightning module as saved: ``model.*`` and its
EMA copy ``ema_model.averaged_model.*`` (the UNet; sampling uses the EMA copy when ``use_ema``, as the
release does), ``label_mapping.*`` (the identity embedder with its IR-50), ``external_mapping.*`` (the
style mapping), ``recognition_model.*`` (the frozen style IR-50 and its class centres) and
``recognition_model_eval.*`` (an IR-101 used only for training metrics). Every key is compared (name,
shape, floating point or integer) with the layout those hyper-parameters give, built on the meta device,
before any tensor is read: a missing, unexpected or misshapen key is one error naming it. Only the tensors
sampling needs are then read.

Files: a model directory laid out as the release's ``pretrained_models/`` (``dcface_3x3.ckpt``,
``dcface_5x5.ckpt``, ``ffhq_10m.pt``); the generator takes the directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from facebench.errors import DataError, MissingFileError
from facebench.safe_load import load_state_dict, shown_name, state_dict_mismatch, type_word

from .checkpoint import LightningCheckpoint, read_checkpoint
from .networks import IR_UNITS, DCFace, DCFaceConfig, IRBackbone, IRConfig, UNet, UNetConfig

CHECKPOINTS = ("dcface_3x3.ckpt", "dcface_5x5.ckpt")
STAGE1 = "ffhq_10m.pt"
CONDITION = ("crossatt_and_stylemod", "patchstat_spatial_and_image")

#: The first stage as ``unconditional_sampling.sh`` runs it (ILVR's ADM on FFHQ 256 from P2 weighting).
STAGE1_CONFIG = UNetConfig(model_channels=128, channel_mult=(1, 1, 2, 2, 4, 4), num_res_blocks=1,
                           attention_ds=(16,), num_heads=4, num_head_channels=64, use_scale_shift_norm=True,
                           resblock_updown=True, out_channels=6, skip_downsample_level=None, conditioned=False)
STAGE1_SIZE = 256
STAGE1_RESPACING = 100


def _get(hp: dict[str, Any], path: Path, key: str, types: type | tuple[type, ...], default: Any = None) -> Any:
    value: Any = hp
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        if default is not None:
            return default
        raise DataError(path, f"hyper_parameters has no {key}: not a DCFace checkpoint")
    wanted = types if isinstance(types, tuple) else (types,)
    words = " or ".join(type_word(t) for t in wanted)
    if isinstance(value, bool) and bool not in wanted:
        raise DataError(path, f"hyper_parameters {key} must be {words}, found true or false")
    if not isinstance(value, types):
        raise DataError(path, f"hyper_parameters {key} must be {words}, found {type_word(value)}")
    return value


def _int(hp: dict[str, Any], path: Path, key: str, low: int, high: int, default: int | None = None) -> int:
    value = _get(hp, path, key, int, default)
    if not low <= value <= high:
        raise DataError(path, f"hyper_parameters {key} = {value} is outside {low}..{high}")
    return value


def _ir(hp: dict[str, Any], path: Path, key: str, size: int) -> IRConfig:
    name = _get(hp, path, key, str)
    if name not in IR_UNITS:
        raise DataError(path, f"hyper_parameters {key} = {shown_name(name)[:40]}: the release builds ir_50 or ir_101")
    return IRConfig(units=IR_UNITS[name], input_size=size)


def _ints(text: str, path: Path, key: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise DataError(path, f"hyper_parameters {key} = {shown_name(text)[:40]} is not a list of integers") from None
    if not values or any(not 1 <= v <= 4096 for v in values) or len(values) > 12:
        raise DataError(path, f"hyper_parameters {key} = {shown_name(text)[:40]} is out of range")
    return values


def config_from_hparams(hp: dict[str, Any], path: Path) -> DCFaceConfig:
    """The networks' sizes from a checkpoint's hyper-parameters, as the release's ``Trainer`` builds them."""
    ctype = _get(hp, path, "unet_config.params.condition_type", str)
    csource = _get(hp, path, "unet_config.params.condition_source", str)
    if (ctype, csource) != CONDITION:
        raise DataError(path, f"condition {shown_name(ctype)[:40]}/{shown_name(csource)[:40]} is not the released "
                              f"DCFace's ({CONDITION[0]}/{CONDITION[1]})")
    for key, wanted in (("label_mapping.version", "v4"), ("external_mapping.version", "v4_dropout")):
        found = _get(hp, path, key, str)
        if found != wanted:
            raise DataError(path, f"hyper_parameters {key} = {shown_name(found)[:40]}, the release's is {wanted}")
    if _get(hp, path, "unet_config.params.cross_attention_dim", int) != 512:
        raise DataError(path, "hyper_parameters unet_config.params.cross_attention_dim must be 512 (the release "
                              "refuses any other)")
    mp = "unet_config.model_params"
    size = _int(hp, path, f"{mp}.image_size", 16, 1024)
    tiny = _tiny_ir(hp, path)
    if size != (tiny.input_size if tiny else 112):
        raise DataError(path, f"hyper_parameters {mp}.image_size = {size}: the release's recognition backbones "
                              "take 112 px")
    mult_text = _get(hp, path, f"{mp}.channel_mult", str)
    mult = _ints(mult_text, path, f"{mp}.channel_mult") if mult_text else (1, 1, 2, 2, 4, 4)
    attention = _ints(_get(hp, path, f"{mp}.attention_resolutions", str), path, f"{mp}.attention_resolutions")
    for key in ("learn_sigma", "use_scale_shift_norm", "resblock_updown", "use_new_attention_order", "class_cond"):
        _get(hp, path, f"{mp}.{key}", bool)
    if _get(hp, path, f"{mp}.use_new_attention_order", bool) or _get(hp, path, f"{mp}.class_cond", bool):
        raise DataError(path, f"hyper_parameters {mp}: use_new_attention_order and class_cond are not the release's")
    unet = UNetConfig(
        model_channels=_int(hp, path, f"{mp}.num_channels", 32, 1024), channel_mult=mult,
        num_res_blocks=_int(hp, path, f"{mp}.num_res_blocks", 1, 8), attention_ds=attention,
        num_heads=_int(hp, path, f"{mp}.num_heads", 1, 64),
        num_head_channels=_int(hp, path, f"{mp}.num_head_channels", -1, 1024),
        num_heads_upsample=_int(hp, path, f"{mp}.num_heads_upsample", -1, 64),
        use_scale_shift_norm=_get(hp, path, f"{mp}.use_scale_shift_norm", bool),
        resblock_updown=_get(hp, path, f"{mp}.resblock_updown", bool),
        out_channels=6 if _get(hp, path, f"{mp}.learn_sigma", bool) else 3)
    irs = [_ir(hp, path, key, size) for key in ("label_mapping.recognition_config.backbone", "recognition.backbone",
                                                 "recognition_eval.backbone")]
    if tiny is not None:
        irs = [tiny] * 3
    return DCFaceConfig(
        unet=unet, identity_ir=irs[0], style_ir=irs[1], eval_ir=irs[2],
        identity_block=_block(hp, path, "label_mapping.recognition_config.return_spatial"),
        style_block=_block(hp, path, "recognition.return_spatial"),
        spatial_dim=_int(hp, path, "external_mapping.spatial_dim", 1, 64),
        style_channels=_int(hp, path, "external_mapping.out_channel", 8, 4096),
        image_size=size,
        num_train_timesteps=_int(hp, path, "sampler.num_train_timesteps", 2, 100000),
        beta_start=_float(hp, path, "sampler.beta_start"), beta_end=_float(hp, path, "sampler.beta_end"),
        use_ema=_get(hp, path, "use_ema", bool))


def _tiny_ir(hp: dict[str, Any], path: Path) -> IRConfig | None:
    """The IR sizes of facebench's tiny checkpoint (``facebench_tiny``, see :mod:`.tiny`), checked."""
    from .tiny import tiny_ir

    try:
        ir = tiny_ir(hp)
    except (KeyError, TypeError, ValueError):
        raise DataError(path, "hyper_parameters facebench_tiny must hold units, widths, stem, feature_dim, "
                              "input_size") from None
    if ir is not None and not (len(ir.units) == len(ir.widths) == 4 and all(1 <= v <= 64 for v in ir.units)
                               and all(8 <= v <= 1024 for v in (*ir.widths, ir.stem, ir.feature_dim))
                               and 16 <= ir.input_size <= 512):
        raise DataError(path, "hyper_parameters facebench_tiny is out of range")
    return ir


def _float(hp: dict[str, Any], path: Path, key: str) -> float:
    value = float(_get(hp, path, key, (int, float)))
    if not 0 < value < 1:
        raise DataError(path, f"hyper_parameters {key} = {value} is outside (0, 1)")
    return value


def _block(hp: dict[str, Any], path: Path, key: str) -> int:
    value = _get(hp, path, key, list)
    if len(value) != 1 or type(value[0]) is not int or not 0 <= value[0] < 64:
        raise DataError(path, f"hyper_parameters {key} must name one backbone block, found "
                              f"{shown_name(repr(value))[:60]}")
    return value[0]


# ----------------------------------------------------------------------------------------------- layout


def _meta_state(module_factory: Any) -> dict[str, Any]:
    import torch

    with torch.device("meta"):
        return module_factory().state_dict()


def expected_layout(config: DCFaceConfig, hp: dict[str, Any]) -> dict[str, Any]:
    """The Lightning module's ``state_dict`` (meta tensors) as the release's ``Trainer`` saves it for
    ``config``; the class-centre tables are (rows, feature) with rows from the file (checked apart)."""
    import torch

    unet = _meta_state(lambda: UNet(config.unet))
    ir = _meta_state(lambda: IRBackbone(config.style_ir))
    layout: dict[str, Any] = {}
    for prefix in ("model.", "ema_model.averaged_model."):
        layout.update({prefix + k: v for k, v in unet.items()})
    layout.update({"recognition_model.backbone." + k: v for k, v in ir.items()})
    same = _same_recognition(hp)
    if same:
        layout.update({"recognition_model_eval.backbone." + k: v for k, v in ir.items()})
    else:
        layout.update({"recognition_model_eval.backbone." + k: v
                       for k, v in _meta_state(lambda: IRBackbone(config.eval_ir)).items()})
    for part, key in (("recognition_model", "recognition"), ("recognition_model_eval", "recognition_eval")):
        centres = ("recognition" if same else key)
        if (hp.get(centres) or {}).get("center_path"):
            layout[f"{part}.center.weight"] = torch.empty((0, config.style_ir.feature_dim), device="meta")
    model = _meta_state(lambda: DCFace(config))
    layout.update({k: v for k, v in model.items() if k.startswith(("label_mapping.", "external_mapping."))})
    return layout


def _same_recognition(hp: dict[str, Any]) -> bool:
    """The release's ``same_config(recognition, recognition_eval, skip_keys=[return_spatial, center_path])``:
    then the eval model is the same module (saved under both names)."""
    a, b = hp.get("recognition") or {}, hp.get("recognition_eval") or {}
    return all(a.get(k) == b.get(k) for k in a if k not in ("return_spatial", "center_path"))


def layout_problem(expected: dict[str, Any], declared: dict[str, Any]) -> str | None:
    """Missing / unexpected / wrong-shape keys (centre tables: any row count), then a tensor of the wrong
    kind (an integer tensor where the model has floats)."""
    shapes = {k: v for k, v in declared.items()}
    for key, tensor in expected.items():
        if key.endswith("center.weight") and key in declared:
            shape = tuple(declared[key].shape)
            if len(shape) == 2 and shape[1] == tensor.shape[1] and shape[0] >= 1:
                shapes[key] = tensor  # rows are the training set's classes: any count
    problem = state_dict_mismatch(expected, shapes)
    if problem:
        return problem
    for key, tensor in expected.items():
        if declared[key].is_float != tensor.is_floating_point():
            return f"tensor {key} is stored as {declared[key].dtype}, the model needs " + \
                   ("floating point" if tensor.is_floating_point() else "an integer type")
    return None


def check_layout(ckpt: LightningCheckpoint, config: DCFaceConfig) -> None:
    problem = layout_problem(expected_layout(config, ckpt.hparams), ckpt.infos)
    if problem:
        raise DataError(ckpt.path, f"not the layout its hyper_parameters describe (the release's DCFace): {problem}")


def load_dcface(path: str | os.PathLike, device: Any = "cpu") -> tuple[DCFace, LightningCheckpoint]:
    """The sampling networks of a release-layout checkpoint, every key checked first, loaded strictly."""
    ckpt = read_checkpoint(path)
    config = config_from_hparams(ckpt.hparams, ckpt.path)
    try:
        check_layout(ckpt, config)
    except ValueError as exc:  # a size the networks cannot be built with (heads, widths)
        raise DataError(ckpt.path, f"hyper_parameters describe no buildable DCFace: {exc}") from None
    import torch

    with torch.device("meta"):  # allocated by loading: random initialisation of 138 M parameters is slow
        model = DCFace(config)
    model = model.to_empty(device="cpu")
    unet = "ema_model.averaged_model." if config.use_ema else "model."
    style_keys = set(model.style_encoder.state_dict())
    parts = {"unet": ckpt.tensors(unet), "label_mapping": ckpt.tensors("label_mapping."),
             "external_mapping": ckpt.tensors("external_mapping."),
             "style_encoder": {k: v for k, v in ckpt.tensors("recognition_model.").items() if k in style_keys}}
    for name, state in parts.items():
        _finite(ckpt.path, name, state)
        getattr(model, name).load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False).to(device), ckpt


def _finite(path: Path, what: str, state: dict[str, Any]) -> None:
    import torch

    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise DataError(path, f"tensor {what}.{key} holds NaN or infinite values")


def load_stage1(path: str | os.PathLike, config: UNetConfig = STAGE1_CONFIG, device: Any = "cpu") -> UNet:
    """The first-stage unconditional DDPM (``ffhq_10m.pt``: a plain state dict), strictly."""
    import torch

    path = Path(path)
    state = load_state_dict(path, what="DCFace first-stage DDPM")
    expected = _meta_state(lambda: UNet(config))
    problem = state_dict_mismatch(expected, state)
    if problem:
        raise DataError(path, f"not the first-stage DDPM's layout (ADM, 256 px, as unconditional_sampling.sh "
                              f"builds it): {problem}")
    for key, value in state.items():
        if not value.is_floating_point() or not bool(torch.isfinite(value).all()):
            raise DataError(path, f"tensor {key} is not floating point, or holds NaN or infinite values")
    with torch.device("meta"):
        model = UNet(config)
    model = model.to_empty(device="cpu")
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False).to(device)


def resolve_files(root: str | os.PathLike, checkpoint: str, *, stage1: bool) -> tuple[Path, Path | None]:
    """(checkpoint, first-stage file or None) inside the model directory; missing ones named in one line."""
    from facebench.safe_load import resolves_inside

    root = Path(root).expanduser()
    if not root.is_dir():
        raise MissingFileError(root, "DCFace model directory",
                               f"expected the release's pretrained_models/ folder ({', '.join(CHECKPOINTS)}, {STAGE1})")
    if Path(checkpoint).name != checkpoint or checkpoint in ("", ".", ".."):
        raise DataError(root, f"checkpoint must be a file name inside the model directory, got {shown_name(checkpoint)}")
    wanted = [root / checkpoint] + ([root / STAGE1] if stage1 else [])
    missing = [str(p) for p in wanted if not p.is_file()]
    if missing:
        raise MissingFileError(root, "DCFace model files", f"missing {', '.join(missing)}")
    for p in wanted:
        if not resolves_inside(p, root):
            raise DataError(p, f"a symbolic link leading outside the model directory {root}")
    return wanted[0], (wanted[1] if stage1 else None)
