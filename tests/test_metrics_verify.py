"""verify() against a plain loop over folds x thresholds written from the protocol's description."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import KFold

from facebench.metrics import MetricInputError, eer, roc_curve, strict_tar_at_far, verify


def plain_protocol(emb_a, emb_b, same, folds=10):
    """insightface calculate_roc, spelled out with loops (no vectorisation shared with facebench)."""
    a = emb_a / np.linalg.norm(emb_a, axis=1, keepdims=True)
    b = emb_b / np.linalg.norm(emb_b, axis=1, keepdims=True)
    dist = np.sum(np.square(a - b), axis=1)
    thresholds = np.arange(0, 4, 0.01)
    accs, best_thresholds = [], []
    for train, test in KFold(n_splits=folds, shuffle=False).split(np.arange(len(dist))):
        train_acc = []
        for t in thresholds:
            pred = dist[train] < t
            train_acc.append(np.sum(pred == same[train]) / len(train))
        best = thresholds[int(np.argmax(train_acc))]
        best_thresholds.append(best)
        accs.append(np.sum((dist[test] < best) == same[test]) / len(test))
    return np.mean(accs), np.std(accs), np.array(best_thresholds), np.array(accs)


def random_pairs(n, dim, noise, seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, dim))
    same = rng.random(n) < 0.5
    b = np.where(same[:, None], a + noise * rng.normal(size=(n, dim)), rng.normal(size=(n, dim)))
    return a, b, same


def structured_pairs(seed):
    """LFW-like layout: 10 blocks of 300 same then 300 different pairs, identities on a few clusters,
    float32 embeddings and many exact duplicates (distance ties)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, 32)).astype(np.float32)
    rows_a, rows_b, flags = [], [], []
    for _fold in range(10):
        for k in range(600):
            same = k < 300
            i = rng.integers(40)
            j = i if same else (i + 1 + rng.integers(39)) % 40
            jitter = 0.0 if rng.random() < 0.2 else 0.7
            rows_a.append(centres[i] + jitter * rng.normal(size=32).astype(np.float32))
            rows_b.append(centres[j] + jitter * rng.normal(size=32).astype(np.float32))
            flags.append(same)
    return np.array(rows_a), np.array(rows_b), np.array(flags)


@pytest.mark.parametrize(
    "pairs",
    [random_pairs(6000, 64, 1.0, 0), random_pairs(6000, 16, 2.5, 1), random_pairs(7000, 128, 1.4, 2),
     random_pairs(1234, 8, 1.0, 3), structured_pairs(4)],
    ids=["random-6000", "random-hard", "random-7000", "uneven-folds", "structured-lfw-layout"],
)
def test_verify_equals_plain_protocol(pairs):
    a, b, same = pairs
    mean, std, thresholds, accs = plain_protocol(a, b, same)
    res = verify(a, b, same, folds=10)
    np.testing.assert_array_equal(res.thresholds, thresholds)
    np.testing.assert_allclose(res.fold_accuracies, accs, rtol=0, atol=1e-12)
    assert res.accuracy == pytest.approx(mean, abs=1e-12)
    assert res.std == pytest.approx(std, abs=1e-12)
    assert 0.5 < res.accuracy < 1.0  # the sets are neither trivial nor chance


def test_verify_perfectly_separable_gives_full_accuracy_and_zero_eer():
    a, b, same = random_pairs(2000, 64, 0.01, 5)
    res = verify(a, b, same)
    assert res.accuracy == 1.0 and res.std == 0.0
    assert res.eer == 0.0
    assert res.tar_at_far[1e-3] == 1.0


def test_tie_safe_roc_does_not_split_tied_scores():
    # Two genuine and two impostor pairs share one score: no threshold separates them.
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.5, 0.1])
    same = np.array([True, True, True, False, False, False])
    roc = roc_curve(scores, same)
    np.testing.assert_allclose(roc.tpr, [0, 1 / 3, 1, 1])
    np.testing.assert_allclose(roc.fpr, [0, 0, 2 / 3, 1])
    assert strict_tar_at_far(roc, 0.5) == pytest.approx(1 / 3)
    rate, _ = eer(roc)
    # FPR = FNR on the segment (0, 1/3) -> (2/3, 1): fpr = 2/3 t, fnr = 2/3 (1 - t) -> t = 1/2.
    assert rate == pytest.approx(1 / 3)


def test_eer_against_brute_force_on_continuous_scores():
    rng = np.random.default_rng(7)
    gen = rng.normal(1.0, 1.0, 4000)
    imp = rng.normal(-1.0, 1.0, 4000)
    roc = roc_curve(np.r_[gen, imp], np.r_[np.ones(4000, bool), np.zeros(4000, bool)])
    rate, _ = eer(roc)
    grid = np.sort(np.r_[gen, imp])
    far = np.array([(imp >= t).mean() for t in grid])
    frr = np.array([(gen < t).mean() for t in grid])
    k = np.argmin(np.abs(far - frr))
    assert abs(rate - (far[k] + frr[k]) / 2) < 1.5 / 4000
    # And against the normal model: EER = Phi(-1) ~ 0.1587 for unit-variance classes two apart.
    assert rate == pytest.approx(0.1587, abs=0.015)


def test_tar_at_far_against_counting():
    rng = np.random.default_rng(8)
    gen = rng.normal(2.0, 1.0, 5000)
    imp = rng.normal(0.0, 1.0, 20000)
    roc = roc_curve(np.r_[gen, imp], np.r_[np.ones(gen.size, bool), np.zeros(imp.size, bool)])
    for far in (1e-3, 1e-4):
        # Threshold at the k-th largest impostor score, k = floor(far * N): accept strictly above it.
        k = int(np.floor(far * imp.size))
        cut = np.sort(imp)[::-1][k]
        assert strict_tar_at_far(roc, far) == pytest.approx((gen > cut).mean())


@pytest.mark.parametrize(
    "args, message",
    [
        ((np.ones((10, 4)), np.ones((9, 4)), np.ones(10, bool)), "mismatched lengths"),
        ((np.ones((10, 4)), np.ones((10, 4)), np.ones(12, bool)), "mismatched lengths"),
        ((np.zeros((0, 4)), np.zeros((0, 4)), np.zeros(0, bool)), r"no pairs to verify \(zero pairs\)"),
        ((np.ones((10, 4)), np.ones((10, 3)), np.ones(10, bool)), "emb_a has 4 dimensions but emb_b has 3"),
        ((np.ones((5, 4)), np.ones((5, 4)), np.ones(5, bool)), "5 pairs cannot be split into 10 folds"),
    ],
)
def test_verify_input_errors_are_one_line(args, message):
    with pytest.raises(MetricInputError, match=message) as info:
        verify(*args)
    assert "\n" not in str(info.value)


def test_verify_rejects_nan_embeddings_naming_the_row():
    a, b, same = random_pairs(100, 8, 1.0, 9)
    b[17, 3] = np.nan
    with pytest.raises(MetricInputError, match=r"emb_b: 1 rows contain NaN or inf \(first is row 17\)"):
        verify(a, b, same)
