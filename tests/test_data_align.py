"""``facebench data align``: raw photos (toy faces rendered as loose photos with known landmarks) to an
aligned dataset; the crops are ``facebench.align`` of the known landmarks, every photo has one outcome, the
run resumes after kill -9 to the bytes of an uninterrupted run.

The test detector ``known-faces`` reads its "weights", a JSON file mapping each photo's pixels (sha256 of the
decoded RGB array) to the faces the test put there, so what it finds is exactly what the photo holds. This
file is also a script (the kill -9 test): the real CLI with that detector registered.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import conftest as fx
import numpy as np
from PIL import Image

import facebench
from facebench import hookimpl
from facebench.cli import create_cli

HERE = Path(__file__).resolve()

# ------------------------------------------------------------------------------ the test detector


def pixels_key(image: np.ndarray) -> str:
    image = np.ascontiguousarray(image, dtype=np.uint8)
    return hashlib.sha256(str(image.shape).encode() + image.tobytes()).hexdigest()


class KnownFaces:
    """Finds the faces its JSON file lists for a photo's pixels (none for a photo it does not know), as
    ``[x1, y1, x2, y2, score, 10 landmark numbers]``. ``ALIGNTEST_DELAY`` slows it (the kill -9 test)."""

    def __init__(self, weights=None, device="cpu", **options):
        self.faces = json.loads(Path(weights).read_text())
        self.delay = float(os.environ.get("ALIGNTEST_DELAY", "0"))

    def detect(self, image):
        from facebench.data.detection import Detections

        if self.delay:
            time.sleep(self.delay)
        rows = np.asarray(self.faces.get(pixels_key(image), []), dtype=np.float32).reshape(-1, 15)
        return Detections(rows[:, :4], rows[:, 4], rows[:, 5:].reshape(-1, 5, 2))


class TupleFaces(KnownFaces):
    """The issue's plain form: a (boxes, scores, landmarks) triple, unsorted, as a third-party detector may
    return it."""

    def detect(self, image):
        found = super().detect(image)
        order = np.arange(len(found))[::-1]
        return found.boxes[order], found.scores[order], found.landmarks[order]


class NaNFaces(TupleFaces):
    """A broken detector: every face it finds has NaN landmarks."""

    def detect(self, image):
        boxes, scores, landmarks = super().detect(image)
        return boxes, scores, np.full_like(landmarks, np.nan)


class MisshapenFaces(TupleFaces):
    """A broken detector: landmarks of shape (K, 4, 2)."""

    def detect(self, image):
        boxes, scores, landmarks = super().detect(image)
        return boxes, scores, landmarks[:, :4]


class _Plugin:
    @hookimpl
    def register_detectors(self, register):
        register("known-faces", KnownFaces, "test: the faces its JSON file lists", weights_required=True)
        register("tuple-faces", TupleFaces, "test: known faces as a plain triple", weights_required=True)
        register("nan-faces", NaNFaces, "test: NaN landmarks", weights_required=True)
        register("misshapen-faces", MisshapenFaces, "test: (K, 4, 2) landmarks", weights_required=True)


def install(monkeypatch=None):
    """The process-wide registries with the test detectors added (through monkeypatch in tests)."""
    import functools

    from facebench import pluginmanager

    @functools.lru_cache(maxsize=1)
    def plugin_set():
        return pluginmanager.build_plugin_set(extra_plugins={"aligntest": _Plugin()})

    if monkeypatch is not None:
        monkeypatch.setattr(pluginmanager, "get_plugin_set", plugin_set)
    else:
        pluginmanager.get_plugin_set = plugin_set
    return plugin_set()


def cli(monkeypatch):
    return create_cli(install(monkeypatch))


# ------------------------------------------------------------------------------ photos with known faces


def toy_photo(identity: int, k: int, side: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A loose photo of toy identity ``identity`` (the face smaller, shifted and rolled, as a camera frames
    it) and its five landmarks: toyfaces' renderer, and where its own crop puts the ArcFace points."""
    from facebench_plugins.toyfaces.params import Difficulty, rng_for, sample_identity, sample_nuisance
    from facebench_plugins.toyfaces.protocols import loose_crop_points
    from facebench_plugins.toyfaces.render import render_face

    ident = sample_identity(rng_for(7, 9001, identity))
    rng = rng_for(7, 9002, identity, k)
    nz = replace(sample_nuisance(rng, ident, Difficulty()), scale=float(rng.uniform(0.5, 0.62)),
                 dx=float(rng.uniform(-0.1, 0.1)), dy=float(rng.uniform(-0.08, 0.08)), roll=float(rng.normal(0, 10)))
    return render_face(ident, nz, side), loose_crop_points(side, nz.scale, nz.dx, nz.dy, nz.roll)


def face_row(points: np.ndarray, score: float) -> list[float]:
    """A detection of a face with these landmarks: a box around them, the score, the points."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    w, h = hi - lo
    box = [lo[0] - 0.4 * w, lo[1] - 0.6 * h, hi[0] + 0.4 * w, hi[1] + 0.3 * h]
    return [float(v) for v in [*box, score, *points.ravel()]]


def two_faces(identity: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A photo of ``identity`` with a bystander's smaller face pasted into its top-left corner: (photo, the
    subject's landmarks, the bystander's)."""
    image, points = toy_photo(identity, 50)
    small, small_points = toy_photo(identity + 100, 0, side=30)
    image = image.copy()
    image[1:31, 1:31] = small
    return image, points, small_points + 1


def save(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="JPEG" if path.suffix == ".jpg" else "PNG")


class Photos:
    """A photo folder the test knows everything about: ``faces`` (what the detector finds, by pixels),
    ``subject`` (the landmarks of the face each photo's crop must come from, None: no face)."""

    def __init__(self, root: Path):
        self.root = root
        self.faces: dict[str, list[list[float]]] = {}
        self.subject: dict[str, np.ndarray | None] = {}
        self.images: dict[str, np.ndarray] = {}

    def add(self, rel: str, image: np.ndarray, faces: list[tuple[np.ndarray, float]], subject=None) -> None:
        save(self.root / rel, image)
        decoded = np.asarray(Image.open(self.root / rel).convert("RGB"))  # what the detector is given
        self.images[rel] = decoded
        if faces:
            self.faces[pixels_key(decoded)] = [face_row(p, s) for p, s in faces]
        subject = subject if subject is not None else (faces[0][0] if faces else None)
        # float32, as a detector reports landmarks (Detections): the crop must be of exactly these
        self.subject[rel] = None if subject is None else np.asarray(subject, dtype=np.float32)

    def weights(self, path: Path) -> Path:
        path.write_text(json.dumps(self.faces))
        return path


def identity_photos(root: Path, *, jpeg: bool = False) -> Photos:
    """alice (3 photos), bob (2: one with a bystander), carol (2: one without a face), dave (1, no face)."""
    photos = Photos(root)
    ext = "jpg" if jpeg else "png"
    for k in range(3):
        image, points = toy_photo(0, k)
        photos.add(f"alice/{k}.{ext}", image, [(points, 0.9)])
    image, points = toy_photo(1, 0)
    photos.add(f"bob/0.{ext}", image, [(points, 0.95)])
    image, subject, bystander = two_faces(1)
    photos.add(f"bob/1.{ext}", image, [(subject, 0.8), (bystander, 0.99)], subject=subject)
    image, points = toy_photo(2, 0)
    photos.add(f"carol/0.{ext}", image, [(points, 0.9)])
    photos.add(f"carol/1.{ext}", toy_photo(2, 1)[0], [])
    photos.add(f"dave/0.{ext}", toy_photo(3, 0)[0], [])
    return photos


def align_args(src: Path, weights: Path, out: Path, *extra: str, detector: str = "known-faces") -> list[str]:
    return ["data", "align", str(src), "--detector", detector, "--weights", str(weights), "--out", str(out),
            "--device", "cpu", *extra]


def outcome_rows(out: Path) -> list[dict[str, str]]:
    with open(out / "outcomes.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def run_bytes(out: Path, dataset: str = "dataset.folder") -> dict[str, bytes]:
    files = {f"{dataset}/{p.relative_to(out / dataset).as_posix()}": p.read_bytes()
             for p in sorted((out / dataset).rglob("*")) if p.is_file()}
    for name in ("outcomes.csv", "dataset.json"):
        files[name] = (out / name).read_bytes()
    return files


# ----------------------------------------------------------------------------------------------- tests


def test_crops_are_the_alignment_of_the_known_landmarks(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from facebench.data import open_dataset

    photos = identity_photos(tmp_path / "photos")
    weights = photos.weights(tmp_path / "faces.json")
    out = tmp_path / "aligned"
    res = CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, out, "--encoding", "png",
                                                          "--photos-per-shard", "3"))
    assert res.exit_code == 0, res.output
    assert "aligned 5, no face 2, several faces 1 (kept the largest near the centre)" in res.output
    assert "aligned 3 of 3 shards in this run; wrote 6 crops of 3 identities" in res.output

    rows = outcome_rows(out)
    assert [r["photo"] for r in rows] == sorted(photos.subject)  # every photo once, in listing order
    by_photo = {r["photo"]: r for r in rows}
    assert {r["photo"]: r["outcome"] for r in rows} == {
        "alice/0.png": "aligned", "alice/1.png": "aligned", "alice/2.png": "aligned", "bob/0.png": "aligned",
        "bob/1.png": "several_faces", "carol/0.png": "aligned", "carol/1.png": "no_face", "dave/0.png": "no_face"}
    assert by_photo["bob/1.png"]["faces"] == "2" and by_photo["carol/1.png"]["faces"] == "0"
    # dave kept no crop: the labels are alice 0, bob 1, carol 2, and photos without a face have none
    assert {r["identity"]: r["label"] for r in rows if r["label"]} == {"alice": "0", "bob": "1", "carol": "2"}
    assert by_photo["dave/0.png"]["label"] == by_photo["dave/0.png"]["index"] == ""
    for rel, row in by_photo.items():  # the photo's content hash, as read
        assert row["sha256"] == hashlib.sha256((photos.root / rel).read_bytes()).hexdigest()

    reader = open_dataset(out)  # the run folder stands for its set (dataset.json)
    assert len(reader) == 6 and reader.num_classes == 3
    for rel, row in by_photo.items():
        if row["index"] == "":
            continue
        i = int(row["index"])
        expected = facebench.align(photos.images[rel], photos.subject[rel], 112)
        np.testing.assert_array_equal(reader.image(i), expected)  # PNG: exactly the crop of the known points
        assert reader.label(i) == int(row["label"])
        kept = np.array(row["landmarks"].split(), dtype=float).reshape(5, 2)
        np.testing.assert_allclose(kept, photos.subject[rel], atol=1e-3)  # the bystander's face was not used

    card = json.loads((out / "dataset.json").read_text())
    assert card["dataset"] == "dataset.folder" and card["images"] == 6 and card["identities"] == 3
    assert card["outcomes"] == {"aligned": 5, "no_face": 2, "several_faces": 1, "unalignable": 0, "unreadable": 0}
    assert card["identities_without_face"] == 1 and card["source"]["layout"] == "identity folders"
    assert card["detector_info"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert not (out / "shards").exists()
    assert (out / "provenance.json").is_file() and (out / "config.toml").is_file()
    again = CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, out, "--encoding", "png",
                                                            "--photos-per-shard", "3"))
    assert again.exit_code == 0 and "already complete (8 photos)" in again.output, again.output
    assert "aligned 5, no face 2, several faces 1" in again.output


def test_jpeg_photos_other_size_and_format(tmp_path, monkeypatch):
    """JPEG photos in, a 128 px LMDB set of JPEG crops out: each crop is the JPEG of facebench.align's crop."""
    from click.testing import CliRunner

    from facebench.data import encode_image, open_dataset

    photos = identity_photos(tmp_path / "photos", jpeg=True)
    weights = photos.weights(tmp_path / "faces.json")
    out = tmp_path / "aligned"
    res = CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, out, "--size", "128",
                                                          "--format", "lmdb"))
    assert res.exit_code == 0, res.output
    reader = open_dataset(out / "dataset.lmdb")
    rows = [r for r in outcome_rows(out) if r["index"]]
    assert len(reader) == len(rows) == 6
    for row in rows:
        expected = facebench.align(photos.images[row["photo"]], photos.subject[row["photo"]], 128)
        assert reader.image_bytes(int(row["index"])) == encode_image(expected, "jpg", 95)


def test_a_detector_returning_a_plain_triple_is_sorted_and_used(tmp_path, monkeypatch):
    from click.testing import CliRunner

    photos = identity_photos(tmp_path / "photos")
    weights = photos.weights(tmp_path / "faces.json")
    a, b = tmp_path / "a", tmp_path / "b"
    assert CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, a)).exit_code == 0
    res = CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, b, detector="tuple-faces"))
    assert res.exit_code == 0, res.output
    assert {k: v for k, v in run_bytes(a).items() if k != "dataset.json"} == \
        {k: v for k, v in run_bytes(b).items() if k != "dataset.json"}


def test_flat_folder_only_when_asked(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from facebench.data import encode_image, open_dataset

    photos = Photos(tmp_path / "refs")
    for k, name in enumerate(["zoe.png", "adam.png", "mia.png"]):
        image, points = toy_photo(10 + k, 0)
        photos.add(name, image, [(points, 0.9)] if name != "mia.png" else [])
    weights = photos.weights(tmp_path / "faces.json")
    refused = CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, tmp_path / "a"))
    assert refused.exit_code == 2
    assert "holds photos but no identity folders" in refused.output and "--flat" in refused.output
    assert not (tmp_path / "a").exists()
    out = tmp_path / "b"
    res = CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, out, "--flat"))
    assert res.exit_code == 0, res.output
    assert "aligned 2, no face 1, several faces 0" in res.output
    rows = outcome_rows(out)
    assert [(r["photo"], r["identity"], r["label"]) for r in rows] == [
        ("adam.png", "adam", "0"), ("mia.png", "mia", ""), ("zoe.png", "zoe", "1")]
    reader = open_dataset(out)
    assert reader.num_classes == 2
    assert reader.image_bytes(1) == encode_image(facebench.align(photos.images["zoe.png"], photos.subject["zoe.png"]),
                                                 "jpg", 95)
    # --flat on identity folders is refused too
    tree = identity_photos(tmp_path / "tree")
    res = CliRunner().invoke(cli(monkeypatch), align_args(tree.root, weights, tmp_path / "c", "--flat"))
    assert res.exit_code == 2 and "drop --flat" in res.output


def test_exif_orientation_is_applied_before_detection(tmp_path, monkeypatch):
    """A phone photo stored on its side (EXIF orientation 6): the detector sees it upright."""
    from click.testing import CliRunner

    from facebench.data import open_dataset

    image, points = toy_photo(4, 0)
    root = tmp_path / "photos"
    (root / "eve").mkdir(parents=True)
    stored = np.ascontiguousarray(np.rot90(image, 1))  # turned a quarter counter-clockwise on disk
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    Image.fromarray(stored).save(root / "eve" / "0.png", exif=exif)
    weights = tmp_path / "faces.json"
    weights.write_text(json.dumps({pixels_key(image): [face_row(points, 0.9)]}))
    points = points.astype(np.float32)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli(monkeypatch), align_args(root, weights, out, "--encoding", "png"))
    assert res.exit_code == 0, res.output
    assert "aligned 1, no face 0" in res.output
    np.testing.assert_array_equal(open_dataset(out).image(0), facebench.align(image, points))


def test_a_face_that_cannot_be_aligned_is_recorded(tmp_path, monkeypatch):
    """Landmarks all on one point (a detector's degenerate find): the photo is left out, the reason kept."""
    from click.testing import CliRunner

    photos = identity_photos(tmp_path / "photos")
    photos.add("erin/0.png", toy_photo(5, 0)[0], [(np.full((5, 2), 48.0), 0.9)])
    weights = photos.weights(tmp_path / "faces.json")
    out = tmp_path / "out"
    res = CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, out, "--keep-shards"))
    assert res.exit_code == 0, res.output
    assert "several faces 1 (kept the largest near the centre), unalignable 1 (degenerate landmarks)" in res.output
    row = {r["photo"]: r for r in outcome_rows(out)}["erin/0.png"]
    assert row["outcome"] == "unalignable" and "one point" in row["note"] and row["label"] == ""
    assert row["landmarks"] == " ".join(["48.000"] * 10)
    assert json.loads((out / "dataset.json").read_text())["identities_without_face"] == 2


def test_undecodable_photo_stops_or_is_recorded(tmp_path, monkeypatch):
    from click.testing import CliRunner

    photos = identity_photos(tmp_path / "photos")
    (photos.root / "bob" / "2.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    weights = photos.weights(tmp_path / "faces.json")
    res = CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, tmp_path / "a"))
    assert res.exit_code == 2
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bob/2.jpg" in errors[0] and "--skip-unreadable" in errors[0], res.output
    assert not (tmp_path / "a").exists()  # failed in its first shard: no run folder left
    out = tmp_path / "b"
    res = CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, out, "--skip-unreadable"))
    assert res.exit_code == 0, res.output
    assert "aligned 5, no face 2, several faces 1 (kept the largest near the centre), unreadable 1" in res.output
    row = {r["photo"]: r for r in outcome_rows(out)}["bob/2.jpg"]
    assert row["outcome"] == "unreadable" and "undecodable image" in row["note"] and row["label"] == ""


def test_one_line_errors_before_anything_is_written(tmp_path, monkeypatch):
    from click.testing import CliRunner

    photos = identity_photos(tmp_path / "photos")
    weights = photos.weights(tmp_path / "faces.json")
    (tmp_path / "mixed" / "ann").mkdir(parents=True)
    save(tmp_path / "mixed" / "ann" / "0.png", photos.images["alice/0.png"])
    save(tmp_path / "mixed" / "loose.png", photos.images["alice/1.png"])
    out = tmp_path / "out"
    cases = [
        (align_args(tmp_path / "nowhere", weights, out), ["nowhere", "photo folder not found"]),
        (align_args(photos.root, tmp_path / "missing.json", out), ["missing.json", "not found"]),
        (align_args(photos.root, weights, out, detector="no-such-detector"), ["unknown detector 'no-such-detector'"]),
        (align_args(photos.root, weights, out, "--format", "nosuchformat"), ["unknown format 'nosuchformat'"]),
        (align_args(photos.root, weights, out, "--format", "bin"), ["--format bin", "not labelled training sets"]),
        (align_args(tmp_path / "mixed", weights, out), ["mixed", "both identity folders"]),
        (["data", "align", str(photos.root), "--detector", "known-faces", "--out", str(out), "--device", "cpu"],
         ["detector 'known-faces' needs weights", "--weights"]),
    ]
    for args, words in cases:
        res = CliRunner().invoke(cli(monkeypatch), args)
        errors = [line for line in res.output.splitlines() if line.startswith("error:")]
        assert res.exit_code == 2 and len(errors) == 1, res.output
        for word in words:
            assert word in errors[0], errors[0]
        assert not out.exists()


def test_rerun_with_other_parameters_is_refused_naming_them(tmp_path, monkeypatch):
    from click.testing import CliRunner

    photos = identity_photos(tmp_path / "photos")
    weights = photos.weights(tmp_path / "faces.json")
    out = tmp_path / "out"
    assert CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, out)).exit_code == 0
    res = CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, out, "--size", "128"))
    assert res.exit_code == 2 and "made with other parameters (config.size)" in res.output, res.output
    save(photos.root / "alice" / "9.png", photos.images["alice/0.png"])  # the source changed
    res = CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, out))
    assert res.exit_code == 2 and "source.listing_sha256" in res.output and "source.photos" in res.output


def test_interrupted_run_resumes_to_identical_bytes(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from facebench.data import align_job

    photos = identity_photos(tmp_path / "photos")
    weights = photos.weights(tmp_path / "faces.json")
    full, part = tmp_path / "full", tmp_path / "part"
    args = ("--photos-per-shard", "2")
    assert CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, full, *args)).exit_code == 0
    real, calls = align_job.align_shard, {"n": 0}

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(align_job, "align_shard", interrupted)
    assert CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, part, *args)).exit_code == 130
    assert not (part / "dataset.json").exists() and not (part / "dataset.folder").exists()
    assert sorted(json.loads((part / "manifest.json").read_text())["done"]) == ["0", "1"]
    monkeypatch.setattr(align_job, "align_shard", real)
    res = CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, part, *args))
    assert res.exit_code == 0, res.output
    assert "aligned 2 of 4 shards in this run" in res.output
    assert run_bytes(part) == run_bytes(full)


def test_kill_9_then_rerun_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    from click.testing import CliRunner

    photos = identity_photos(tmp_path / "photos")
    for k in range(3, 9):  # more photos: several shards to kill in between
        image, points = toy_photo(0, k)
        photos.add(f"alice/{k}.png", image, [(points, 0.9)])
    weights = photos.weights(tmp_path / "faces.json")
    args = ("--photos-per-shard", "1")
    full, out = tmp_path / "full", tmp_path / "killed"
    assert CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, full, *args)).exit_code == 0

    env = {**os.environ, "ALIGNTEST_DELAY": "0.2", "FACEBENCH_QUIET": "1", "PYTHONPATH": str(HERE.parent)}
    done = fx.kill_after_shards([sys.executable, str(HERE), *align_args(photos.root, weights, out, *args)],
                                out / "manifest.json", env=env)
    assert 3 <= done < 14
    assert not (out / "dataset.json").exists() and not (out / "dataset.folder").exists()
    res = CliRunner().invoke(cli(monkeypatch), align_args(photos.root, weights, out, *args))
    assert res.exit_code == 0, res.output
    assert run_bytes(out) == run_bytes(full)


def test_retinaface_tiny_runs_end_to_end(tmp_path, monkeypatch):
    """The real route with a real (tiny, random-weights) detector: every photo gets an outcome, and each kept
    crop is the alignment of the face the detector finds and pick_face picks, recomputed here."""
    from click.testing import CliRunner

    from facebench.data import open_dataset
    from facebench.data.detection import pick_face

    photos = identity_photos(tmp_path / "photos")
    out = tmp_path / "out"
    args = ["data", "align", str(photos.root), "--detector", "retinaface_tiny", "--out", str(out), "--device", "cpu",
            "--encoding", "png", "--detector-option", "score_threshold=0.0"]
    res = CliRunner().invoke(create_cli(), args)
    assert res.exit_code == 0, res.output
    rows = outcome_rows(out)
    assert [r["photo"] for r in rows] == sorted(photos.subject)
    detector = facebench.load_detector("retinaface_tiny", score_threshold=0.0)
    reader = open_dataset(out)
    for row in rows:
        found = detector.detect(photos.images[row["photo"]])
        assert int(row["faces"]) == len(found)
        index = pick_face(found, photos.images[row["photo"]].shape)
        if row["index"]:
            expected = facebench.align(photos.images[row["photo"]], found.landmarks[index])
            np.testing.assert_array_equal(reader.image(int(row["index"])), expected)
        else:
            assert row["outcome"] in ("no_face", "unalignable") and (index is None) == (row["outcome"] == "no_face")


if __name__ == "__main__":  # the kill -9 test: the real CLI with the test detectors registered
    create_cli(install()).main()
