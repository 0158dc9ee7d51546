"""The Arc2Face model directory: which files it must hold, and loading each component as data.

The release ships two components (``arc2face/``: a diffusers ``UNet2DConditionModel``; ``encoder/``: a
transformers ``CLIPTextModel`` saved as ``pytorch_model.bin``) and takes the rest from Stable Diffusion
1.5 (``vae/``, ``tokenizer/``, ``scheduler/``). facebench expects the five folders side by side (or the SD
1.5 ones under ``base``).

A model folder may come from anyone, so nothing in it is an instruction. Every config is read as plain
JSON through the allow-lists of :mod:`.configs` (keys asking for code are refused, hub names and other
keys dropped) and each model is built from those values, never by ``from_pretrained`` on the folder; the
CLIP tokenizer is built from its vocabulary and merges. Each model is first built on the meta device and
compared with the weights file's header (names, shapes, float or integer), so a config asking for a huge
model or weights of the wrong kind are refused before memory is allocated; the weights are then loaded
with ``strict`` key checking (``torch.load(weights_only=True)`` for a ``.bin``: no pickle code runs). Key
layouts of other library versions are reconciled explicitly (the ``text_model.`` prefix of transformers 4
checkpoints, SD 1.5's pre-0.14 VAE attention names). Every file read must lie inside the folder (a link
leading out is refused), and the hub libraries' offline switches are on while loading (:func:`offline`).
Library validation errors on a config are one line naming the file.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from facebench.errors import DataError, MissingFileError, first_line
from facebench.safe_load import expect, read_json, read_text, resolves_inside, state_dict_mismatch

from . import configs
from .tensors import dtype_mismatch, stored_tensors

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
#: ``model_max_length`` transformers writes for a tokenizer without a limit: the encoder's context applies.
UNSET_LENGTH = int(1e30)


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
    for folder in (*MODEL_FOLDERS, "tokenizer", "scheduler"):
        _confined(_folder_root(folder, root, base), root if folder in RELEASE_FOLDERS else base)
    return ModelFiles(root=root, unet_config=found["arc2face_config"], unet_weights=found["arc2face_weights"],
                      encoder_config=found["encoder_config"], encoder_weights=found["encoder_weights"],
                      vae_config=found["vae_config"], vae_weights=found["vae_weights"], tokenizer=tok,
                      scheduler_config=base / "scheduler" / "scheduler_config.json")


def _confined(folder: Path, top: Path) -> None:
    """``folder`` and every entry in it lie inside ``top`` once symbolic links are followed: a model folder
    holds its own files, and a link leading out (to another user's files, to ``/``) is refused."""
    def check(path: Path) -> None:
        if not resolves_inside(path, top):
            raise DataError(path, f"a symbolic link leading outside the model directory {top} (to "
                                  f"{os.path.realpath(path)}); a model folder must hold its own files")

    check(folder)  # before listing it: it may lead to / or to a folder of millions of files
    for path in sorted(folder.iterdir()):
        check(path)


def read_weights(path: Path, what: str) -> dict[str, Any]:
    """A state dict from a safetensors file (its header checked first), or from a ``.bin`` through
    ``torch.load(weights_only=True)``."""
    state = stored_tensors(path, what)[1]
    return state if state is not None else _load_safetensors(path, what)


def _load_safetensors(path: Path, what: str) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise DataError(path, f"cannot read {what}: {first_line(exc)}") from None


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


def library_errors() -> tuple[type[BaseException], ...]:
    """What diffusers, transformers, tokenizers and torch raise on a config they cannot build."""
    errors: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError, IndexError, AttributeError,
                                               AssertionError, ZeroDivisionError, OverflowError, RuntimeError)
    try:
        from huggingface_hub.errors import StrictDataclassError  # transformers 5 validates configs with it
    except ImportError:  # pragma: no cover - older huggingface_hub
        return errors
    return (*errors, StrictDataclassError)


def library_reason(exc: BaseException) -> str:
    """The line of a library's error that says what is wrong (a validation wrapper's cause, not its header)."""
    cause = exc.__cause__
    return first_line(cause if cause is not None and type(exc).__module__.startswith("huggingface_hub") else exc)


def _construct(factory: Callable[[], Any], config: Path, what: str, device: str) -> Any:
    import torch

    try:
        with torch.device(device):
            return factory()
    except library_errors() as exc:
        raise DataError(config, f"cannot build the {what} from it: {library_reason(exc)}") from None


def load_strict(factory: Callable[[], Any], config: Path, weights: Path, what: str) -> Any:
    """The module ``factory`` builds, with the weights of ``weights`` loaded strictly.

    The module is first built on the meta device (no memory) and compared with what the weights file
    declares: any missing, unexpected or wrong-shape key, or a tensor of the wrong kind (int8 for a float
    parameter), is a one-line error before the real module is allocated."""
    expected_module = _construct(factory, config, what, "meta")
    infos, state = stored_tensors(weights, what)
    expected = expected_module.state_dict()
    declared = _reconcile(expected_module, infos)
    problem = state_dict_mismatch(expected, declared) or dtype_mismatch(expected, declared)
    if problem:
        raise DataError(weights, f"{what} does not fit its config.json: {problem}")
    module = _construct(factory, config, what, "cpu")
    state = _reconcile(module, state if state is not None else _load_safetensors(weights, what))
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DataError(weights, f"cannot load {what}: {first_line(exc)}") from None
    return module.eval().requires_grad_(False)


def build_unet(files: ModelFiles) -> Any:
    from diffusers import UNet2DConditionModel

    cfg = configs.read_config(files.unet_config, configs.UNET_KEYS, "Arc2Face UNet config")
    if "sample_size" not in cfg:  # diffusers leaves it None, yet it sizes every generated batch
        raise DataError(files.unet_config, "sample_size is missing: the latent side of the UNet must be stated")
    return load_strict(lambda: UNet2DConditionModel(**cfg), files.unet_config, files.unet_weights, "Arc2Face UNet")


def build_vae(files: ModelFiles) -> Any:
    from diffusers import AutoencoderKL

    cfg = configs.read_config(files.vae_config, configs.VAE_KEYS, "SD 1.5 VAE config")
    return load_strict(lambda: AutoencoderKL(**cfg), files.vae_config, files.vae_weights, "SD 1.5 VAE")


def build_encoder(files: ModelFiles) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = configs.read_config(files.encoder_config, configs.ENCODER_KEYS, "Arc2Face CLIP text encoder config")
    return load_strict(lambda: CLIPTextModel(CLIPTextConfig(**cfg)), files.encoder_config, files.encoder_weights,
                       "Arc2Face CLIP text encoder")


# -------------------------------------------------------------------------------------------- tokenizer

def _vocabulary(folder: Path) -> tuple[Path, dict[str, int], list[tuple[str, str]]]:
    """``(file, vocab, merges)`` of the CLIP BPE: ``vocab.json`` + ``merges.txt``, else ``tokenizer.json``'s
    model (its normalizer and pre-tokenizer are dropped: CLIP's own are always used)."""
    if (folder / "vocab.json").is_file():
        vocab_file = folder / "vocab.json"
        vocab = read_json(vocab_file, what="CLIP vocabulary", limit=64 << 20)
        merges_file = folder / "merges.txt"
        merges = []
        for number, line in enumerate(read_text(merges_file, what="CLIP merges", limit=64 << 20).split("\n"), 1):
            if not line or (number == 1 and line.startswith("#version")):
                continue
            merges.append(_merge(merges_file, line, f"line {number}"))
    else:
        vocab_file = folder / "tokenizer.json"
        model = expect(vocab_file, read_json(vocab_file, what="tokenizer", limit=256 << 20).get("model"), dict,
                       "model")
        if model.get("type", "BPE") != "BPE":
            raise DataError(vocab_file, "model.type must be BPE (CLIP's tokenizer), "
                                        f"found {configs.shown(model['type'])}")
        vocab = expect(vocab_file, model.get("vocab"), dict, "model.vocab")
        merges = [_merge(vocab_file, " ".join(m) if isinstance(m, list) and all(isinstance(t, str) for t in m)
                         else m, f"model.merges[{i}]")
                  for i, m in enumerate(expect(vocab_file, model.get("merges", []), list, "model.merges"))]
    for token, index in vocab.items():
        configs.Int(0, (1 << 31) - 1)(vocab_file, f"the id of token {configs.shown(token)}", index)
    return vocab_file, vocab, merges


def _merge(path: Path, line: Any, where: str) -> tuple[str, str]:
    parts = line.split(" ") if isinstance(line, str) else None
    if parts is None or len(parts) != 2 or not all(parts):
        raise DataError(path, "a merge must be two tokens separated by one space", where)
    return parts[0], parts[1]


def _clip_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]], **settings: Any) -> Any:
    """transformers' CLIP tokenizer from vocabulary and merges given as data (transformers 5), or from
    files facebench writes itself from them (transformers 4 reads only files)."""
    import inspect

    from transformers import CLIPTokenizer

    if "vocab" in inspect.signature(CLIPTokenizer.__init__).parameters:
        return CLIPTokenizer(vocab=vocab, merges=merges, **settings)
    with tempfile.TemporaryDirectory(prefix="facebench-clip-") as tmp:  # pragma: no cover - transformers 4
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(map(" ".join, merges)) + "\n",
                                              encoding="utf-8")
        return CLIPTokenizer(vocab_file=str(Path(tmp) / "vocab.json"), merges_file=str(Path(tmp) / "merges.txt"),
                             **settings)


def build_tokenizer(files: ModelFiles, encoder: Any) -> Any:
    """CLIP's tokenizer from the folder's vocabulary and merges, with the special tokens and context length
    of ``tokenizer_config.json`` / ``special_tokens_map.json`` (allow-listed) that ``encoder`` can embed."""
    settings: dict[str, Any] = {}
    for name in ("tokenizer_config.json", "special_tokens_map.json"):  # the map overrides, as in transformers
        if (files.tokenizer / name).is_file():
            settings.update(configs.read_config(files.tokenizer / name, configs.TOKENIZER_KEYS,
                                                "tokenizer config"))
    tokens = {k: v["content"] if isinstance(v, dict) else v
              for k, v in settings.items() if k in configs.SPECIAL_TOKENS}
    positions, vocab_size = int(encoder.config.max_position_embeddings), int(encoder.config.vocab_size)
    length = settings.get("model_max_length", UNSET_LENGTH)
    if length >= UNSET_LENGTH:
        length = positions
    elif length > positions:
        raise DataError(files.tokenizer / "tokenizer_config.json", f"model_max_length {length} exceeds the "
                        f"encoder's max_position_embeddings {positions} ({files.encoder_config})")
    vocab_file, vocab, merges = _vocabulary(files.tokenizer)
    try:
        tokenizer = _clip_tokenizer(vocab, merges, model_max_length=length, **tokens)
    except Exception as exc:  # noqa: BLE001 - the tokenizers library raises a bare Exception on bad data
        raise DataError(files.tokenizer, "cannot build the CLIP tokenizer from it: "
                                         f"{library_reason(exc)}") from None
    ids = [*vocab.values(), *(tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens)]
    if max(ids, default=0) >= vocab_size:
        raise DataError(vocab_file, f"token id {max(ids)} is beyond the encoder's vocab_size {vocab_size} "
                                    f"({files.encoder_config})")
    return tokenizer


def scheduler_config(files: ModelFiles) -> dict[str, Any]:
    """The noise schedule of ``scheduler_config.json`` (allow-listed); the sampler itself is the user's
    ``scheduler`` option, built from it."""
    cfg = configs.read_config(files.scheduler_config, configs.SCHEDULER_KEYS, "scheduler config")
    betas, steps = cfg.get("trained_betas"), cfg.get("num_train_timesteps", 1000)
    if betas is not None and len(betas) != steps:
        raise DataError(files.scheduler_config, f"trained_betas holds {len(betas)} values for "
                                                f"num_train_timesteps {steps}")
    return cfg


def check_fit(files: ModelFiles, unet: Any, vae: Any, encoder: Any) -> None:
    """The three models fit each other: the UNet attends to the encoder's states and denoises the VAE's
    latents (a mismatch would fail mid-generation, after the run folder exists)."""
    width, hidden = int(unet.config.cross_attention_dim), int(encoder.config.hidden_size)
    if width != hidden:
        raise DataError(files.unet_config, f"cross_attention_dim {width} does not match the encoder's hidden_size "
                                           f"{hidden} ({files.encoder_config})")
    latent = int(vae.config.latent_channels)
    if not int(unet.config.in_channels) == int(unet.config.out_channels) == latent:
        raise DataError(files.unet_config, f"in_channels {unet.config.in_channels} and out_channels "
                                           f"{unet.config.out_channels} must equal the VAE's latent_channels "
                                           f"{latent} ({files.vae_config})")


# ---------------------------------------------------------------------------------------------- offline

#: Environment switches that keep the hub libraries off the network and quiet.
OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DIFFUSERS_OFFLINE",
               "HF_HUB_DISABLE_TELEMETRY", "DISABLE_TELEMETRY")
#: The same switches as the libraries hold them once imported (read from the environment at import time).
OFFLINE_CONSTANTS = (("huggingface_hub.constants", "HF_HUB_OFFLINE"),
                     ("huggingface_hub.constants", "HF_HUB_DISABLE_TELEMETRY"),
                     ("transformers.utils.hub", "_is_offline_mode"),  # transformers 4
                     ("diffusers.utils.constants", "HF_HUB_OFFLINE"))  # older diffusers


@contextmanager
def offline() -> Iterator[None]:
    """The hub libraries' offline and no-telemetry switches on while a model folder is loaded, restored
    after. Loading never asks for the network anyway (no ``from_pretrained``, no hub key reaches a
    library); this keeps a library's own defaults from trying."""
    import importlib

    importlib.import_module("huggingface_hub.constants")  # read the user's settings before changing them
    saved_env = {name: os.environ.get(name) for name in OFFLINE_ENV}
    loaded = ((sys.modules.get(name), attr) for name, attr in OFFLINE_CONSTANTS)
    patched = [(module, attr, getattr(module, attr)) for module, attr in loaded if hasattr(module, attr)]
    os.environ.update(dict.fromkeys(OFFLINE_ENV, "1"))
    for module, attr, _ in patched:
        setattr(module, attr, True)
    try:
        yield
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for module, attr, value in patched:
            setattr(module, attr, value)

