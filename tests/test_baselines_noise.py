"""The noise_projection baseline generator honours the generator interface and is class-conditional."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import facebench
from facebench.errors import DataError, FacebenchError
from facebench.pluginmanager import registry


def test_registered_with_config_and_plugin():
    spec = registry("generator").get("noise_projection")
    assert spec.plugin == "baselines"
    assert spec.config.__name__ == "NoiseProjectionConfig"


def test_output_equals_an_independent_computation():
    gen = facebench.load_generator("noise_projection", feature_dim=8, image_size=4, grid=4, noise=0.0, seed=5)
    assert (gen.feature_dim, gen.image_size) == (8, 4)
    x = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    out = gen.generate(torch.from_numpy(x)).numpy()
    proj = gen.state_dict()["projection"].numpy()
    expected = np.tanh(3.0 * (x / np.linalg.norm(x, axis=1, keepdims=True)) @ proj).reshape(3, 3, 4, 4)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_shape_range_and_determinism():
    a = facebench.load_generator("noise_projection", feature_dim=32, image_size=56, seed=1)
    b = facebench.load_generator("noise_projection", feature_dim=32, image_size=56, seed=1)
    x = torch.randn(5, 32)
    ya, yb = a.generate(x), b.generate(x, masks=None)
    assert ya.shape == (5, 3, 56, 56) and ya.dtype == torch.float32
    assert ya.min() >= -1 and ya.max() <= 1
    assert torch.equal(ya, yb)
    other = facebench.load_generator("noise_projection", feature_dim=32, image_size=56, seed=2).generate(x)
    assert not torch.allclose(ya, other)


def test_close_vectors_give_closer_images_than_unrelated_ones():
    gen = facebench.load_generator("noise_projection", feature_dim=64, image_size=28, noise=0.05)
    rng = torch.Generator().manual_seed(0)
    ids = torch.nn.functional.normalize(torch.randn(20, 64, generator=rng), dim=1)
    perturbed = torch.nn.functional.normalize(ids + 0.3 * torch.randn(20, 64, generator=rng) / 8, dim=1)
    a, b = gen.generate(ids).flatten(1), gen.generate(perturbed).flatten(1)
    same = (a - b).norm(dim=1).mean()
    different = (a - b.roll(1, dims=0)).norm(dim=1).mean()
    assert same < 0.5 * different


def test_wrong_width_and_bad_options_are_one_line_errors(tmp_path):
    gen = facebench.load_generator("noise_projection", feature_dim=16)
    with pytest.raises(FacebenchError, match=r"vectors of shape \(2, 8\), expected \(N, 16\)"):
        gen.generate(torch.zeros(2, 8))
    with pytest.raises(FacebenchError, match="unknown option"):
        facebench.load_generator("noise_projection", colour=1)


def test_weights_file_round_trip_and_mismatch(tmp_path):
    gen = facebench.load_generator("noise_projection", feature_dim=8, image_size=14, grid=7, seed=3)
    path = tmp_path / "proj.pt"
    torch.save(gen.state_dict(), path)
    again = facebench.load_generator("noise_projection", weights=path, feature_dim=8, image_size=14, grid=7, seed=9)
    assert torch.equal(again.state_dict()["projection"], gen.state_dict()["projection"])
    with pytest.raises(DataError, match=f"{path}: expected key 'projection' of shape"):
        facebench.load_generator("noise_projection", weights=path, feature_dim=4)
    with pytest.raises(FacebenchError, match="not found"):
        facebench.load_generator("noise_projection", weights=tmp_path / "missing.pt")
