"""Vec2Face model: official layout (strict loading both ways), the forward steps alone, fast == plain."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from facebench_plugins.vec2face.generator import STATE_KEY, Vec2FaceGenerator
from facebench_plugins.vec2face.model import MaskingConfig, Vec2Face, Vec2FaceConfig, model_config
from torch import nn

import facebench
from facebench.errors import ConfigError, DataError, MissingFileError

COMPAT = Path(__file__).resolve().parents[1] / ".." / "shared" / "design" / "compat" / "vec2face_vit_base_patch16.json"


def compat_layout() -> dict:
    path = COMPAT if COMPAT.is_file() else Path("/work/shared/design/compat/vec2face_vit_base_patch16.json")
    if not path.is_file():
        pytest.skip("official layout facts (shared/design/compat) not available")
    return json.loads(path.read_text())


def reference_state_dict(layout: dict) -> dict[str, torch.Tensor]:
    """A state dict built only from the layout facts: each tensor filled with its own index-derived value."""
    out = {}
    for i, (name, (shape, dtype)) in enumerate(layout["tensors"].items()):
        if dtype == "int64":
            out[name] = torch.arange(math.prod(shape), dtype=torch.int64).reshape(shape)
        else:
            out[name] = torch.full(shape, (i + 1) * 1e-3, dtype=getattr(torch, dtype))
    return out


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    layout = compat_layout()
    path = tmp_path_factory.mktemp("official") / "vec2face_generator.pth"
    torch.save({STATE_KEY: reference_state_dict(layout)}, path)
    return layout, path


def tiny(**changes) -> Vec2Face:
    cfg = model_config("vec2face_tiny")
    for k, v in changes.items():
        setattr(cfg, k, v)
    torch.manual_seed(0)
    return Vec2Face(cfg).eval()


# --------------------------------------------------------------------------------- official layout

def test_official_state_dict_loads_strictly_and_values_arrive(official_file):
    layout, path = official_file
    gen = facebench.load_generator("vec2face", weights=path)
    state = gen.model.state_dict()
    assert len(state) == layout["num_tensors"] == 349
    assert sum(p.numel() for p in gen.model.parameters()) == layout["num_parameters"]
    for i, (name, (shape, dtype)) in enumerate(layout["tensors"].items()):
        t = state[name]
        assert list(t.shape) == shape and str(t.dtype) == f"torch.{dtype}", name
        if dtype == "float32":
            assert float(t.flatten()[0]) == pytest.approx((i + 1) * 1e-3), name
    assert torch.equal(state["token_emb.position_ids"], torch.arange(50).reshape(1, 50))
    assert (gen.feature_dim, gen.image_size) == (512, 112)


def test_our_state_dict_is_the_official_layout():
    """The other way: what facebench saves has exactly the official names, shapes and dtypes."""
    layout = compat_layout()
    with torch.device("meta"):  # shapes and dtypes only, no memory
        state = Vec2Face(Vec2FaceConfig()).state_dict()
        strict = Vec2Face(Vec2FaceConfig())
    ours = {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()}
    assert ours == {k: [list(s), d] for k, (s, d) in layout["tensors"].items()}
    strict.load_state_dict(reference_state_dict(layout), strict=True, assign=True)
    assert not any(t.is_meta for t in strict.state_dict().values())


def test_layout_mismatch_is_a_one_line_error_naming_the_file(tmp_path):
    state = tiny().state_dict()
    state.pop("decoder_norm.bias")
    state["extra.weight"] = torch.zeros(1)
    state["norm.weight"] = torch.zeros(3)
    bad = tmp_path / "bad.pth"
    torch.save({STATE_KEY: state}, bad)
    with pytest.raises(DataError) as err:
        facebench.load_generator("vec2face_tiny", weights=bad)
    text = str(err.value)
    assert str(bad) in text and "\n" not in text
    assert "decoder_norm.bias" in text and "extra.weight" in text and "norm.weight (3,) != (128,)" in text
    with pytest.raises(DataError, match="does not match the vec2face_vit_base_patch16 layout"):
        facebench.load_generator("vec2face", weights=bad)

    wrong_key = tmp_path / "wrong_key.pth"
    torch.save({"model": {}}, wrong_key)
    with pytest.raises(DataError, match="expected a dict with key 'model_vec2face'"):
        facebench.load_generator("vec2face", weights=wrong_key)
    with pytest.raises(MissingFileError, match="missing.pth"):
        facebench.load_generator("vec2face", weights=tmp_path / "missing.pth")


class NotATensor:
    """Any pickled class: loading it would mean running the file's code."""


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({STATE_KEY: {"x": NotATensor()}}, path)
    with pytest.raises(DataError, match="refused"):
        facebench.load_generator("vec2face_tiny", weights=path)


# ------------------------------------------------------------------------------------- the steps

def test_truncated_normal_ratio_matches_scipy():
    from scipy.stats import truncnorm

    s = MaskingConfig.training()
    g = torch.Generator().manual_seed(0)
    draws = np.array([s.draw_ratio(g) for _ in range(4000)])
    a, b = (s.ratio_min - s.mean) / s.std, (s.ratio_max - s.mean) / s.std
    assert draws.min() >= 0.5 and draws.max() <= 1.0
    assert draws.mean() == pytest.approx(truncnorm.mean(a, b, loc=s.mean, scale=s.std), abs=0.006)
    assert draws.std() == pytest.approx(truncnorm.std(a, b, loc=s.mean, scale=s.std), abs=0.006)


def test_random_masking_counts_and_nesting():
    model = tiny()
    g = torch.Generator().manual_seed(3)
    for settings in (MaskingConfig.training(), MaskingConfig.inference()):
        dropped, masked = model.random_masking(64, settings, g)
        assert dropped.shape == masked.shape == (64, 49)
        assert (dropped.sum(1) == math.ceil(49 * settings.ratio_min)).all()
        n_masked = masked.sum(1)
        assert (n_masked == n_masked[0]).all()  # one ratio per batch
        assert math.ceil(49 * settings.ratio_min) <= int(n_masked[0]) <= 49
        assert not (dropped & ~masked).any()
        assert len({tuple(r.nonzero().flatten().tolist()) for r in masked}) > 1  # rows differ per sample


def test_encoder_overwrites_masked_rows_with_the_vector_and_drops_rows():
    model = tiny()
    v = torch.randn(3, 512)
    dropped = torch.zeros(3, 49, dtype=torch.bool)
    dropped[:, :5] = True
    masked = torch.ones(3, 49, dtype=torch.bool)
    f, rows = model.embed_vector(v)
    enc = model.forward_encoder(f, rows, dropped, masked)
    assert enc.shape == (3, 1 + 49 - 5, 128)
    with torch.no_grad():  # every row is masked, so the row projection cannot matter
        model.feature_token.weight.mul_(-3.0)
    f2, rows2 = model.embed_vector(v)
    assert not torch.allclose(rows, rows2)
    torch.testing.assert_close(model.forward_encoder(f2, rows2, dropped, masked), enc)


def test_encoder_keeps_the_kept_rows_in_their_order():
    """Rows dropped at other positions in every sample: the encoder sees exactly the boolean selection of
    the kept rows (row 0 first, the rest in order), with or without the ``num_dropped`` hint."""
    model = tiny()
    model.blocks = nn.ModuleList()
    model.norm = nn.Identity()
    g = torch.Generator().manual_seed(4)
    v = torch.randn(3, 512, generator=g)
    dropped = torch.zeros(3, 49, dtype=torch.bool)
    for i in range(3):
        dropped[i, torch.randperm(49, generator=g)[:7]] = True
    masked = dropped.clone()
    masked[:, 40] = True
    f, rows = model.embed_vector(v)
    keep = torch.cat([torch.ones(3, 1, dtype=torch.bool), ~dropped], 1)
    model.eval()  # no dropout: both sides draw nothing
    x = model.token_emb(torch.cat([f.unsqueeze(1), torch.where(masked.unsqueeze(-1), f.unsqueeze(1), rows)], 1))
    want = x[keep].reshape(3, 43, 128)
    assert torch.equal(model.forward_encoder(f, rows, dropped, masked), want)
    assert torch.equal(model.forward_encoder(f, rows, dropped, masked, num_dropped=7), want)
    with pytest.raises(ConfigError, match="num_dropped is 6 but the masks drop 7 rows"):
        model(v, dropped, masked, num_dropped=6)


def test_the_model_traces_in_one_graph_when_told_the_dropped_count():
    """torch.compile sees the whole forward as one graph (no data-dependent shapes or Python bools) when
    ``num_dropped`` comes as an int, as the trainer and the generator pass it; without it, reading the
    count back is the one break left."""
    import torch._dynamo as dynamo
    from facebench_plugins.vec2face.model import dropped_count

    model = tiny().train()
    model.set_fused_attention(True)
    v = torch.randn(2, 512)
    dropped, masked = model.random_masking(2, MaskingConfig.training(), torch.Generator().manual_seed(0))
    dynamo.reset()
    told = dynamo.explain(model)(v, dropped, masked, dropped_count(dropped))
    assert (told.graph_count, told.graph_break_count) == (1, 0)
    dynamo.reset()
    untold = dynamo.explain(model)(v, dropped, masked)
    assert untold.graph_break_count >= 1 and all("item()" in b.reason for b in untold.break_reasons)
    dynamo.reset()


def test_decoder_puts_kept_rows_back_and_fills_the_rest_with_row_zero():
    model = tiny()
    model.decoder_blocks = nn.ModuleList()
    model.decoder_norm = nn.Identity()
    with torch.no_grad():
        model.decoder_pos_embed_learned.zero_()
    dropped = torch.zeros(2, 49, dtype=torch.bool)
    dropped[:, [1, 4]] = True
    masked = dropped.clone()
    masked[:, [7, 9]] = True
    encoded = torch.randn(2, 1 + 47, 128)
    out = model.forward_decoder(encoded, dropped, masked)
    emb = model.decoder_embed(encoded)
    assert out.shape == (2, 50, 128)
    kept = [r for r in range(49) if r not in (1, 4)]
    for j, row in enumerate(kept):
        want = emb[:, 0] if row in (7, 9) else emb[:, 1 + j]
        torch.testing.assert_close(out[:, 1 + row], want)
    for row in (1, 4, 7, 9):
        torch.testing.assert_close(out[:, 1 + row], emb[:, 0])


def test_image_decoder_sizes_follow_the_levels():
    assert Vec2FaceConfig().image_size == 112 and model_config("vec2face_tiny").image_size == 56
    model = tiny()
    img = model.decode_image(torch.randn(2, 50, 128))
    assert img.shape == (2, 3, 56, 56)
    cfg = model_config("vec2face_tiny")
    cfg.channel_mult = [1, 1, 1]
    assert Vec2Face(cfg).decode_image(torch.randn(1, 50, 128)).shape == (1, 3, 28, 28)


def test_bad_configs_and_masks_are_errors():
    with pytest.raises(ConfigError, match="divide by the head counts"):
        Vec2FaceConfig(embed_dim=100, num_heads=3)
    with pytest.raises(ConfigError, match="unknown vec2face model"):
        model_config("vec2face_huge")
    gen = facebench.load_generator("vec2face_tiny")
    with pytest.raises(ConfigError, match=r"shape \(N, 512\)"):
        gen.generate(torch.randn(2, 128))
    d = torch.zeros(2, 49, dtype=torch.bool)
    m = torch.zeros(2, 49, dtype=torch.bool)
    d[0, 0] = True
    with pytest.raises(ConfigError, match="dropped row must also be masked"):
        gen.generate(torch.randn(2, 512), masks=(d, m))
    m[0, 0] = True
    with pytest.raises(ConfigError, match="same number of rows"):
        gen.generate(torch.randn(2, 512), masks=(d, m))


# ------------------------------------------------------------------------------------ generation

def test_generate_is_deterministic_with_masks_and_seeded_without():
    gen = facebench.load_generator("vec2face_tiny", seed=5)
    v = torch.randn(4, 512)
    masks = gen.sample_masks(4)
    a = gen.generate(v, masks=masks)
    assert a.shape == (4, 3, 56, 56) and a.dtype == torch.float32
    assert a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(gen.generate(v, masks=masks), a, rtol=0, atol=0)
    first = gen.generate(v)
    again = facebench.load_generator("vec2face_tiny", seed=5)
    again.model.load_state_dict(gen.model.state_dict())
    again.sample_masks(4)  # keep the RNGs in step
    torch.testing.assert_close(again.generate(v), first, rtol=0, atol=0)
    assert not torch.equal(gen.generate(v), first)  # the RNG moved on: new masks


@pytest.mark.parametrize("name", ["vec2face_tiny", "vec2face"])
def test_fast_path_equals_plain_path_in_fp32(name):
    torch.manual_seed(1)
    gen = facebench.load_generator(name)
    n = 3 if name == "vec2face_tiny" else 1
    v = torch.randn(n, 512) * 3
    masks = gen.sample_masks(n)
    plain = gen.generate_plain(v, masks=masks)
    fast = gen.generate(v, masks=masks)
    assert gen.fast and not fast.requires_grad
    # float rounding only: SDPA sums in another order than the explicit softmax (base: 20 blocks + decoder)
    torch.testing.assert_close(fast, plain, rtol=0, atol=2e-5 if name == "vec2face_tiny" else 2e-4)
    assert plain.std() > 1e-3  # not a constant image


def test_forward_images_is_differentiable_in_the_vector():
    gen = facebench.load_generator("vec2face_tiny")
    v = torch.randn(2, 512, requires_grad=True)
    img = gen.forward_images(v, masks=gen.sample_masks(2))
    img.mean().backward()
    assert v.grad is not None and v.grad.abs().sum() > 0


def test_generator_object_interface_and_checkpoint_config(tmp_path):
    gen = facebench.load_generator("vec2face_tiny")
    assert isinstance(gen, Vec2FaceGenerator)
    custom = model_config("vec2face_tiny")
    custom.depth = 1
    model = Vec2Face(custom)
    path = tmp_path / "custom.pth"
    torch.save({STATE_KEY: model.state_dict(), "vec2face_config": custom.to_dict()}, path)
    loaded = facebench.load_generator("vec2face_tiny", weights=path)
    assert len(loaded.model.blocks) == 1
    for k, t in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], t)


def test_untrained_tiny_generator_is_reproducible_from_its_seed():
    torch.manual_seed(123)
    a = facebench.load_generator("vec2face_tiny")
    torch.manual_seed(456)  # the global RNG does not decide the weights
    b = facebench.load_generator("vec2face_tiny")
    c = facebench.load_generator("vec2face_tiny", seed=1)
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(x, y), name
    assert any(not torch.equal(x, z) for x, z in zip(a.model.state_dict().values(), c.model.state_dict().values())
               if x.is_floating_point() and x.numel() > 1)


def test_transformer_blocks_run_in_fp32_inside_autocast():
    """As in the release, a block switches autocast off and computes in float32: under (CPU bf16) autocast
    its output is float32 and equal to the fp32 result, while an ordinary Linear drops to bf16."""
    from facebench_plugins.vec2face.model import Block

    torch.manual_seed(0)
    block = Block(64, 4, 4.0, 0.0, 0.0).eval()
    x = torch.randn(2, 10, 64)
    want = block(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = block(x)
        got_from_half = block(x.bfloat16())
        assert block.mlp.fc1(x).dtype == torch.bfloat16
    assert got.dtype == torch.float32 and torch.equal(got, want)
    torch.testing.assert_close(got_from_half, block(x.bfloat16().float()))
