"""`facebench analyze` end to end: every number in summary.json recomputed here from the same features."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from click.testing import CliRunner
from conftest import identity_image, plain_features, write_weights

from facebench.data import encode_image, open_writer
from facebench.metrics import sample_pairs


def make_train_set(path, identities: int, per_identity: int, seed: int, noise: float = 35.0, offset: int = 0):
    rng = np.random.default_rng(seed)
    images, labels = [], []
    with open_writer(path, "folder") as writer:
        for ident in range(identities):
            for _ in range(per_identity):
                image = identity_image(offset + ident, rng, noise)
                writer.add(encode_image(image, "png"), ident)
                images.append(image)
                labels.append(ident)
    return np.stack(images), np.array(labels)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def train_set(tmp_path):
    return make_train_set(tmp_path / "train", 60, 6, seed=1)


def test_analyze_writes_summary_and_arrays_that_match_direct_computation(tmp_path, cli, weights, train_set):
    images, labels = train_set
    reference_ids = make_train_set(tmp_path / "ref", 30, 3, seed=2, offset=40)  # identities 40..69 overlap 40..59
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "analyze", str(tmp_path / "train"), "--extractor", "pixels", "--weights", str(weights), "--out", str(out),
        "--set", "pair-distributions.genuine=500", "--set", "pair-distributions.impostor=700",
        "--reference", str(tmp_path / "ref"), "--fid-against", str(tmp_path / "ref"), "--set", "fid.images=90",
        "--device", "cpu"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "analysis" / "summary.json").read_text())
    assert summary["identities"] == 60 and summary["images"] == 360
    # Headline scalars at the top level (what a report tabulates), equal to the detailed entries.
    assert summary["eer"] == summary["analyses"]["pair-distributions"]["eer"]
    assert summary["separability_threshold"] == 0.4
    assert summary["separable"] == summary["analyses"]["separability"]["separable"]
    assert summary["intra_noise"] == summary["analyses"]["class-noise"]["intra_noise"]
    assert summary["leaked"] == summary["analyses"]["leakage"]["leaked"]
    assert summary["fid"] == summary["analyses"]["fid"]["fid"] and summary["fid_features"] == "fr:pixels"
    analyses = summary["analyses"]

    # Features: the plain (no flip) pooled projection of every image.
    feats = plain_features(images, weights)
    np.testing.assert_allclose(np.load(out / "analysis" / "features.npy"), feats, rtol=1e-4, atol=1e-4)

    centers = np.stack([feats[labels == k].mean(0) for k in range(60)])
    intra = np.sum(unit(feats) * unit(centers)[labels], axis=1)
    np.testing.assert_allclose(np.load(out / "analysis" / "intra.npy"), intra, atol=1e-4)
    noise = analyses["class-noise"]
    assert noise["intra_noise"] == pytest.approx((intra < 0.3).mean(), abs=1 / 360 + 1e-12)
    sim = unit(centers) @ unit(centers).T
    assert noise["inter_pairs_above"] == int(np.triu(sim > 0.7, k=1).sum())
    assert noise["identity_pairs"] == 60 * 59 // 2
    np.fill_diagonal(sim, -np.inf)
    np.testing.assert_allclose(np.load(out / "analysis" / "inter.npy"), sim.max(1), atol=1e-4)

    curve = np.load(out / "analysis" / "separability.npy")
    np.fill_diagonal(sim, 1.0)
    flags = [not (sim[:i, i] > 0.4).any() for i in range(60)]
    np.testing.assert_array_equal(curve, np.cumsum(flags))
    assert analyses["separability"]["separable"] == int(curve[-1])

    genuine = np.load(out / "analysis" / "genuine.npy")
    impostor = np.load(out / "analysis" / "impostor.npy")
    assert genuine.shape == (500,) and impostor.shape == (700,)
    gen_pairs, imp_pairs = sample_pairs(labels, 500, 700, seed=0)
    assert (labels[gen_pairs[:, 0]] == labels[gen_pairs[:, 1]]).all() and (gen_pairs[:, 0] != gen_pairs[:, 1]).all()
    assert (labels[imp_pairs[:, 0]] != labels[imp_pairs[:, 1]]).all()
    u = unit(feats)
    np.testing.assert_allclose(genuine, np.sum(u[gen_pairs[:, 0]] * u[gen_pairs[:, 1]], axis=1), atol=1e-5)
    np.testing.assert_allclose(impostor, np.sum(u[imp_pairs[:, 0]] * u[imp_pairs[:, 1]], axis=1), atol=1e-5)
    # EER by brute force over every candidate threshold: the crossing lies between two of them.
    grid = np.sort(np.r_[genuine, impostor])
    far = np.array([(impostor >= t).mean() for t in grid])
    frr = np.array([(genuine < t).mean() for t in grid])
    k = np.argmin(np.abs(far - frr))
    assert abs(analyses["pair-distributions"]["eer"] - (far[k] + frr[k]) / 2) <= 2 / 500

    # Leakage against the reference set: reference identities 40..69 contain ours 40..59.
    ref_images, ref_labels = reference_ids
    ref_feats = plain_features(ref_images, weights)
    ref_centers = np.stack([ref_feats[ref_labels == k].mean(0) for k in range(30)])
    best = (unit(centers) @ unit(ref_centers).T).max(1)
    leak = analyses["leakage"]
    assert leak["leaked"] == int((best > 0.4).sum())
    assert set(range(40, 60)) <= set(leak["leaked_labels"])
    np.testing.assert_allclose(np.load(out / "analysis" / "leakage.npy"), best, atol=1e-4)

    fid = analyses["fid"]
    assert "FR embeddings of 'pixels'" in fid["features"] and fid["images"] == [90, 90]
    assert fid["fid"] > 0
    # The FID sample: 90 of 360 and all 90 reference images, seed 0, as the analysis draws them.
    rng = np.random.default_rng(0)
    a = unit(feats[np.sort(rng.choice(360, size=90, replace=False))])
    b = unit(ref_feats[np.sort(rng.choice(90, size=90, replace=False))])
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expect = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(s1 + s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real)
    assert fid["fid"] == pytest.approx(expect, rel=1e-4)
    assert analyses["pose-quality"] == {"skipped": "no pose or quality extractor given (--pose-extractor / "
                                                   "--quality-extractor)"}
    prov = json.loads((out / "provenance.json").read_text())
    assert {"dataset", "weights", "reference", "fid_against"} <= set(prov["inputs"])
    tidy = pd.read_csv(out / "analysis" / "summary.csv")
    assert list(tidy.columns) == ["dataset", "analysis", "metric", "value"]
    value = tidy[(tidy.analysis == "class-noise") & (tidy.metric == "inter_pairs_above")]["value"].item()
    assert float(value) == noise["inter_pairs_above"]


def test_analyze_only_some_and_resume_features(tmp_path, cli, weights, train_set):
    out = tmp_path / "run"
    args = ["analyze", str(tmp_path / "train"), "--extractor", "pixels", "--weights", str(weights), "--out",
            str(out), "--only", "separability", "--only", "leakage", "--json"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert list(summary["analyses"]) == ["separability", "leakage"]
    assert summary["analyses"]["leakage"]["skipped"].startswith("no reference identities")
    stamp = (out / "analysis" / "features.npy").stat().st_mtime_ns
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0
    assert (out / "analysis" / "features.npy").stat().st_mtime_ns == stamp  # reused, not recomputed
    assert json.loads(again.stdout)["analyses"]["separability"] == summary["analyses"]["separability"]
    other = write_weights(tmp_path / "other.pt")
    other.write_bytes(other.read_bytes() + b"\0")  # another file: another hash, same tensors
    clash = CliRunner().invoke(cli, [*args[:5], str(other), *args[6:]])
    assert clash.exit_code == 2 and "holds a finished analysis made with other parameters (inputs.weights)" in \
        " ".join(clash.output.split())


def test_analyze_errors(tmp_path, cli, weights, train_set):
    bad = CliRunner().invoke(cli, ["analyze", str(tmp_path / "train"), "--extractor", "pixels", "--weights",
                                   str(weights), "--only", "separabilty"])
    assert bad.exit_code == 2 and "unknown analysis 'separabilty'" in bad.output
    missing = CliRunner().invoke(cli, ["analyze", str(tmp_path / "nowhere"), "--extractor", "pixels",
                                       "--weights", str(weights)])
    assert missing.exit_code == 2 and "nowhere: dataset not found" in missing.output
    np.save(tmp_path / "ref.npy", np.ones((4, 5, 6)))
    wrong = CliRunner().invoke(cli, ["analyze", str(tmp_path / "train"), "--extractor", "pixels", "--weights",
                                     str(weights), "--reference", str(tmp_path / "ref.npy"), "--out",
                                     str(tmp_path / "r"), "--only", "leakage"])
    assert wrong.exit_code == 2 and "ref.npy: expected an (identities, dims) array" in wrong.output


def test_each_analysis_takes_its_own_options_through_set(tmp_path, cli, weights, train_set):
    images, labels = train_set
    base = ["analyze", str(tmp_path / "train"), "--extractor", "pixels", "--weights", str(weights), "--device", "cpu",
            "--only", "class-noise", "--only", "separability"]
    out = tmp_path / "run"
    res = CliRunner().invoke(cli, [*base, "--out", str(out), "--set", "class-noise.intra_threshold=0.95",
                                   "--set", "separability.threshold=0.2"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "analysis" / "summary.json").read_text())
    feats = plain_features(images, weights)
    centers = np.stack([feats[labels == k].mean(0) for k in range(60)])
    intra = np.sum(unit(feats) * unit(centers)[labels], axis=1)
    noise = summary["analyses"]["class-noise"]
    assert noise["intra_threshold"] == 0.95 and noise["inter_threshold"] == 0.7  # the other option: its default
    assert noise["intra_noisy_images"] == int((intra < 0.95).sum())
    assert summary["separability_threshold"] == 0.2
    assert "intra_threshold = 0.95" in (out / "config.toml").read_text()
    for option, message in (
        ("class-nosie.intra_threshold=0.3", "no analysis 'class-nosie' (did you mean 'class-noise'?"),
        ("class-noise.intra_treshold=0.3", "unknown config key 'intra_treshold' (did you mean 'intra_threshold'?"),
        ("class-noise=0.3", "expected ANALYSIS.OPTION=VALUE ('class-noise' options: intra_threshold, inter_threshold"),
    ):
        bad = CliRunner().invoke(cli, [*base, "--out", str(tmp_path / "bad"), "--set", option])
        assert bad.exit_code == 2 and message in bad.output, bad.output
        assert not (tmp_path / "bad").exists()


def test_pose_and_quality_histograms(tmp_path, cli, weights, train_set):
    images, _ = train_set
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, [
        "analyze", str(tmp_path / "train"), "--extractor", "pixels", "--weights", str(weights), "--out", str(out),
        "--only", "pose-quality", "--pose-extractor", "angles", "--pose-weights", str(weights),
        "--quality-extractor", "pixels", "--quality-weights", str(weights)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "analysis" / "summary.json").read_text())["analyses"]["pose-quality"]
    assert summary["images"] == 360  # fewer images than the 10,000 default sample: all of them, in order
    yaw = np.load(out / "analysis" / "yaw.npy")
    np.testing.assert_allclose(yaw, 90 * (images[..., 0] / 127.5 - 1).mean(axis=(1, 2)), atol=1e-3)
    np.testing.assert_allclose(np.load(out / "analysis" / "roll.npy"), 5.0)
    counts, edges = np.histogram(np.clip(yaw, -90, 90), bins=36, range=(-90, 90))
    np.testing.assert_array_equal(np.load(out / "analysis" / "yaw_hist.npy"), counts)
    np.testing.assert_allclose(np.load(out / "analysis" / "yaw_edges.npy"), edges)
    quality = np.load(out / "analysis" / "quality.npy")
    np.testing.assert_allclose(quality, np.linalg.norm(plain_features(images, weights), axis=1), rtol=1e-4)
    assert summary["yaw"]["extractor"] == "angles" and summary["quality"]["extractor"] == "pixels"
    assert summary["quality"]["mean"] == pytest.approx(quality.mean(), rel=1e-5)


def test_feature_extraction_killed_midway_resumes_at_the_unfinished_shard(tmp_path, train_set):
    import torch

    from facebench.data import open_dataset
    from facebench.evaluation.embed import TensorModel
    from facebench.evaluation.features import dataset_features

    calls = []

    def forward(x):
        calls.append(x.shape[0])
        if len(calls) == 3 and stop_early:
            raise KeyboardInterrupt  # the user presses Ctrl-C during the third batch
        return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)

    model = TensorModel(forward=forward, input_size=32)
    reader = open_dataset(tmp_path / "train")
    out = tmp_path / "feats.npy"
    stop_early = True
    with pytest.raises(KeyboardInterrupt):
        dataset_features(model, reader, out, params={"model": "pool"}, batch_size=50, shard_size=100)
    assert not out.exists() and (tmp_path / "feats.partial.npy").exists()
    assert list(json.loads((tmp_path / "feats.manifest.json").read_text())["done"]) == ["0"]
    calls.clear()
    stop_early = False
    feats = dataset_features(model, reader, out, params={"model": "pool"}, batch_size=50, shard_size=100)
    assert sum(calls) == 260  # shards 1..3 only (images 100..359), shard 0 was kept
    assert not (tmp_path / "feats.partial.npy").exists()
    calls.clear()
    fresh = dataset_features(model, reader, tmp_path / "fresh.npy", params={"model": "pool"}, batch_size=50,
                             shard_size=100)
    np.testing.assert_array_equal(np.asarray(feats), np.asarray(fresh))
