"""The new protocols end to end through `facebench evaluate` on the toy protocols (toy_ijb, toy_rfw, toy_tinyface),
checked against plain computations written here; the meta-file readers' refusals through the CLI; alignment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import conftest
import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_curve as sk_roc_curve

SMALL = ["--size", "32", "--set", "ijb_identities=6", "--set", "templates_per_identity=3", "--set", "rfw_pairs=40",
         "--set", "tinyface_identities=5", "--set", "tinyface_distractors=8", "--set", "tinyface_side=12",
         "--set", "twins_pairs=40"]


@pytest.fixture(scope="module")
def protocols_root(tmp_path_factory):
    """One small toy-protocols folder shared by the module's tests (each copies what it changes)."""
    from facebench.cli import create_cli

    out = tmp_path_factory.mktemp("toyp") / "toy-protocols"
    result = CliRunner().invoke(create_cli(), ["toyfaces", "protocols", str(out), "--seed", "3", *SMALL])
    assert result.exit_code == 0, result.output
    return out


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in ("provenance.json",)}


def test_toy_protocols_are_deterministic_per_seed(tmp_path, protocols_root):
    from facebench.cli import create_cli

    again = tmp_path / "again"
    other = tmp_path / "other"
    for out, seed in ((again, "3"), (other, "4")):
        result = CliRunner().invoke(create_cli(), ["toyfaces", "protocols", str(out), "--seed", seed, *SMALL])
        assert result.exit_code == 0, result.output
    assert _tree(again) == _tree(protocols_root)
    assert _tree(other)["toy_ijb/loose_crop/1.jpg"] != _tree(again)["toy_ijb/loose_crop/1.jpg"]
    record = json.loads((protocols_root / "protocols.json").read_text())
    assert set(record["toy_rfw"]) == {"tone1", "tone2", "tone3", "tone4"}
    assert len(list((protocols_root / "toy_tinyface" / "Gallery_Distractor").iterdir())) == 8


def _evaluate(cli, weights, root, out, *extra):
    return CliRunner().invoke(cli, ["evaluate", "--suite", "toy-protocols", "--model", str(weights), "--backbone",
                                    "pixels", "--data-root", str(root), "--out", str(out), "--device", "cpu",
                                    "--bootstrap", "50", *extra])


def _loop_template_scores(fused, templates, medias, t1, t2):
    feats = {}
    for t in np.unique(templates):
        media_means = [fused[(templates == t) & (medias == m)].mean(0) for m in np.unique(medias[templates == t])]
        total = np.sum(media_means, axis=0)
        feats[t] = total / np.linalg.norm(total)
    return np.array([feats[a] @ feats[b] for a, b in zip(t1, t2)]), feats


def test_evaluate_toy_protocols_against_plain_computations(tmp_path, cli, weights, protocols_root, monkeypatch):
    out = tmp_path / "run"
    result = _evaluate(cli, weights, protocols_root, out)
    assert result.exit_code == 0, result.output
    assert "other protocols" in result.output and "TAR@FAR=1e-4" in result.output
    rows = {r["benchmark"]: r for r in json.loads((out / "results.json").read_text())}
    assert set(rows) == {"toy_ijb", "toy_ijb_1n", "toy_tinyface", "toy_rfw_tone1", "toy_rfw_tone2", "toy_rfw_tone3",
                         "toy_rfw_tone4", "toy_twins"}

    # IJB 1:1: the cached image features (image, then mirror) pooled and scored by a loop, TAR picked on
    # sklearn's ROC as insightface picks it.
    meta = protocols_root / "toy_ijb" / "meta"
    image_list = np.loadtxt(meta / "ijbc_face_tid_mid.txt", dtype=str)
    landmarks = np.loadtxt(meta / "ijbc_name_5pts_score.txt", dtype=str)
    pairs = np.loadtxt(meta / "ijbc_template_pair_label.txt", dtype=np.int64)
    feats = np.load(next((out / "features").glob("ijb-ijbc-*[0-9a-f].npy")))
    assert feats.shape == (image_list.shape[0], 48)
    faceness = landmarks[:, -1].astype(np.float32)
    fused = (feats[:, :24] + feats[:, 24:]) * faceness[:, None]
    scores, _ = _loop_template_scores(fused.astype(np.float64), image_list[:, 1].astype(int),
                                      image_list[:, 2].astype(int), pairs[:, 0], pairs[:, 1])
    fpr, tpr, _ = sk_roc_curve(pairs[:, 2], scores)
    fpr, tpr = np.flipud(fpr), np.flipud(tpr)
    ijb = rows["toy_ijb"]
    for key, far in (("tar_at_far_1e-1", 0.1), ("tar_at_far_1e-2", 0.01), ("tar_at_far_1e-4", 1e-4)):
        _, index = min(zip(abs(fpr - far), range(len(fpr))))
        assert ijb[key] == pytest.approx(tpr[index], abs=1e-9)
    assert ijb["ijb_options"]["setting"] == "F2 N1 D1"
    assert ijb["protocol"] == "ijb-1:1" and ijb["accuracy"] is None and ijb["pairs"] == len(pairs)
    assert len(ijb["roc"]["fpr"]) == len(ijb["roc"]["tpr"]) > 2
    assert ijb["ci95"]["tar_at_far_1e-1"][0] <= ijb["tar_at_far_1e-1"] <= ijb["ci95"]["tar_at_far_1e-1"][1]

    # IJB 1:N: rank-1 of each gallery by a loop over probes.
    _, tfeats = _loop_template_scores(fused.astype(np.float64), image_list[:, 1].astype(int),
                                      image_list[:, 2].astype(int), [], [])
    probes = np.loadtxt(meta / "ijbc_1N_probe_mixed.csv", delimiter=",", skiprows=1, usecols=(0, 1), dtype=int)
    rank1 = []
    for gallery_file in ("ijbc_1N_gallery_G1.csv", "ijbc_1N_gallery_G2.csv"):
        gallery = np.loadtxt(meta / gallery_file, delimiter=",", skiprows=1, usecols=(0, 1), dtype=int)
        hits = []
        for template, subject in probes:
            if subject not in gallery[:, 1]:
                continue
            sims = np.array([tfeats[template] @ tfeats[g] for g in gallery[:, 0]])
            hits.append(gallery[np.argmax(sims), 1] == subject)
        rank1.append(np.mean(hits))
    assert rows["toy_ijb_1n"]["rank_1"] == pytest.approx(np.mean(rank1))
    assert rows["toy_ijb_1n"]["galleries"]["G1"]["rank_1"] == pytest.approx(rank1[0])
    assert set(rows["toy_ijb_1n"]) >= {"rank_5", "rank_10", "tpir_at_fpir_1e-2", "tpir_at_fpir_1e-1"}

    # TinyFace: rank-1 and rank-5 by a loop over the cached features (probes first, then matches, distractors).
    tiny = protocols_root / "toy_tinyface"
    probes = sorted((tiny / "Probe").iterdir())
    matches = sorted((tiny / "Gallery_Match").iterdir())
    tfe = np.load(next((out / "features").glob("tinyface-*[0-9a-f].npy")))
    tfe = tfe / np.linalg.norm(tfe, axis=1, keepdims=True)
    probe_ids = [int(p.name.split("_")[0]) for p in probes]
    gallery_ids = [int(p.name.split("_")[0]) for p in matches] + [-1] * 8
    ranks = []
    for i, pid in enumerate(probe_ids):
        sims = tfe[len(probes):] @ tfe[i]
        mated = max(s for s, g in zip(sims, gallery_ids) if g == pid)
        ranks.append(1 + sum(s > mated for s, g in zip(sims, gallery_ids) if g != pid))
    tiny_row = rows["toy_tinyface"]
    assert tiny_row["probes"] == len(probes) and tiny_row["distractors"] == 8
    assert tiny_row["rank_1"] == pytest.approx(np.mean(np.array(ranks) <= 1))
    assert tiny_row["rank_5"] == pytest.approx(np.mean(np.array(ranks) <= 5))

    # RFW group packs are verification rows carrying their group, with intervals.
    for g in ("tone1", "tone2", "tone3", "tone4"):
        row = rows[f"toy_rfw_{g}"]
        assert row["group"] == g and row["protocol"] == "verification" and 0 < row["accuracy"] <= 1.0
        assert row["ci95"]["accuracy"][0] <= row["accuracy"] <= row["ci95"]["accuracy"][1]


def test_other_ijb_options_only_rescore_from_cached_features(tmp_path, cli, weights, protocols_root, monkeypatch):
    calls = []
    original = conftest.PixelExtractor.forward_tensor

    def counting(self, x):
        calls.append(x.shape[0])
        return original(self, x)

    monkeypatch.setattr(conftest.PixelExtractor, "forward_tensor", counting)
    out = tmp_path / "run"
    first = _evaluate(cli, weights, protocols_root, out)
    assert first.exit_code == 0, first.output
    images = sum(1 for _ in (protocols_root / "toy_ijb" / "loose_crop").iterdir())
    assert sum(calls) >= 2 * images  # every aligned image and its mirror went through the model
    before = {r["benchmark"]: r for r in json.loads((out / "results.json").read_text())}
    calls.clear()
    changed = ["--set", "ijb.flip_fusion=concat", "--set", "ijb.detector_score=false", "--set", "ijb.keep_norm=false"]
    refused = _evaluate(cli, weights, protocols_root, out, *changed)  # the rerun contract: other options
    assert refused.exit_code == 2 and "(config.options.ijb.detector_score" in refused.output and calls == []
    second = _evaluate(cli, weights, protocols_root, out, *changed, "--overwrite")
    assert second.exit_code == 0, second.output
    assert calls == []  # no forward pass: the IJB features came from the cache, the other benchmarks resumed
    after = {r["benchmark"]: r for r in json.loads((out / "results.json").read_text())}
    assert after["toy_ijb"]["ijb_options"]["setting"] == "F1 N0 D0"
    assert after["toy_ijb"]["tar_at_far_1e-1"] != before["toy_ijb"]["tar_at_far_1e-1"] or \
        after["toy_ijb"]["eer"] != before["toy_ijb"]["eer"]
    assert after["toy_rfw_tone1"] == before["toy_rfw_tone1"]
    bad = _evaluate(cli, weights, protocols_root, out, "--set", "ijb.flip_fusion=mean")
    assert bad.exit_code == 2 and "error: ijb.flip_fusion must be one of add, concat, none" in bad.output


def _copy(protocols_root, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(protocols_root, root)
    return root


def _edit_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("case", ["landmark-length", "unknown-pair-template", "missing-template", "bad-media-line",
                                  "tinyface-name"])
def test_readers_refuse_malformed_meta_files_with_one_line(tmp_path, cli, weights, protocols_root, case):
    root = _copy(protocols_root, tmp_path)
    meta = root / "toy_ijb" / "meta"
    if case == "landmark-length":
        path, line = meta / "ijbc_name_5pts_score.txt", 4
        fields = path.read_text().splitlines()[line - 1].split()
        _edit_line(path, line, " ".join(fields[:-2]))  # a coordinate is missing
        expected = f"error: {path}: 10 fields, expected 12 (image, x1 y1 ... x5 y5, faceness) at line 4"
    elif case == "unknown-pair-template":
        path, line = meta / "ijbc_template_pair_label.txt", 5
        _edit_line(path, line, "100 99999 0")
        expected = (f"error: {path}: the pair names template 99999, which has no images in ijbc_face_tid_mid.txt "
                    "at line 5")
    elif case == "missing-template":
        path = meta / "ijbc_1N_gallery_G2.csv"
        _edit_line(path, 3, "777,4,x")
        expected = f"error: {path}: the entry names template 777, which has no images in ijbc_face_tid_mid.txt at line 3"
    elif case == "bad-media-line":
        path = meta / "ijbc_face_tid_mid.txt"
        _edit_line(path, 2, "2.jpg 100")  # the template is there but the media id is missing
        expected = f"error: {path}: 2 fields, expected 3 (image template media) at line 2"
    else:
        path = root / "toy_tinyface" / "Probe" / "face.jpg"
        shutil.copy(next((root / "toy_tinyface" / "Probe").iterdir()), path)
        expected = f"error: {path}: file name does not start with an integer identity"
    result = _evaluate(cli, weights, root, tmp_path / "run")
    assert result.exit_code == 2, result.output
    lines = [x for x in result.output.splitlines() if x.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(expected), result.output


def test_alignment_puts_the_landmarks_on_the_template():
    from facebench.data.alignment import ARCFACE_TEMPLATE, AlignmentError, align_face, similarity_matrix

    angle = np.radians(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = (ARCFACE_TEMPLATE - 56) @ rot.T * 1.7 + [120, 90]
    matrix = similarity_matrix(landmarks)
    np.testing.assert_allclose(landmarks @ matrix[:, :2].T + matrix[:, 2], ARCFACE_TEMPLATE, atol=1e-5)
    # a bright dot at each landmark of a black image lands on the template's pixels
    image = np.zeros((240, 240, 3), np.uint8)
    for x, y in np.rint(landmarks).astype(int):
        image[y - 2:y + 3, x - 2:x + 3] = 255
    out = align_face(image, landmarks)
    assert out.shape == (112, 112, 3)
    for x, y in np.rint(ARCFACE_TEMPLATE).astype(int):
        assert out[y, x].mean() > 100
    assert out[5, 5].sum() == 0  # outside the source is black
    with pytest.raises(AlignmentError, match="lie on one point"):
        align_face(image, np.zeros((5, 2)))
