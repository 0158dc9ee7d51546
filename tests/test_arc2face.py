"""The Arc2Face generator plugin on its tiny random-weight model: layout, strict loading, conditioning,
seeded sampling, alignment, sharded resumable generation and the whole pipeline to a report.

Needs the optional extra (``pip install -e ".[arc2face]"``); skipped without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

import torch  # noqa: E402
from conftest import kill_after_shards, torchrun  # noqa: E402
from facebench_plugins.arc2face import alignment, configs  # noqa: E402
from facebench_plugins.arc2face.generator import Arc2FaceGenerator, Arc2FaceOptions, arc2face_tiny  # noqa: E402
from facebench_plugins.arc2face.layout import read_weights  # noqa: E402
from facebench_plugins.arc2face.tiny import PROMPT, write_model_dir  # noqa: E402

from facebench import hookimpl  # noqa: E402
from facebench.cli import create_cli  # noqa: E402
from facebench.errors import DataError, FacebenchError, MissingFileError  # noqa: E402
from facebench.pluginmanager import build_plugin_set  # noqa: E402

HERE = Path(__file__).resolve().parent
LAYOUT = ["arc2face/config.json", "arc2face/diffusion_pytorch_model.safetensors", "encoder/config.json",
          "encoder/pytorch_model.bin", "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
          "tokenizer/vocab.json", "tokenizer/merges.txt", "tokenizer/tokenizer_config.json",
          "tokenizer/special_tokens_map.json", "scheduler/scheduler_config.json"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("a2f") / "tiny"
    res = CliRunner().invoke(create_cli(), ["arc2face", "make-tiny", str(out)])
    assert res.exit_code == 0, res.output
    assert "untrained" in res.output
    return out


@pytest.fixture(scope="module")
def gen(tiny):
    return arc2face_tiny(tiny, steps=4)


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 512)).astype(np.float32)


# ------------------------------------------------------------------------------------------ layout


def test_make_tiny_writes_the_release_layout_readable_by_the_libraries(tiny):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    assert all((tiny / f).is_file() for f in LAYOUT)
    assert json.loads((tiny / "facebench_tiny.json").read_text())["untrained"] is True
    # the encoder file is the release's format: a plain state dict in the transformers-4 key layout
    state = torch.load(tiny / "encoder" / "pytorch_model.bin", weights_only=True)
    assert all(k.startswith("text_model.") for k in state)
    # each folder is what the libraries themselves load (the tokenizer built offline from our files)
    tok = CLIPTokenizer.from_pretrained(str(tiny / "tokenizer"))
    ids = tok(PROMPT, padding="max_length", max_length=tok.model_max_length).input_ids
    words = tok.convert_ids_to_tokens(ids)
    assert words[:7] == ["<|startoftext|>", "photo</w>", "of</w>", "a</w>", "id</w>", "person</w>", "<|endoftext|>"]
    assert len(ids) == 16
    unet = UNet2DConditionModel.from_pretrained(str(tiny), subfolder="arc2face")
    vae = AutoencoderKL.from_pretrained(str(tiny), subfolder="vae")
    enc = CLIPTextModel.from_pretrained(str(tiny), subfolder="encoder")
    g = arc2face_tiny(tiny)
    for ours, theirs in ((g.unet, unet), (g.vae, vae), (g.encoder, enc)):
        a, b = ours.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_missing_files_are_named_in_one_line(tiny, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny, broken)
    (broken / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    (broken / "tokenizer" / "merges.txt").unlink()
    shutil.rmtree(broken / "scheduler")
    with pytest.raises(MissingFileError) as err:
        arc2face_tiny(broken)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{broken}: Arc2Face model files not found (missing ")
    for name in ("vae/diffusion_pytorch_model.safetensors (or diffusion_pytorch_model.bin)",
                 "tokenizer/merges.txt", "scheduler/scheduler_config.json"):
        assert str(broken / name) in msg
    ids = tmp_path / "ids.npy"
    np.save(ids, _vectors(2))
    res = CliRunner().invoke(create_cli(), ["generate", "--generator", "arc2face_tiny", "--weights", str(broken),
                                            "--ids", str(ids), "--out", str(tmp_path / "run"), "--device", "cpu"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and res.output.startswith("error: ")
    with pytest.raises(FacebenchError, match="needs its model directory"):
        __import__("facebench").load_generator("arc2face")


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_weights_are_loaded_without_running_pickle_code(tiny, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny, bad)
    target = tmp_path / "pwned"
    torch.save({"text_model.x": _Evil(str(target))}, bad / "encoder" / "pytorch_model.bin")
    with pytest.raises(DataError, match="refused to load Arc2Face CLIP text encoder: it holds a Python object"):
        arc2face_tiny(bad)
    assert not target.exists()
    (bad / "arc2face" / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match="cannot read Arc2Face UNet"):
        read_weights(bad / "arc2face" / "diffusion_pytorch_model.safetensors", "Arc2Face UNet")


def _narrowed_release_configs() -> dict:
    """The release's component configs (SD 1.5 block types, depths, cross-attention width 768, CLIP
    ViT-L/14 text layout) narrowed so a random-weight copy builds in seconds: same module names and key
    layout, smaller widths, two encoder layers, a 64 px VAE."""
    cfg = configs.release_configs()
    cfg["unet"].update(block_out_channels=[32, 64, 64, 64], sample_size=8)
    cfg["vae"].update(block_out_channels=[32, 32, 32, 32], sample_size=64)
    cfg["encoder"].update(num_hidden_layers=2, intermediate_size=128, vocab_size=64)
    return cfg


def _deprecated_vae_names(path: Path) -> int:
    """Rewrite a VAE file with SD 1.5's pre-diffusers-0.14 attention names; returns how many keys moved."""
    from safetensors.torch import load_file, save_file

    state = load_file(str(path))
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    renamed = {}
    for key, value in state.items():
        new = key
        if ".attentions." in key:
            for a, b in old.items():
                new = new.replace(f".{a}.", f".{b}.")
        renamed[new] = value
    save_file(renamed, str(path))
    return sum(k not in state for k in renamed)


@pytest.mark.parametrize("encoder_format", ["bin", "safetensors"])
def test_strict_load_of_the_released_layouts(tmp_path, encoder_format):
    cfg = _narrowed_release_configs()
    model = write_model_dir(tmp_path / "release", cfg, seed=3, encoder_format=encoder_format)
    assert _deprecated_vae_names(model / "vae" / "diffusion_pytorch_model.safetensors") == 16  # 2 x 4 x (w, b)
    g = Arc2FaceGenerator(model, options=Arc2FaceOptions(steps=2))
    assert g.encoder.config.hidden_size == 768 and g.native_size == 64 and g.image_size == 112
    assert not g.untrained  # no make-tiny marker: a user's model directory
    raw = read_weights(model / "vae" / "diffusion_pytorch_model.safetensors", "vae")
    loaded = g.vae.state_dict()
    assert torch.equal(loaded["encoder.mid_block.attentions.0.to_q.weight"],
                       raw["encoder.mid_block.attentions.0.query.weight"])
    out = g.generate(_vectors(1))
    assert out.shape == (1, 3, 112, 112) and torch.isfinite(out).all()
    # weights of another size are refused, naming the keys
    other = write_model_dir(tmp_path / "other", {**cfg, "unet": {**cfg["unet"], "layers_per_block": 1}})
    (model / "arc2face" / "diffusion_pytorch_model.safetensors").write_bytes(
        (other / "arc2face" / "diffusion_pytorch_model.safetensors").read_bytes())
    with pytest.raises(DataError, match=r"Arc2Face UNet does not fit its config.json: \d+ missing \(down_blocks"):
        Arc2FaceGenerator(model)


# ------------------------------------------------------------------------------------ conditioning


def test_prompt_embeds_put_the_normalised_vector_at_the_id_token(gen):
    v = _vectors(3)
    emb = gen.prompt_embeds(v)
    assert emb.shape == (3, 16, 512)
    # the vector's scale does not matter: it is L2-normalised first
    torch.testing.assert_close(gen.prompt_embeds(v * 7.5), emb, rtol=0, atol=1e-5)
    # causal attention: the tokens before "id" do not see it, those from "id" on do
    at = int((gen.prompt_ids[0] == gen.id_token).nonzero()[0])
    assert at == 4
    torch.testing.assert_close(emb[0, :at], emb[1, :at], rtol=0, atol=1e-6)
    assert (emb[0, at:] - emb[1, at:]).abs().max() > 1e-3
    with pytest.raises(FacebenchError, match=r"must be \(N, 512\)"):
        gen.prompt_embeds(np.zeros((2, 64), np.float32))
    with pytest.raises(FacebenchError, match="all zeros"):
        gen.prompt_embeds(np.zeros((1, 512), np.float32))


def test_identity_token_embedding_is_replaced_before_the_encoder_layers(gen):
    captured = []
    first_layer = next(m for n, m in gen.encoder.named_modules() if n.endswith("layers.0"))

    def keep_input(module, args, kwargs):
        captured.append(args[0] if args else kwargs["hidden_states"])

    hook = first_layer.register_forward_pre_hook(keep_input, with_kwargs=True)
    try:
        v = _vectors(1)
        gen.prompt_embeds(v)
    finally:
        hook.remove()
    # the first encoder layer sees token + position embeddings: take the positions off again
    pos = next(m for n, m in gen.encoder.named_modules() if n.endswith("position_embedding")).weight
    tokens = captured[0][0] - pos[: captured[0].shape[1]]
    at = int((gen.prompt_ids[0] == gen.id_token).nonzero()[0])
    unit = torch.from_numpy(v[0] / np.linalg.norm(v[0]))
    torch.testing.assert_close(tokens[at], unit, rtol=0, atol=1e-6)
    # every other position keeps its token's embedding
    table = gen.encoder.get_input_embeddings().weight
    keep = [i for i in range(len(tokens)) if i != at]
    torch.testing.assert_close(tokens[keep], table[gen.prompt_ids[0, keep]], rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------- sampling


def test_sample_is_uint8_at_native_size_and_seeded_per_image(gen):
    v = _vectors(3)
    a = gen.sample(v, [11, 12, 13])
    assert a.shape == (3, 56, 56, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(gen.sample(v, [11, 12, 13]), a)
    # an image depends on its own seed only, not on its batch neighbours
    assert np.abs(gen.sample(v[1:2], [12]).astype(int) - a[1:2].astype(int)).max() <= 1
    changed = gen.sample(v, [11, 99, 13])
    assert np.abs(changed[1].astype(int) - a[1].astype(int)).mean() > 1
    # one identity, different seeds: different images (diffusion noise is the source of variation)
    same_id = gen.sample(np.repeat(v[:1], 2, axis=0), [1, 2])
    assert np.abs(same_id[0].astype(int) - same_id[1].astype(int)).mean() > 1


def test_generate_keeps_the_generator_contract_and_reseeds(gen):
    v = torch.from_numpy(_vectors(4))
    gen.reseed(5)
    a = gen.generate(v)
    assert a.shape == (4, 3, 56, 56) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1 and a.std() > 0.01
    gen.reseed(5)
    assert torch.equal(gen.generate(v), a)
    gen.reseed(5)
    first = gen.generate(v[:2])
    second = gen.generate(v[2:])  # the seed stream continues: the same images as one call of four
    assert torch.allclose(torch.cat([first, second]), a, atol=2e-6)
    with pytest.raises(FacebenchError, match="masks=None"):
        gen.generate(v, masks=torch.ones(4, 49))


def test_generate_is_the_aligned_sample(gen):
    v = _vectors(2)
    gen.reseed(9)
    seeds = gen.next_seeds(2)
    gen.reseed(9)
    aligned = gen.generate(v)
    native = torch.from_numpy(gen.sample(v, seeds)).permute(0, 3, 1, 2).float() / 255
    expect = alignment.warp(native, alignment.ffhq_to_arcface(56, 56), 56) * 2 - 1
    # generate aligns the float decoder output, the check aligns the uint8 image: one grey level apart
    assert (aligned - expect).abs().max() < 2 / 255 + 1e-6


class _LandmarkPlugin:
    """A 'landmark model' that reports the canonical FFHQ points shifted by a fixed offset."""

    shift = (2.0, -1.0)

    @hookimpl
    def register_feature_extractors(self, register):
        register("fake-landmarks", self.build, "test landmarks", attribute="landmarks")
        register("not-landmarks", self.build, "test pose", attribute="pose")

    @classmethod
    def build(cls, weights=None, device="cpu"):
        class Model:
            def embed(self, images):
                n, size = len(images), images.shape[1]
                pts = alignment.canonical_ffhq_points(size) - 0.5 + np.array(cls.shift)
                return np.repeat(pts[None], n, axis=0).reshape(n, 10)
        return Model()


def test_realignment_through_a_registered_landmark_extractor(tiny, monkeypatch):
    from facebench import pluginmanager

    plugins = build_plugin_set(extra_plugins={"fake": _LandmarkPlugin()})

    def with_fake():
        return plugins

    with_fake.cache_clear = lambda: None  # reset_plugins() of the test fixtures calls it
    monkeypatch.setattr(pluginmanager, "get_plugin_set", with_fake)
    fixed = arc2face_tiny(tiny, steps=2)
    moved = arc2face_tiny(tiny, steps=2, landmarks="fake-landmarks")
    assert moved.info["alignment"] == "landmarks: fake-landmarks"
    v = _vectors(2)
    images = fixed.decode(fixed.latents(fixed.prompt_embeds(v), [1, 2]))
    shift = np.array([[1, 0, -_LandmarkPlugin.shift[0]], [0, 1, -_LandmarkPlugin.shift[1]]])
    expect = alignment.warp(images, alignment.compose(fixed.matrix, shift), 56).clamp(0, 1)
    torch.testing.assert_close(moved.align(images), expect, rtol=0, atol=1e-5)
    errors = alignment.landmark_error(moved.detect_landmarks(images), 56)
    # the landmarks are off by the shift: that many native pixels, in ArcFace 112 px units
    scale = np.sqrt(np.linalg.det(alignment.ffhq_to_arcface(56)[:, :2]))
    assert errors == pytest.approx(np.full(2, np.hypot(*_LandmarkPlugin.shift) * scale), abs=1e-6)
    with pytest.raises(FacebenchError, match="is not a landmark model"):
        arc2face_tiny(tiny, landmarks="not-landmarks")


def test_options_are_checked_and_recorded(tiny):
    from facebench.errors import ConfigError

    g = arc2face_tiny(tiny, scheduler="lcm")
    assert g.info["sampler"] == {"scheduler": "lcm", "steps": 4, "guidance": 1.0, "batch_size": 8, "dtype": "fp32"}
    assert g.info["untrained"] is True and g.info["pipeline_check"] is True
    assert arc2face_tiny(tiny, dtype="fp16").info["sampler"]["dtype"] == "fp32 (fp16 requested; CPU runs fp32)"
    with pytest.raises(ConfigError, match="unknown config key 'stepz'"):
        arc2face_tiny(tiny, stepz=3)
    with pytest.raises(ConfigError, match="scheduler must be one of dpmsolver\\+\\+, ddim, lcm"):
        arc2face_tiny(tiny, scheduler="euler")


# -------------------------------------------------------------------------------------- generation


def _gen_args(tiny: Path, ids: Path, out: Path, *extra: str) -> list[str]:
    return ["generate", "--generator", "arc2face_tiny", "--weights", str(tiny), "--ids", str(ids),
            "--images-per-id", "3", "--ids-per-shard", "1", "--batch-size", "2", "--out", str(out),
            "--device", "cpu", "--set", "generation.image_encoding=\"png\"", "--generator-option", "steps=3", *extra]


def _tree(out: Path) -> dict[str, bytes]:
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted((out / "dataset.folder").rglob("*"))
             if p.is_file()}
    files["dataset.json"] = (out / "dataset.json").read_bytes()
    files["ids.npy"] = (out / "ids.npy").read_bytes()
    return files


def test_generate_kill_9_and_resume_is_byte_identical(tiny, tmp_path):
    ids = tmp_path / "ids.npy"
    np.save(ids, _vectors(14, seed=4))
    full = tmp_path / "full"
    res = CliRunner().invoke(create_cli(), _gen_args(tiny, ids, full))
    assert res.exit_code == 0, res.output
    summary = json.loads((full / "dataset.json").read_text())
    assert summary["images"] == 42 and summary["settings"]["perturb"]["sigmas"] == [0.0]
    assert summary["generator_info"]["untrained"] is True and summary["generator_info"]["options"] == {"steps": 3}
    assert summary["stats"]["perturb"]["min_cos"] > 0.999999  # sigma 0: the identity vector itself

    out = tmp_path / "killed"
    env = {**os.environ, "FACEBENCH_QUIET": "1"}
    done = kill_after_shards([sys.executable, "-m", "facebench", *_gen_args(tiny, ids, out)], out / "manifest.json",
                             env=env, timeout=300)
    assert 3 <= done < 14
    assert not (out / "dataset.json").exists()
    left = 14 - len(json.loads((out / "manifest.json").read_text())["done"])
    res = CliRunner().invoke(create_cli(), _gen_args(tiny, ids, out))
    assert res.exit_code == 0, res.output
    assert f"generated {left} of 14 shards in this run" in res.output
    assert _tree(out) == _tree(full)


def test_changed_sampler_settings_refuse_to_resume(tiny, tmp_path, monkeypatch):
    from facebench.generation import sharded as generation

    ids = tmp_path / "ids.npy"
    np.save(ids, _vectors(2))
    out = tmp_path / "part"
    real, calls = generation.generate_shard, []

    def stop_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(generation, "generate_shard", stop_second)
    assert CliRunner().invoke(create_cli(), _gen_args(tiny, ids, out)).exit_code == 130
    monkeypatch.setattr(generation, "generate_shard", real)
    res = CliRunner().invoke(create_cli(), _gen_args(tiny, ids, out, "--generator-option", "guidance=2.0"))
    assert res.exit_code == 2
    assert f"{out}: cannot resume: parameters differ from the interrupted run (generator_info" in res.output


def test_torchrun_two_ranks_write_the_same_dataset_as_one_process(tiny, tmp_path):
    ids = tmp_path / "ids.npy"
    np.save(ids, _vectors(4, seed=5))
    env = {**os.environ, "FACEBENCH_QUIET": "1", "OMP_NUM_THREADS": "1"}  # torchrun's default, for both
    single = subprocess.run([sys.executable, "-m", "facebench", *_gen_args(tiny, ids, tmp_path / "single")],
                            env=env, capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-2000:]
    ranks = subprocess.run(torchrun("-m", "facebench", *_gen_args(tiny, ids, tmp_path / "ranks")),
                           env=env, capture_output=True, text=True, timeout=300)
    assert ranks.returncode == 0, ranks.stderr[-2000:]
    assert "generated 2 of 4 shards in this run" in ranks.stdout
    assert (tmp_path / "ranks" / "manifest-rank1.json").is_file()
    assert _tree(tmp_path / "ranks") == _tree(tmp_path / "single")


def test_tiny_pipeline_end_to_end_to_a_report_marked_as_a_pipeline_check(tiny, tmp_path):
    sys.path.insert(0, str(HERE))
    from conftest import write_pack

    runner = CliRunner()
    cli = create_cli()
    feats = tmp_path / "feats.npy"
    np.save(feats, _vectors(200, seed=1))  # stand-in for real features in Arc2Face's FR space
    steps = [
        ["sample-ids", "--features", str(feats), "--n", "8", "--tau", "0.3", "--out", str(tmp_path / "ids.npy")],
        ["generate", "--generator", "arc2face_tiny", "--weights", str(tiny), "--ids", str(tmp_path / "ids.npy"),
         "--images-per-id", "6", "--ids-per-shard", "4", "--out", str(tmp_path / "gen"), "--device", "cpu",
         "--set", "generation.dataset_name=\"arc2face_tiny\"", "--generator-option", "steps=3"],
        ["train-fr", "--recipe", "tiny-arcface", "--data", str(tmp_path / "gen" / "arc2face_tiny"),
         "--out", str(tmp_path / "fr"), "--set", "optim.epochs=1", "--set", "optim.batch_per_gpu=16",
         "--device", "cpu"],
    ]
    for args in steps:
        res = runner.invoke(cli, args)
        assert res.exit_code == 0, (args[0], res.output)
    packs = tmp_path / "packs"
    packs.mkdir()
    for seed, name in enumerate(("toy_lfw", "toy_cfp_fp")):
        write_pack(packs / f"{name}.bin", pairs=40, seed=seed)
    res = runner.invoke(cli, ["evaluate", "--suite", "toy-five", "--model", str(tmp_path / "fr"), "--data-root",
                              str(packs), "--out", str(tmp_path / "eval"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert {r["dataset"] for r in rows} == {"arc2face_tiny"} and len(rows) == 2
    report = tmp_path / "report.html"
    res = runner.invoke(cli, ["report", str(tmp_path / "gen"), str(tmp_path / "eval"), "--out", str(report)])
    assert res.exit_code == 0, res.output
    text = report.read_text()
    assert "arc2face_tiny [pipeline check: untrained generator]" in text
    assert "random weights, a pipeline check, not a result" in text
    assert "scheduler=dpmsolver++, steps=3, guidance=3.0" in text
