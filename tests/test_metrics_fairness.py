"""RFW/FRCSyn fairness figures, GAP, Borda, certainty ratio and bootstrap intervals against hand-computed
tables and plain loops."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facebench.metrics import (
    GAP_FORMULA,
    MetricInputError,
    borda,
    certainty_ratio,
    gap,
    group_summary,
    percentile_interval,
    roc_intervals,
    verification_intervals,
)


def test_rfw_table_by_hand():
    # errors 10, 8, 4, 6; mean 93; squared deviations 9 + 1 + 9 + 1 = 20, sample variance 20 / 3
    s = group_summary({"African": 90.0, "Asian": 92.0, "Caucasian": 96.0, "Indian": 94.0})
    assert s.mean == 93.0
    assert s.std == pytest.approx(math.sqrt(20 / 3))  # 2.5820, not the population 2.2361
    assert s.ser == pytest.approx(10 / 4)
    assert s.trade_off == pytest.approx(93.0 - math.sqrt(20 / 3))


def test_ser_is_infinite_when_a_group_makes_no_error_and_one_group_is_refused():
    assert group_summary({"a": 100.0, "b": 90.0}).ser == math.inf
    with pytest.raises(MetricInputError, match="two groups"):
        group_summary({"a": 90.0})
    with pytest.raises(MetricInputError, match="percentages"):
        group_summary({"a": 0.9, "b": 190.0})


def test_gap_sign_by_hand():
    assert gap(95.0, 93.0) == pytest.approx(200 / 93)  # real better: positive
    assert gap(90.0, 93.0) == pytest.approx(-300 / 93)  # synthetic better: negative
    assert "(REAL - SYN) / SYN" in GAP_FORMULA


def test_borda_by_hand_with_a_tie():
    table = {"lfw": {"A": 99.0, "B": 98.0, "C": 98.0}, "ijbc": {"A": 80.0, "B": 85.0, "C": 70.0}}
    # lfw: A first = 2 points, B and C share ranks 2 and 3 = (1 + 0) / 2 each; ijbc: B 2, A 1, C 0
    assert borda(table) == {"A": 3.0, "B": 2.5, "C": 0.5}
    assert list(borda(table)) == ["A", "B", "C"]
    three_way = borda({"x": {"A": 1.0, "B": 1.0, "C": 1.0}})
    assert three_way == {"A": 1.0, "B": 1.0, "C": 1.0}


def test_certainty_ratio_against_a_loop():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 5)
    feats = rng.standard_normal((6, 10))[labels] + rng.normal(0, 0.8, (30, 10))
    cr = certainty_ratio(feats, labels, block=7)
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    centres = np.stack([unit[labels == c].mean(0) for c in range(6)])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for i in range(30):
        sims = centres @ unit[i]
        own = sims[labels[i]]
        other = np.delete(sims, labels[i]).max()
        assert cr[i] == pytest.approx(own / (other + 1 + 1e-9))


def test_percentile_interval_and_bootstrap_cover_the_estimate():
    assert percentile_interval(np.arange(101)) == pytest.approx((2.5, 97.5))
    rng = np.random.default_rng(1)
    same = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    a = rng.standard_normal((600, 8))
    b = np.where(same[:, None], a + rng.normal(0, 0.7, (600, 8)), rng.standard_normal((600, 8)))
    ci = verification_intervals(a, b, same, resamples=200, seed=3, fars=(1e-2,))
    from facebench.metrics import verify

    point = verify(a, b, same)
    assert ci["accuracy"][0] <= point.accuracy <= ci["accuracy"][1]
    assert ci["eer"][0] <= point.eer <= ci["eer"][1]
    assert 0 < ci["accuracy"][1] - ci["accuracy"][0] < 0.1
    assert verification_intervals(a, b, same, resamples=200, seed=3, fars=(1e-2,)) == ci  # seeded


def test_weighted_roc_resample_equals_recomputing_on_the_resampled_pairs():
    # The counts shortcut must give exactly what sorting the resampled pairs again gives.
    from facebench.metrics import roc_curve, tar_at_far
    from facebench.metrics.roc import corner_roc, eer, group_counts, nearest_tar, roc_from_counts, tie_groups

    rng = np.random.default_rng(2)
    labels = rng.uniform(size=800) < 0.3
    scores = np.round(rng.normal(labels * 1.0, 1.0), 2)  # ties
    groups = tie_groups(scores, labels)
    order = np.argsort(-scores, kind="stable")
    for _ in range(5):
        idx = rng.integers(0, 800, 800)
        weights = np.bincount(idx, minlength=800)[order]
        tp, fp, at = group_counts(groups, weights)
        assert eer(roc_from_counts(tp, fp, at))[0] == pytest.approx(eer(roc_curve(scores[idx], labels[idx]))[0])
        corner = roc_from_counts(tp, fp, at, corners=True)
        assert nearest_tar(corner, 0.01) == tar_at_far(labels[idx], scores[idx], (0.01,))[0.01]
        np.testing.assert_allclose(corner.fpr, corner_roc(scores[idx], labels[idx]).fpr)
    ci = roc_intervals(labels, scores, fars=(0.1,), rule="nearest", resamples=50)
    assert set(ci) == {"eer", "tar_at_far_1e-1"}
