"""Vec2Face+ (``vec2face_plus``, ``vec2face_plus_tiny``): the release's layouts loaded strictly both ways,
its adapters and pose row as the release computes them, its landmark images drawn as its files are, and
``generate --pose-landmarks`` on tiny release-layout checkpoints: recorded, assigned, resumed after kill -9.

The layouts are the JSON manifests in tests/data/compat (written from the release's own modules by
``benchmarks/parity/vec2face_plus.py --write-manifests``); every checkpoint here is built from them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from pathlib import Path

import conftest as fx
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from facebench_plugins.vec2face import landmarks as L
from facebench_plugins.vec2face.generator import RELEASE_POSE, TINY_POSE
from facebench_plugins.vec2face.lora import LoRALinear, lora_parameters
from facebench_plugins.vec2face.model import Vec2Face, model_config
from facebench_plugins.vec2face.pose_condition import PoseCondModel

import facebench
from facebench.cli import create_cli
from facebench.errors import DataError

COMPAT = Path(__file__).resolve().parent / "data" / "compat"
#: sha256 of the release's landmarks/images/2758_1.jpg (HaiyuWu/Vec2Face_plus 7aea100).
RELEASE_2758_1_SHA256 = "72e5266d5da9d62ee92d3819e50709561a484a884f909f789359ddf497d9af7c"


def manifest(name: str) -> dict:
    return json.loads((COMPAT / name).read_text())["keys"]


def shapes(state: dict) -> dict:
    return {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in state.items()}


def release_state(layout: dict, seed: int, *, zero_linear: bool = False) -> dict:
    """Random tensors under the release's names and shapes: norm scales near 1, the position ids counting."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, (shape, dtype) in layout.items():
        if dtype == "int64":
            state[name] = torch.arange(math.prod(shape), dtype=torch.int64).reshape(shape)
        elif len(shape) == 1 and name.endswith("weight"):
            state[name] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = math.prod(shape[1:]) if len(shape) > 1 else 50
            state[name] = torch.randn(shape, generator=g) / math.sqrt(fan_in)
    if zero_linear:
        state["linear.weight"].zero_()
        state["linear.bias"].zero_()
    return state


def save_release_pose(path: Path, seed: int = 0, *, zero_linear: bool = False, **changes) -> Path:
    """A tiny ``pose_model.pth`` as the release's pose_training.py saves it (epoch, optimizer and args too)."""
    keys = manifest("vec2face_plus_tiny.json")["pose_model"]
    payload = {"model_vec2face": release_state(keys["model_vec2face"], seed),
               "pose_model": release_state(keys["pose_model"], seed + 1, zero_linear=zero_linear),
               "epoch": 9, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]},
               "args": argparse.Namespace(use_lora=True, lora_r=8, lora_alpha=32, amp_dtype=torch.float16)}
    payload.update(changes)
    torch.save(payload, path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("vec2face_plus")
    save_release_pose(root / "pose_model.pth")
    main = manifest("vec2face_plus_tiny.json")["main_model"]["model_vec2face"]
    torch.save({"model_vec2face": release_state(main, 5)}, root / "main_model.pth")
    ids = np.random.default_rng(0).standard_normal((12, 512)).astype(np.float32)  # raw ArcFace scale, norm ~22
    np.save(root / "ids.npy", ids)
    return root


# ----------------------------------------------------------------------------------------- layouts

def test_full_size_modules_have_the_release_layouts():
    """ViT-Base with LoRA rank 8 and the pose model, and the main model: the release's names, shapes and
    dtypes exactly (built on the meta device)."""
    with torch.device("meta"):
        plus, pose, main = Vec2Face(model_config("vec2face_plus_pose")), PoseCondModel(RELEASE_POSE), \
            Vec2Face(model_config("vec2face_vit_base_patch16"))
    want = manifest("vec2face_plus_pose_model.json")
    assert shapes(plus.state_dict()) == want["model_vec2face"]
    assert shapes(pose.state_dict()) == want["pose_model"]
    assert shapes(main.state_dict()) == manifest("vec2face_plus_main_model.json")["model_vec2face"]
    adapters = [k for k in want["model_vec2face"] if k.endswith((".A", ".B"))]
    assert len(adapters) == 4 * (12 + 8)  # qkv and proj of every encoder and decoder block
    assert want["model_vec2face"]["blocks.0.attn.qkv.A"][0] == [8, 768]


def test_tiny_release_checkpoint_loads_strictly_both_ways(tiny):
    gen = facebench.load_generator("vec2face_plus_tiny", weights=str(tiny / "pose_model.pth"))
    saved = torch.load(tiny / "pose_model.pth", weights_only=False)
    for ours, theirs in ((gen.model.state_dict(), saved["model_vec2face"]),
                         (gen.pose_model.state_dict(), saved["pose_model"])):
        assert set(ours) == set(theirs)  # every key the release saves is loaded, every tensor of ours filled
        for k, v in theirs.items():
            torch.testing.assert_close(ours[k], v, rtol=0, atol=0)
    assert gen.needs_pose_landmarks and gen.info["lora"] == {"rank": 8, "alpha": 32.0}
    assert gen.masking.ratio_min == 0.8 and gen.masking.ratio_max == 0.9  # pose_control.py's masking
    main = facebench.load_generator("vec2face_plus_tiny", weights=str(tiny / "main_model.pth"))
    assert main.pose_model is None and not main.needs_pose_landmarks and main.info == {}
    assert shapes(main.model.state_dict()) == manifest("vec2face_plus_tiny.json")["main_model"]["model_vec2face"]


@pytest.mark.parametrize("change, expected", [
    ("drop", "1 missing (decoder_blocks.1.attn.proj.B)"),
    ("extra", "1 unexpected (blocks.0.attn.qkv.C)"),
    ("rank4", "shape mismatch (blocks.0.attn.qkv.A (4, 128) != (8, 128)"),
    ("pose_drop", "'pose_model' does not match the pose model's layout (112 px in, 128 out): 1 missing (linear.bias)"),
    ("pose_shape", "'pose_model' does not match the pose model's layout (112 px in, 128 out): 1 shape mismatch "
                   "(linear.weight (768, 12544) != (128, 12544))"),
])
def test_layout_mismatches_are_one_line_naming_the_keys(tmp_path, change, expected):
    path = save_release_pose(tmp_path / "pose_model.pth")
    data = torch.load(path, weights_only=False)
    state, pose = data["model_vec2face"], data["pose_model"]
    if change == "drop":
        del state["decoder_blocks.1.attn.proj.B"]
    elif change == "extra":
        state["blocks.0.attn.qkv.C"] = torch.zeros(1)
    elif change == "rank4":
        for k in [k for k in state if k.endswith(".A")]:
            state[k] = state[k][:4].clone()
        for k in [k for k in state if k.endswith(".B")]:
            state[k] = state[k][:, :4].clone()
    elif change == "pose_drop":
        del pose["linear.bias"]
    elif change == "pose_shape":
        pose["linear.weight"] = torch.zeros(768, 12544)
    torch.save(data, path)
    with pytest.raises(DataError) as info:
        facebench.load_generator("vec2face_plus_tiny", weights=str(path))
    message = str(info.value)
    assert "\n" not in message and str(path) in message and expected in message, message
    if change == "rank4":  # the hint names the option, and with it the rank-4 file loads
        assert "--generator-option lora_rank=R" in message
        gen = facebench.load_generator("vec2face_plus_tiny", weights=str(path), lora_rank=4)
        assert gen.model.blocks[0].attn.qkv.A.shape == (4, 128)


def test_pose_file_refused_by_plain_vec2face_and_main_file_refuses_landmarks(tiny):
    with pytest.raises(DataError, match="holds a Vec2Face\\+ pose model .*vec2face_plus"):
        facebench.load_generator("vec2face_tiny", weights=str(tiny / "pose_model.pth"))
    main = facebench.load_generator("vec2face_plus_tiny", weights=str(tiny / "main_model.pth"))
    with pytest.raises(facebench.errors.FacebenchError, match="needs a Vec2Face\\+ pose model"):
        main.pose_landmarks("frontal")


def test_main_model_is_plain_vec2face_on_one_code_path(tiny):
    """``main_model.pth`` under vec2face_plus_tiny and vec2face_tiny: the same object, the same images."""
    a = facebench.load_generator("vec2face_plus_tiny", weights=str(tiny / "main_model.pth"), seed=4)
    b = facebench.load_generator("vec2face_tiny", weights=str(tiny / "main_model.pth"), seed=4)
    assert type(a) is type(b) and a.masking == b.masking
    v = torch.from_numpy(np.load(tiny / "ids.npy")[:3])
    torch.testing.assert_close(a.generate(v), b.generate(v), rtol=0, atol=0)
    assert a.forward_images(v.clone().requires_grad_(True)).requires_grad  # AttrOP's entry point


# ------------------------------------------------------------------------------------- the computation

def test_lora_forward_is_base_plus_scaled_low_rank_update():
    torch.manual_seed(0)
    base = torch.nn.Linear(24, 40)
    lora = LoRALinear(base, rank=8, alpha=32)
    assert torch.count_nonzero(lora.B) == 0 and not base.weight.requires_grad
    torch.nn.init.normal_(lora.B)
    x = torch.randn(3, 5, 24)
    w, b, a, bb = (t.detach().double() for t in (base.weight, base.bias, lora.A, lora.B))
    expected = x.double() @ w.T + b + (32 / 8) * (x.double() @ a.T) @ bb.T
    torch.testing.assert_close(lora(x).double(), expected, rtol=1e-5, atol=1e-5)
    merged = x.double() @ (w + lora.delta_weight().double()).T + b
    torch.testing.assert_close(lora(x).double(), merged, rtol=1e-5, atol=1e-5)
    model = Vec2Face(model_config("vec2face_plus_tiny_pose"))
    assert [n for n, _ in lora_parameters(model)][:2] == ["blocks.0.attn.qkv.A", "blocks.0.attn.qkv.B"]
    assert len(lora_parameters(model)) == 2 * 2 * (2 + 2)


def _release_decoder(model: Vec2Face, encoded, dropped, masked, cond):
    """The release's ``forward_decoder(x, drop, all, cond)`` written out: the masked positions take the pose
    row, the kept ones the encoded rows in order, no ``decoder_embed``."""
    n, _, d = encoded.shape
    rows = model.config.num_rows
    full = cond.expand(n, rows + 1, d).clone()
    keep = torch.cat([torch.ones(n, 1, dtype=torch.bool), ~dropped], dim=1)
    full[keep] = encoded.reshape(-1, d)
    full = torch.where(torch.cat([torch.zeros(n, 1, dtype=torch.bool), masked], 1).unsqueeze(-1), cond, full)
    x = full + model.decoder_pos_embed_learned
    for block in model.decoder_blocks:
        x = block(x)
    return model.decode_image(model.decoder_norm(x))


def test_pose_row_enters_as_the_release_puts_it_and_zero_linear_is_not_plain_vec2face(tmp_path):
    """Loaded weights whose pose ``linear`` is zero (the release's initialisation) give zero rows for every
    landmark image, so the pose has no effect; the images are the release's decoder fed a zero row, which
    is NOT plain Vec2Face (masked rows zero instead of the vector row, ``decoder_embed`` skipped)."""
    path = save_release_pose(tmp_path / "pose_model.pth", zero_linear=True)
    gen = facebench.load_generator("vec2face_plus_tiny", weights=str(path), fast=False)
    poses = L.load_pose_set("frontal,yaw-60,yaw+90,release-2758_1").model_input()
    rows = gen.pose_model(poses)
    assert rows.shape == (4, 1, 128) and torch.count_nonzero(rows) == 0
    v = torch.from_numpy(np.random.default_rng(1).standard_normal((4, 512)).astype(np.float32))
    masks = gen.model.random_masking(4, gen.masking, torch.Generator().manual_seed(0))
    a = gen.generate_plain(v, masks=masks, landmarks=poses)
    b = gen.generate_plain(v, masks=masks, landmarks=poses.flip(0))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with torch.no_grad():
        f, r = gen.model.embed_vector(v)
        encoded = gen.model.forward_encoder(f, r, *masks)
        expected = _release_decoder(gen.model, encoded, *masks, torch.zeros(4, 1, 128)).clamp(-1, 1)
        plain = gen.model(v, *masks).image.clamp(-1, 1)
    torch.testing.assert_close(a, expected, rtol=1e-5, atol=1e-5)
    assert float((a - plain).abs().max()) > 0.05
    # and with trained (random) weights the rows differ by pose, entering the same way
    gen = facebench.load_generator("vec2face_plus_tiny", weights=str(save_release_pose(tmp_path / "p2.pth")), fast=False)
    with torch.no_grad():
        cond = gen.pose_model(poses)
        f, r = gen.model.embed_vector(v)
        expected = _release_decoder(gen.model, gen.model.forward_encoder(f, r, *masks), *masks, cond).clamp(-1, 1)
    torch.testing.assert_close(gen.generate_plain(v, masks=masks, landmarks=poses), expected, rtol=1e-5, atol=1e-5)
    assert float(cond.abs().max()) > 0 and not torch.equal(cond[0], cond[1])


# -------------------------------------------------------------------------------------- landmark images

def test_discs_are_the_pixels_within_the_radius_and_clip_at_the_border():
    for r in range(0, 25):
        rows = L.disc_half_widths(r)
        for dy in range(-r - 1, r + 2):
            within = [dx for dx in range(r + 1) if dx * dx + dy * dy <= r * r]
            assert rows.get(dy, -1) == (max(within) if within else -1), (r, dy)
    # 1, 5, 5, 7, 5, 5, 1 pixels: the rows of the release's radius-3 dots
    image = L.draw_landmarks([(10, 10), (30, 10), (50, 10), (70, 10), (1.9, 110.7)])
    assert (image[7:14, 50] == L.NOSE).all() and [int((image[y, :, 1] > 0).sum()) for y in range(7, 14)] == \
        [1, 5, 5, 7, 5, 5, 1]
    assert (image[10, 7:14] == L.EYE).all() and (image[10, 67:74] == L.MOUTH).all()
    corner = image[107:, :5, 2] > 0  # centre (1, 110): truncated, clipped at the left and bottom edges
    yy, xx = np.mgrid[107:112, 0:5]
    np.testing.assert_array_equal(corner, (xx - 1) ** 2 + (yy - 110) ** 2 <= 9)
    assert int((image.sum(axis=2) > 0).sum()) == 4 * 29 + int(corner.sum())


def test_release_example_is_reproduced_byte_for_byte():
    data, pixels = L.render_landmarks(L.RELEASE_EXAMPLES["release-2758_1"])
    assert hashlib.sha256(data).hexdigest() == RELEASE_2758_1_SHA256
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:  # quality 95, 4:2:0, as cv2.imwrite writes
        assert im.size == (112, 112) and im.layers == 3
        assert im.quantization[0][:4] == [2, 1, 1, 2]
    record = L.load_pose_set("release-examples").record()
    assert [p["name"] for p in record["poses"]] == ["release-2758_0", "release-2758_1"]
    assert record["poses"][1]["sha256"] == RELEASE_2758_1_SHA256


def test_landmark_tensor_is_totensor_then_normalize():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    x = L.landmark_tensor(pixels)
    expected = (torch.from_numpy(pixels).permute(0, 3, 1, 2).double() / 255 - 0.5) / 0.5
    torch.testing.assert_close(x.double(), expected, rtol=0, atol=1e-7)


def test_named_poses_turn_the_template():
    from facebench.data.alignment import template

    poses = L.named_poses()
    np.testing.assert_allclose(poses["frontal"][0], template(112), atol=0.005)
    # positive yaw moves the nose right of the eyes' midpoint, by sin(yaw) x the nose depth (in units of the
    # eye-to-mouth distance, which turning about the vertical axis leaves alone)
    t = template(112).astype(np.float64)
    height = np.linalg.norm(t[3:].mean(axis=0) - t[:2].mean(axis=0))
    for yaw in L.YAWS:
        p = poses["frontal" if yaw == 0 else f"yaw{yaw:+d}"][0]
        eyes, mouth = p[:2].mean(axis=0), p[3:].mean(axis=0)
        ratio = (p[2, 0] - eyes[0]) / np.linalg.norm(mouth - eyes)
        assert abs(ratio - math.sin(math.radians(yaw)) * L.NOSE_DEPTH / height) < 0.01, (yaw, ratio)
    eye_gap = [abs(poses[f"yaw{y:+d}"][0][1, 0] - poses[f"yaw{y:+d}"][0][0, 0]) for y in (15, 30, 45, 60, 75, 90)]
    assert all(a > b for a, b in zip(eye_gap, eye_gap[1:])) and eye_gap[-1] < 0.5  # the eyes close up in profile
    for name, (pts, _) in poses.items():
        assert ((pts >= 0) & (pts < 112)).all(), name
    # the nose depth is the one that fits the release's examples: at yaw+82 the nose sits where 2758_1's does
    # across the image (its face is drawn higher and smaller than the template: y differs by ~7 px)
    assert abs(L.posed_points(82)[2, 0] - 72) < 0.5


def test_release_listing_read_relative_to_its_folder(tmp_path):
    """The release's ``landmark_examples.txt`` names files from the repository root (./landmarks/images/x.jpg);
    names relative to the list's folder work too."""
    folder = tmp_path / "repo" / "landmarks"
    (folder / "images").mkdir(parents=True)
    for stem, pts in (("a", L.posed_points(30)), ("b", L.posed_points(-45))):
        (folder / "images" / f"{stem}.jpg").write_bytes(L.render_landmarks(pts)[0])
    listing = folder / "landmark_examples.txt"
    listing.write_text("./landmarks/images/a.jpg\nimages/b.jpg\n")
    pose = L.load_pose_set(str(listing))
    assert [e.file for e in pose.entries] == ["./landmarks/images/a.jpg", "images/b.jpg"]
    np.testing.assert_array_equal(pose.images[1], L.render_landmarks(L.posed_points(-45))[1])
    assert pose.record()["source"] == {"kind": "images", "file": "landmark_examples.txt",
                                       "sha256": hashlib.sha256(listing.read_bytes()).hexdigest()}
    coords = tmp_path / "poses.txt"
    coords.write_text("# name x1 y1 ... x5 y5\nleft " + " ".join(f"{v:.3f}" for v in L.posed_points(-45).ravel())
                      + "\n" + ",".join(str(v) for v in np.ravel(L.RELEASE_EXAMPLES["release-2758_1"])) + "\n")
    pose = L.load_pose_set(str(coords))
    assert [e.name for e in pose.entries] == ["left", "poses.txt:3"]
    assert pose.entries[1].sha256 == RELEASE_2758_1_SHA256
    np.save(tmp_path / "poses.npy", np.stack([L.posed_points(0), L.posed_points(60)]))
    pose = L.load_pose_set(str(tmp_path / "poses.npy"))
    assert [e.name for e in pose.entries] == ["poses[0]", "poses[1]"]
    np.testing.assert_array_equal(pose.images[1], L.render_landmarks(L.posed_points(60))[1])


# ---------------------------------------------------------------------------------------- generate

def gen_args(tiny: Path, out: Path, poses: str, *extra: str, ids: int = 4) -> list[str]:
    ids_file = tiny / f"ids{ids}.npy"
    if not ids_file.exists():
        np.save(ids_file, np.load(tiny / "ids.npy")[:ids])
    return ["generate", "--generator", "vec2face_plus_tiny", "--weights", str(tiny / "pose_model.pth"),
            "--ids", str(ids_file), "--pose-landmarks", poses, "--images-per-id", "3", "--ids-per-shard", "1",
            "--batch-size", "4", "--out", str(out), "--device", "cpu", "--format", "folder", *extra]


def test_generate_assigns_poses_by_image_index_and_records_them(tiny, tmp_path):
    """Image i is conditioned on pose i mod P: with P = 2 the even images are the P = 1 run's (same masks,
    same vectors), the odd ones are not; dataset.json lists each pose's sha256 and the rule."""
    one, two = tmp_path / "one", tmp_path / "two"
    for out, poses in ((one, "frontal"), (two, "frontal,yaw+60")):
        res = CliRunner().invoke(create_cli(), gen_args(tiny, out, poses))
        assert res.exit_code == 0, res.output
    a, b = fx.images_of(one), fx.images_of(two)
    assert len(a) == len(b) == 12
    assert all(a[i] == b[i] for i in range(0, 12, 2))
    assert all(a[i] != b[i] for i in range(1, 12, 2))
    card = json.loads((two / "dataset.json").read_text())
    record = card["pose_landmarks"]
    assert record["count"] == 2 and record["source"] == {"kind": "named", "names": ["frontal", "yaw+60"]}
    assert "i mod P" in record["assignment"]
    assert [p["name"] for p in record["poses"]] == ["frontal", "yaw+60"] and record["poses"][1]["yaw"] == 60
    assert record["poses"][1]["points"] == np.round(L.posed_points(60), 2).tolist()
    assert record["poses"][1]["sha256"] == hashlib.sha256(L.render_landmarks(record["poses"][1]["points"])[0]).hexdigest()
    assert card["generator_info"]["masking"]["ratio_min"] == 0.8
    assert len((two / "dataset.json").read_bytes()) < 8000
    # a rerun with other poses is refused, naming what changed
    res = CliRunner().invoke(create_cli(), gen_args(tiny, two, "frontal"))
    assert res.exit_code == 2 and "pose_landmarks" in res.output


def test_generate_resumes_byte_identically_after_kill_9(tiny, tmp_path, monkeypatch):
    full, out = tmp_path / "full", tmp_path / "killed"
    args = lambda o: gen_args(tiny, o, "yaw-sweep", ids=12)  # noqa: E731
    assert CliRunner().invoke(create_cli(), args(full)).exit_code == 0
    env = {**os.environ, "FACEBENCH_QUIET": "1"}
    done = fx.kill_after_shards([sys.executable, "-m", "facebench", *args(out)], out / "manifest.json", env=env)
    assert 3 <= done < 12
    assert not (out / "dataset.json").exists()
    res = CliRunner().invoke(create_cli(), args(out))
    assert res.exit_code == 0, res.output
    assert f"generated {12 - done} of 12 shards in this run" in res.output
    assert fx.images_of(out) == fx.images_of(full)
    assert json.loads((out / "dataset.json").read_text())["pose_landmarks"] == \
        json.loads((full / "dataset.json").read_text())["pose_landmarks"]


def test_generate_refuses_wrong_landmarks_and_wrong_combinations(tiny, tmp_path):
    bad = tmp_path / "poses.txt"
    bad.write_text("1 2 3 4 5 6 7 8 9 10\n30 40 50 60 70 80 90 100\n")
    res = CliRunner().invoke(create_cli(), gen_args(tiny, tmp_path / "a", str(bad)))
    lines = [x for x in res.output.splitlines() if x.startswith("error:")]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert str(bad) in lines[0] and "at line 2" in lines[0] and "expected 10 numbers" in lines[0]
    assert not (tmp_path / "a").exists()
    no_poses = [a for a in gen_args(tiny, tmp_path / "b", "frontal") if a not in ("--pose-landmarks", "frontal")]
    res = CliRunner().invoke(create_cli(), no_poses)
    assert res.exit_code == 2 and "pass --pose-landmarks" in res.output
    res = CliRunner().invoke(create_cli(), [*gen_args(tiny, tmp_path / "c", "frontal"), "--attrop", "quality=27"])
    assert res.exit_code == 2 and "choose one" in res.output
    main = [*gen_args(tiny, tmp_path / "d", "frontal"), "--weights", str(tiny / "main_model.pth")]
    res = CliRunner().invoke(create_cli(), main)
    assert res.exit_code == 2 and "needs a Vec2Face+ pose model" in res.output
    assert not any((tmp_path / n).exists() for n in "abcd")


def test_tiny_pose_config_is_the_release_pose_model_narrowed():
    assert TINY_POSE.channels == RELEASE_POSE.channels and TINY_POSE.input_size == 112 and TINY_POSE.grid == 7
    assert TINY_POSE.out_dim == model_config("vec2face_tiny").embed_dim


def test_a_pose_model_recording_a_smaller_input_gets_resized_landmark_images(tmp_path):
    """A facebench file records its pose model's configuration (``pose_config``): one taking 56 px images
    loads, and the 112 px landmark images reach it resized as facebench's pose training resizes them."""
    from facebench_plugins.vec2face.generator import POSE_CONFIG_KEY
    from facebench_plugins.vec2face.pose_condition import PoseCondConfig

    from facebench.data.tensors import to_model_input

    cfg = PoseCondConfig(input_size=56, channels=[8, 16, 32, 64], out_dim=128)
    torch.manual_seed(0)
    pose = PoseCondModel(cfg)
    torch.nn.init.normal_(pose.linear.weight, std=0.05)
    keys = manifest("vec2face_plus_tiny.json")["pose_model"]["model_vec2face"]
    path = tmp_path / "generator.pth"
    torch.save({"model_vec2face": release_state(keys, 3), "pose_model": pose.state_dict(),
                POSE_CONFIG_KEY: cfg.to_dict()}, path)
    gen = facebench.load_generator("vec2face_plus_tiny", weights=str(path))
    assert gen.pose_model.config == cfg
    poses = gen.pose_landmarks("frontal,yaw+45")
    x = poses.model_input()
    assert x.shape == (2, 3, 56, 56) and poses.record()["resized_to"] == 56
    torch.testing.assert_close(x, to_model_input(poses.images, 56), rtol=0, atol=0)
    images = gen.generate(torch.from_numpy(np.random.default_rng(0).standard_normal((2, 512)).astype(np.float32)),
                          landmarks=x)
    assert images.shape == (2, 3, 56, 56)
