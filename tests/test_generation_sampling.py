"""Identity sampling: PCA statistics, exact rejection above tau, the sample-ids command."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from facebench.errors import DataError, FacebenchError, MissingFileError
from facebench.generation.sampling import PCAStats, sample_identities


def _features(n=600, d=64, seed=0, offset=3.0):
    """Correlated, off-centre features (like real FR features): sampled vectors do clash at tau 0.3."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((d, d)) * np.linspace(1.0, 0.3, d)[:, None]
    return rng.standard_normal((n, d)) @ mixing + offset


def _independent_max_pair(x):
    x = np.asarray(x, dtype=np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    gram = x @ x.T
    np.fill_diagonal(gram, -np.inf)
    return float(gram.max())


def test_pca_keeps_every_dimension_and_inverts_exactly():
    feats = _features()
    stats = PCAStats.fit(feats)
    assert stats.components.shape == (64, 64)
    np.testing.assert_allclose(stats.components @ stats.components.T, np.eye(64), atol=1e-10)
    np.testing.assert_allclose(stats.inverse_transform(stats.transform(feats)), feats, atol=1e-9)
    # PCA coordinates are uncorrelated: their covariance is diagonal and sorted by variance
    off = stats.pca_cov - np.diag(np.diag(stats.pca_cov))
    assert np.abs(off).max() < 1e-8 * np.abs(stats.pca_cov).max()
    assert np.all(np.diff(np.diag(stats.pca_cov)) <= 1e-9)


def test_pca_with_fewer_identities_than_dimensions_still_keeps_all_components():
    stats = PCAStats.fit(_features(n=20, d=64))
    assert stats.components.shape == (64, 64)
    np.testing.assert_allclose(stats.components @ stats.components.T, np.eye(64), atol=1e-10)
    samples = stats.sample(500, np.random.default_rng(0))
    assert np.isfinite(samples).all()


def test_samples_follow_the_feature_distribution():
    feats = _features(n=3000, d=16, offset=0.4)
    stats = PCAStats.fit(feats)
    samples = stats.sample(40000, np.random.default_rng(1))
    np.testing.assert_allclose(samples.mean(axis=0), feats.mean(axis=0), atol=0.05)
    cov = np.cov(feats, rowvar=False)
    np.testing.assert_allclose(np.cov(samples, rowvar=False), cov, atol=0.03 * np.abs(cov).max())


def test_stats_save_load_roundtrip(tmp_path):
    stats = PCAStats.fit(_features(d=64, offset=0.0))
    path = stats.save(tmp_path / "pca.npz")
    again = PCAStats.load(path)
    for key in ("mean", "components", "pca_mean", "pca_cov"):
        np.testing.assert_array_equal(getattr(again, key), getattr(stats, key))
    assert again.n_samples == 600
    a = sample_identities(stats, 50, tau=0.5, seed=3, batch=256).vectors
    b = sample_identities(again, 50, tau=0.5, seed=3, batch=256).vectors
    np.testing.assert_array_equal(a, b)


def test_bad_stats_files_are_one_line_errors(tmp_path):
    with pytest.raises(MissingFileError, match="nope.npz: PCA statistics file not found"):
        PCAStats.load(tmp_path / "nope.npz")
    np.savez(tmp_path / "partial.npz", mean=np.zeros(4))
    with pytest.raises(DataError, match="missing components"):
        PCAStats.load(tmp_path / "partial.npz")
    stats = PCAStats.fit(_features(d=8))
    np.savez(tmp_path / "shape.npz", mean=stats.mean, components=stats.components[:4], pca_mean=stats.pca_mean,
             pca_cov=stats.pca_cov, n_samples=5, version=1)
    with pytest.raises(DataError, match=r"'components' has shape \(4, 8\), expected \(8, 8\)"):
        PCAStats.load(tmp_path / "shape.npz")
    np.savez(tmp_path / "pickled.npz", mean=np.array([{"a": 1}], dtype=object), components=stats.components,
             pca_mean=stats.pca_mean, pca_cov=stats.pca_cov, n_samples=5, version=1)
    with pytest.raises(DataError, match="pickled.npz: cannot read PCA statistics"):
        PCAStats.load(tmp_path / "pickled.npz")


def test_5k_sampled_vectors_have_no_pair_above_tau():
    stats = PCAStats.fit(_features(n=2000, d=512))
    result = sample_identities(stats, 5000, tau=0.3, seed=0)
    assert result.vectors.shape == (5000, 512)
    assert _independent_max_pair(result.vectors) <= 0.3
    # the statistics are correlated enough that rejection really happened
    assert result.rejected > 0
    assert result.rejection_rate == pytest.approx(result.rejected / result.drawn)


def test_rejection_is_the_exact_greedy_rule():
    """Same candidate stream, checked one vector at a time in float64: the same vectors are kept."""
    stats = PCAStats.fit(_features(d=64, offset=0.0))
    n, tau, batch = 300, 0.5, 128
    result = sample_identities(stats, n, tau=tau, seed=5, batch=batch)
    rng = np.random.default_rng(5)
    kept: list[np.ndarray] = []
    drawn = 0
    while len(kept) < n:
        for cand in stats.sample(batch, rng).astype(np.float32).astype(np.float64):
            drawn += 1
            unit = cand / np.linalg.norm(cand)
            if not kept or max(float(unit @ (k / np.linalg.norm(k))) for k in kept) <= tau:
                kept.append(cand)
                if len(kept) == n:
                    break
    np.testing.assert_allclose(result.vectors, np.asarray(kept, dtype=np.float32), rtol=0, atol=0)
    assert result.drawn == drawn
    assert drawn > n  # some candidates were rejected, so the rule was exercised


def test_impossible_tau_stops_with_a_message():
    stats = PCAStats.fit(_features(d=4))
    with pytest.raises(FacebenchError, match="no tau below 1 keeps 200 within the 400 candidates "
                                             "--max-draw-factor allows .*: ask for at most 1 with --n"):
        sample_identities(stats, 200, tau=-0.5, seed=0, batch=64, max_draw_factor=2)


def test_a_too_strict_tau_names_the_tau_that_works_and_it_does():
    import re

    stats = PCAStats.fit(_features(d=16, n=40))
    with pytest.raises(FacebenchError) as err:
        sample_identities(stats, 30, tau=0.0, seed=3, batch=256)
    found = re.search(r"--tau ([0-9.]+) keeps 30 from the same draws \(or keep tau and ask for at most (\d+)",
                      str(err.value))
    assert found, str(err.value)
    tau = float(found.group(1))
    result = sample_identities(stats, 30, tau=tau, seed=3, batch=256)
    unit = result.vectors / np.linalg.norm(result.vectors, axis=1, keepdims=True)
    sims = unit @ unit.T
    assert sims[np.triu_indices(30, 1)].max() <= tau + 1e-6
    with pytest.raises(FacebenchError):  # 0.05 less does not keep 30 from the same draws
        sample_identities(stats, 30, tau=round(tau - 0.05, 2), seed=3, batch=256)


def test_sample_ids_command_prints_the_rejection_rate(tmp_path):
    from facebench.cli import create_cli

    np.save(tmp_path / "feats.npy", _features(d=512))
    out = tmp_path / "ids.npy"
    runner = CliRunner()
    res = runner.invoke(create_cli(), ["sample-ids", "--features", str(tmp_path / "feats.npy"), "--n", "400",
                                       "--out", str(out), "--save-stats", str(tmp_path / "pca.npz")])
    assert res.exit_code == 0, res.output
    assert "rejection rate" in res.output
    ids = np.load(out)
    assert ids.shape == (400, 512) and ids.dtype == np.float32
    assert _independent_max_pair(ids) <= 0.3
    import json

    record = json.loads((tmp_path / "ids.npy.json").read_text())
    assert record["sampling"]["drawn"] - record["sampling"]["rejected"] == 400
    assert f"{100 * record['sampling']['rejection_rate']:.2f}%" in res.output
    # the saved statistics reproduce the same vectors without the features
    res2 = runner.invoke(create_cli(), ["sample-ids", "--stats", str(tmp_path / "pca.npz"), "--n", "400",
                                        "--out", str(tmp_path / "ids2.npy")])
    assert res2.exit_code == 0, res2.output
    np.testing.assert_array_equal(np.load(tmp_path / "ids2.npy"), ids)


def test_sample_ids_errors(tmp_path):
    from facebench.cli import create_cli

    runner = CliRunner()
    res = runner.invoke(create_cli(), ["sample-ids", "--n", "5", "--out", str(tmp_path / "x.npy")])
    assert res.exit_code == 2 and "exactly one of --features" in res.output
    res = runner.invoke(create_cli(), ["sample-ids", "--features", str(tmp_path / "none.npy"), "--n", "5",
                                       "--out", str(tmp_path / "x.npy")])
    assert res.exit_code == 2
    assert f"error: {tmp_path / 'none.npy'}: identity features file not found" in res.output
    np.save(tmp_path / "bad.npy", np.zeros(7))
    res = runner.invoke(create_cli(), ["sample-ids", "--features", str(tmp_path / "bad.npy"), "--n", "5",
                                       "--out", str(tmp_path / "x.npy")])
    assert res.exit_code == 2 and "must be a non-empty (N, D) matrix, got shape (7,)" in res.output
    assert not (tmp_path / "x.npy").exists()


def test_decisions_at_the_threshold_are_made_in_float64():
    """Candidates whose cosine to a kept vector straddles tau by ~1e-7: float32 alone would misjudge some."""
    import torch

    from facebench.generation.sampling import reject_above_tau

    tau = 0.3
    rng = np.random.default_rng(0)
    kept = rng.standard_normal((3, 64)).astype(np.float32)
    unit = kept[0].astype(np.float64) / np.linalg.norm(kept[0])
    other = rng.standard_normal(64)
    other -= (other @ unit) * unit
    other /= np.linalg.norm(other)
    decisions, truths = [], []
    for delta in np.linspace(-2e-7, 2e-7, 41):
        c = tau + delta
        cand = (c * unit + np.sqrt(1 - c * c) * other).astype(np.float32)[None] * 3.0
        kept_unit = torch.nn.functional.normalize(torch.from_numpy(np.concatenate([kept, cand])), dim=1)
        idx, _ = reject_above_tau(cand, 5, tau, kept_unit=kept_unit, kept_vectors=kept, n_kept=3)
        c64 = cand[0].astype(np.float64)
        k64 = kept.astype(np.float64)
        truth = max((k64 @ c64) / (np.linalg.norm(k64, axis=1) * np.linalg.norm(c64))) <= tau
        decisions.append(idx.size == 1)
        truths.append(bool(truth))
    assert decisions == truths
    assert any(truths) and not all(truths)


@pytest.mark.parametrize("write, message", [
    (lambda p: np.save(p.open("wb"), np.zeros(3)), "must be an .npz archive, got a .npy array"),
    (lambda p: p.write_bytes(b""), "the file is empty"),
    (lambda p: p.write_bytes(b"PK\x03\x04 cut short"), "cannot read PCA statistics"),
    (lambda p: p.write_text("mean,components\n1,2\n"), "not an .npz archive"),
])
def test_a_stats_file_that_is_no_npz_archive_is_one_line_error(tmp_path, write, message):
    path = tmp_path / "stats.npz"
    write(path)
    with pytest.raises(DataError, match=f"stats.npz: .*{message}") as caught:
        PCAStats.load(path)
    assert "\n" not in str(caught.value)


def _stats_with_mean_header(tmp_path, old: bytes, new: bytes):
    """A PCA statistics file whose ``mean`` member has ``old`` in its header replaced by ``new``."""
    path = tmp_path / "stats.npz"
    PCAStats.fit(_features(d=8)).save(path)
    with zipfile.ZipFile(path) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    head = members["mean.npy"]
    members["mean.npy"] = head[:10] + head[10:].replace(old, new, 1)
    assert members["mean.npy"] != head
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_a_stats_member_whose_shape_is_beyond_int64_is_one_line_error(tmp_path):
    # the shape (2^64,) in place of (8,), the header's length kept
    path = _stats_with_mean_header(tmp_path, b"(8,), }" + b" " * 19, b"(18446744073709551616,), }")
    with pytest.raises(DataError, match="stats.npz: cannot read PCA statistics: its header declares a shape beyond "
                                        "the 64-bit integer range"):
        PCAStats.load(path)


def test_a_stats_member_with_a_garbled_header_is_one_line_error(tmp_path):
    path = _stats_with_mean_header(tmp_path, b"'descr'", b"'descr ")  # the header dict unparsable
    with pytest.raises(DataError, match="stats.npz: cannot read PCA statistics: Cannot parse header") as caught:
        PCAStats.load(path)
    assert "\n" not in str(caught.value)
