"""Hostile DCFace model folders and style banks given to ``facebench generate --generator dcface_tiny``.

One tiny model folder is made with ``facebench dcface make-tiny`` per module and copied per case; each case
corrupts one thing: the Lightning checkpoint's archive (not a zip, truncated, no ``data.pkl``, a storage
shorter than its tensors, big-endian), its object tree (no ``state_dict``, a pickled payload, hyper-
parameters of another model or of no buildable size), a tensor (NaN, integers where the model has floats,
a key missing or extra), the first stage's file, a link leading out of the folder, or a style-bank photo.
The user sees one ``error:`` line naming the file and no run folder; a pickled payload is never called
(the checkpoint's object tree is read by facebench's own unpickler).
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

from facebench.cli import create_cli

from .conftest import Payload, bomb_png, copy_of, invoke, made_tiny, refused, succeeded

CKPT = "dcface_3x3.ckpt"
STAGE1 = "ffhq_10m.pt"
QUICK = ("--generator-option", "steps=1", "--generator-option", "stage1_steps=2")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return made_tiny(tmp_path_factory, "dcface")


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy") / "toy"
    succeeded(invoke(create_cli(), ["toyfaces", "build", root, "--identities", "2", "--images-per-identity", "1",
                                    "--size", "56", "--pairs", "20", "--packs", "toy_lfw", "--workers", "1"]))
    return root / "train"


@pytest.fixture
def model(tiny, tmp_path) -> Path:
    return copy_of(tiny, tmp_path)


def generate(model: Path, bank: Path, out: Path, *extra: str):
    return invoke(create_cli(), ["generate", "--generator", "dcface_tiny", "--weights", model, "--n-ids", "1",
                                 "--images-per-id", "1", "--generator-option", f"style_bank={bank}", "--out", out,
                                 "--device", "cpu", *QUICK, *extra])


def edit(path: Path, change) -> None:
    """Load the checkpoint as data, change it, save it back (torch.save, as the release's files are)."""
    ckpt = torch.load(path, weights_only=True)
    change(ckpt)
    torch.save(ckpt, path)


def rezip(path: Path, change) -> None:
    """Rewrite the zip archive member by member: ``change(name, data)`` returns new bytes or None to drop."""
    with zipfile.ZipFile(path) as src:
        members = [(n, src.read(n)) for n in src.namelist()]
    with zipfile.ZipFile(path, "w") as dst:
        for name, data in members:
            data = change(name, data)
            if data is not None:
                dst.writestr(name, data)


def _first_storage(name: str, data: bytes) -> bytes | None:
    return data[: len(data) // 2] if name.endswith("/data/0") else data


def _hp(path: str, value):
    def change(ckpt):
        node = ckpt["hyper_parameters"]
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return change


def _state(change_state):
    return lambda ckpt: change_state(ckpt["state_dict"])


UNET_W = "ema_model.averaged_model.input_blocks.0.0.weight"

CASES = {
    # (what is done to model/CKPT, words the error line must hold)
    "not a zip": (lambda p: p.write_bytes(b"\x00" * 4096), "not a readable zip archive"),
    "truncated": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 3]), "zip"),
    "no data.pkl": (lambda p: rezip(p, lambda n, d: None if n.endswith("data.pkl") else d), "data.pkl"),
    "short storage": (lambda p: rezip(p, _first_storage), "storage"),
    "big-endian": (lambda p: rezip(p, lambda n, d: b"big" if n.endswith("byteorder") else d), "big-endian"),
    "no state_dict": (lambda p: edit(p, lambda c: c.pop("state_dict")), "state_dict"),
    "state_dict a list": (lambda p: edit(p, lambda c: c.__setitem__("state_dict", [1, 2])), "state_dict"),
    "no hyper_parameters": (lambda p: edit(p, lambda c: c.pop("hyper_parameters")), "hyper_parameters"),
    "other condition": (lambda p: edit(p, _hp("unet_config.params.condition_type", "cross_attn")),
                        "not the released DCFace"),
    "channel_mult not ints": (lambda p: edit(p, _hp("unet_config.model_params.channel_mult", "1,x")),
                              "channel_mult"),
    "unbuildable heads": (lambda p: edit(p, _hp("unet_config.model_params.num_head_channels", 48)),
                          "no buildable DCFace"),
    "ir_18 backbone": (lambda p: edit(p, _hp("recognition.backbone", "ir_18")), "ir_50 or ir_101"),
    "boolean as number": (lambda p: edit(p, _hp("unet_config.model_params.num_res_blocks", True)), "num_res_blocks"),
    "NaN weight": (lambda p: edit(p, _state(lambda s: s[UNET_W].fill_(float("nan")))), "NaN"),
    "integer weight": (lambda p: edit(p, _state(lambda s: s.__setitem__(UNET_W, s[UNET_W].long()))), "floating point"),
    "missing key": (lambda p: edit(p, _state(lambda s: s.pop(UNET_W))), "missing"),
    "extra key": (lambda p: edit(p, _state(lambda s: s.__setitem__("model.extra", torch.ones(1)))), "unexpected"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_checkpoints_are_refused_in_one_line(model, bank, tmp_path, case):
    damage, words = CASES[case]
    damage(model / CKPT)
    out = tmp_path / "run"
    line = refused(generate(model, bank, out), model / CKPT)
    assert words in line, line
    assert not out.exists()


def test_a_pickled_payload_in_the_hyper_parameters_is_never_called(model, bank, tmp_path, marker):
    """An object of any class in the object tree is an inert record: the run goes on, nothing runs."""
    edit_raw = torch.load(model / CKPT, weights_only=True)
    edit_raw["hyper_parameters"]["datamodule"] = Payload(marker)
    edit_raw["callbacks"] = {"x": Payload(marker)}
    torch.save(edit_raw, model / CKPT)
    succeeded(generate(model, bank, tmp_path / "run"))


@pytest.mark.parametrize("case", ["garbage", "a checkpoint", "other layout", "pickle payload"])
def test_hostile_first_stage_files_are_refused_in_one_line(model, bank, tmp_path, marker, case):
    path = model / STAGE1
    if case == "garbage":
        path.write_bytes(os.urandom(2048))
    elif case == "a checkpoint":
        shutil.copy(model / CKPT, path)
    elif case == "other layout":
        state = torch.load(path, weights_only=True)
        state.pop(next(iter(state)))
        torch.save(state, path)
    else:
        buffer = io.BytesIO()
        torch.save({"w": Payload(marker)}, buffer)
        path.write_bytes(buffer.getvalue())
    out = tmp_path / "run"
    refused(generate(model, bank, out), path)
    assert not out.exists()


def test_links_out_of_the_model_folder_are_refused(model, bank, tmp_path):
    outside = tmp_path / "elsewhere.ckpt"
    shutil.move(model / CKPT, outside)
    (model / CKPT).symlink_to(outside)
    refused(generate(model, bank, tmp_path / "run"), model / CKPT)


@pytest.mark.parametrize("case", ["bomb", "text", "gray 8 px"])
def test_hostile_style_bank_photos_are_refused_in_one_line(tiny, bank, tmp_path, case):
    copy = tmp_path / "bank"
    shutil.copytree(bank, copy)
    bad = copy / "0000000" / "zz.png"
    if case == "bomb":
        bad.write_bytes(bomb_png())
    elif case == "text":
        bad.write_text("not an image")
    else:
        from PIL import Image

        Image.new("L", (8, 8)).save(bad)
    out = tmp_path / "run"
    refused(generate(tiny, copy, out), bad)
    assert not out.exists()
