"""The dataset-metric analyses through `facebench analyze`: fidelity (KID, precision/recall, density/coverage),
certainty ratio and leakage at the reference's FMR with the closest pairs as images, recomputed here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import identity_image

from facebench.data import decode_image, encode_image, open_dataset, open_writer
from facebench.metrics import certainty_ratio, impostor_threshold


def make_set(path, identities, per_identity, seed, offset=0, shift=0):
    rng = np.random.default_rng(seed)
    with open_writer(path, "folder") as writer:
        for ident in range(identities):
            for _ in range(per_identity):
                image = np.clip(identity_image(offset + ident, rng, 35.0).astype(int) + shift, 0, 255)
                writer.add(encode_image(image.astype(np.uint8), "png"), ident)


def _analyze(cli, weights, tmp_path, out, *extra):
    return CliRunner().invoke(cli, ["analyze", str(tmp_path / "syn"), "--extractor", "pixels", "--weights",
                                    str(weights), "--out", str(out), "--device", "cpu", *extra])


def test_fidelity_of_a_set_against_itself_and_against_another(tmp_path, cli, weights):
    make_set(tmp_path / "syn", 30, 4, seed=1)
    make_set(tmp_path / "real", 30, 4, seed=2, offset=100, shift=-60)  # darker: another distribution
    same = _analyze(cli, weights, tmp_path, tmp_path / "a", "--only", "fidelity", "--fid-against", str(tmp_path / "syn"),
                    "--set", "fidelity.kid_subsets=5", "--set", "fidelity.kid_subset_size=50")
    assert same.exit_code == 0, same.output
    fr = json.loads((tmp_path / "a" / "analysis" / "summary.json").read_text())["analyses"]["fidelity"]["fr"]
    # Every fake sample is a real sample: inside its own ball, and every real ball holds a fake.
    assert fr["precision"] == 1.0 and fr["recall"] == 1.0 and fr["coverage"] == 1.0
    assert fr["density"] >= 1.0
    other = _analyze(cli, weights, tmp_path, tmp_path / "b", "--only", "fidelity", "--fid-against",
                     str(tmp_path / "real"), "--set", "fidelity.kid_subsets=5", "--set", "fidelity.kid_subset_size=50")
    assert other.exit_code == 0, other.output
    summary = json.loads((tmp_path / "b" / "analysis" / "summary.json").read_text())
    far = summary["analyses"]["fidelity"]["fr"]
    assert far["kid"] > 10 * abs(fr["kid"]) and far["coverage"] < 1.0
    assert summary["kid"] == far["kid"] and summary["fidelity_features"] == "fr:pixels"  # headline
    assert far["images"] == [120, 120] and far["kid_subset_size"] == 50
    assert f"kid={far['kid']:.4g}," in other.output and "coverage=" in other.output  # the console table


def test_certainty_ratio_histogram_matches_the_metric(tmp_path, cli, weights):
    make_set(tmp_path / "syn", 12, 5, seed=3)
    out = tmp_path / "run"
    result = _analyze(cli, weights, tmp_path, out, "--only", "certainty-ratio", "--set", "certainty-ratio.bins=8")
    assert result.exit_code == 0, result.output
    feats = np.load(out / "analysis" / "features.npy")
    labels = np.repeat(np.arange(12), 5)
    expected = certainty_ratio(feats, labels)
    np.testing.assert_allclose(np.load(out / "analysis" / "certainty_ratio.npy"), expected, rtol=1e-6)
    assert np.load(out / "analysis" / "certainty_ratio_hist.npy").sum() == 60
    summary = json.loads((out / "analysis" / "summary.json").read_text())
    assert summary["certainty_ratio_mean"] == pytest.approx(expected.mean(), rel=1e-6)


def test_leakage_at_the_reference_fmr_with_closest_pairs_as_images(tmp_path, cli, weights):
    make_set(tmp_path / "syn", 20, 3, seed=4)  # identities 0..19
    make_set(tmp_path / "train", 40, 3, seed=5, offset=10)  # identities 10..49: 10..19 leak
    out = tmp_path / "run"
    result = _analyze(cli, weights, tmp_path, out, "--only", "leakage", "--reference", str(tmp_path / "train"),
                      "--set", "leakage.fmr=0.01", "--set", "leakage.pairs=4")
    assert result.exit_code == 0, result.output
    leak = json.loads((out / "analysis" / "summary.json").read_text())["analyses"]["leakage"]
    feats = np.load(out / "analysis" / "features.npy")
    ref = np.load(out / "analysis" / "reference_features.npy")
    centres = np.stack([feats[i * 3:(i + 1) * 3].mean(0) for i in range(20)])
    ref_centres = np.stack([ref[i * 3:(i + 1) * 3].mean(0) for i in range(40)])
    unit = centres / np.linalg.norm(centres, axis=1, keepdims=True)
    ref_unit = ref_centres / np.linalg.norm(ref_centres, axis=1, keepdims=True)
    impostor = [ref_unit[i] @ ref_unit[j] for i in range(40) for j in range(i + 1, 40)]
    threshold = impostor_threshold(np.array(impostor), 0.01)
    best = (unit @ ref_unit.T).max(axis=1)
    assert leak["fmr_threshold"] == pytest.approx(threshold, abs=1e-5)
    assert leak["impostor_pairs"] == 780 and leak["fmr_resolved"] is True
    assert leak["leaked_at_fmr"] == int((best > threshold).sum())
    assert f"leaked_at_fmr={leak['leaked_at_fmr']}," in result.output  # the console table
    # the closest pairs: synthetic identity k against reference label k - 10 (the same toy person)
    closest = leak["closest"]
    assert len(closest) == 4 and all(c["reference_identity"] == c["identity"] - 10 for c in closest)
    pairs = np.load(out / "analysis" / "leakage_pairs.npy")
    assert pairs.shape == (4, 2, 112, 112, 3) and pairs.dtype == np.uint8
    with open_dataset(tmp_path / "syn") as reader:
        first = int(np.flatnonzero(np.asarray(reader.labels) == closest[0]["identity"])[0])
        image = decode_image(reader.image_bytes(first))
    from PIL import Image

    np.testing.assert_array_equal(pairs[0, 0], np.asarray(Image.fromarray(image).resize((112, 112), Image.BILINEAR)))
