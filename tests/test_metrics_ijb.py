"""IJB template pooling, block pair scores, the nearest-FPR TAR pick and 1:N identification, each checked
against a plain computation written out here (loops, sklearn's roc_curve) on the same inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_curve as sk_roc_curve

from facebench.metrics import (
    MetricInputError,
    fuse_image_features,
    impostor_threshold,
    probe_scores,
    rank_rates,
    tar_at_far,
    template_features,
    template_pair_scores,
    tpir_at_fpir,
)
from facebench.metrics import templates as templates_module


def _loop_templates(feats, templates, medias):
    out = {}
    for t in sorted(set(templates.tolist())):
        rows = templates == t
        media_feats = []
        for m in sorted(set(medias[rows].tolist())):
            media_feats.append(feats[rows & (medias == m)].mean(axis=0))
        total = np.sum(media_feats, axis=0)
        out[t] = total / np.linalg.norm(total)
    return out


def _world(seed=0, n_images=400, n_templates=40, dim=16):
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((n_images, dim)).astype(np.float32)
    templates = rng.integers(0, n_templates, n_images) * 7 + 3  # sparse, unsorted ids
    medias = rng.integers(0, 5, n_images)  # media ids shared across templates on purpose
    return feats, templates, medias


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_template_features_match_a_loop_over_templates_and_media(dtype):
    feats, templates, medias = _world()  # float32 features are pooled in float64 too, chunk by chunk
    unique, tfeats = template_features(feats.astype(dtype), templates, medias, chunk=37)
    expected = _loop_templates(feats.astype(np.float64), templates, medias)
    assert unique.tolist() == sorted(expected)
    for row, t in enumerate(unique):
        np.testing.assert_allclose(tfeats[row], expected[t], atol=1e-12)


def test_a_single_image_media_keeps_its_feature_and_a_multi_image_media_is_averaged():
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    # template 5: media 1 = image 0 alone, media 2 = mean of images 1 and 2 = (0, 2)
    unique, tfeats = template_features(feats, np.array([5, 5, 5]), np.array([1, 2, 2]))
    np.testing.assert_allclose(tfeats[0], np.array([1.0, 2.0]) / np.sqrt(5.0))


@pytest.mark.parametrize("path", ["matrix", "gather"])
def test_pair_scores_equal_the_inner_product_of_each_pair(monkeypatch, path):
    feats, templates, medias = _world(seed=1)
    unique, tfeats = template_features(feats, templates, medias)
    rng = np.random.default_rng(2)
    t1 = rng.choice(unique, 5000)
    t2 = rng.choice(unique, 5000)
    monkeypatch.setattr(templates_module, "GATHER_RATIO", 0 if path == "gather" else 10**9)
    scores = template_pair_scores(tfeats, unique, t1, t2, block=7)
    lookup = {t: tfeats[i] for i, t in enumerate(unique)}
    expected = np.array([lookup[a] @ lookup[b] for a, b in zip(t1, t2)])
    np.testing.assert_allclose(scores, expected, atol=1e-12)


def test_a_pair_naming_an_unknown_template_is_refused():
    feats, templates, medias = _world()
    unique, tfeats = template_features(feats, templates, medias)
    with pytest.raises(MetricInputError, match=r"t2: template 4 \(pair 2\)"):
        template_pair_scores(tfeats, unique, [unique[0], unique[1]], [unique[2], 4])


def test_fusion_options_follow_insightface_order():
    feats = np.array([[3.0, 4.0, 1.0, 0.0]], dtype=np.float32)  # image (3, 4), mirror (1, 0)
    score = np.array([0.5])
    np.testing.assert_allclose(fuse_image_features(feats, score), [[2.0, 2.0]])
    np.testing.assert_allclose(fuse_image_features(feats, score, flip_fusion="none", detector_score=False), [[3, 4]])
    np.testing.assert_allclose(fuse_image_features(feats, score, flip_fusion="concat", detector_score=False), feats)
    np.testing.assert_allclose(fuse_image_features(feats, score, flip_fusion="none", keep_norm=False), [[0.3, 0.4]],
                               rtol=1e-6)
    with pytest.raises(MetricInputError, match="flip_fusion"):
        fuse_image_features(feats, score, flip_fusion="mean")


def _insightface_pick(labels, scores, fars):
    fpr, tpr, _ = sk_roc_curve(labels, scores)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    out = {}
    for x in fars:
        _, index = min(zip(abs(fpr - x), range(len(fpr))))
        out[x] = tpr[index]
    return out


@pytest.mark.parametrize("levels", [None, 50, 7])
def test_tar_at_far_is_the_nearest_fpr_point_of_sklearns_roc(levels):
    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(3000, int), np.zeros(30000, int)]
    scores = np.r_[rng.normal(1.5, 1, 3000), rng.normal(0, 1, 30000)]
    if levels:  # heavy ties: many points collinear, sklearn drops them before the pick
        scores = np.round(scores * levels / 4) / levels
    fars = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
    got = tar_at_far(labels, scores, fars)
    expected = _insightface_pick(labels, scores, fars)
    assert got == pytest.approx(expected, abs=0)


def test_nearest_rule_differs_from_the_strict_rule_where_the_nearest_point_lies_above_the_target():
    # impostor scores 0.9, 0.5, 0.4, 0.3 ...: FPR steps of 1/4; genuine 1.0 and 0.6
    labels = np.array([1, 0, 1, 0, 0, 0])
    scores = np.array([1.0, 0.9, 0.6, 0.5, 0.4, 0.3])
    assert tar_at_far(labels, scores, (0.2,))[0.2] == 1.0  # FPR 0.25 is nearer 0.2 than FPR 0
    from facebench.metrics import roc_curve, strict_tar_at_far

    assert strict_tar_at_far(roc_curve(scores, labels), 0.2) == 0.5


def test_impostor_threshold_lets_through_the_allowed_count():
    impostor = np.arange(1000) / 1000.0
    t = impostor_threshold(impostor, 1e-2)
    assert (impostor > t).sum() == 10
    assert impostor_threshold(impostor, 1.0) == -np.inf


def test_rank_rates_and_tpir_against_a_loop():
    rng = np.random.default_rng(4)
    gallery = rng.standard_normal((30, 8))
    gallery_ids = np.arange(30) // 2  # 15 identities, 2 entries each
    probe_ids = np.r_[rng.integers(0, 15, 60), np.arange(100, 140)]  # 60 mated, 40 non-mated
    probes = np.r_[gallery[probe_ids[:60] * 2] + rng.normal(0, 1.2, (60, 8)), rng.standard_normal((40, 8))]
    s = probe_scores(probes, probe_ids, gallery, gallery_ids, block=7)
    g = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    p = probes / np.linalg.norm(probes, axis=1, keepdims=True)
    ranks, mated_best = [], []
    for i in range(60):
        sims = g @ p[i]
        best = sims[gallery_ids == probe_ids[i]].max()
        ranks.append(1 + int((sims[gallery_ids != probe_ids[i]] > best).sum()))
        mated_best.append(best)
    rates = rank_rates(s, (1, 5, 10))
    for k in (1, 5, 10):
        assert rates[k] == pytest.approx(np.mean(np.array(ranks) <= k))
    top_nonmated = np.array([(g @ p[i]).max() for i in range(60, 100)])
    for fpir in (0.1, 0.25):
        allowed = int(fpir * 40)
        t = np.sort(top_nonmated)[::-1][allowed]
        expected = np.mean([(r == 1) and (b > t) for r, b in zip(ranks, mated_best)])
        assert tpir_at_fpir(s, (fpir,))[fpir] == pytest.approx(expected)
