"""The Arc2Face model directory: which files it must hold, and loading each component strictly.

The release ships two components (``arc2face/``: a diffusers ``UNet2DConditionModel``; ``encoder/``: a
transformers ``CLIPTextModel`` saved as ``pytorch_model.bin``) and takes the rest from Stable Diffusion
1.5 (``vae/``, ``tokenizer/``, ``scheduler/``). facebench expects the five folders side by side (or the SD
1.5 ones under ``base``). Each model is built from its ``config.json`` and its weights are loaded with
``strict`` key checking: safetensors where the folder has them, else ``torch.load(weights_only=True)``,
so no pickle code ever runs. Key layouts of other library versions are reconciled explicitly (the
``text_model.`` prefix of transformers 4 checkpoints, SD 1.5's pre-0.14 VAE attention names).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facebench.errors import DataError, MissingFileError, first_line
from facebench.safe_load import load_state_dict, state_dict_mismatch

#: Weight files each model folder may hold, preferred first.
UNET_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
ENCODER_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
#: Files of a CLIP tokenizer: the vocabulary and merges (as SD 1.5 ships it) or one tokenizer.json.
TOKENIZER_FILES = (("vocab.json", "merges.txt"), ("tokenizer.json",))

#: Folder -> (what it is, its config file, its weight files) of the model folders.
MODEL_FOLDERS = {
    "arc2face": ("Arc2Face UNet", "config.json", UNET_WEIGHTS),
    "encoder": ("Arc2Face CLIP text encoder", "config.json", ENCODER_WEIGHTS),
    "vae": ("SD 1.5 VAE", "config.json", UNET_WEIGHTS),
}
RELEASE_FOLDERS = ("arc2face", "encoder")  # the rest comes from SD 1.5 (``base``)


@dataclass(frozen=True)
class ModelFiles:
    """The resolved files of one Arc2Face model directory."""

    root: Path
    unet_config: Path
    unet_weights: Path
    encoder_config: Path
    encoder_weights: Path
    vae_config: Path
    vae_weights: Path
    tokenizer: Path
    scheduler_config: Path


def _folder_root(folder: str, root: Path, base: Path) -> Path:
    return (root if folder in RELEASE_FOLDERS else base) / folder


def resolve_files(root: str | os.PathLike, base: str | os.PathLike | None = None) -> ModelFiles:
    """Check the layout; every missing file is named in one error line."""
    root = Path(root).expanduser()
    base = Path(base).expanduser() if base else root
    if not root.is_dir():
        raise MissingFileError(root, "Arc2Face model directory",
                               "expected folders arc2face/, encoder/, vae/, tokenizer/, scheduler/; "
                               "facebench arc2face make-tiny DIR writes a tiny one")
    found: dict[str, Path] = {}
    missing: list[str] = []
    for folder, (_, config, weights) in MODEL_FOLDERS.items():
        where = _folder_root(folder, root, base)
        if (where / config).is_file():
            found[f"{folder}_config"] = where / config
        else:
            missing.append(str(where / config))
        hit = next((where / w for w in weights if (where / w).is_file()), None)
        if hit is None:
            missing.append(f"{where / weights[0]} (or {weights[1]})")
        else:
            found[f"{folder}_weights"] = hit
    tok = base / "tokenizer"
    if not any(all((tok / f).is_file() for f in files) for files in TOKENIZER_FILES):
        missing += [str(tok / f) for f in TOKENIZER_FILES[0] if not (tok / f).is_file()]
    if not (base / "scheduler" / "scheduler_config.json").is_file():
        missing.append(str(base / "scheduler" / "scheduler_config.json"))
    if missing:
        raise MissingFileError(root, "Arc2Face model files", f"missing {', '.join(missing)}; the release's arc2face/ and encoder/ folders "
                               "plus Stable Diffusion 1.5's vae/, tokenizer/ and scheduler/ belong in this directory")
    return ModelFiles(root=root, unet_config=found["arc2face_config"], unet_weights=found["arc2face_weights"],
                      encoder_config=found["encoder_config"], encoder_weights=found["encoder_weights"],
                      vae_config=found["vae_config"], vae_weights=found["vae_weights"], tokenizer=tok,
                      scheduler_config=base / "scheduler" / "scheduler_config.json")


def read_config(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON: {exc.msg}", f"line {exc.lineno}") from None
    if not isinstance(data, dict):
        raise DataError(path, f"expected a JSON object, found {type(data).__name__}")
    return data


def read_weights(path: Path, what: str) -> dict[str, Any]:
    """A state dict from a safetensors file, or from a ``.bin`` through ``torch.load(weights_only=True)``."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise DataError(path, f"cannot read {what}: {first_line(exc)}") from None
    return load_state_dict(path, what=what)


def _deprecated_attention_renames(module: Any) -> dict[str, str]:
    """Old -> new key suffixes of attention blocks diffusers marks as converted from its pre-0.14 layout
    (SD 1.5's VAE checkpoint still uses ``query``/``key``/``value``/``proj_attn``)."""
    renames = {}
    for name, sub in module.named_modules():
        if getattr(sub, "_from_deprecated_attn_block", False):
            for old, new in (("query", "to_q"), ("key", "to_k"), ("value", "to_v"), ("proj_attn", "to_out.0")):
                for kind in ("weight", "bias"):
                    renames[f"{name}.{old}.{kind}"] = f"{name}.{new}.{kind}"
    return renames


def _reconcile(module: Any, state: dict[str, Any], prefix: str = "text_model.") -> dict[str, Any]:
    """``state`` renamed to ``module``'s key layout where it differs only by a known convention."""
    expected = module.state_dict()
    renames = _deprecated_attention_renames(module)
    state = {renames.get(k, k): v for k, v in state.items()}
    exp_prefixed = all(k.startswith(prefix) for k in expected)
    got_prefixed = bool(state) and all(k.startswith(prefix) for k in state)
    if exp_prefixed and not got_prefixed:
        state = {prefix + k: v for k, v in state.items()}
    elif got_prefixed and not exp_prefixed:
        state = {k[len(prefix):]: v for k, v in state.items()}
    # Buffers that older library versions saved and newer ones keep out of the state dict (position_ids).
    unsaved = {n for n, _ in module.named_buffers()} - set(expected)
    return {k: v for k, v in state.items() if k not in unsaved}


def load_strict(module: Any, path: Path, what: str) -> Any:
    """Load ``path`` into ``module``; any missing, unexpected or wrong-shape key is a one-line error."""
    state = _reconcile(module, read_weights(path, what))
    problem = state_dict_mismatch(module.state_dict(), state)
    if problem:
        raise DataError(path, f"{what} does not fit its config.json: {problem}")
    module.load_state_dict(state, strict=True)
    return module.eval().requires_grad_(False)


def build_unet(files: ModelFiles) -> Any:
    from diffusers import UNet2DConditionModel

    return load_strict(UNet2DConditionModel.from_config(read_config(files.unet_config)), files.unet_weights,
                       "Arc2Face UNet")


def build_vae(files: ModelFiles) -> Any:
    from diffusers import AutoencoderKL

    return load_strict(AutoencoderKL.from_config(read_config(files.vae_config)), files.vae_weights, "SD 1.5 VAE")


def build_encoder(files: ModelFiles) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig.from_dict(read_config(files.encoder_config))
    return load_strict(CLIPTextModel(config), files.encoder_weights, "Arc2Face CLIP text encoder")


def build_tokenizer(files: ModelFiles) -> Any:
    from transformers import CLIPTokenizer

    try:
        return CLIPTokenizer.from_pretrained(str(files.tokenizer), local_files_only=True)
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise DataError(files.tokenizer, f"cannot load the CLIP tokenizer: {first_line(exc)}") from None


def scheduler_config(files: ModelFiles) -> dict[str, Any]:
    return read_config(files.scheduler_config)
