"""Hostile IDiff-Face / UIFace model folders and options given to ``facebench generate --generator
idiff_face_tiny --weights DIR``.

One tiny folder is made with ``facebench idiff-face make-tiny`` per module and copied per case; each case
corrupts one thing: a weights file (empty, truncated, not a checkpoint, a pickle payload, a list, integer or
NaN tensors, keys under two prefixes, broken schedule tables), a symbolic link leading out of the folder, or
an option (a checkpoint name with a path, a sampler option of another preset, a negatives bank of the wrong
width, a schedule too short to be valid). The user sees one ``error:`` line naming the file or option and
no run folder; no pickle runs, nothing reaches the network.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from facebench.cli import create_cli

from .conftest import Payload, copy_of, identity_vectors, invoke, made_tiny, refused

CKPT = "ema_averaged_model_0.ckpt"
DEC = "first_stage_decoder_state_dict.pt"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return made_tiny(tmp_path_factory, "idiff-face")


@pytest.fixture(scope="module")
def ids(tmp_path_factory) -> Path:
    return identity_vectors(tmp_path_factory, 2)


@pytest.fixture
def model(tiny, tmp_path) -> Path:
    return copy_of(tiny, tmp_path)


def generate(model: Path, ids: Path, out: Path, *options: str):
    args = ["generate", "--generator", "idiff_face_tiny", "--weights", str(model), "--ids", str(ids),
            "--images-per-id", "1", "--out", str(out), "--device", "cpu", "--format", "folder"]
    for option in options:
        args += ["--generator-option", option]
    return invoke(create_cli(), args)


def state(model: Path, name: str = CKPT) -> dict:
    return torch.load(model / name, weights_only=True)


def change(name: str, fn):
    def apply(model: Path, tmp: Path) -> None:
        s = state(model, name)
        fn(s)
        torch.save(s, model / name)
    return apply


def raw(name: str, data: bytes):
    def apply(model: Path, tmp: Path) -> None:
        (model / name).write_bytes(data)
    return apply


def _truncate(model: Path, tmp: Path) -> None:
    data = (model / CKPT).read_bytes()
    (model / CKPT).write_bytes(data[: len(data) // 2])


def _payload(model: Path, tmp: Path) -> None:
    (model / CKPT).write_bytes(pickle.dumps({"eps_model.final.bias": Payload(tmp / "PWNED")}))


def _link_out(model: Path, tmp: Path) -> None:
    outside = tmp / "outside.pt"
    (model / DEC).rename(outside)
    (model / DEC).symlink_to(outside)


def _two_prefixes(s: dict) -> None:
    s["module.eps_model.final.bias"] = s.pop("eps_model.final.bias")


def _int_tensor(s: dict) -> None:
    s["eps_model.final.bias"] = torch.zeros(3, dtype=torch.int64)


def _inf(s: dict) -> None:
    s["eps_model.final.bias"] = torch.tensor([0.0, float("inf"), 0.0])


def _betas_out_of_range(s: dict) -> None:
    s["betas"] = s["betas"] * 10


def _tables_of_two_lengths(s: dict) -> None:
    s["sigmas"] = s["sigmas"][:10].clone()


CASES = [
    pytest.param(raw(CKPT, b""), [CKPT], id="empty-checkpoint"),
    pytest.param(_truncate, [CKPT], id="truncated-checkpoint"),
    pytest.param(raw(CKPT, b"not a checkpoint at all"), [CKPT], id="text-checkpoint"),
    pytest.param(_payload, [CKPT], id="pickle-payload"),
    pytest.param(lambda m, t: torch.save([1, 2], m / CKPT), [CKPT, "expected a state dict"], id="list-checkpoint"),
    pytest.param(change(CKPT, _two_prefixes), [CKPT, "module.eps_model.final.bias"], id="two-prefixes"),
    pytest.param(change(CKPT, _int_tensor), [CKPT, "expected floats", "final.bias"], id="int-tensor"),
    pytest.param(change(CKPT, _inf), [CKPT, "NaN or infinite"], id="inf-tensor"),
    pytest.param(change(CKPT, _betas_out_of_range), [CKPT, "betas must lie in (0, 1)"], id="betas-range"),
    pytest.param(change(CKPT, _tables_of_two_lengths), [CKPT, "1-d of one length"], id="tables-lengths"),
    pytest.param(change(DEC, lambda s: s.pop("post_quant_conv.bias")), [DEC, "1 missing (post_quant_conv.bias)"],
                 id="decoder-missing-key"),
    pytest.param(raw(DEC, b"\x00" * 64), [DEC], id="decoder-garbage"),
    pytest.param(_link_out, [DEC, "links out of the model folder"], id="decoder-link-out"),
]


@pytest.mark.parametrize("corrupt, names", CASES)
def test_hostile_folder_is_refused_in_one_line(model, ids, tmp_path, corrupt, names, marker, no_network):
    corrupt(model, tmp_path)
    out = tmp_path / "out"
    line = refused(generate(model, ids, out))
    for name in names:
        assert name in line, line
    assert not out.exists()


@pytest.mark.parametrize("options, names", [
    (("checkpoint=../x.ckpt",), ["checkpoint must be a file name inside"]),
    (("checkpoint=other.ckpt",), ["other.ckpt"]),
    (("sampler=ddim",), ["sampler must be one of idiff-face, uiface, negfacediff"]),
    (("steps=10",), ["takes every one of the T steps"]),
    (("sampler=uiface", "steps=2000"), ["steps 2000 exceed the schedule's T = 1000"]),
    (("switch=10",), ["switch applies to the uiface sampler only"]),
    (("sampler=negfacediff",), ["needs negatives=FILE"]),
    (("negatives=NEG",), ["negatives applies to the negfacediff sampler only"]),
    (("sampler=negfacediff", "negatives=NEG"), ["negative identity vectors have 8 dimensions, expected 512"]),
    (("timesteps=20",), ["timesteps must be > 20"]),
    (("ids_space=elasticface-arc",), ["declares no embedding space"]),
])
def test_hostile_options_are_refused_in_one_line(model, ids, tmp_path, options, names, no_network):
    neg = tmp_path / "neg.npy"
    np.save(neg, np.ones((3, 8), dtype=np.float32))
    out = tmp_path / "out"
    line = refused(generate(model, ids, out, *(o.replace("NEG", str(neg)) for o in options)))
    for name in names:
        assert name in line, line
    assert not out.exists()
