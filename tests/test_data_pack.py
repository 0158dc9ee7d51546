"""``facebench data pack lfw|cfp``: the standard packs built from raw photos and the official protocol files.

Tiny LFW-style and CFP-style folders are built here from toy photos: loose crops rendered by the toy world,
whose five landmarks are known (``toyfaces``' IJB geometry). A test detector registered as a plugin returns
those landmarks for the photos it is shown (and nothing for a blank photo), so the pack's every crop can be
computed independently (``facebench.align`` on the photo and its known landmarks) and the pair order, the
folds and the flags checked against the protocol files as written here; ``evaluate --suite five`` then runs
on the packs.
"""

from __future__ import annotations

import hashlib
import json
import types
from dataclasses import replace
from pathlib import Path

import conftest as fx
import numpy as np
import pytest
from facebench_plugins.toyfaces.params import Difficulty, rng_for, sample_identity, sample_nuisance
from facebench_plugins.toyfaces.protocols import loose_crop_points
from facebench_plugins.toyfaces.render import render_face

import facebench
from facebench import hookimpl
from facebench.data import decode_image, encode_image, open_pairs
from facebench.data.detection import Detections
from facebench.data.photos import read_photo

SIDE = 72  # photo side in pixels
SEED = 11
#: Landmarks of every photo written, by the sha256 of its decoded pixels (what the test detector sees).
KNOWN: dict[str, np.ndarray] = {}
#: Photos in which the test detector also reports a small bystander face in a corner.
BYSTANDER: set[str] = set()

LFW_NAMES = ("Ann_Ash", "Bo_Berg", "Cy_Cole", "Di_Dunn", "Ed_Eng")
LFW_PHOTOS = 3
PER_HALF = 2  # same (and different) pairs per fold: 10 folds of 4 pairs
CFP_IDS, CFP_FRONTAL, CFP_PROFILE = 4, 3, 2


def pixels_key(image: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


class KnownFaces:
    """The test detector: the known landmarks of a photo this test wrote (a box around them, score 0.99),
    plus a small second face where the test put a bystander; no face in any other image."""

    def __init__(self, weights=None, device="cpu", **_):
        self.device = device

    def detect(self, image):
        key = pixels_key(image)
        if key not in KNOWN:
            return Detections.empty()
        pts = KNOWN[key]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        boxes = [[lo[0] - 8, lo[1] - 14, hi[0] + 8, hi[1] + 8]]
        scores, landmarks = [0.99], [pts]
        if key in BYSTANDER:  # higher score, but small and in the corner: pick_face keeps the subject
            boxes.append([1, 1, 9, 9])
            scores.append(0.999)
            landmarks.append(np.array([[3, 3], [7, 3], [5, 5], [3, 7], [7, 7]], np.float32))
        return Detections(boxes, scores, landmarks)


def _detector_plugin():
    @hookimpl
    def register_detectors(register):
        register("known-faces", KnownFaces, "test detector: the landmarks the toy photos were rendered with")

    return types.SimpleNamespace(register_detectors=register_detectors)


@pytest.fixture
def cli(monkeypatch):
    """The CLI with the test extractors and the test detector visible to every registry lookup."""
    import facebench.pluginmanager as pm
    from facebench.cli import create_cli
    from facebench.pluginmanager import build_plugin_set

    plugins = build_plugin_set(extra_plugins={"test-extractors": fx._plugin(), "test-detectors": _detector_plugin()})

    def current():
        return plugins

    current.cache_clear = lambda: None
    monkeypatch.setattr(pm, "get_plugin_set", current)
    return create_cli(plugins)


def run(cli, *args, cwd: Path | None = None):
    return fx.invoke(cli, args, cwd)


def ok(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def one_error(result, *fragments: str) -> str:
    """Exit 2 and exactly one ``error:`` line holding every fragment, no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


# ------------------------------------------------------------------------------------------ toy folders


def write_photo(path: Path, identity: int, item: int, *, profile: bool = False) -> np.ndarray:
    """A loose toy photo of ``identity`` at ``path`` (JPEG), its landmarks registered; returns them."""
    difficulty = Difficulty()
    ident = sample_identity(rng_for(SEED, 1, identity), difficulty.identity_spread)
    rng = rng_for(SEED, 2, identity, item, int(profile))
    base = sample_nuisance(rng, ident, difficulty)
    nz = replace(base, scale=float(rng.uniform(0.5, 0.65)), dx=float(rng.uniform(-0.12, 0.12)),
                 dy=float(rng.uniform(-0.1, 0.1)), roll=float(rng.normal(0, 10)),
                 yaw=float(rng.choice([-1, 1]) * rng.uniform(35, 50)) if profile else base.yaw)
    points = loose_crop_points(SIDE, nz.scale, nz.dx, nz.dy, nz.roll).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_image(render_face(ident, nz, SIDE), "jpg"))
    KNOWN[pixels_key(read_photo(path))] = points
    return points


def landmark_line(name: str, points: np.ndarray) -> str:
    return name + " " + " ".join(str(v) for v in points.ravel()) + "\n"  # float32's shortest exact text


def lfw_world(root: Path, pairs_name: str = "pairs.txt", landmarks_name: str = "lfw_landmarks.txt"):
    """``root/lfw/<name>/<name>_000n.jpg``, ``root/<pairs_name>`` (10 folds of 2 same then 2 different
    pairs, LFW's header) and ``root/<landmarks_name>``; returns (pairs as (name_a, name_b, same), points)."""
    points = {}
    for i, name in enumerate(LFW_NAMES):
        for n in range(1, LFW_PHOTOS + 1):
            rel = f"{name}/{name}_{n:04d}.jpg"
            points[rel] = write_photo(root / "lfw" / rel, i, n)
    rng = np.random.default_rng(3)
    lines, pairs = [f"{10}\t{PER_HALF}\n"], []
    for _ in range(10):
        for _ in range(PER_HALF):
            name = LFW_NAMES[rng.integers(len(LFW_NAMES))]
            a, b = rng.choice(np.arange(1, LFW_PHOTOS + 1), 2, replace=False)
            lines.append(f"{name}\t{a}\t{b}\n")
            pairs.append((f"{name}/{name}_{a:04d}.jpg", f"{name}/{name}_{b:04d}.jpg", True))
        for _ in range(PER_HALF):
            i, j = rng.choice(len(LFW_NAMES), 2, replace=False)
            a, b = rng.integers(1, LFW_PHOTOS + 1, 2)
            lines.append(f"{LFW_NAMES[i]}\t{a}\t{LFW_NAMES[j]}\t{b}\n")
            pairs.append((f"{LFW_NAMES[i]}/{LFW_NAMES[i]}_{a:04d}.jpg", f"{LFW_NAMES[j]}/{LFW_NAMES[j]}_{b:04d}.jpg",
                          False))
    (root / pairs_name).write_text("".join(lines))
    (root / landmarks_name).write_text("".join(landmark_line(k, v) for k, v in points.items()))
    BYSTANDER.add(pixels_key(read_photo(root / "lfw" / pairs[0][0])))
    return pairs, points


def cfp_world(root: Path, landmarks_name: str = "cfp_landmarks.txt"):
    """``root/cfp-dataset`` in the distributed layout, 10 folds of 2 same then 2 different pairs for FP and
    FF; returns {protocol: pairs as (name_a, name_b, same)} and the points of every photo."""
    cfp = root / "cfp-dataset"
    points, frontal, profile = {}, [], []
    for i in range(CFP_IDS):
        for kind, count, names in (("frontal", CFP_FRONTAL, frontal), ("profile", CFP_PROFILE, profile)):
            for n in range(1, count + 1):
                rel = f"Data/Images/{i + 1:03d}/{kind}/{n:02d}.jpg"
                points[rel] = write_photo(cfp / rel, 100 + i, n, profile=kind == "profile")
                names.append((i, rel))
    protocol = cfp / "Protocol"
    protocol.mkdir()
    for letter, names in (("F", frontal), ("P", profile)):
        (protocol / f"Pair_list_{letter}.txt").write_text(
            "".join(f"{k + 1} ../{rel}\n" for k, (_, rel) in enumerate(names)))
    rng = np.random.default_rng(5)
    out = {}
    for split, second in (("FP", profile), ("FF", frontal)):
        pairs = []
        for fold in range(1, 11):
            folder = protocol / "Split" / split / f"{fold:02d}"
            folder.mkdir(parents=True)
            for part, same in (("same", True), ("diff", False)):
                lines = []
                for _ in range(PER_HALF):
                    while True:
                        a, b = int(rng.integers(len(frontal))), int(rng.integers(len(second)))
                        if (frontal[a][0] == second[b][0]) == same and (a != b or split == "FP"):
                            break
                    lines.append(f"{a + 1},{b + 1}\n")
                    pairs.append((frontal[a][1], second[b][1], same))
                (folder / f"{part}.txt").write_text("".join(lines))
        out[split] = pairs
    (root / landmarks_name).write_text("".join(landmark_line(k, v) for k, v in points.items()))
    return out, points


def expected_crops(folder: Path, points: dict[str, np.ndarray], size: int = 112) -> dict[str, np.ndarray]:
    return {name: facebench.align(read_photo(folder / name), pts, size) for name, pts in points.items()}


def pack_images(path: Path) -> tuple[list[np.ndarray], np.ndarray]:
    reader = open_pairs(path)
    images = [decode_image(reader.pair_bytes(k)[side]) for k in range(len(reader)) for side in (0, 1)]
    return images, np.asarray(reader.issame)


# ------------------------------------------------------------------------------------------------ LFW


def test_lfw_pack_holds_the_pairs_in_order_with_their_crops(cli, tmp_path):
    pairs, points = lfw_world(tmp_path)
    out = tmp_path / "lfw.bin"
    printed = ok(run(cli, "data", "pack", "lfw", tmp_path / "lfw", tmp_path / "pairs.txt", "--detector", "known-faces",
                     "--encoding", "png", "--out", out, "--device", "cpu"))
    assert f"wrote {out}: 40 pairs (20 same, 20 different) in 10 folds, from" in printed
    assert "1 photo(s) showed several faces" in printed  # the bystander: the subject's face was kept
    images, flags = pack_images(out)
    assert list(flags) == [same for _, _, same in pairs] == ([True] * PER_HALF + [False] * PER_HALF) * 10
    crops = expected_crops(tmp_path / "lfw", points)
    for k, (a, b, _) in enumerate(pairs):
        assert np.array_equal(images[2 * k], crops[a]) and np.array_equal(images[2 * k + 1], crops[b]), k
    assert not list(tmp_path.glob(".lfw.bin*"))  # no temporary left


def test_landmarks_file_gives_the_same_pack_as_the_detector(cli, tmp_path):
    lfw_world(tmp_path)
    by_detector, by_file = tmp_path / "detector.bin", tmp_path / "file.bin"
    ok(run(cli, "data", "pack", "lfw", tmp_path / "lfw", tmp_path / "pairs.txt", "--detector", "known-faces",
           "--out", by_detector))
    printed = ok(run(cli, "data", "pack", "lfw", tmp_path / "lfw", tmp_path / "pairs.txt", "--landmarks",
                     tmp_path / "lfw_landmarks.txt", "--out", by_file))
    assert "aligned to 112 px by the landmarks of" in printed
    assert by_file.read_bytes() == by_detector.read_bytes()  # JPEG crops: identical bytes
    images, _ = pack_images(by_file)
    assert images[0].shape == (112, 112, 3)


def test_crop_size_follows_size(cli, tmp_path):
    _, points = lfw_world(tmp_path)
    out = tmp_path / "lfw224.bin"
    ok(run(cli, "data", "pack", "lfw", tmp_path / "lfw", tmp_path / "pairs.txt", "--landmarks",
           tmp_path / "lfw_landmarks.txt", "--size", "224", "--encoding", "png", "--out", out))
    images, _ = pack_images(out)
    reader = open_pairs(out)
    first = reader.pair_bytes(0)[0]
    assert images[0].shape == (224, 224, 3) and first[:4] == b"\x89PNG"


# ------------------------------------------------------------------------------------------------ CFP


@pytest.mark.parametrize("protocol", ["FP", "FF"])
def test_cfp_pack_follows_the_split_files(cli, tmp_path, protocol):
    splits, points = cfp_world(tmp_path)
    out = tmp_path / f"cfp_{protocol.lower()}.bin"
    printed = ok(run(cli, "data", "pack", "cfp", tmp_path / "cfp-dataset", "--protocol", protocol, "--detector",
                     "known-faces", "--encoding", "png", "--out", out))
    assert "40 pairs (20 same, 20 different) in 10 folds" in printed
    images, flags = pack_images(out)
    pairs = splits[protocol]
    assert list(flags) == [same for _, _, same in pairs] == ([True] * PER_HALF + [False] * PER_HALF) * 10
    crops = expected_crops(tmp_path / "cfp-dataset", points)
    for k, (a, b, _) in enumerate(pairs):
        assert np.array_equal(images[2 * k], crops[a]) and np.array_equal(images[2 * k + 1], crops[b]), k
        assert "/frontal/" in a and (("/profile/" in b) if protocol == "FP" else ("/frontal/" in b))


# ------------------------------------------------------------------------------------- evaluate on them


def test_evaluate_suite_five_runs_on_the_built_packs(cli, tmp_path):
    lfw_world(tmp_path)
    cfp_world(tmp_path)
    root = tmp_path / "packs"
    ok(run(cli, "data", "pack", "lfw", tmp_path / "lfw", tmp_path / "pairs.txt", "--detector", "known-faces",
           "--out", root / "lfw.bin"))
    ok(run(cli, "data", "pack", "cfp", tmp_path / "cfp-dataset", "--protocol", "FP", "--detector", "known-faces",
           "--out", root / "cfp_fp.bin"))
    assert "40 pairs read without a problem" in ok(run(cli, "data", "check", root / "lfw.bin"))
    weights = fx.write_weights(tmp_path / "pixels.pt")
    result = run(cli, "evaluate", "--suite", "five", "--model", weights, "--backbone", "pixels", "--data-root", root,
                 "--out", tmp_path / "run", "--device", "cpu", "--bootstrap", "0")
    ok(result)
    rows = {r["benchmark"]: r for r in json.loads((tmp_path / "run" / "results.json").read_text())}
    assert set(rows) == {"lfw", "cfp_fp"}
    for row in rows.values():
        assert row["pairs"] == 40 and 0.0 <= row["accuracy"] <= 1.0 and len(row["fold_accuracies"]) == 10


def test_help_examples_with_landmarks_run_as_printed(cli, tmp_path):
    """The examples of ``data pack lfw --help`` and ``data pack cfp --help`` that need no detector weights,
    typed as printed in a folder holding what they name."""
    lfw_world(tmp_path)
    cfp_world(tmp_path)
    ran = 0
    for sub in ("lfw", "cfp"):
        epilog = cli.commands["data"].commands["pack"].commands[sub].epilog
        for line in epilog.splitlines():
            line = line.strip()
            if line.startswith("facebench data pack") and "--landmarks" in line:
                args = line.split()[1:]
                out = tmp_path / args[args.index("--out") + 1]
                ok(run(cli, *args, cwd=tmp_path))
                assert len(open_pairs(out)) == 40
                ran += 1
    assert ran == 2


# ------------------------------------------------------------------------------------------- refusals


def test_a_photo_without_a_face_is_one_error_naming_it(cli, tmp_path):
    pairs, _ = lfw_world(tmp_path)
    blank = tmp_path / "lfw" / pairs[5][1]
    blank.write_bytes(encode_image(np.full((SIDE, SIDE, 3), 200, np.uint8), "jpg"))
    out = tmp_path / "lfw.bin"
    one_error(run(cli, "data", "pack", "lfw", tmp_path / "lfw", tmp_path / "pairs.txt", "--detector", "known-faces",
                  "--out", out), f"error: {blank}: no face found by detector 'known-faces'", "--landmarks FILE")
    assert not out.exists() and not list(tmp_path.glob(".lfw.bin*"))


@pytest.mark.parametrize("case", ["no-lfw-dir", "no-pairs-file", "photo-missing", "csv-pairs", "fold-order",
                                  "header-count"])
def test_lfw_inputs_refused(cli, tmp_path, case):
    written, _ = lfw_world(tmp_path)
    lfw, pairs = tmp_path / "lfw", tmp_path / "pairs.txt"
    if case == "no-lfw-dir":
        lfw, expected = tmp_path / "nowhere", f"error: {tmp_path / 'nowhere'}: LFW folder not found"
    elif case == "no-pairs-file":
        pairs, expected = tmp_path / "none.txt", f"error: {tmp_path / 'none.txt'}: LFW pairs file not found"
    elif case == "photo-missing":
        (lfw / written[0][0]).unlink()
        expected = f"error: {pairs}: image {written[0][0]} not found under {lfw} at line 2"
    elif case == "csv-pairs":
        pairs = tmp_path / "pairs.csv"
        pairs.write_text("Ann_Ash/Ann_Ash_0001.jpg,Ann_Ash/Ann_Ash_0002.jpg,1\n")
        expected = f"error: {pairs}: is a CSV pair list"
    elif case == "fold-order":
        lines = pairs.read_text().splitlines(keepends=True)
        lines[2], lines[3] = lines[3], lines[2]  # fold 1: same, different, same, different
        pairs.write_text("".join(lines))
        expected = f"error: {pairs}: not in LFW's fold order (10 folds of 2 same pairs, then 2 different pairs): " \
                   "pair 2 is a different pair where a same pair belongs"
    else:
        pairs.write_text("10\t3\n" + "".join(pairs.read_text().splitlines(keepends=True)[1:]))
        expected = f"error: {pairs}: header declares 60 pairs but 40 follow"
    out = tmp_path / "lfw.bin"
    one_error(run(cli, "data", "pack", "lfw", lfw, pairs, "--detector", "known-faces", "--out", out), expected)
    assert not out.exists()


@pytest.mark.parametrize("case", ["not-cfp", "missing-split", "index-not-listed", "path-leaves", "bad-line",
                                  "uneven-folds", "photo-missing"])
def test_cfp_inputs_refused(cli, tmp_path, case):
    cfp_world(tmp_path)
    cfp = tmp_path / "cfp-dataset"
    protocol = cfp / "Protocol"
    if case == "not-cfp":
        cfp = tmp_path / "lfw-like"
        (cfp / "Ann").mkdir(parents=True)
        expected = f"error: {cfp}: not the CFP layout: Protocol/Pair_list_F.txt is missing"
    elif case == "missing-split":
        (protocol / "Split" / "FP" / "07" / "diff.txt").unlink()
        expected = f"error: {cfp}: not the CFP layout: Protocol/Split/FP/07/diff.txt is missing"
    elif case == "index-not-listed":
        split = protocol / "Split" / "FP" / "03" / "same.txt"
        split.write_text(split.read_text() + "1,99\n")
        expected = f"error: {split}: index 99 is not in Pair_list_P.txt at line 3"
    elif case == "path-leaves":
        listing = protocol / "Pair_list_P.txt"
        listing.write_text(listing.read_text() + "9 ../../../../etc/passwd\n")
        expected = f"error: {listing}: image path '../../../etc/passwd' leaves the folder"
    elif case == "bad-line":
        split = protocol / "Split" / "FP" / "01" / "diff.txt"
        split.write_text("1;2\n")
        expected = f"error: {split}: expected '<index>,<index>', found '1;2' at line 1"
    elif case == "uneven-folds":
        split = protocol / "Split" / "FP" / "04" / "same.txt"
        split.write_text(split.read_text().splitlines(keepends=True)[0])
        expected = f"error: {split.parent}: fold 04 holds 3 pairs and fold 01 4"
    else:
        (cfp / "Data" / "Images" / "002" / "profile" / "01.jpg").unlink()
        expected = (f"error: {protocol / 'Pair_list_P.txt'}: photo Data/Images/002/profile/01.jpg not found under "
                    f"{cfp} at line 3")
    out = tmp_path / "cfp_fp.bin"
    one_error(run(cli, "data", "pack", "cfp", cfp, "--protocol", "FP", "--detector", "known-faces", "--out", out),
              expected)
    assert not out.exists()


@pytest.mark.parametrize("case", ["missing-photo-line", "short-line", "not-a-number", "leaves-folder", "twice",
                                  "degenerate", "no-file"])
def test_landmarks_file_refused(cli, tmp_path, case):
    lfw_world(tmp_path)
    marks = tmp_path / "lfw_landmarks.txt"
    lines = marks.read_text().splitlines(keepends=True)
    if case == "missing-photo-line":
        marks.write_text("".join(lines[:-1]))
        expected = f"error: {marks}: no landmarks for Ed_Eng/Ed_Eng_0003.jpg (and 0 more)"
    elif case == "short-line":
        marks.write_text("".join(lines[:3]) + "Ann_Ash/Ann_Ash_0001.jpg 1 2\n")
        expected = f"error: {marks}: expected 'relative/path x1 y1 ... x5 y5' (11 fields), found 3 at line 4"
    elif case == "not-a-number":
        marks.write_text(lines[0].replace(lines[0].split()[3], "abc", 1) + "".join(lines[1:]))
        expected = f"error: {marks}: 'abc' is not a number at line 1"
    elif case == "leaves-folder":
        marks.write_text("# comment\n../x.jpg 1 2 3 4 5 6 7 8 9 10\n" + "".join(lines))
        expected = f"error: {marks}: photo path '../x.jpg' leaves the folder"
    elif case == "twice":
        marks.write_text("".join(lines) + lines[1])
        expected = f"error: {marks}: {lines[1].split()[0]} is listed twice (first at line 2) at line {len(lines) + 1}"
    elif case == "degenerate":
        name = lines[0].split()[0]
        marks.write_text(f"{name} {' '.join(['30'] * 10)}\n" + "".join(lines[1:]))
        expected = f"error: {marks}: the landmarks of {name} cannot be aligned: the landmarks all lie on one point"
    else:
        marks = tmp_path / "absent.txt"
        expected = f"error: {marks}: landmarks file not found"
    out = tmp_path / "lfw.bin"
    one_error(run(cli, "data", "pack", "lfw", tmp_path / "lfw", tmp_path / "pairs.txt", "--landmarks", marks, "--out",
                  out), expected)
    assert not out.exists()


def test_options_and_outputs_refused(cli, tmp_path, monkeypatch):
    lfw_world(tmp_path)
    args = ["data", "pack", "lfw", tmp_path / "lfw", tmp_path / "pairs.txt"]
    marks = tmp_path / "lfw_landmarks.txt"
    one_error(run(cli, *args, "--out", tmp_path / "a.bin"), "give --detector NAME (with --weights FILE) or "
                                                            "--landmarks FILE")
    one_error(run(cli, *args, "--detector", "known-faces", "--landmarks", marks, "--out", tmp_path / "a.bin"),
              "give --detector NAME")
    one_error(run(cli, *args, "--landmarks", marks, "--weights", "w.pth", "--out", tmp_path / "a.bin"),
              "--weights and --detector-option go with --detector")
    one_error(run(cli, *args, "--landmarks", marks, "--out", tmp_path / "a.pkl"), "a pack is a .bin file")
    one_error(run(cli, *args, "--detector", "no-such-detector", "--out", tmp_path / "a.bin"), "no-such-detector")
    monkeypatch.setenv("FACEBENCH_WEIGHTS", str(tmp_path / "no-weights"))
    one_error(run(cli, *args, "--detector", "retinaface_r50", "--out", tmp_path / "a.bin"),
              "detector 'retinaface_r50' needs weights", "Resnet50_Final.pth", "--weights FILE")
    one_error(run(cli, *args, "--detector", "retinaface_r50", "--weights", tmp_path / "R50.pth", "--out",
                  tmp_path / "a.bin"), "R50.pth")
    done = tmp_path / "done.bin"
    ok(run(cli, *args, "--landmarks", marks, "--out", done))
    before = done.read_bytes()
    assert "already complete" in ok(run(cli, *args, "--landmarks", marks, "--out", done))  # the same pack
    one_error(run(cli, *args, "--landmarks", marks, "--out", done, "--encoding", "png"),
              f"error: {done}: holds a finished pack made with other parameters (config.encoding)", "--overwrite")
    assert done.read_bytes() == before
    ok(run(cli, *args, "--landmarks", marks, "--out", done, "--overwrite", "--encoding", "png"))
    assert done.read_bytes() != before
    assert not (tmp_path / "a.bin").exists()


def test_a_photo_linked_from_outside_is_refused(cli, tmp_path):
    pairs, _ = lfw_world(tmp_path)
    photo = tmp_path / "lfw" / pairs[0][0]
    outside = tmp_path / "elsewhere.jpg"
    photo.rename(outside)
    photo.symlink_to(outside)
    one_error(run(cli, "data", "pack", "lfw", tmp_path / "lfw", tmp_path / "pairs.txt", "--detector", "known-faces",
                  "--out", tmp_path / "lfw.bin"), f"error: {photo}: is a symbolic link leading out of")
