"""IDiff-Face / UIFace (plugins/idiff_face): the releases' checkpoint layouts and strict loading both ways, the
samplers' arithmetic against an independent computation, ``generate --generator idiff_face_tiny`` with each
preset, a kill -9 resume to the same bytes, the embedding-space contract (facebench/generation/spaces.py),
and one-line errors.

The release-layout facts (tensor names, shapes and dtypes of the DDPM module's and the VQ decoder's state
dicts) are the manifests in ``data/compat/idiff_face_*.json``, written from the releases' own classes by
``benchmarks/parity/idiff_face.py --write-manifests``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import conftest as fx
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from facebench_plugins.idiff_face import layout, sampling, tiny
from facebench_plugins.idiff_face.unet import RELEASE, RELEASE_UIFACE, IdentityUNet
from facebench_plugins.idiff_face.vq import RELEASE as DEC_RELEASE
from facebench_plugins.idiff_face.vq import LatentDecoder

import facebench
from facebench.cli import create_cli
from facebench.data import open_dataset
from facebench.errors import ConfigError, DataError, FacebenchError, MissingFileError

COMPAT = Path(__file__).parent / "data" / "compat"


def manifest(name: str) -> dict:
    return json.loads((COMPAT / name).read_text())["keys"]


def shapes(state: dict) -> dict:
    return {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()}


def ddpm_layout(unet_state: dict, T: int, prefix: str = "eps_model.") -> dict:
    """The DDPM module's state dict layout: the UNet under ``prefix`` and the eight (T,) schedule tables."""
    out = {prefix + k: v for k, v in shapes(unet_state).items()}
    out.update({prefix.removesuffix("eps_model.") + k: [[T], "float32"] for k in sampling.BUFFERS})
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny.make_tiny(tmp_path_factory.mktemp("idiff") / "model")


@pytest.fixture(scope="module")
def ids(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("idiff-ids") / "ids.npy"
    np.save(path, np.random.default_rng(0).standard_normal((6, 512)).astype(np.float32) * 3)
    return path


# ----------------------------------------------------------------------------------------- layouts

def test_full_size_modules_have_the_release_layouts():
    """IDiff-Face's and UIFace's denoisers (the DDPM module with its schedule tables) and the VQ decoder:
    the releases' names, shapes and dtypes exactly; the released UNet has 216,341,187 parameters."""
    with torch.device("meta"):
        idiff, uiface, decoder = IdentityUNet(RELEASE), IdentityUNet(RELEASE_UIFACE), LatentDecoder(DEC_RELEASE)
    assert ddpm_layout(idiff.state_dict(), 1000) == manifest("idiff_face_denoiser.json")
    assert ddpm_layout(uiface.state_dict(), 1000) == manifest("idiff_face_uiface_denoiser.json")
    assert shapes(decoder.state_dict()) == manifest("idiff_face_decoder.json")
    assert sum(p.numel() for p in idiff.parameters()) == 216_341_187
    assert manifest("idiff_face_uiface_denoiser.json")["eps_model.empty_context_embedding"] == [[256], "float32"]


def test_tiny_folder_is_in_the_release_layout(model):
    want = manifest("idiff_face_tiny.json")
    saved = torch.load(model / tiny.CHECKPOINT, weights_only=True)
    assert shapes(saved) == want["denoiser"]
    assert shapes(torch.load(model / layout.DECODER_FILE, weights_only=True)) == want["decoder"]


def test_tiny_release_checkpoint_loads_strictly_both_ways(model):
    gen = facebench.load_generator("idiff_face_tiny", weights=str(model))
    saved = torch.load(model / tiny.CHECKPOINT, weights_only=True)
    unet = {k.removeprefix("eps_model."): v for k, v in saved.items() if k.startswith("eps_model.")}
    decoder = torch.load(model / layout.DECODER_FILE, weights_only=True)
    for ours, theirs in ((gen.unet.state_dict(), unet), (gen.decoder.state_dict(), decoder)):
        assert set(ours) == set(theirs)  # every key the release saves is loaded, every tensor of ours filled
        for k, v in theirs.items():
            torch.testing.assert_close(ours[k], v, rtol=0, atol=0)
    # the DDPM sampler runs on the tables the checkpoint saved (the release's strict load overwrites its own)
    torch.testing.assert_close(gen.schedule.eps_coef, saved["one_minus_alphas_over_sqrt_one_minus_alpha_bars"],
                               rtol=0, atol=0)
    assert gen.info["checkpoint"] == {"file": tiny.CHECKPOINT, "keys_under": "eps_model.", "empty_context": "learned"}


@pytest.mark.parametrize("prefix", ["module.eps_model.", "", "module."])
def test_the_releases_other_prefixes_load_the_same_model(model, tmp_path, prefix):
    """UIFace trained under DDP (``module.`` in front) and its sample.py also takes a bare UNet."""
    saved = torch.load(model / tiny.CHECKPOINT, weights_only=True)
    moved = {prefix + k.removeprefix("eps_model."): v for k, v in saved.items() if k.startswith("eps_model.")}
    if prefix.endswith("eps_model."):
        moved.update({"module." + k: v for k, v in saved.items() if not k.startswith("eps_model.")})
    folder = tmp_path / "m"
    folder.mkdir()
    torch.save(moved, folder / "uiface.ckpt")
    (folder / layout.DECODER_FILE).write_bytes((model / layout.DECODER_FILE).read_bytes())
    gen = facebench.load_generator("idiff_face_tiny", weights=str(folder))
    ref = facebench.load_generator("idiff_face_tiny", weights=str(model))
    for k, v in ref.unet.state_dict().items():
        torch.testing.assert_close(gen.unet.state_dict()[k], v, rtol=0, atol=0)
    assert gen.info["checkpoint"]["keys_under"] == prefix


def _bad_checkpoint(model: Path, tmp_path: Path, change: str) -> Path:
    state = torch.load(model / tiny.CHECKPOINT, weights_only=True)
    if change in ("drop", "both"):
        del state["eps_model.final.bias"]
    if change in ("extra", "both"):
        state["eps_model.final.gamma"] = torch.zeros(3)
    if change == "shape":
        state["eps_model.context_emb.weight"] = torch.zeros(32, 256)
    if change == "tables":
        del state["sigmas"]
    if change == "nan":
        state["eps_model.final.bias"] = torch.tensor([0.0, float("nan"), 0.0])
    folder = tmp_path / change
    folder.mkdir()
    torch.save(state, folder / tiny.CHECKPOINT)
    (folder / layout.DECODER_FILE).write_bytes((model / layout.DECODER_FILE).read_bytes())
    return folder


@pytest.mark.parametrize("change, expected", [
    ("drop", "1 missing (final.bias)"),
    ("extra", "1 unexpected (final.gamma)"),
    ("both", "1 missing (final.bias); 1 unexpected (final.gamma)"),
    ("shape", "1 shape mismatch (context_emb.weight (32, 256) != (32, 512))"),
    ("tables", "the schedule tables are incomplete (1 missing: sigmas)"),
    ("nan", "tensor holds NaN or infinite values"),
])
def test_layout_mismatches_are_one_line_naming_the_keys(model, tmp_path, change, expected):
    folder = _bad_checkpoint(model, tmp_path, change)
    with pytest.raises(DataError) as info:
        facebench.load_generator("idiff_face_tiny", weights=str(folder))
    message = str(info.value)
    assert "\n" not in message and str(folder / tiny.CHECKPOINT) in message and expected in message, message


def test_wrong_files_and_missing_files_are_one_line(model, tmp_path):
    # the full-size generator refuses the tiny folder: another size, named by its shapes
    with pytest.raises(DataError, match=r"does not match the IDiff-Face/UIFace denoiser .* shape mismatch") as info:
        facebench.load_generator("idiff_face", weights=str(model))
    assert "\n" not in str(info.value)
    # a decoder of another layout
    folder = tmp_path / "dec"
    folder.mkdir()
    (folder / tiny.CHECKPOINT).write_bytes((model / tiny.CHECKPOINT).read_bytes())
    dec = torch.load(model / layout.DECODER_FILE, weights_only=True)
    del dec["quantize.embedding.weight"]
    torch.save(dec, folder / layout.DECODER_FILE)
    with pytest.raises(DataError, match=r"first-stage VQ decoder .*1 missing \(quantize.embedding.weight\)"):
        facebench.load_generator("idiff_face_tiny", weights=str(folder))
    # not a UNet at all (a Vec2Face-like file)
    torch.save({"model.weight": torch.zeros(2)}, folder / tiny.CHECKPOINT)
    with pytest.raises(DataError, match="holds no UNet"):
        facebench.load_generator("idiff_face_tiny", weights=str(folder))
    # missing files and folders
    (folder / layout.DECODER_FILE).unlink()
    with pytest.raises(MissingFileError, match="first_stage_decoder_state_dict.pt"):
        facebench.load_generator("idiff_face_tiny", weights=str(folder))
    with pytest.raises(MissingFileError, match="IDiff-Face model folder"):
        facebench.load_generator("idiff_face_tiny", weights=str(tmp_path / "nowhere"))
    (folder / tiny.CHECKPOINT).unlink()
    with pytest.raises(MissingFileError, match=r"no \*.ckpt file"):
        facebench.load_generator("idiff_face_tiny", weights=str(folder))
    with pytest.raises(FacebenchError, match="checkpoint must be a file name inside"):
        facebench.load_generator("idiff_face_tiny", weights=str(model), checkpoint="../x.ckpt")


def test_two_checkpoints_need_a_choice(model, tmp_path):
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("ema_averaged_model_100.ckpt", "ema_averaged_model_200.ckpt", layout.DECODER_FILE):
        source = model / (tiny.CHECKPOINT if name.endswith(".ckpt") else name)
        (folder / name).write_bytes(source.read_bytes())
    with pytest.raises(FacebenchError, match="holds 2 denoiser checkpoints .*checkpoint=NAME"):
        facebench.load_generator("idiff_face_tiny", weights=str(folder))
    gen = facebench.load_generator("idiff_face_tiny", weights=str(folder), checkpoint="ema_averaged_model_200.ckpt")
    assert gen.info["checkpoint"]["file"] == "ema_averaged_model_200.ckpt"


# ---------------------------------------------------------------------------------------- samplers

def test_schedule_is_the_linear_schedule_computed_in_float64():
    s = sampling.Schedule.linear(1000)
    betas = np.linspace(1e-4, 0.02, 1000)
    abar = np.cumprod(1 - betas)
    np.testing.assert_allclose(s.betas.numpy(), betas, rtol=1e-6)
    np.testing.assert_allclose(s.alpha_bars.numpy(), abar, rtol=2e-4)
    np.testing.assert_allclose(s.eps_coef.numpy(), betas / np.sqrt(1 - abar), rtol=2e-4)
    np.testing.assert_allclose(sampling.Schedule.linear(50).betas.numpy(), np.linspace(2e-3, 0.4, 50), rtol=1e-6)
    with pytest.raises(ConfigError, match="timesteps must be > 20: .* reaches 1 at T = 20, got 20"):
        facebench.load_generator("idiff_face_tiny", timesteps=20)


def test_ddpm_and_ddim_steps_against_the_formulas():
    s = sampling.Schedule.linear(100)
    rng = np.random.default_rng(3)
    x, eps, z = (torch.as_tensor(rng.standard_normal((2, 3, 4, 4)), dtype=torch.float32) for _ in range(3))
    b, ab = float(s.betas[40]), float(s.alpha_bars[40])
    want = (x.double() - eps.double() * b / math.sqrt(1 - ab)) / math.sqrt(1 - b) + math.sqrt(b) * z.double()
    torch.testing.assert_close(sampling.ddpm_step(s, x, eps, 40, z).double(), want, rtol=1e-5, atol=1e-5)
    # DDIM, eta 0, skip 20: from t = 40 to the alpha_bar of index 19 (the release's alphas_prev[20])
    prev = float(s.alpha_bars[19])
    x0 = (x.double() - math.sqrt(1 - ab) * eps.double()) / math.sqrt(ab)
    want = math.sqrt(prev) * x0 + math.sqrt(1 - prev) * eps.double()
    torch.testing.assert_close(sampling.ddim_step(s, x, eps, 40, 20).double(), want, rtol=1e-5, atol=1e-5)
    # the last step goes to alpha_bar 1: the predicted x_0 itself
    last = (x.double() - math.sqrt(1 - float(s.alpha_bars[0])) * eps.double()) / math.sqrt(float(s.alpha_bars[0]))
    torch.testing.assert_close(sampling.ddim_step(s, x, eps, 0, 20).double(), last, rtol=1e-5, atol=1e-5)


def test_uiface_switches_each_sample_when_its_attention_map_settles(model):
    """threshold 0: no sample switches before the second stage; a huge threshold: all switch at the second
    step of the first stage (the first only records the map). Either way the two runs differ."""
    gen = facebench.load_generator("idiff_face_tiny", weights=str(model), sampler="uiface", steps=10)
    ctx = gen.contexts(np.random.default_rng(1).standard_normal((3, 512)))
    out = {}
    for threshold in (0.0, 1e9):
        trace = sampling.UIFaceTrace([None] * 3)
        with torch.no_grad():
            out[threshold] = sampling.uiface(gen.unet, gen.schedule, ctx, gen.noise([1, 2, 3]), steps=10,
                                             switch=500, threshold=threshold, trace=trace)
        assert trace.switched_at == ([None] * 3 if threshold == 0 else [800] * 3)
    assert not torch.equal(out[0.0], out[1e9])


def test_images_depend_on_the_seed_and_the_identity_not_on_the_batch(model):
    gen = facebench.load_generator("idiff_face_tiny", weights=str(model), timesteps=25)
    v = np.random.default_rng(2).standard_normal((4, 512))
    together = gen.sample(v, [10, 11, 12, 13])
    alone = gen.sample(v[2:3], [12])
    assert together.shape == (4, 56, 56, 3) and together.dtype == np.uint8
    assert np.abs(together[2].astype(int) - alone[0].astype(int)).max() <= 1  # float kernels may differ by batch
    assert not np.array_equal(together[0], gen.sample(v[1:2], [10])[0])  # another identity, same seed
    assert not np.array_equal(together[0], gen.sample(v[0:1], [99])[0])  # another seed, same identity
    # scale is irrelevant: the vectors are normalised inside
    np.testing.assert_array_equal(gen.sample(v[:1] * 7, [10]), gen.sample(v[:1], [10]))


# ---------------------------------------------------------------------------------------- generate

def gen_args(model: Path, ids: Path, out: Path, *options: str, per_id: int = 2, shard: int = 6) -> list[str]:
    args = ["generate", "--generator", "idiff_face_tiny", "--weights", str(model), "--ids", str(ids),
            "--images-per-id", str(per_id), "--ids-per-shard", str(shard), "--out", str(out), "--device", "cpu",
            "--format", "folder"]
    for option in options:
        args += ["--generator-option", option]
    return args


@pytest.mark.parametrize("options, sampler", [
    (("timesteps=25",), {"name": "idiff-face", "kind": "ddpm", "steps": 25, "schedule": "linear, T=25"}),
    (("sampler=uiface",), {"name": "uiface", "kind": "two-stage", "steps": 4, "switch": 500, "guidance": 1.0,
                           "threshold": 0.006, "eta": 0.0, "schedule": "linear, T=1000"}),
    (("sampler=negfacediff", "timesteps=25", "negatives=IDS"),
     {"name": "negfacediff", "kind": "ddpm", "steps": 25, "weight": 0.5, "negatives": "ids.npy"}),
])
def test_generate_with_each_preset(model, ids, tmp_path, options, sampler):
    out = tmp_path / "run"
    options = tuple(o.replace("IDS", str(ids)) for o in options)
    res = CliRunner().invoke(create_cli(), gen_args(model, ids, out, *options, per_id=1))
    assert res.exit_code == 0, res.output
    images = fx.images_of(out)
    assert len(images) == 6
    reader = open_dataset(out / "dataset.folder")
    try:
        first = reader.image(0)
        assert first.shape == (56, 56, 3)
        assert len({reader.image_bytes(i) for i in range(len(reader))}) == 6  # no two images alike
    finally:
        reader.close()
    info = json.loads((out / "dataset.json").read_text())["generator_info"]
    assert {k: info["sampler"][k] for k in sampler} == sampler
    assert info["untrained"] and info["pipeline_check"] and "embedding_space" not in info


def test_generate_resumes_byte_identically_after_kill_9(model, ids, tmp_path):
    full, out = tmp_path / "full", tmp_path / "killed"
    args = lambda o: gen_args(model, ids, o, "sampler=uiface", "steps=2", per_id=1, shard=1)  # noqa: E731
    res = CliRunner().invoke(create_cli(), args(full))
    assert res.exit_code == 0, res.output
    env = {**os.environ, "FACEBENCH_QUIET": "1"}
    done = fx.kill_after_shards([sys.executable, "-m", "facebench", *args(out)], out / "manifest.json", shards=2,
                                env=env)
    assert 2 <= done < 6 and not (out / "dataset.json").exists()
    res = CliRunner().invoke(create_cli(), args(out))
    assert res.exit_code == 0, res.output
    assert f"generated {6 - done} of 6 shards in this run" in res.output
    assert fx.images_of(out) == fx.images_of(full)


# ------------------------------------------------------------------------------------ embedding space

def embed_record(path: Path, extractor: str) -> None:
    """The record ``facebench embed --extractor EXTRACTOR`` writes beside its output."""
    from facebench.rerun import Rerun, parameters

    Rerun(path, command="embed", params=parameters({"extractor": extractor}), what="features", folder=False,
          outputs=[path.name]).finish(record={})


def test_vectors_of_another_space_are_refused_before_the_model_loads(model, tmp_path):
    vectors = np.random.default_rng(4).standard_normal((3, 512)).astype(np.float32)
    arc, plain = tmp_path / "arc.npy", tmp_path / "plain.npy"
    np.save(arc, vectors)
    np.save(plain, vectors)
    embed_record(arc, "arcface-r100")
    args = lambda ids, *o: gen_args(model, ids, tmp_path / "out", *o)[:2] + ["idiff_face"] + \
        gen_args(model, ids, tmp_path / "out", *o)[3:]  # noqa: E731
    res = CliRunner().invoke(create_cli(), args(arc))
    assert res.exit_code != 0 and "\n" not in res.output.strip()
    assert "are in space 'arcface-r100' (embedded by 'arcface-r100' (arc.npy.json)), but generator 'idiff_face' " \
           "is conditioned on 'elasticface-arc' vectors" in res.output
    assert not (tmp_path / "out").exists()
    res = CliRunner().invoke(create_cli(), args(plain))
    assert res.exit_code != 0 and "are of no known space (no record beside plain.npy" in res.output
    res = CliRunner().invoke(create_cli(), args(arc, "ids_space=elasticface-arc"))
    assert res.exit_code != 0 and "contradicts the record" in res.output
    # a file whose bytes changed since the record is no longer vouched for
    np.save(arc, vectors * 2)
    res = CliRunner().invoke(create_cli(), args(arc))
    assert "records other bytes than arc.npy holds now" in res.output
    # the user's word for a file made elsewhere passes the check: the (tiny) folder then fails to load as the
    # full-size model, in one line
    res = CliRunner().invoke(create_cli(), args(plain, "ids_space=elasticface-arc"))
    assert res.exit_code != 0 and "does not match the IDiff-Face/UIFace denoiser" in res.output
    assert "\n" not in res.output.strip()


def test_embed_records_are_followed_through_sample_ids_and_extractor_spaces(tmp_path):
    from facebench.generation.sampling import sample_ids_file
    from facebench.generation.spaces import extractor_space, recorded_space

    feats = tmp_path / "feats.npy"
    np.save(feats, np.random.default_rng(5).standard_normal((40, 8)).astype(np.float32))
    embed_record(feats, "elasticface-arc")
    sample_ids_file(tmp_path / "ids.npy", 5, features=str(feats), tau=0.9)
    space, how = recorded_space(tmp_path / "ids.npy")
    assert space == "elasticface-arc" and how.startswith("sampled from feats.npy, embedded by 'elasticface-arc'")
    assert extractor_space("elasticface-arc") == "elasticface-arc"
    assert extractor_space("iresnet100") == "iresnet100"


def test_space_map_converts_and_is_recorded(tmp_path):
    from facebench.generation.spaces import SpaceMap, check_space, fit_space_map
    from facebench.pluginmanager import registry

    rng = np.random.default_rng(6)
    q, _ = np.linalg.qr(rng.standard_normal((512, 512)))
    src = rng.standard_normal((600, 512))
    tgt = src @ q
    w = fit_space_map(src, tgt)
    np.testing.assert_allclose(w, q, atol=1e-8)  # the rotation is recovered exactly from noise-free pairs
    path = tmp_path / "map.npz"
    SpaceMap(w, "arcface-r100", "elasticface-arc", path).save()
    ids = tmp_path / "ids.npy"
    np.save(ids, src[:4].astype(np.float32))
    embed_record(ids, "arcface-r100")
    request = type("R", (), {"ids": str(ids), "features": None, "stats": None, "ref_images": None})()
    spec = registry("generator").get("idiff_face")
    decision = check_space(spec, request, {"space_map": str(path)}, None)
    converted = decision.apply(np.load(ids))
    np.testing.assert_allclose(converted, np.load(ids).astype(np.float64) @ q, rtol=1e-4, atol=1e-4)
    assert decision.record["converted"]["from"] == "arcface-r100" and decision.record["vectors"] == "arcface-r100"
    SpaceMap(w, "magface-r100", "elasticface-arc", path).save()
    with pytest.raises(DataError, match="maps 'magface-r100' to 'elasticface-arc'; these vectors need "
                                        "'arcface-r100' to 'elasticface-arc'"):
        check_space(spec, request, {"space_map": str(path)}, None)
    with pytest.raises(FacebenchError, match="declares no embedding space"):
        check_space(registry("generator").get("idiff_face_tiny"), request, {"ids_space": "x"}, None)


def test_space_map_command_fits_from_two_embed_outputs(tmp_path):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((50, 16))
    q, _ = np.linalg.qr(rng.standard_normal((16, 16)))
    for name, x, extractor in (("a.npy", a, "arcface-r100"), ("b.npy", a @ q, "elasticface-arc")):
        np.save(tmp_path / name, x.astype(np.float32))
        embed_record(tmp_path / name, extractor)
    res = CliRunner().invoke(create_cli(), ["idiff-face", "space-map", str(tmp_path / "a.npy"),
                                            str(tmp_path / "b.npy"), "--out", str(tmp_path / "m.npz")])
    assert res.exit_code == 0, res.output
    assert "arcface-r100 -> elasticface-arc from 50 pairs; cosine of mapped to target: median 1.000" in res.output
    with np.load(tmp_path / "m.npz") as m:
        np.testing.assert_allclose(m["matrix"], q, atol=1e-5)


# ---------------------------------------------------------------------------------------- packaging

def test_make_tiny_command_and_plugin_import_nothing_heavy(tmp_path):
    res = CliRunner().invoke(create_cli(), ["idiff-face", "make-tiny", str(tmp_path / "m")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(
        [tiny.CHECKPOINT, "facebench_tiny.json", layout.DECODER_FILE])
    res = CliRunner().invoke(create_cli(), ["idiff-face", "make-tiny", str(tmp_path / "m")])
    assert res.exit_code == 0 and "already complete" in res.output, res.output  # the rerun contract
    res = CliRunner().invoke(create_cli(), ["idiff-face", "make-tiny", str(tmp_path / "m"), "--seed", "1"])
    assert res.exit_code == 2 and "config.seed" in res.output and "--overwrite" in res.output, res.output
    code = ("import sys, facebench_plugins.idiff_face.plugin, facebench_plugins.idiff_face.cli; "
            "sys.exit(int('torch' in sys.modules or 'numpy' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("write, message", [
    (lambda p: np.save(p.open("wb"), np.eye(4)), "must be an .npz archive, got a .npy array"),
    (lambda p: p.write_bytes(b""), "the file is empty"),
    (lambda p: p.write_bytes(b"PK\x03\x04 cut short"), "cannot read space map"),
    (lambda p: np.savez(p, matrix=np.eye(4), from_space=np.str_("a")), "space map: missing to_space"),
    (lambda p: np.savez(p, matrix=np.array([{"a": 1}], dtype=object), from_space=np.str_("a"),
                        to_space=np.str_("b")), "holds Python objects (pickled), which facebench never loads"),
    (lambda p: np.savez(p, matrix=np.full((4, 4), np.nan), from_space=np.str_("a"), to_space=np.str_("b")),
     "matrix must be a finite 2-d float array"),
    (lambda p: np.savez(p, matrix=np.eye(4), from_space=np.str_(""), to_space=np.str_("b")),
     "from_space and to_space must be non-empty strings"),
])
def test_a_hostile_space_map_is_one_line_error(tmp_path, write, message):
    from facebench.generation.spaces import SpaceMap

    path = tmp_path / "map.npz"
    write(path)
    with pytest.raises(DataError) as caught:
        SpaceMap.load(path)
    assert str(caught.value).startswith(str(path)) and message in str(caught.value), str(caught.value)
    assert "\n" not in str(caught.value)
