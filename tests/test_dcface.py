"""DCFace (plugins/dcface): the release's checkpoint layouts and strict loading both ways, the samplers'
arithmetic against an independent computation, ``generate --generator dcface_tiny`` from its first stage
and from ``--ref-images`` with a style bank built here (recorded as real appearance, with the bank's
sha256), a kill -9 resume to the same bytes, and one-line errors.

The release-layout facts (tensor names, shapes, dtypes and the hyper-parameters they come from) are the
manifests in ``data/compat/dcface_*.json``, written from the release's own classes by
``benchmarks/parity/dcface.py --write-manifests``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import conftest as fx
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from facebench_plugins.dcface import layout
from facebench_plugins.dcface.checkpoint import read_checkpoint
from facebench_plugins.dcface.generator import (
    CODE_DIM,
    TINY_STEPS,
    DCFaceGenerator,
    dcface_tiny,
)
from facebench_plugins.dcface.networks import UNet
from facebench_plugins.dcface.schedulers import DDIM, SpacedDDPM

import facebench
from facebench.cli import create_cli
from facebench.data import open_dataset
from facebench.data.tensors import to_uint8
from facebench.errors import DataError, FacebenchError, MissingFileError

COMPAT = Path(__file__).parent / "data" / "compat"
PNG = ("--set", 'generation.image_encoding="png"')


def manifest(name: str) -> dict:
    return json.loads((COMPAT / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dcface") / "tiny"
    result = CliRunner().invoke(create_cli(), ["dcface", "make-tiny", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def bank(tmp_path_factory) -> Path:
    """A style bank: the aligned 56 px faces of a small toyfaces world (folder per identity)."""
    root = tmp_path_factory.mktemp("toy") / "toy"
    result = CliRunner().invoke(create_cli(), ["toyfaces", "build", str(root), "--identities", "3",
                                               "--images-per-identity", "2", "--size", "56", "--pairs", "20",
                                               "--packs", "toy_lfw", "--workers", "1"])
    assert result.exit_code == 0, result.output
    return root / "train"


def gen_args(tiny: Path, bank: Path, out: Path, *extra: str, n_ids: int = 3, per_id: int = 2) -> list[str]:
    return ["generate", "--generator", "dcface_tiny", "--weights", str(tiny), "--n-ids", str(n_ids),
            "--images-per-id", str(per_id), "--generator-option", f"style_bank={bank}", "--out", str(out),
            "--device", "cpu", "--format", "folder", *PNG, *extra]


def dataset_pixels(out: Path) -> tuple[np.ndarray, np.ndarray]:
    reader = open_dataset(out)
    try:
        return np.stack([reader.image(i) for i in range(len(reader))]), np.asarray(reader.labels)
    finally:
        reader.close()


def one_error_line(result, *names) -> str:
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------------------------ release layouts


@pytest.mark.parametrize("name", ["dcface_3x3", "dcface_5x5"])
def test_released_checkpoint_layouts_are_the_release_manifests(name):
    """facebench's expected layout for the released hyper-parameters is, key for key, the state_dict the
    release's Trainer saves (centre tables: any row count, the feature width checked)."""
    m = manifest(name)
    hp = m["hyper_parameters"]
    config = layout.config_from_hparams(hp, Path(f"{name}.ckpt"))
    assert config.spatial_dim == int(name[-1]) and config.identity_block == 21 and config.style_block == 2
    assert config.unet.channel_mult == (1, 1, 2, 2, 4, 4) and config.unet.attention_ds == (16,)
    assert config.eval_ir.units == (3, 13, 30, 3) and config.image_size == 112 and config.use_ema
    expected = layout.expected_layout(config, hp)
    assert sorted(expected) == sorted(m["keys"])
    for key, (shape, dtype) in m["keys"].items():
        got = list(expected[key].shape)
        assert (got[1:] == shape[1:]) if key.endswith("center.weight") else (got == shape), key
        assert expected[key].is_floating_point() == dtype.startswith(("float", "bfloat")), key
    # the sampling networks take their tensors from those keys, strictly
    declared = {k: types.SimpleNamespace(shape=tuple(s), is_float=d.startswith("float"))
                for k, (s, d) in m["keys"].items()}
    assert layout.layout_problem(expected, declared) is None


def test_first_stage_layout_is_the_release_manifest():
    m = manifest("dcface_ffhq_10m")
    with torch.device("meta"):
        state = UNet(layout.STAGE1_CONFIG).state_dict()
    assert {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()} == m["keys"]


def _rewrite(src: Path, dst: Path, change) -> Path:
    ckpt = torch.load(src, weights_only=True)
    change(ckpt["state_dict"])
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dst)
    return dst


def test_tiny_release_checkpoint_loads_strictly_both_ways(tiny, tmp_path):
    """The tiny file has exactly the release's prefixes; the EMA copy is what samples (use_ema); a missing
    key and an unexpected key are each refused in one line naming the key."""
    saved = torch.load(tiny / "dcface_3x3.ckpt", weights_only=True)["state_dict"]
    prefixes = {k.split(".")[0] for k in saved}
    assert prefixes == {"model", "ema_model", "label_mapping", "external_mapping", "recognition_model",
                        "recognition_model_eval"}
    model, _ = layout.load_dcface(tiny / "dcface_3x3.ckpt")
    w = "out.2.weight"
    assert torch.equal(model.unet.state_dict()[w], saved["ema_model.averaged_model." + w])
    assert not torch.equal(model.unet.state_dict()[w], saved["model." + w])
    assert torch.equal(model.external_mapping.state_dict()["cross_attn_adapter.weight"],
                       saved["external_mapping.cross_attn_adapter.weight"])

    key = "ema_model.averaged_model.middle_block.1.qkv.weight"
    cases = {"missing": lambda s: s.pop(key), "unexpected": lambda s: s.__setitem__("model.extra.weight", torch.ones(2)),
             "shape mismatch": lambda s: s.__setitem__(key, s[key][:, :, 0])}
    for word, change in cases.items():
        bad = _rewrite(tiny / "dcface_3x3.ckpt", tmp_path / word / "dcface_3x3.ckpt", change)
        with pytest.raises(DataError) as err:
            layout.load_dcface(bad)
        text = str(err.value)
        assert "\n" not in text and word in text and str(bad) in text, text
        assert (key if word != "unexpected" else "model.extra.weight") in text, text


def test_wrong_layout_through_generate_is_one_line_naming_the_file(tiny, bank, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / layout.STAGE1).write_bytes((tiny / layout.STAGE1).read_bytes())
    bad = _rewrite(tiny / "dcface_3x3.ckpt", model / "dcface_3x3.ckpt",
                   lambda s: s.pop("label_mapping.scaler.0"))
    res = CliRunner().invoke(create_cli(), gen_args(model, bank, tmp_path / "run"))
    one_error_line(res, bad, "missing", "label_mapping.scaler.0")
    assert not (tmp_path / "run").exists()


class _AnyNode:
    """Pickled as ``omegaconf.nodes.AnyNode`` (the value in ``_val``), as omegaconf pickles a leaf."""

    def __init__(self, value):
        self._val, self._metadata = value, None


class _DictConfig:
    """Pickled as ``omegaconf.dictconfig.DictConfig`` (nodes in ``_content``)."""

    def __init__(self, content):
        self._content, self._metadata, self._parent = content, None, None


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _as_omegaconf(value):
    if isinstance(value, dict):
        return _DictConfig({k: _as_omegaconf(v) for k, v in value.items()})
    return _AnyNode(value)


def test_hyper_parameters_are_read_as_data_and_no_pickled_code_runs(tiny, tmp_path):
    """omegaconf containers (as hydra hands them to the Trainer) become plain data; any other object is an
    inert record: a pickled ``__reduce__`` payload is never called."""
    marker = tmp_path / "PWNED"
    ckpt = torch.load(tiny / "dcface_3x3.ckpt", weights_only=True)
    hp = ckpt["hyper_parameters"]
    ckpt["hyper_parameters"] = {**hp, "unet_config": _as_omegaconf(hp["unet_config"]), "trap": _Payload(marker)}
    saved, modules = {}, {"omegaconf": types.ModuleType("omegaconf")}
    for cls, module, name in ((_AnyNode, "omegaconf.nodes", "AnyNode"), (_DictConfig, "omegaconf.dictconfig", "DictConfig")):
        saved[cls] = (cls.__module__, cls.__qualname__)
        cls.__module__, cls.__qualname__ = module, name
        modules[module] = types.ModuleType(module)
        setattr(modules[module], name, cls)
    path = tmp_path / "dcface_3x3.ckpt"
    assert not any(m in sys.modules for m in modules)  # a stand-in for omegaconf, only while saving
    sys.modules.update(modules)
    try:
        torch.save(ckpt, path)
    finally:
        for m in modules:
            sys.modules.pop(m)
        for cls, (module, name) in saved.items():
            cls.__module__, cls.__qualname__ = module, name
    read = read_checkpoint(path)
    assert read.hparams["unet_config"] == hp["unet_config"]
    assert set(read.hparams["trap"]) == {"__object__"}  # a record naming what was pickled, never called
    layout.load_dcface(path)  # the containers' values size the networks as the plain dict does
    assert not marker.exists()


# ------------------------------------------------------------------------------------------- samplers


def test_ddim_is_the_release_scheduler_arithmetic():
    """Timesteps ``arange(50) * 20`` reversed; one step against the DDIM formula in float64 (linear betas
    in float32 as the release makes them, the last step's previous alpha product 1)."""
    sched = DDIM()
    assert sched.set_timesteps(50).tolist() == list(range(980, -1, -20))
    betas = np.linspace(0.0001, 0.02, 1000, dtype=np.float32)
    acp = np.cumprod(1 - betas).astype(np.float64)
    g = torch.Generator().manual_seed(0)
    x, eps, z = (torch.randn((2, 3, 4, 4), generator=g) for _ in range(3))
    for t, eta in ((500, 1.0), (500, 0.0), (0, 1.0)):
        a, ap = acp[t], (acp[t - 20] if t >= 20 else 1.0)
        x0 = np.clip((x.double().numpy() - np.sqrt(1 - a) * eps.double().numpy()) / np.sqrt(a), -1, 1)
        var = (1 - ap) / (1 - a) * (1 - a / ap)
        want = np.sqrt(ap) * x0 + np.sqrt(1 - ap - eta ** 2 * var) * eps.double().numpy() + eta * np.sqrt(var) * z.double().numpy()
        got, _ = sched.step(eps, t, x, eta, noise=lambda shape: z)
        assert np.abs(got.double().numpy() - want).max() < 1e-5, (t, eta)


def test_first_stage_respacing_is_guided_diffusion_s():
    """100 of 1000 steps: ``round(i * 999 / 99)``; the respaced betas keep the original cumulative products."""
    ddpm = SpacedDDPM(1000, 100)
    assert ddpm.timestep_map == [round(i * 999 / 99) for i in range(100)]
    base = np.cumprod(1 - np.linspace(0.0001, 0.02, 1000))
    assert np.allclose(np.cumprod(1 - ddpm.betas), base[ddpm.timestep_map], rtol=1e-12)


# ------------------------------------------------------------------------------------------- generate


N_IDS, PER_ID = 4, 2


def shard_args(tiny: Path, bank: Path, out: Path) -> list[str]:
    """Four identities of two images, one identity per shard (the kill -9 test stops between shards)."""
    return gen_args(tiny, bank, out, "--ids-per-shard", "1", n_ids=N_IDS, per_id=PER_ID)


@pytest.fixture(scope="module")
def run(tiny, bank, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gen") / "run"
    res = CliRunner().invoke(create_cli(), shard_args(tiny, bank, out))
    assert res.exit_code == 0, res.output
    return out


def test_generate_from_the_first_stage_with_a_style_bank(tiny, bank, run):
    pixels, labels = dataset_pixels(run)
    assert pixels.shape == (8, 56, 56, 3) and labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    card = json.loads((run / "dataset.json").read_text())
    info = card["generator_info"]
    assert info["conditioned_on_real_appearance"] is True and info["untrained"] is True
    digest = hashlib.sha256()  # the bank's sha256, independently: every photo's name and content, in order
    for photo in sorted(p for p in bank.rglob("*") if p.is_file()):
        name = photo.relative_to(bank).as_posix()
        digest.update(name.encode() + b"\0" + hashlib.sha256(photo.read_bytes()).hexdigest().encode() + b"\n")
    assert info["style_bank"] == {"path": str(bank), "sha256": digest.hexdigest(), "images": 6,
                                  "layout": "identity folders", "size": 56}
    assert info["sampler"]["steps"] == TINY_STEPS and info["sampler"]["eta"] == 1.0
    assert card["ids_source"]["dcface_first_stage"]["n"] == N_IDS
    codes = np.load(run / "ids.npy")
    assert codes.shape == (N_IDS, CODE_DIM) and codes[:, 2].tolist() == list(range(N_IDS))

    # the same images from the Python API, identity by identity as the shards ran; one image per DDIM
    # batch gives them again up to float rounding (per-image seeds, not per-batch ones)
    request = types.SimpleNamespace(ids=None, n_ids=N_IDS, stats=None, features=None)
    for batch_size, ids in ((16, (0, 3)), (1, (2,))):
        gen = facebench.load_generator("dcface_tiny", weights=str(tiny), style_bank=str(bank), batch_size=batch_size)
        api_codes, _, _ = gen.identity_codes(request, None, seed=0, device="cpu")
        assert np.array_equal(api_codes, codes)
        for i in ids:
            gen.reseed(0)
            images = gen.generate(torch.from_numpy(np.repeat(codes[i:i + 1], PER_ID, axis=0)))
            assert images.shape == (2, 3, 56, 56) and float(images.min()) >= -1 and float(images.max()) <= 1
            got, want = to_uint8(images).astype(int), pixels[labels == i].astype(int)
            assert np.array_equal(got, want) if batch_size > 1 else np.abs(got - want).max() <= 1
    assert not np.array_equal(pixels[0], pixels[1]) and not np.array_equal(pixels[0], pixels[2])


def test_report_card_says_conditioned_on_real_appearance(run, tmp_path):
    html = tmp_path / "r.html"
    res = CliRunner().invoke(create_cli(), ["report", str(run), "--out", str(html)])
    assert res.exit_code == 0, res.output
    text = html.read_text()
    bank = json.loads((run / "dataset.json").read_text())["generator_info"]["style_bank"]
    assert "conditioned on real appearance" in text and bank["sha256"] in text
    assert "pipeline check: untrained generator" in text


def test_style_image_and_noise_make_the_difference_within_an_identity(tiny, bank):
    """Same identity image, same style and same noise -> the same image; another style image -> another."""
    gen = dcface_tiny(str(tiny), style_bank=str(bank))
    ids = torch.from_numpy(gen.stage1_images([5, 5])).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    style = torch.from_numpy(np.stack([gen.bank.image(0), gen.bank.image(3)])).permute(0, 3, 1, 2).float() \
        .div(127.5).sub(1)

    def noise():
        gens = [torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)]
        return lambda shape: torch.cat([torch.randn((1, *shape[1:]), generator=g) for g in gens])

    same = gen.sample(ids, style[[0, 0]], noise())
    assert torch.equal(same[0], same[1])
    other = gen.sample(ids, style, noise())
    assert torch.equal(other[0], same[0]) and not torch.equal(other[1], same[1])


def test_generate_from_reference_photos(tiny, bank, tmp_path, monkeypatch):
    """--ref-images: each identity's first photo (by name), detected and aligned to 56 px, is its identity
    image; the card records the photos and the rule."""
    import test_ref_images as refs

    cli = refs.ref_cli(monkeypatch)
    tree = refs.write_tree(tmp_path / "people")
    out = tmp_path / "run"
    args = ["generate", "--generator", "dcface_tiny", "--weights", str(tiny), "--ref-images", str(tmp_path / "people"),
            "--detector", "known-faces", "--images-per-id", "1", "--generator-option", f"style_bank={bank}",
            "--out", str(out), "--device", "cpu", *PNG]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    card = json.loads((out / "dataset.json").read_text())
    used = card["ids_source"]["ref_images"]["identity_images"]
    names = sorted(tree)
    assert [u["identity"] for u in used] == names and [u["photo"] for u in used] == [f"{n}/00.png" for n in names]
    gen = dcface_tiny(str(tiny), style_bank=str(bank))
    from facebench.pluginmanager import build_plugin_set  # noqa: F401 (the detector is registered by ref_cli)

    request = types.SimpleNamespace(ids=None, n_ids=None, stats=None, features=None, detector="known-faces",
                                    detector_weights=None)
    from facebench.data.photos import PhotoFolder

    codes, _, _ = gen.identity_codes(request, PhotoFolder.scan(tmp_path / "people"), seed=0, device="cpu")
    assert np.array_equal(codes, np.load(out / "ids.npy"))
    from PIL import Image

    for i, name in enumerate(names):
        path, points = tree[name][0]
        want = facebench.align(np.asarray(Image.open(path).convert("RGB")), points, size=56)
        assert np.array_equal(gen._ref_images[i], want)


def test_generate_resumes_byte_identically_after_kill_9(tiny, bank, run, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "FACEBENCH_QUIET": "1"}
    done = fx.kill_after_shards([sys.executable, "-m", "facebench", *shard_args(tiny, bank, out)],
                                out / "manifest.json", shards=1, env=env, timeout=300)
    assert 1 <= done < N_IDS
    assert not (out / "dataset.json").exists()
    res = CliRunner().invoke(create_cli(), shard_args(tiny, bank, out))
    assert res.exit_code == 0, res.output
    assert f"generated {N_IDS - done} of {N_IDS} shards in this run" in res.output
    files = lambda o: {p.relative_to(o): p.read_bytes() for p in (o / "dataset.folder").rglob("*") if p.is_file()}  # noqa: E731
    assert files(run) == files(out) and len(files(out)) == N_IDS * PER_ID
    assert (out / "ids.npy").read_bytes() == (run / "ids.npy").read_bytes()


# ---------------------------------------------------------------------------------------------- errors


def test_style_bank_problems_are_one_line(tiny, bank, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    from PIL import Image

    Image.new("RGB", (112, 112)).save(wrong / "big.png")
    cases = [(None, ["style_bank=DIR is required"]), (tmp_path / "nowhere", [tmp_path / "nowhere"]),
             (empty, [empty, "no photos"]), (broken, [broken / "a.png"]), (wrong, [wrong / "big.png", "56 x 56"])]
    for folder, names in cases:
        args = gen_args(tiny, bank, tmp_path / "run")
        if folder is None:
            i = args.index(f"style_bank={bank}")
            del args[i - 1:i + 1]
        else:
            args[args.index(f"style_bank={bank}")] = f"style_bank={folder}"
        one_error_line(CliRunner().invoke(create_cli(), args), *names)
        assert not (tmp_path / "run").exists()


def test_identity_sources_and_model_files_are_checked_in_one_line(tiny, bank, tmp_path):
    ids = tmp_path / "ids.npy"
    np.save(ids, np.ones((2, 8), np.float32))
    args = gen_args(tiny, bank, tmp_path / "run")
    i = args.index("--n-ids")
    with_ids = args[:i] + ["--ids", str(ids)] + args[i + 2:]
    one_error_line(CliRunner().invoke(create_cli(), with_ids), "--ids", "identity images")
    perturbed = args + ["--set", "generation.perturb.sigmas=[0.3]"]
    one_error_line(CliRunner().invoke(create_cli(), perturbed), "not DCFace identity codes")
    nowhere = tmp_path / "no-model"
    one_error_line(CliRunner().invoke(create_cli(), gen_args(nowhere, bank, tmp_path / "run")), nowhere)
    half = tmp_path / "half"
    half.mkdir()
    (half / "dcface_3x3.ckpt").write_bytes((tiny / "dcface_3x3.ckpt").read_bytes())
    one_error_line(CliRunner().invoke(create_cli(), gen_args(half, bank, tmp_path / "run")), half / layout.STAGE1)
    other = gen_args(tiny, bank, tmp_path / "run", "--generator-option", "checkpoint=dcface_5x5.ckpt")
    one_error_line(CliRunner().invoke(create_cli(), other), tiny / "dcface_5x5.ckpt")
    released = ["generate", "--generator", "dcface", "--n-ids", "1", "--out", str(tmp_path / "run")]
    one_error_line(CliRunner().invoke(create_cli(), released), "--weights")
    assert not (tmp_path / "run").exists()
    with pytest.raises(MissingFileError):
        DCFaceGenerator(tmp_path / "none")
    for bad in ({"eta": 2.0}, {"stage1_steps": 1}, {"steps": 0}):
        with pytest.raises(FacebenchError):
            dcface_tiny(str(tiny), style_bank=str(bank), **bad)


def test_make_tiny_command_and_help_import_nothing_heavy(tmp_path):
    out = tmp_path / "t"
    res = CliRunner().invoke(create_cli(), ["dcface", "make-tiny", str(out), "--spatial-dim", "5", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "facebench_tiny.json").read_text())["spatial_dim"] == 5
    assert read_checkpoint(out / "dcface_3x3.ckpt").hparams["external_mapping"]["spatial_dim"] == 5
    one_error_line(CliRunner().invoke(create_cli(), ["dcface", "make-tiny", str(out)]), out, "--overwrite")
    code = ("import sys\nfrom facebench.cli import main\n"
            "for argv in (['generate', '--help'], ['dcface', 'make-tiny', '--help']):\n"
            "    sys.argv = ['facebench', *argv]\n"
            "    try:\n        main()\n    except SystemExit:\n        pass\n"
            "print('HEAVY', sorted(m for m in ('torch', 'facebench_plugins.dcface.generator') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in run.stdout, run.stdout[-500:] + run.stderr[-2000:]
    assert "make-tiny" in run.stdout and "dcface_tiny" not in run.stderr
