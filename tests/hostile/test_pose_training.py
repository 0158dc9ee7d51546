"""Hostile inputs to ``train-generator`` on Vec2Face+'s pose model (docs/trust.md): a landmarks LMDB whose
landmark images are missing, garbage, a bomb or the wrong size; ``--init`` files that are pickle payloads,
truncated, or of another layout; a ``--resume`` checkpoint tampered with. Each is one ``error:`` line naming
the file (and the record or key), exit 2, no pickle run, and no half-made run folder (or the run folder as
it was, for ``--resume``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import msgpack
import numpy as np
import pytest
import torch

from facebench.cli import create_cli
from facebench.data import encode_image

from .conftest import Payload, bomb_png, invoke, refused, succeeded
from .test_resume import edit, setting, whole

SETS = ["losses.identity=0", "batch_size=4", "epochs=1", "max_steps=1", "grid_samples=2", "log_every=1",
        "eval_samples=0"]


def args(data: Path, out: Path, *extra) -> list:
    sets = [x for item in SETS for x in ("--set", item)]
    return ["train-generator", "--config", "vec2face_plus_pose_tiny", "--data", data, "--out", out, "--device", "cpu",
            *sets, *extra]


def write_records(path: Path, records: list) -> Path:
    """An LMDB in the release's layout from raw msgpack records (whatever they hold)."""
    import lmdb

    env = lmdb.open(str(path), subdir=False, map_size=1 << 26, lock=False)
    with env.begin(write=True) as txn:
        for i, rec in enumerate(records):
            txn.put(str(i).encode(), msgpack.packb(rec, use_bin_type=True))
        txn.put(b"__keys__", msgpack.packb([str(i).encode() for i in range(len(records))]))
        txn.put(b"__len__", msgpack.packb(len(records)))
        txn.put(b"__classnum__", msgpack.packb(2))
    env.close()
    return path


def feature_bytes(seed: int) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.random.default_rng(seed).standard_normal(512).astype(np.float32) * 0.97)
    return buf.getvalue()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Good records (112 px faces, JPEG landmark images) to spoil, and one run stopped after a step."""
    from facebench_plugins.vec2face.landmarks import render_landmarks

    root = tmp_path_factory.mktemp("pose")
    rng = np.random.default_rng(0)
    good = []
    for i in range(8):
        face = encode_image(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8), "png")
        points = rng.uniform(30, 80, (5, 2))
        good.append([face, feature_bytes(i), i % 2, render_landmarks(points)[0]])
    write_records(root / "good.lmdb", good)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FACEBENCH_QUIET", "1")
        succeeded(invoke(create_cli(), args(root / "good.lmdb", root / "run")))
    return root, good


def spoiled(made, tmp_path: Path, index: int, record: list) -> Path:
    _, good = made
    records = [list(r) for r in good]
    records[index] = record
    return write_records(tmp_path / "spoiled.lmdb", records)


# ------------------------------------------------------------------------------------- the data

@pytest.mark.parametrize(("change", "fragment"), [
    pytest.param(lambda r: [*r[:3], b"not an image at all"], "at key 2", id="garbage-landmark-image"),
    pytest.param(lambda r: [*r[:3], bomb_png()], "at key 2", id="landmark-image-bomb"),
    pytest.param(lambda r: [*r[:3], encode_image(np.zeros((56, 56, 3), np.uint8), "png")],
                 "landmark image is 56x56 pixels but its face image is 112x112", id="landmark-image-wrong-size"),
    pytest.param(lambda r: [*r[:3], 7], "landmark image must be encoded image bytes, found an integer",
                 id="landmark-image-a-number"),
    pytest.param(lambda r: r[:3], "record has 3 fields (image, feature, label) but the first record", id="missing"),
])
def test_a_broken_landmark_image_is_one_line_naming_the_record(made, tmp_path, change, fragment):
    data = spoiled(made, tmp_path, 2, change(made[1][2]))
    out = tmp_path / "run"
    line = refused(invoke(create_cli(), args(data, out, "--set", "max_steps=0")), data, fragment)
    assert "key 2" in line
    assert not out.exists()  # failed before any checkpoint: no run folder left


def test_a_set_without_landmark_images_is_refused_before_any_feature_extraction(made, tmp_path):
    data = write_records(tmp_path / "generator.lmdb", [r[:3] for r in made[1]])
    out = tmp_path / "run"
    refused(invoke(create_cli(), args(data, out)), data, "holds no landmark images")
    assert not out.exists()


# ------------------------------------------------------------------------------------- --init

def tiny_main_model() -> dict:
    from facebench_plugins.vec2face.model import Vec2Face, model_config

    return Vec2Face(model_config("vec2face_tiny")).state_dict()


def _save(path: Path, payload) -> None:
    torch.save(payload, path)


INIT = [
    pytest.param(lambda p, m: _save(p, {"model_vec2face": Payload(m)}), "refused to load Vec2Face+ weights file",
                 id="pickle-payload"),
    pytest.param(lambda p, m: (_save(p, {"model_vec2face": tiny_main_model()}),
                               p.write_bytes(p.read_bytes()[:5000])), "cannot read Vec2Face+ weights file", id="truncated"),
    pytest.param(lambda p, m: _save(p, {"backbone": {"fc.weight": torch.zeros(2, 2)}}),
                 "expected a dict with key 'model_vec2face'", id="an-fr-checkpoint"),
    pytest.param(lambda p, m: _save(p, [1, 2, 3]), "not a Vec2Face+ weights file (a list, not a dict)", id="a-list"),
    pytest.param(lambda p, m: _save(p, {"model_vec2face": [torch.zeros(3)]}), "expected a state dict of tensors",
                 id="model-a-list"),
    pytest.param(lambda p, m: _save(p, {"model_vec2face": {**tiny_main_model(), "latent_prior_proj_f.weight":
                                                           torch.zeros(768, 512)}}),
                 "fits neither the vec2face_plus_tiny layout with adapters nor the one without: 1 shape mismatch",
                 id="another-size"),
    pytest.param(lambda p, m: _save(p, {"model_vec2face": {"blocks.0.attn.qkv.weight": torch.zeros(384, 128)}}),
                 "fits neither the vec2face_plus_tiny layout", id="another-layout"),
    pytest.param(lambda p, m: _save(p, {"model_vec2face": tiny_main_model(),
                                        "pose_model": {"linear.weight": torch.zeros(768, 12544)}}),
                 "'pose_model' does not match the vec2face_plus_tiny pose model layout", id="pose-model-of-another-size"),
]


@pytest.mark.parametrize(("make", "fragment"), INIT)
def test_init_refuses_a_hostile_weights_file(made, tmp_path, marker, make, fragment):
    init = tmp_path / "main_model.pth"
    make(init, marker)
    out = tmp_path / "run"
    refused(invoke(create_cli(), args(made[0] / "good.lmdb", out, "--init", init)), init, fragment)
    assert not out.exists()


# ------------------------------------------------------------------------------------- --resume

RESUME = [
    pytest.param(lambda p, m: torch.save({"format": 1, "position": Payload(m)}, p),
                 "refused to load Vec2Face+ pose training checkpoint", id="pickle-payload"),
    pytest.param(whole(lambda d: {k: v for k, v in d.items() if k != "pose_model"}),
                 "not a Vec2Face+ pose training checkpoint: no pose_model", id="no-pose-model"),
    pytest.param(lambda d: d["pose_config"].update(out_dim=64), "was trained with a different model configuration",
                 id="another-pose-model"),
    pytest.param(lambda d: d["pose_model"].update({"linear.weight": torch.zeros(3)}),
                 "'pose_model' does not match the vec2face_plus_tiny pose model layout", id="pose-tensor-wrong-shape"),
    pytest.param(setting("optimizer.param_groups.0.params", [0, 1]), "does not list this run's 26 parameters",
                 id="optimizer-of-another-run"),
    pytest.param(setting("position.global_step", -3), "position.global_step is negative", id="negative-step"),
    pytest.param(setting("epoch", "last"), "epoch must be an integer, found a string", id="epoch-a-string"),
]


@pytest.mark.parametrize(("tamper", "fragment"), RESUME)
def test_resume_refuses_a_tampered_checkpoint(made, tmp_path, marker, tamper, fragment):
    run = Path(shutil.copytree(made[0] / "run", tmp_path / "run"))
    (run / "generator.pth").unlink()  # unfinished, as a kill before the end leaves it: resumed from its checkpoint
    ckpt = run / "checkpoint.pt"
    if tamper.__code__.co_argcount == 2:
        tamper(ckpt, marker)
    else:
        edit(ckpt, tamper)
    kept = ("checkpoint.pt", "metrics.jsonl")
    before = [(run / name).read_bytes() for name in kept]
    refused(invoke(create_cli(), args(made[0] / "good.lmdb", run, "--resume")), ckpt, fragment)
    assert [(run / name).read_bytes() for name in kept] == before  # the run as it was
    assert not (run / "generator.pth").exists()
