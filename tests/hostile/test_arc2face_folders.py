"""Hostile Arc2Face model folders given to ``facebench generate --generator arc2face --weights DIR``.

One tiny model folder is made with ``facebench arc2face make-tiny`` per module and copied per case; each
case corrupts one thing: a config file (bytes, JSON, types, sizes, keys asking for code or naming a hub
repository), a weights file (truncated, a header that lies, the wrong dtype or shape, a missing or extra
tensor, a pickle instead of tensors), the tokenizer's files, or a symbolic link leading out of the folder.
The user sees one ``error:`` line naming the file and no run folder, or, for a key facebench drops, the
same images as the clean folder gives. No case may reach the network (``no_network``) or run a pickle.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import torch  # noqa: E402
from safetensors.torch import load_file, save  # noqa: E402

from facebench.cli import create_cli  # noqa: E402

from .conftest import (  # noqa: E402
    Payload,
    copy_of,
    files_under,
    identity_vectors,
    invoke,
    made_tiny,
    refused,
    succeeded,
)

UNET_W = "arc2face/diffusion_pytorch_model.safetensors"
VAE_W = "vae/diffusion_pytorch_model.safetensors"
ENC_W = "encoder/pytorch_model.bin"
SCHED = "scheduler/scheduler_config.json"
TOK_CFG = "tokenizer/tokenizer_config.json"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return made_tiny(tmp_path_factory, "arc2face")


@pytest.fixture(scope="module")
def ids(tmp_path_factory) -> Path:
    return identity_vectors(tmp_path_factory, 1)


def generate(model: Path, ids: Path, out: Path, *options: str):
    return invoke(create_cli(), ["generate", "--generator", "arc2face", "--weights", model, "--ids", ids,
                                 "--images-per-id", "1", "--out", out, "--device", "cpu",
                                 "--set", 'generation.image_encoding="png"',
                                 *(a for o in (options or ("steps=1",)) for a in ("--generator-option", o))])


def images(out: Path) -> dict[str, bytes]:
    found = {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "dataset.folder").rglob("*.png"))}
    assert found, f"no images under {out}"
    return found


@pytest.fixture(scope="module")
def clean(tiny, ids, tmp_path_factory) -> dict[str, bytes]:
    """The images the untouched folder gives: what a folder with a dropped key must give too."""
    out = tmp_path_factory.mktemp("clean") / "run"
    succeeded(generate(tiny, ids, out))
    return images(out)


@pytest.fixture
def model(tiny, tmp_path) -> Path:
    return copy_of(tiny, tmp_path)


# -------------------------------------------------------------------------------------- corruptions

def edit(name: str, **changes):
    """Set keys of one JSON config."""
    def apply(model: Path, tmp: Path) -> None:
        path = model / name
        data = json.loads(path.read_text())
        data.update(changes)
        path.write_text(json.dumps(data))
    return apply


def raw(name: str, data: bytes):
    def apply(model: Path, tmp: Path) -> None:
        (model / name).write_bytes(data)
    return apply


def tensors(name: str, change):
    """Rewrite a safetensors file after ``change(state)`` edits its tensors."""
    def apply(model: Path, tmp: Path) -> None:
        state = load_file(str(model / name))
        change(state)
        (model / name).write_bytes(save(state))
    return apply


def header(name: str, change):
    """Rewrite a safetensors file's JSON header (the data left as it is)."""
    def apply(model: Path, tmp: Path) -> None:
        data = (model / name).read_bytes()
        n = int.from_bytes(data[:8], "little")
        head = json.loads(data[8:8 + n])
        change(head)
        text = json.dumps(head).encode()
        (model / name).write_bytes(len(text).to_bytes(8, "little") + text + data[8 + n:])
    return apply


def first_float(state) -> str:
    return next(k for k, v in sorted(state.items()) if v.is_floating_point() and v.ndim >= 1)


def as_int8(state):
    key = first_float(state)
    state[key] = state[key].to(torch.int8)


def _truncate(model: Path, tmp: Path) -> None:
    path = model / UNET_W
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _header_not_utf8(model: Path, tmp: Path) -> None:
    path = model / VAE_W
    data = bytearray(path.read_bytes())
    data[9] = 0xFF  # inside the JSON header
    path.write_bytes(bytes(data))


def _encoder_int8(model: Path, tmp: Path) -> None:
    state = torch.load(model / ENC_W, weights_only=True)
    key = first_float(state)
    state[key] = state[key].to(torch.int8)
    torch.save(state, model / ENC_W)


def _encoder_payload(model: Path, tmp: Path) -> None:
    torch.save({"text_model.x": Payload(tmp / "PWNED")}, model / ENC_W)


def _unet_payload(model: Path, tmp: Path) -> None:
    (model / UNET_W).unlink()
    torch.save(Payload(tmp / "PWNED"), model / "arc2face" / "diffusion_pytorch_model.bin")


def _tokenizer_merge_line(model: Path, tmp: Path) -> None:
    path = model / "tokenizer" / "merges.txt"
    path.write_text(path.read_text() + "a b c\n")


def _vocab_beyond_encoder(model: Path, tmp: Path) -> None:
    path = model / "tokenizer" / "vocab.json"
    vocab = json.loads(path.read_text())
    vocab["zzz</w>"] = 10**6
    path.write_text(json.dumps(vocab))


def _link_out(name: str):
    """``name`` replaced by a link to a (valid) copy of it outside the model folder."""
    def apply(model: Path, tmp: Path) -> None:
        outside = tmp / "outside" / Path(name).name
        outside.parent.mkdir(exist_ok=True)
        shutil.move(str(model / name), outside)
        (model / name).symlink_to(outside, target_is_directory=outside.is_dir())
    return apply


def _link_to_root(model: Path, tmp: Path) -> None:
    (model / "evil").symlink_to("/", target_is_directory=True)


def _link_loop(model: Path, tmp: Path) -> None:
    (model / "vae" / "loop").symlink_to("..", target_is_directory=True)


def _link_inside(model: Path, tmp: Path) -> None:
    shutil.move(str(model / "vae" / "config.json"), model / "vae_config.json")
    (model / "vae" / "config.json").symlink_to(Path("..") / "vae_config.json")


KERNEL = "kernels-community/flash-attn"

REFUSED = [
    # config files: bytes, JSON, top-level type
    pytest.param(raw("encoder/config.json", b'{"hidden_size": 512, "x": "\xff"}'), ["encoder/config.json", "UTF-8"],
                 id="encoder-config-not-utf8"),
    pytest.param(raw("arc2face/config.json", b'{"sample_size": 14,'), ["arc2face/config.json", "invalid JSON"],
                 id="unet-config-invalid-json"),
    pytest.param(raw("vae/config.json", b"[1, 2]"), ["vae/config.json", "a list"], id="vae-config-list"),
    pytest.param(raw(SCHED, b'"PNDMScheduler"'), [SCHED, "a string"], id="scheduler-config-string"),
    # keys that ask a library for code: refused before any library sees them (no network either)
    pytest.param(edit("encoder/config.json", attn_implementation=KERNEL), ["encoder/config.json",
                 "attn_implementation"], id="encoder-attn-implementation-hub-kernel"),
    pytest.param(edit("encoder/config.json", use_kernels=True), ["encoder/config.json", "use_kernels"],
                 id="encoder-use-kernels"),
    pytest.param(edit("encoder/config.json", auto_map={"AutoModel": "evil.EvilModel"}, trust_remote_code=True),
                 ["encoder/config.json", "refused key"], id="encoder-auto-map-remote-code"),
    pytest.param(edit("arc2face/config.json", kernel_config={"attention": KERNEL}),
                 ["arc2face/config.json", "kernel_config"], id="unet-kernel-config"),
    pytest.param(edit("vae/config.json", quantization_config={"quant_method": "bitsandbytes"}),
                 ["vae/config.json", "quantization_config"], id="vae-quantization-config"),
    pytest.param(edit(TOK_CFG, auto_map={"AutoTokenizer": ["evil.Tokenizer", None]}), [TOK_CFG, "auto_map"],
                 id="tokenizer-auto-map"),
    # field types and sizes
    pytest.param(edit("encoder/config.json", hidden_size="512"), ["encoder/config.json", "hidden_size must be an "
                 "integer, found a string"], id="encoder-hidden-size-string"),
    pytest.param(edit("encoder/config.json", hidden_size=10**12), ["encoder/config.json", "hidden_size must be "
                 "between"], id="encoder-hidden-size-huge"),
    pytest.param(edit("arc2face/config.json", block_out_channels=[-16, 32]),
                 ["arc2face/config.json", "block_out_channels[0]"], id="unet-negative-channels"),
    pytest.param(edit("arc2face/config.json", layers_per_block=True), ["arc2face/config.json", "layers_per_block"],
                 id="unet-layers-bool"),
    pytest.param(edit("arc2face/config.json", down_block_types="CrossAttnDownBlock2D"),
                 ["arc2face/config.json", "down_block_types must be a list"], id="unet-block-types-not-list"),
    pytest.param(edit("arc2face/config.json", down_block_types=["EvilBlock2D", "DownBlock2D"]),
                 ["arc2face/config.json", "down_block_types[0]"], id="unet-unknown-block"),
    pytest.param(edit("arc2face/config.json", sample_size=10**9), ["arc2face/config.json", "sample_size"],
                 id="unet-sample-size-huge"),
    pytest.param(lambda m, t: (m / "arc2face/config.json").write_text(json.dumps(
        {k: v for k, v in json.loads((m / "arc2face/config.json").read_text()).items() if k != "sample_size"})),
                 ["arc2face/config.json", "sample_size is missing"], id="unet-sample-size-missing"),
    pytest.param(edit("arc2face/config.json", time_cond_proj_dim=256), ["arc2face/config.json",
                 "time_cond_proj_dim 256 is not supported"], id="unet-guidance-distilled"),
    pytest.param(edit("vae/config.json", shift_factor=0.5), ["vae/config.json", "shift_factor"],
                 id="vae-shift-factor"),
    # a config the library rejects: its message, on one line naming the file
    pytest.param(edit("vae/config.json", norm_num_groups=3), ["vae/config.json", "cannot build the SD 1.5 VAE"],
                 id="vae-groups-do-not-divide"),
    pytest.param(edit("encoder/config.json", num_attention_heads=7),
                 ["encoder/config.json", "cannot build the Arc2Face CLIP text encoder"], id="encoder-heads-do-not-divide"),
    pytest.param(edit("arc2face/config.json", up_block_types=["UpBlock2D"]),
                 ["arc2face/config.json", "cannot build the Arc2Face UNet"], id="unet-block-lists-differ"),
    # a config asking for a huge model: refused against the weights' header, before allocating it
    pytest.param(edit("arc2face/config.json", block_out_channels=[60000, 60000]),
                 [UNET_W, "does not fit its config.json"], id="unet-4tb-config"),
    pytest.param(edit("encoder/config.json", vocab_size=1 << 24, intermediate_size=1 << 18),
                 [ENC_W, "does not fit its config.json"], id="encoder-huge-config"),
    # scheduler
    pytest.param(edit(SCHED, num_train_timesteps="1000"), [SCHED, "num_train_timesteps must be an integer"],
                 id="scheduler-timesteps-string"),
    pytest.param(edit(SCHED, num_train_timesteps=0), [SCHED, "num_train_timesteps must be between"],
                 id="scheduler-timesteps-zero"),
    pytest.param(edit(SCHED, beta_schedule="evil"), [SCHED, "beta_schedule must be one of"],
                 id="scheduler-unknown-schedule"),
    pytest.param(raw(SCHED, b'{"beta_end": NaN}'), [SCHED, "beta_end must be between"], id="scheduler-nan"),
    pytest.param(edit(SCHED, trained_betas=[0.1, 0.2]), [SCHED, "trained_betas holds 2 values"],
                 id="scheduler-betas-length"),
    pytest.param(edit(SCHED, custom_pipeline="evil/hub-repo"), [SCHED, "custom_pipeline"],
                 id="scheduler-custom-pipeline"),
    # weights: safetensors headers that lie, files that are cut, tensors that do not fit
    pytest.param(_truncate, [UNET_W, "cannot read Arc2Face UNet"], id="unet-weights-truncated"),
    pytest.param(raw(UNET_W, b""), [UNET_W, "not a safetensors file"], id="unet-weights-empty"),
    pytest.param(raw(VAE_W, (1 << 62).to_bytes(8, "little") + b"{}"), [VAE_W, "header length"],
                 id="vae-header-length-huge"),
    pytest.param(_header_not_utf8, [VAE_W, "header is not UTF-8"], id="vae-header-not-utf8"),
    pytest.param(raw(VAE_W, (5006).to_bytes(8, "little") + b'{"a": ' + b"9" * 5000 + b"}"),
                 [VAE_W, "header is not valid JSON"], id="vae-header-integer-of-5000-digits"),
    pytest.param(header(VAE_W, lambda h: next(v for k, v in h.items() if k != "__metadata__")
                        .update(data_offsets=[0, 1 << 40])), [VAE_W, "data_offsets"], id="vae-offsets-beyond-file"),
    pytest.param(header(VAE_W, lambda h: next(v for k, v in h.items() if k != "__metadata__").update(dtype=[])),
                 [VAE_W, "unknown dtype"], id="vae-dtype-a-list"),
    pytest.param(header(VAE_W, lambda h: next(v for k, v in h.items() if k != "__metadata__")
                        .update(shape=[1 << 20, 1 << 20])), [VAE_W, "needs"], id="vae-header-shape-lies"),
    pytest.param(tensors(VAE_W, as_int8), [VAE_W, "is stored as I8"], id="vae-weights-int8"),
    pytest.param(_encoder_int8, [ENC_W, "is stored as int8"], id="encoder-weights-int8"),
    pytest.param(tensors(VAE_W, lambda s: s.pop(first_float(s))), [VAE_W, "1 missing"], id="vae-missing-tensor"),
    pytest.param(tensors(UNET_W, lambda s: s.update(evil=torch.zeros(3))), [UNET_W, "1 unexpected (evil)"],
                 id="unet-extra-tensor"),
    pytest.param(tensors(UNET_W, lambda s: s.update({first_float(s): torch.zeros(7, 3)})),
                 [UNET_W, "shape mismatch"], id="unet-wrong-shape"),
    # pickles instead of tensors: refused, never run
    pytest.param(_encoder_payload, [ENC_W, "holds a Python object"], id="encoder-pickle-payload"),
    pytest.param(_unet_payload, ["arc2face/diffusion_pytorch_model.bin", "holds a Python object"],
                 id="unet-pickle-bin"),
    # tokenizer files
    pytest.param(raw("tokenizer/vocab.json", b'["a", "b"]'), ["tokenizer/vocab.json", "a list"],
                 id="tokenizer-vocab-list"),
    pytest.param(raw("tokenizer/vocab.json", b'{"a": "0"}'), ["tokenizer/vocab.json", "must be an integer"],
                 id="tokenizer-vocab-id-string"),
    pytest.param(raw("tokenizer/merges.txt", b"#version: 0.2\np h\xff\n"), ["tokenizer/merges.txt", "UTF-8"],
                 id="tokenizer-merges-not-utf8"),
    pytest.param(_tokenizer_merge_line, ["tokenizer/merges.txt", "two tokens", "line "], id="tokenizer-merge-line"),
    pytest.param(edit(TOK_CFG, bos_token=12), [TOK_CFG, "bos_token must be a string"], id="tokenizer-bos-number"),
    pytest.param(edit(TOK_CFG, model_max_length=10**6), [TOK_CFG, "max_position_embeddings"],
                 id="tokenizer-context-beyond-encoder"),
    pytest.param(raw("tokenizer/special_tokens_map.json", b"[]"), ["tokenizer/special_tokens_map.json", "a list"],
                 id="tokenizer-special-map-list"),
    pytest.param(raw("tokenizer/merges.txt", b"#version: 0.2\nq z\n"), ["tokenizer", "cannot build the CLIP "
                 "tokenizer", "out of vocabulary"], id="tokenizer-merge-of-unknown-tokens"),
    pytest.param(raw("tokenizer/vocab.json", b'{"a</w>": 0}'), ["tokenizer", "cannot build the CLIP tokenizer"],
                 id="tokenizer-vocab-without-special-tokens"),
    pytest.param(_vocab_beyond_encoder, ["tokenizer/vocab.json", "vocab_size"], id="tokenizer-id-beyond-encoder"),
    # symbolic links out of the folder: loading and hashing refuse them
    pytest.param(_link_out("encoder/config.json"), ["encoder/config.json", "leading outside"],
                 id="link-config-outside"),
    pytest.param(_link_out(VAE_W), [VAE_W, "leading outside"], id="link-weights-outside"),
    pytest.param(_link_out("scheduler"), ["scheduler", "leading outside"], id="link-folder-outside"),
    pytest.param(_link_to_root, ["evil", "leading outside"], id="link-to-root-not-hashed"),
    pytest.param(_link_loop, ["vae/loop", "loop"], id="link-loop"),
]


@pytest.mark.parametrize(("corrupt", "names"), REFUSED)
def test_hostile_folder_is_refused_in_one_line(model, ids, tmp_path, corrupt, names, marker, no_network):
    corrupt(model, tmp_path)
    before = files_under(tmp_path)
    out = tmp_path / "run"
    line = refused(generate(model, ids, out), *names)
    assert str(model) in line  # the file is named by its path
    assert not out.exists(), "a refused folder left a run folder behind"
    assert files_under(tmp_path) == before, "something was written outside --out"


@pytest.mark.parametrize("options", [("scheduler=ddim", "steps=3"), ("scheduler=lcm",)], ids=["ddim", "lcm"])
def test_a_schedule_the_sampler_cannot_step_is_refused_before_the_run(model, ids, tmp_path, options):
    edit(SCHED, num_train_timesteps=2)(model, tmp_path)
    out = tmp_path / "run"
    refused(generate(model, ids, out, *options), SCHED, f"the {options[0].split('=')[1]} scheduler cannot take")
    assert not out.exists()


DROPPED = [
    pytest.param(edit("encoder/config.json", _name_or_path="openai/clip-vit-large-patch14", torch_dtype="float16",
                      transformers_version="9.9.9", model_type="evil", _attn_implementation_autoset=True),
                 id="encoder-hub-name-and-metadata"),
    pytest.param(edit("arc2face/config.json", _name_or_path="runwayml/stable-diffusion-v1-5", _class_name="EvilUNet",
                      extra={"auto_map": "evil.Model"}), id="unet-hub-name-and-unknown-object"),
    pytest.param(edit(SCHED, _class_name="EvilScheduler", _diffusers_version="99.0", skip_prk_steps=False,
                      solver_order=3), id="scheduler-class-and-unused-keys"),
    pytest.param(edit(TOK_CFG, name_or_path="openai/clip-vit-large-patch14", tokenizer_class="EvilTokenizer",
                      special_tokens_map_file="/etc/passwd",
                      bos_token={"__type": "AddedToken", "content": "<|startoftext|>", "lstrip": False}),
                 id="tokenizer-hub-name-class-and-added-token"),
    pytest.param(_link_inside, id="link-inside-the-folder"),
]


@pytest.mark.parametrize("corrupt", DROPPED)
def test_dropped_keys_change_nothing(model, ids, tmp_path, clean, corrupt):
    corrupt(model, tmp_path)
    out = tmp_path / "run"
    succeeded(generate(model, ids, out))
    assert images(out) == clean


def test_tokenizer_json_alone_gives_the_same_tokens(model, ids, tmp_path, clean):
    """The tokenizer.json layout: only its BPE vocabulary and merges are read (normalizers, pre-tokenizers
    and any other object in it are dropped: CLIP's own are used)."""
    tok = model / "tokenizer"
    vocab = json.loads((tok / "vocab.json").read_text())
    merges = [line.split(" ") for line in (tok / "merges.txt").read_text().splitlines()[1:] if line]
    (tok / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE", "vocab": vocab, "merges": merges},
                                                    "normalizer": {"type": "Evil"}, "auto_map": "evil"}))
    (tok / "vocab.json").unlink()
    (tok / "merges.txt").unlink()
    out = tmp_path / "run"
    succeeded(generate(model, ids, out))
    assert images(out) == clean


def test_the_offline_switches_are_set_while_loading_and_restored(monkeypatch, tmp_path, no_network):
    """Inside ``offline()`` a hub download is refused by the library itself, without a connection attempt;
    the user's environment is as it was afterwards."""
    import huggingface_hub
    from facebench_plugins.arc2face.layout import OFFLINE_ENV, offline
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "0")
    before = huggingface_hub.constants.HF_HUB_OFFLINE
    with offline():
        assert all(os.environ[name] == "1" for name in OFFLINE_ENV)
        with pytest.raises(LocalEntryNotFoundError):
            huggingface_hub.hf_hub_download("kernels-community/flash-attn", "config.json",
                                            cache_dir=str(tmp_path / "hub"))
    assert not no_network  # offline: the library did not even try
    assert os.environ["HF_HUB_DISABLE_TELEMETRY"] == "0" and "HF_HUB_OFFLINE" not in os.environ
    assert huggingface_hub.constants.HF_HUB_OFFLINE is before


@pytest.mark.parametrize(("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_make_tiny_follows_the_umask(tmp_path, umask, file_mode, dir_mode):
    old = os.umask(umask)
    try:
        succeeded(invoke(create_cli(), ["arc2face", "make-tiny", tmp_path / "m", "--encoder-format", "safetensors"]))
    finally:
        os.umask(old)
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "m",
                                                                                     *(tmp_path / "m").rglob("*")]}
    assert "m/vae/diffusion_pytorch_model.safetensors" in modes and "m/encoder/model.safetensors" in modes
    wrong = {p: oct(m) for p, m in modes.items() if m != (dir_mode if (tmp_path / p).is_dir() else file_mode)}
    assert not wrong, wrong
