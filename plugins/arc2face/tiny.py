"""``facebench arc2face make-tiny``: a tiny random-weight model directory in the release's layout.

The folders are laid out the way the libraries write them (``save_pretrained``'s files for the UNet
and VAE, SD 1.5's own scheduler file; the encoder's ``pytorch_model.bin`` in the transformers-4 key layout the release ships), so
the tiny model goes through exactly the loading path of the real one, offline. The CLIP tokenizer is
written here from a vocabulary that holds only the tokens of Arc2Face's prompt and the empty prompt
(anything else maps to the unknown token, as in CLIP): no hub download. The weights are random: images
from it are a pipeline check, never faces (``facebench_tiny.json`` says so, and generation records it).
Every file is written under the user's umask (as any file they make).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .configs import SD15_SCHEDULER, tiny_configs

PROMPT = "photo of a id person"
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
TINY_MARKER = "facebench_tiny.json"
TINY_CONTEXT = 16  # tokens: the tiny encoder's max_position_embeddings and its tokenizer's model_max_length

def tiny_vocabulary(words: list[str]) -> tuple[dict[str, int], list[str]]:
    """A CLIP byte-level BPE vocabulary and merges that spell ``words`` (``</w>`` ends a word)."""
    vocab: dict[str, int] = {}
    merges: list[str] = []

    def add(token: str) -> None:
        vocab.setdefault(token, len(vocab))

    chars = sorted(set("".join(words)))
    for c in chars:
        add(c)
    for c in chars:
        add(c + "</w>")
    for word in words:
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:  # merge left to right until the word is one token
            merges.append(f"{parts[0]} {parts[1]}")
            add(parts[0] + parts[1])
            parts = [parts[0] + parts[1]] + parts[2:]
    add(BOS)
    add(EOS)
    return vocab, list(dict.fromkeys(merges))


def write_tokenizer(out: Path, max_length: int) -> dict[str, int]:
    """The four files of SD 1.5's ``tokenizer/`` folder, for the tiny vocabulary."""
    vocab, merges = tiny_vocabulary(PROMPT.split())
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    (out / "tokenizer_config.json").write_text(json.dumps(
        {**special, "add_prefix_space": False, "do_lower_case": True, "errors": "replace",
         "model_max_length": max_length, "tokenizer_class": "CLIPTokenizer"}, indent=2))
    return vocab


def write_safetensors(state: dict[str, Any], path: Path) -> None:
    """A state dict as safetensors (with the ``format: pt`` metadata the libraries write), written like any
    file the user makes: safetensors' own ``save_file`` leaves it ``0600`` whatever the umask."""
    from safetensors.torch import save

    path.write_bytes(save({k: v.detach().contiguous() for k, v in state.items()}, metadata={"format": "pt"}))


def save_diffusers(model: Any, out: Path) -> None:
    """``config.json`` and ``diffusion_pytorch_model.safetensors``, as ``save_pretrained`` lays them out."""
    model.save_config(str(out))
    write_safetensors(model.state_dict(), out / "diffusion_pytorch_model.safetensors")


def save_encoder(encoder: Any, out: Path, fmt: str = "bin") -> None:
    """The text encoder as the release ships it: ``config.json`` + ``pytorch_model.bin`` with the
    transformers-4 keys (``text_model.`` prefix), or ``model.safetensors`` as the installed version saves."""
    import torch

    out.mkdir(parents=True, exist_ok=True)
    encoder.config.architectures = ["CLIPTextModel"]
    encoder.config.save_pretrained(str(out))
    if fmt == "safetensors":
        write_safetensors(encoder.state_dict(), out / "model.safetensors")
        return
    state = {(k if k.startswith("text_model.") else f"text_model.{k}"): v.detach().clone().contiguous()
             for k, v in encoder.state_dict().items()}
    torch.save(state, out / "pytorch_model.bin")


def write_model_dir(out: str | os.PathLike, configs: dict[str, dict[str, Any]], *, seed: int = 0,
                    encoder_format: str = "bin", tokenizer_length: int = 77, overwrite: bool = False,
                    marker: dict[str, Any] | None = None) -> Path:
    """A random-weight model directory in the release layout for ``configs`` (``unet``, ``vae``,
    ``encoder``), written atomically; ``marker`` (when given) becomes ``facebench_tiny.json``."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from facebench import atomic

    if encoder_format not in ("bin", "safetensors"):
        raise ValueError(f"encoder_format must be 'bin' or 'safetensors', got {encoder_format!r}")
    out = Path(out)
    with atomic.atomic_dir(out, overwrite=overwrite) as tmp:
        write_tokenizer(tmp / "tokenizer", max_length=tokenizer_length)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            unet = UNet2DConditionModel(**configs["unet"])
            vae = AutoencoderKL(**configs["vae"])
            encoder = CLIPTextModel(CLIPTextConfig(**configs["encoder"]))
        save_diffusers(unet, tmp / "arc2face")
        save_diffusers(vae, tmp / "vae")
        save_encoder(encoder, tmp / "encoder", encoder_format)
        (tmp / "scheduler").mkdir()
        (tmp / "scheduler" / "scheduler_config.json").write_text(json.dumps(SD15_SCHEDULER, indent=2))
        if marker is not None:
            (tmp / TINY_MARKER).write_text(json.dumps(marker, indent=2))
    return out


def make_tiny(out: str | os.PathLike, *, seed: int = 0, size: int = 56, encoder_format: str = "bin",
              overwrite: bool = False) -> Path:
    """Write a tiny random-weight Arc2Face directory at ``out`` (atomically) and return its path."""
    vocab, _ = tiny_vocabulary(PROMPT.split())
    marker = {"untrained": True, "pipeline_check": True, "seed": seed, "size": size,
              "made_by": "facebench arc2face make-tiny",
              "note": "random weights: images from this model are a pipeline check, not faces"}
    return write_model_dir(out, tiny_configs(size, vocab, BOS, EOS), seed=seed, encoder_format=encoder_format,
                           tokenizer_length=TINY_CONTEXT, overwrite=overwrite, marker=marker)
