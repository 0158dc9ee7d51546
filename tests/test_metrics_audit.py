"""The dataset-audit metrics against independent computations: ``score_stats`` (FDR, EER, FMR100, FMR1000,
means and SDs) and its bootstrap intervals, ``vendi_score`` / ``vendi_by_identity`` and ``tradeoff``, each
with a case worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facebench.metrics import (
    MetricInputError,
    ScoreStats,
    TradeOff,
    group_summary,
    score_stats,
    score_stats_intervals,
    tradeoff,
    vendi_by_identity,
    vendi_score,
)

# ------------------------------------------------------------------------------------- score statistics


def brute_fnmr_at_fmr(genuine, impostor, target):
    """The lowest FNMR over every threshold "accept score >= t" whose FMR is at most ``target``."""
    best = 1.0
    for t in np.r_[np.unique(np.r_[genuine, impostor]), np.inf]:
        if np.mean(impostor >= t) <= target:
            best = min(best, float(np.mean(genuine < t)))
    return best


@pytest.mark.parametrize("ddof", [0, 1])
def test_score_stats_agree_with_numpy_on_random_scores(ddof):
    rng = np.random.default_rng(11)
    genuine = rng.normal(0.55, 0.12, 700)
    impostor = rng.normal(0.15, 0.1, 3000)
    s = score_stats(genuine, impostor, ddof=ddof)
    assert isinstance(s, ScoreStats) and s.ddof == ddof
    g_sd, i_sd = np.std(genuine, ddof=ddof), np.std(impostor, ddof=ddof)
    assert s.genuine_mean == pytest.approx(np.mean(genuine), abs=1e-9)
    assert s.impostor_mean == pytest.approx(np.mean(impostor), abs=1e-9)
    assert s.genuine_std == pytest.approx(g_sd, abs=1e-9) and s.impostor_std == pytest.approx(i_sd, abs=1e-9)
    fdr = (np.mean(genuine) - np.mean(impostor)) ** 2 / (g_sd ** 2 + i_sd ** 2)
    assert s.fdr == pytest.approx(fdr, rel=1e-9, abs=1e-9)
    assert s.fmr100 == pytest.approx(brute_fnmr_at_fmr(genuine, impostor, 0.01), abs=1e-12)
    assert s.fmr1000 == pytest.approx(brute_fnmr_at_fmr(genuine, impostor, 0.001), abs=1e-12)
    # EER: where FMR and FNMR cross; within one score step of the best max(FMR, FNMR) over thresholds
    ts = np.unique(np.r_[genuine, impostor])
    best = min(max(np.mean(impostor >= t), np.mean(genuine < t)) for t in ts)
    assert abs(s.eer - best) <= 1 / 700
    assert s.genuine_pairs == 700 and s.impostor_pairs == 3000 and s.fmr1000_resolved


def test_score_stats_by_hand():
    # genuine 0.8, 0.6: mean 0.7, population variance 0.01; impostor 0.2, 0.4: mean 0.3, variance 0.01
    s = score_stats([0.8, 0.6], [0.2, 0.4])
    assert s.fdr == pytest.approx(0.16 / 0.02) and s.eer == 0.0 and s.fmr100 == 0.0 and s.fmr1000 == 0.0
    # ddof=1 doubles each variance (n / (n - 1) = 2): FDR halves
    assert score_stats([0.8, 0.6], [0.2, 0.4], ddof=1).fdr == pytest.approx(4.0)
    # one impostor of 100 at 0.95 above both genuine scores (0.9, 0.5): it alone is FMR 1%, so FMR 1% lets
    # every threshold down to 0.5 through (FNMR 0), FMR 0.1% needs t > 0.95 (FNMR 1)
    s = score_stats([0.9, 0.5], [0.95] + [0.1] * 99)
    assert s.fmr100 == 0.0 and s.fmr1000 == 1.0 and not s.fmr1000_resolved
    # separated constants: zero variance, FDR infinite (written as null), identical constants: undefined
    assert score_stats([1.0, 1.0], [0.0, 0.0]).fdr == math.inf
    assert score_stats([1.0, 1.0], [0.0, 0.0]).as_dict()["fdr"] is None
    with pytest.raises(MetricInputError, match="FDR is undefined"):
        score_stats([0.5, 0.5], [0.5])


@pytest.mark.parametrize("args, message", [
    (([], [0.1]), "genuine scores: 0 given"),
    (([0.5], [0.1]), None),
    (([0.5, np.nan], [0.1]), "NaN or inf"),
    (([[0.5]], [0.1]), "1-D"),
])
def test_score_stats_input_errors(args, message):
    if message is None:
        with pytest.raises(MetricInputError, match="ddof=1"):
            score_stats(*args, ddof=1)
        assert score_stats(*args).genuine_std == 0.0
        return
    with pytest.raises(MetricInputError, match=message):
        score_stats(*args)


def test_score_stats_intervals_are_the_percentiles_of_numpy_resamples():
    rng = np.random.default_rng(3)
    genuine, impostor = rng.normal(0.5, 0.1, 200), rng.normal(0.2, 0.1, 300)
    ci = score_stats_intervals(genuine, impostor, resamples=60, seed=5)
    # the same resamples drawn here: pair indices in descending-score order, as the ROC sorts them
    scores = np.r_[genuine, impostor]
    same = np.r_[np.ones(200, bool), np.zeros(300, bool)]
    order = np.argsort(-scores, kind="stable")
    rng = np.random.default_rng(5)
    fdr, g_sd = [], []
    for _ in range(60):
        pick = order[rng.integers(0, scores.size, scores.size)]
        g, i = scores[pick][same[pick]], scores[pick][~same[pick]]
        fdr.append((g.mean() - i.mean()) ** 2 / (g.var() + i.var()))
        g_sd.append(g.std())
    np.testing.assert_allclose(ci["fdr"], np.percentile(fdr, [2.5, 97.5]), rtol=1e-9)
    np.testing.assert_allclose(ci["genuine_std"], np.percentile(g_sd, [2.5, 97.5]), rtol=1e-9)
    point = score_stats(genuine, impostor)
    for key in ("fdr", "eer", "genuine_mean", "impostor_std"):
        assert ci[key][0] <= getattr(point, key) <= ci[key][1], key
    assert score_stats_intervals(genuine, impostor, resamples=60, seed=5) == ci  # seeded
    with pytest.raises(MetricInputError, match="at least 2 resamples"):
        score_stats_intervals(genuine, impostor, resamples=1)


# -------------------------------------------------------------------------------------------- Vendi


def plain_vendi(x):
    """The definition as written: the full n x n cosine kernel over n, all its eigenvalues, 0 log 0 = 0."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    lam = np.linalg.eigh(unit @ unit.T / len(x))[0]
    lam = lam[lam > 1e-15]
    return float(np.exp(-np.sum(lam * np.log(lam))))


@pytest.mark.parametrize("n, d", [(12, 40), (90, 16), (64, 64)])
def test_vendi_score_agrees_with_the_full_gram_eigendecomposition(n, d):
    rng = np.random.default_rng(n * d)
    x = rng.normal(size=(3, d))[rng.integers(0, 3, n)] + 0.7 * rng.normal(size=(n, d))
    assert vendi_score(x) == pytest.approx(plain_vendi(x), rel=1e-6)
    scale = rng.uniform(0.1, 10, (n, 1))  # rows are normalised inside: lengths do not matter
    assert vendi_score(x * scale) == pytest.approx(vendi_score(x), rel=1e-9)


def test_vendi_score_by_hand():
    assert vendi_score(np.tile([[3.0, 4.0]], (5, 1))) == pytest.approx(1.0)  # five copies: one distinct item
    assert vendi_score(np.eye(7) * 2.5) == pytest.approx(7.0)  # seven orthogonal: seven
    # e1, e1, e2, e2: K / 4 = blocks of 1/4, eigenvalues 1/2 and 1/2, exp(log 2) = 2
    assert vendi_score([[1, 0], [1, 0], [0, 1], [0, 1]]) == pytest.approx(2.0)
    # e1, e1, e1, e2 (more rows than dimensions: the 2 x 2 route): eigenvalues 3/4, 1/4
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert vendi_score([[1, 0], [1, 0], [1, 0], [0, 1]]) == pytest.approx(expected)
    with pytest.raises(MetricInputError, match="all zeros"):
        vendi_score([[1.0, 0.0], [0.0, 0.0]])


def test_vendi_by_identity_equals_one_score_per_identity(tmp_path):
    rng = np.random.default_rng(4)
    counts = {7: 1, 3: 2, 9: 5, 1: 5, 4: 10, 2: 3}  # label: images (10 > 6 dimensions: the d x d route)
    labels = np.concatenate([[k] * m for k, m in counts.items()])
    rng.shuffle(labels)
    feats = rng.normal(size=(labels.size, 6)) + 2 * rng.normal(size=(10, 6))[labels]
    np.save(tmp_path / "f.npy", feats.astype(np.float32))
    mapped = np.load(tmp_path / "f.npy", mmap_mode="r")
    for source, block in ((feats, 1), (feats, 7), (mapped, 4), (feats, 10_000)):
        classes, scores = vendi_by_identity(source, labels, block=block)
        assert list(classes) == sorted(counts)
        for k, c in enumerate(classes):
            rows = np.asarray(source)[labels == c].astype(np.float64)
            assert scores[k] == pytest.approx(plain_vendi(rows), rel=1e-6), (c, block)
    assert scores[list(classes).index(7)] == 1.0  # one image: one distinct face


# ---------------------------------------------------------------------------------------- trade-off


def test_tradeoff_by_hand_with_its_ddof():
    # 90, 92, 96, 94: mean 93, squared deviations 9 + 1 + 9 + 1 = 20
    to = tradeoff({"African": 90, "Asian": 92, "Caucasian": 96, "Indian": 94})
    assert isinstance(to, TradeOff) and to.ddof == 1 and to.groups == 4
    assert to.mean == 93.0 and to.std == pytest.approx(math.sqrt(20 / 3))
    assert to.trade_off == pytest.approx(93 - math.sqrt(20 / 3))
    population = tradeoff([90, 92, 96, 94], ddof=0)
    assert population.ddof == 0 and population.trade_off == pytest.approx(93 - math.sqrt(5))
    assert group_summary({"a": 90, "b": 92, "c": 96, "d": 94}).trade_off == to.trade_off


def test_tradeoff_agrees_with_numpy_over_eight_groups():
    acc = np.random.default_rng(2).uniform(0.8, 0.99, 8)  # BUPT-BalancedFace's eight groups, as fractions
    for ddof in (0, 1):
        to = tradeoff(list(acc), ddof=ddof)
        assert to.trade_off == pytest.approx(acc.mean() - acc.std(ddof=ddof), abs=1e-12)


@pytest.mark.parametrize("values, ddof, message", [
    ([90.0], 1, "at least two groups"),
    ([90.0, 80.0], 2, "ddof must be 0"),
    ([90.0, float("nan")], 1, "finite"),
    ([90.0, "high"], 1, "numbers"),
])
def test_tradeoff_refusals(values, ddof, message):
    with pytest.raises(MetricInputError, match=message):
        tradeoff(values, ddof=ddof)
