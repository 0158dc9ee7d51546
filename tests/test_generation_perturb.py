"""Perturbation: sigma mix per identity, norm kept, every vector at least min_cos to its identity."""

from __future__ import annotations

import numpy as np
import pytest

from facebench.errors import ConfigError, FacebenchError
from facebench.perturb import PerturbConfig, perturb, split_counts


def _cos_to_identity(vectors, identities, per_id):
    centre = np.repeat(np.asarray(identities, dtype=np.float64), per_id, axis=0)
    v = np.asarray(vectors, dtype=np.float64)
    return (v * centre).sum(1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(centre, axis=1))


def test_split_counts_follow_shares_and_sum_to_total():
    assert split_counts(50, [0.4, 0.4, 0.2]) == [20, 20, 10]
    assert split_counts(7, [0.4, 0.4, 0.2]) == [3, 3, 1]
    assert sum(split_counts(13, [0.3, 0.3, 0.4])) == 13
    assert split_counts(1, [0.4, 0.4, 0.2]) == [1, 0, 0]


def test_every_perturbed_vector_is_at_least_half_to_its_identity():
    """Realistic ArcFace-scale vectors (norm ~ 23 in 512-d): the paper's mix mostly passes directly."""
    rng = np.random.default_rng(0)
    ids = rng.standard_normal((40, 512)) * 1.0
    result = perturb(ids, 50, np.random.default_rng(1))
    cos = _cos_to_identity(result.vectors, ids, 50)
    assert cos.min() >= 0.5
    np.testing.assert_allclose(result.cosines, cos, atol=1e-6)
    # the norm of each vector is its identity's
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1),
                               np.repeat(np.linalg.norm(ids, axis=1), 50), rtol=1e-5)
    # sigma mix per identity: 20 at 0.3, 20 at 0.5, 10 at 0.7, in shuffled order
    sig = result.sigmas.reshape(40, 50)
    for row in sig:
        assert sorted(np.unique(row, return_counts=True)[1].tolist()) == [10, 20, 20]
    assert not all((row == sig[0]).all() for row in sig[1:])


def test_short_vectors_force_resampling_and_shrinking_yet_all_pass():
    """Vectors of norm ~2 in 512-d: sigma-0.7 noise (norm ~16) almost never passes, so the bound is hit."""
    rng = np.random.default_rng(2)
    ids = rng.standard_normal((10, 512)) * 0.1
    cfg = PerturbConfig(max_attempts=5)
    result = perturb(ids, 20, np.random.default_rng(3), cfg)
    cos = _cos_to_identity(result.vectors, ids, 20)
    assert cos.min() >= 0.5
    assert result.resampled > 0 and result.shrunk > 0
    summary = result.summary()
    assert summary["images"] == 200 and summary["min_cos"] == pytest.approx(cos.min(), abs=1e-6)


def test_custom_min_cos_and_determinism():
    ids = np.random.default_rng(4).standard_normal((5, 64)) * 0.5
    cfg = PerturbConfig(sigmas=[0.3, 0.5], shares=[0.6, 0.4], min_cos=0.8)
    a = perturb(ids, 10, np.random.default_rng(9), cfg)
    b = perturb(ids, 10, np.random.default_rng(9), cfg)
    np.testing.assert_array_equal(a.vectors, b.vectors)
    assert _cos_to_identity(a.vectors, ids, 10).min() >= 0.8


def test_bad_configs_and_inputs_are_errors():
    with pytest.raises(ConfigError, match="same length"):
        PerturbConfig(sigmas=[0.3], shares=[0.5, 0.5])
    with pytest.raises(ConfigError, match="sum to 1"):
        PerturbConfig(shares=[0.4, 0.4, 0.4])
    with pytest.raises(ConfigError, match="max_attempts"):
        PerturbConfig(max_attempts=0)
    with pytest.raises(FacebenchError, match="identity vector 1 is all zeros"):
        perturb(np.array([[1.0, 0.0], [0.0, 0.0]]), 3, np.random.default_rng(0))
