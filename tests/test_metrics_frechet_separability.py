"""Fréchet distance against scipy's sqrtm; separability and identity measures against direct O(n^2) loops."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from facebench.metrics import (
    MetricInputError,
    class_centers,
    frechet_distance,
    has_earlier_match,
    inter_class_noise,
    intra_class_similarity,
    leaked_identities,
    pair_distributions,
    sample_pairs,
    separability_curve,
)


def scipy_frechet(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("n, dim, shift", [(500, 16, 0.3), (2000, 64, 1.0), (300, 32, 0.0), (5000, 128, 0.05)])
def test_frechet_matches_scipy_sqrtm(n, dim, shift):
    rng = np.random.default_rng(dim)
    mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    a = rng.normal(size=(n, dim)) @ mix
    b = (rng.normal(size=(n, dim)) * 1.3 + shift) @ mix.T
    ours = frechet_distance(a, b)
    ref = scipy_frechet(a, b)
    assert ours == pytest.approx(ref, rel=1e-6)


def test_frechet_of_a_set_with_itself_is_zero_and_float32_input_is_upcast():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 24)).astype(np.float32)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(a, a + 1.0) == pytest.approx(24.0, rel=1e-6)  # only the mean moves


def test_frechet_rank_deficient_covariances_stay_real_and_finite():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(20, 64))  # 20 samples in 64 dimensions: singular covariances
    b = rng.normal(size=(20, 64)) + 0.5
    value = frechet_distance(a, b)
    assert np.isfinite(value) and value > 0
    assert value == pytest.approx(scipy_frechet(a, b), rel=1e-5)


def test_frechet_errors():
    with pytest.raises(MetricInputError, match="feats_a: needs at least 2 rows, got 1"):
        frechet_distance(np.ones((1, 4)), np.ones((5, 4)))
    with pytest.raises(MetricInputError, match="differ in dimension: 4 vs 5"):
        frechet_distance(np.random.rand(5, 4), np.random.rand(5, 5))
    bad = np.random.rand(5, 4)
    bad[2, 1] = np.inf
    with pytest.raises(MetricInputError, match="feats_b: 1 rows contain NaN or inf"):
        frechet_distance(np.random.rand(5, 4), bad)


def direct_separability(centers, threshold):
    """O(n^2): the full float64 cosine matrix; identity i counts in every prefix n > i when no j < i is above."""
    unit = centers / np.linalg.norm(centers, axis=1, keepdims=True)
    res = (unit @ unit.T) > threshold
    counts, total = [], 0
    for i in range(len(centers)):
        total += not res[:i, i].any()
        counts.append(total)
    return np.array(counts), res


def script_count(res, n):
    """The Vec2Face script's own formula for one prefix size n (strict upper triangle, column sums)."""
    return int((np.triu(res[:n, :n], k=1).sum(axis=0) == 0).sum())


def clustered(n, dim, seed):
    rng = np.random.default_rng(seed)
    anchors = rng.normal(size=(n // 10, dim))
    return anchors[rng.integers(0, len(anchors), n)] + 0.9 * rng.normal(size=(n, dim))


@pytest.mark.parametrize(
    "centers, threshold, block",
    [(np.random.default_rng(0).normal(size=(3000, 12)), 0.4, 256),
     (clustered(3000, 64, 1), 0.4, 1000),
     (np.random.default_rng(2).normal(size=(3000, 512)), 0.1, 4096)],
    ids=["random-3k", "clustered-3k", "random-512d-low-threshold"],
)
def test_separability_curve_matches_direct_computation_at_every_prefix(centers, threshold, block):
    ref, res = direct_separability(centers, threshold)
    curve = separability_curve(centers, threshold, block=block)
    assert curve.shape == (3000,)
    np.testing.assert_array_equal(curve, ref)
    for n in (1, 2, 999, 1000, 1001, 2048, 2049, 3000):
        assert curve[n - 1] == script_count(res, n)
    assert 0 < curve[-1] < 3000  # the case is not trivial


def test_separability_decisions_near_the_threshold_use_float64():
    # Identity 1 sits at cosine 0.4 + 3e-7 of identity 0: float32 products alone cannot resolve it.
    angle = np.arccos(0.4 + 3e-7)
    far = np.arccos(0.4 - 3e-7)
    centers = np.array([[1.0, 0.0, 0.0], [np.cos(angle), np.sin(angle), 0.0], [np.cos(far), 0.0, np.sin(far)]])
    np.testing.assert_array_equal(has_earlier_match(centers, 0.4), [False, True, False])


def test_class_centers_and_intra_similarity_against_loops():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 30, 600)
    feats = rng.normal(size=(600, 16)) + labels[:, None] * 0.1
    centers, classes = class_centers(feats, labels)
    for k, c in enumerate(classes):
        np.testing.assert_allclose(centers[k], feats[labels == c].mean(0))
    intra = intra_class_similarity(feats, labels)
    for i in (0, 77, 599):
        c = centers[np.searchsorted(classes, labels[i])]
        expect = feats[i] @ c / np.linalg.norm(feats[i]) / np.linalg.norm(c)
        assert intra[i] == pytest.approx(expect)


def test_inter_class_noise_and_leakage_against_loops():
    centers = clustered(700, 64, 4)
    rng = np.random.default_rng(5)
    reference = np.r_[rng.normal(size=(250, 64)), centers[::14] + 0.8 * rng.normal(size=(50, 64))]
    unit = centers / np.linalg.norm(centers, axis=1, keepdims=True)
    sim = unit @ unit.T
    noise = inter_class_noise(centers, 0.7, block=128)
    assert noise.pairs_above == int(np.triu(sim > 0.7, k=1).sum())
    assert noise.pairs_total == 700 * 699 // 2
    np.fill_diagonal(sim, -np.inf)
    np.testing.assert_allclose(noise.nearest, sim.max(1), atol=1e-6)
    ref_unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    expected = np.flatnonzero((unit @ ref_unit.T).max(1) > 0.4)
    np.testing.assert_array_equal(leaked_identities(centers, reference, 0.4, block=100), expected)
    assert 0 < expected.size < 700


def test_pair_distributions_sample_the_right_pairs():
    rng = np.random.default_rng(6)
    labels = np.repeat(np.arange(50), 8)
    feats = rng.normal(size=(50, 32))[labels] + 0.5 * rng.normal(size=(400, 32))
    dist = pair_distributions(feats, labels, genuine=1000, impostor=5000, seed=1)
    assert dist.genuine.shape == (1000,) and dist.impostor.shape == (5000,)
    assert dist.genuine.mean() > 0.7 and abs(dist.impostor.mean()) < 0.1
    assert dist.eer < 0.01
    again = pair_distributions(feats, labels, genuine=1000, impostor=5000, seed=1)
    np.testing.assert_array_equal(again.genuine, dist.genuine)
    with pytest.raises(MetricInputError, match="no identity has two images"):
        pair_distributions(feats[:50:8], labels[:50:8], genuine=10, impostor=10)


def test_no_more_pairs_than_exist_are_sampled():
    """50 identities x 8 images hold 50 x 28 = 1,400 genuine pairs: asking for 3,000 gives each of them
    once (not 3,000 draws with repeats); the same for impostor pairs of a small set."""
    labels = np.repeat(np.arange(50), 8)
    gen, imp = sample_pairs(labels, 3000, 500, seed=0)
    expected = {(i, j) for i in range(400) for j in range(i + 1, 400) if labels[i] == labels[j]}
    assert len(gen) == 1400 and {tuple(sorted(p)) for p in gen.tolist()} == expected
    small = np.repeat(np.arange(4), 3)  # 12 images: 66 pairs, 12 genuine, 54 impostor
    gen, imp = sample_pairs(small, 100, 100, seed=0)
    assert len(gen) == 12 and len(imp) == 54
    assert {tuple(sorted(p)) for p in imp.tolist()} == {(i, j) for i in range(12) for j in range(i + 1, 12)
                                                        if small[i] != small[j]}
    gen, imp = sample_pairs(small, 5, 20, seed=0)  # fewer than exist: drawn as before
    assert len(gen) == 5 and len(imp) == 20 and all(small[a] == small[b] for a, b in gen)
