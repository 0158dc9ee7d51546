"""Real photos into the generators: ``embed --align`` and ``generate --ref-images`` on toy photos.

The photos are toyfaces renders framed loosely (the face smaller, shifted and rolled, as a photo frames
it: plugins/toyfaces/protocols.py's IJB loose crops) whose five landmarks are known. A test detector
registered here returns those landmarks for exactly those pixels (and no face for anything else), so what
the commands compute can be recomputed independently: facebench.align on the known landmarks, then the
extractor's own ``embed``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import replace
from pathlib import Path

import conftest
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from facebench_plugins.toyfaces.params import (
    Difficulty,
    rng_for,
    sample_identity,
    sample_nuisance,
    stream_key,
)
from facebench_plugins.toyfaces.protocols import loose_crop_points
from facebench_plugins.toyfaces.render import render_face
from PIL import Image

import facebench
from facebench import hookimpl
from facebench.cli import create_cli
from facebench.data.detection import Detections
from facebench.pluginmanager import build_plugin_set

SEED = 11
SIDE = 96  # the photos' side
CROP = 56  # iresnet_tiny's input size: the crop side embed --align and --ref-images align at
#: identity folder -> photos in it (sorted order is adam, zoe, Émile: labels 0, 1, 2)
TREE = {"zoe": 2, "adam": 3, "Émile": 1}

# ------------------------------------------------------------------------------ a detector of known faces

#: sha256 of an image's pixels -> its faces as (box, score, landmarks)
FACES: dict[str, list[tuple[np.ndarray, float, np.ndarray]]] = {}
#: set to a message to make every detect() call fail (shows that a resumed run does not detect again)
BROKEN: list[str] = []


def pixel_key(image: np.ndarray) -> str:
    image = np.ascontiguousarray(image, dtype=np.uint8)
    return hashlib.sha256(str(image.shape).encode() + image.tobytes()).hexdigest()


def box_of(points: np.ndarray, margin: float = 0.6) -> np.ndarray:
    lo, hi = points.min(axis=0), points.max(axis=0)
    pad = (hi - lo) * margin
    return np.concatenate([lo - pad, hi + pad]).astype(np.float32)


class KnownFaces:
    """Detector contract (facebench.data.detection): the faces the test recorded for these pixels."""

    def __init__(self, weights=None, device="cpu"):
        self.weights = weights

    def detect(self, image):
        if BROKEN:
            raise AssertionError(BROKEN[0])
        faces = FACES.get(pixel_key(image), [])
        if not faces:
            return Detections.empty()
        boxes, scores, landmarks = zip(*faces)
        return Detections(np.stack(boxes), np.array(scores, np.float32), np.stack(landmarks))


class _Plugin:
    @hookimpl
    def register_detectors(self, register):
        register("known-faces", KnownFaces, "the landmarks the test recorded for its toy photos")
        register("needs-weights", KnownFaces, "a detector with a released file", weights="toy-detector.pth",
                 weights_required=True)


PLUGIN = _Plugin()


def ref_cli(monkeypatch):
    """The CLI with the test detector (and conftest's tiny generators and formats) registered."""
    import facebench.pluginmanager as pm

    plugins = build_plugin_set(extra_plugins={"gentest": conftest.plugin, "ref-images": PLUGIN})

    def current():
        return plugins

    current.cache_clear = lambda: None
    monkeypatch.setattr(pm, "get_plugin_set", current)
    return create_cli(plugins)


@pytest.fixture
def cli(monkeypatch):
    BROKEN.clear()
    yield ref_cli(monkeypatch)
    BROKEN.clear()


def run(cli, *args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, result.output
    return result.output


# ----------------------------------------------------------------------------------------- toy photos


def toy_photo(identity: int, item: int) -> tuple[np.ndarray, np.ndarray]:
    """A loosely framed toy photo of ``identity`` and where the ArcFace template's points lie in it."""
    ident = sample_identity(rng_for(SEED, stream_key("ref_images"), identity), 1.0)
    rng = rng_for(SEED, stream_key("ref_images") + 1, identity, item)
    nz = replace(sample_nuisance(rng, ident, Difficulty()), noise_seed=int(rng.integers(2**31)),
                 scale=float(rng.uniform(0.5, 0.65)), dx=float(rng.uniform(-0.1, 0.1)),
                 dy=float(rng.uniform(-0.08, 0.08)), roll=float(rng.normal(0, 10)))
    image = render_face(ident, nz, SIDE)
    return image, loose_crop_points(SIDE, nz.scale, nz.dx, nz.dy, nz.roll).astype(np.float32)


def save_photo(path: Path, image: np.ndarray, points: np.ndarray | None, *, extra_faces=()) -> Path:
    """Write ``image`` as a PNG and record its face(s) for the detector (``points`` None: no face)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    decoded = np.asarray(Image.open(path).convert("RGB"))
    faces = [] if points is None else [(box_of(points), 0.99, points)]
    FACES[pixel_key(decoded)] = faces + list(extra_faces)
    return path


def write_tree(root: Path, tree: dict[str, int] = TREE) -> dict[str, list[tuple[Path, np.ndarray]]]:
    """A folder per identity; returns name -> [(photo, landmarks)] in sorted photo order."""
    out = {}
    for i, (name, count) in enumerate(tree.items()):
        out[name] = []
        for k in range(count):
            image, points = toy_photo(i, k)
            out[name].append((save_photo(root / name / f"{k:02d}.png", image, points), points))
    return out


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("photos") / "people"
    return root, write_tree(root)


@pytest.fixture(scope="module")
def extractor_weights(tmp_path_factory) -> Path:
    """Seeded random weights of the tiny IResNet (512-d features of 56 px crops)."""
    from facebench_plugins.fr.backbones.iresnet import iresnet_tiny

    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("fr") / "ir-tiny.pth"
    torch.save(iresnet_tiny().state_dict(), path)
    return path


def independent(items: list[tuple[Path, np.ndarray]], weights: Path) -> np.ndarray:
    """Raw features of each photo recomputed without the commands: facebench.align on the known
    landmarks, then the extractor's own embed (the image alone)."""
    from facebench.pluginmanager import registry

    crops = np.stack([facebench.align(np.asarray(Image.open(p).convert("RGB")), pts, size=CROP)
                      for p, pts in items])
    extractor = registry("feature_extractor").create("iresnet_tiny", weights=str(weights))
    return extractor.embed(crops, raw=True).astype(np.float64)


def sorted_items(tree: dict) -> tuple[list[str], list[tuple[Path, np.ndarray]], np.ndarray]:
    names = sorted(tree)
    items = [item for name in names for item in tree[name]]
    labels = np.array([i for i, name in enumerate(names) for _ in tree[name]])
    return names, items, labels


def centres(feats: np.ndarray, labels: np.ndarray, unit: bool) -> np.ndarray:
    if unit:
        feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    out = np.stack([feats[labels == c].mean(axis=0) for c in range(labels.max() + 1)])
    return out / np.linalg.norm(out, axis=1, keepdims=True) if unit else out


def embed_align(cli, photos_dir, weights, out, *extra):
    return run(cli, "embed", "--align", "--detector", "known-faces", "--extractor", "iresnet_tiny", "--weights",
               weights, photos_dir, "--out", out, *extra)


# -------------------------------------------------------------------------------------- embed --align


def test_embed_align_gives_the_extractor_on_aligned_crops_and_identity_centres(cli, photos, extractor_weights,
                                                                               tmp_path):
    root, tree = photos
    out = tmp_path / "refs.npy"
    text = ok(embed_align(cli, root, extractor_weights, out, "--raw"))
    names, items, labels = sorted_items(tree)
    want = independent(items, extractor_weights)
    np.testing.assert_allclose(np.load(out), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.load(tmp_path / "refs.labels.npy"), labels)
    np.testing.assert_allclose(np.load(tmp_path / "refs.centers.npy"), centres(want, labels, unit=False),
                               rtol=1e-5, atol=1e-5)
    card = json.loads((tmp_path / "refs.photos.json").read_text(encoding="utf-8"))
    assert card["identities"] == ["adam", "zoe", "Émile"] == names
    assert card["layout"] == "identity folders" and card["align_size"] == CROP
    assert [im["file"] for im in card["images"]] == ["adam/00.png", "adam/01.png", "adam/02.png", "zoe/00.png",
                                                     "zoe/01.png", "Émile/00.png"]
    assert card["images"][0]["sha256"] == hashlib.sha256(items[0][0].read_bytes()).hexdigest()
    assert all(im["faces"] == 1 and im["face"] == 0 for im in card["images"])
    assert "6 raw features (median norm" in text and "of 3 identities" in text


def test_embed_align_unit_features_without_flip_are_normalised_crops(cli, photos, extractor_weights, tmp_path):
    root, tree = photos
    out = tmp_path / "unit.npy"
    ok(embed_align(cli, root, extractor_weights, out, "--no-flip"))
    _, items, labels = sorted_items(tree)
    want = independent(items, extractor_weights)
    np.testing.assert_allclose(np.load(out), want / np.linalg.norm(want, axis=1, keepdims=True), atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "unit.centers.npy"), centres(want, labels, unit=True), atol=1e-6)


def test_a_flat_folder_is_one_identity_per_photo(cli, extractor_weights, tmp_path):
    folder = tmp_path / "flat"
    items = []
    for k, name in enumerate(["carol", "bob"]):
        image, points = toy_photo(7 + k, 0)
        items.append((save_photo(folder / f"{name}.png", image, points), points))
    out = tmp_path / "flat.npy"
    text = ok(embed_align(cli, folder, extractor_weights, out, "--raw"))
    want = independent(items[::-1], extractor_weights)  # bob, carol
    np.testing.assert_allclose(np.load(tmp_path / "flat.centers.npy"), want, rtol=1e-5, atol=1e-5)
    card = json.loads((tmp_path / "flat.photos.json").read_text())
    assert card["identities"] == ["bob", "carol"] and card["layout"] == "one identity per photo"
    assert "one identity per photo" in text


def test_the_face_a_photo_is_of_is_used_when_it_shows_several(cli, extractor_weights, tmp_path):
    image, points = toy_photo(3, 0)
    # a larger face at the edge (a bystander) with a higher score: the central face is still the one used
    other = points * 1.3 + np.array([-40.0, -30.0], np.float32)
    bystander = (np.array([-10, -10, 30, 40], np.float32), 0.999, other)
    path = save_photo(tmp_path / "p" / "solo.png", image, points, extra_faces=[bystander])
    out = tmp_path / "s.npy"
    text = ok(embed_align(cli, tmp_path / "p", extractor_weights, out, "--raw"))
    np.testing.assert_allclose(np.load(out), independent([(path, points)], extractor_weights), rtol=1e-5, atol=1e-5)
    record = json.loads((tmp_path / "s.photos.json").read_text())["images"][0]
    assert record["faces"] == 2 and record["face"] == 1  # sorted by score: the bystander is detection 0
    assert "1 showed several faces" in text


def test_a_photo_with_no_face_is_an_error_naming_it_and_nothing_is_written(cli, photos, extractor_weights,
                                                                         tmp_path):
    root = tmp_path / "people"
    write_tree(root, {"ann": 1, "ben": 2})
    blank = np.full((SIDE, SIDE, 3), 90, np.uint8)
    save_photo(root / "ben" / "03.png", blank, None)
    res = embed_align(cli, root, extractor_weights, tmp_path / "o.npy")
    assert res.exit_code == 2
    assert f"error: {root / 'ben' / '03.png'}: no face found by detector 'known-faces'" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not list(tmp_path.glob("o*"))


@pytest.mark.parametrize("case", ["missing", "a-file", "not-an-image", "not-a-photo", "mixed", "empty-identity"])
def test_unusable_photo_folders_are_one_line_errors(cli, extractor_weights, tmp_path, case):
    root = tmp_path / "people"
    if case not in ("missing", "a-file"):
        write_tree(root, {"ann": 1})
    named = root
    if case == "not-an-image":
        named = root / "ann" / "broken.jpg"
        named.write_text("not a JPEG at all")
        expect = "undecodable image"
    elif case == "not-a-photo":
        named = root / "ann" / "notes.txt"
        named.write_text("who is this")
        expect = "is not a photo (extension '.txt'"
    elif case == "mixed":
        image, points = toy_photo(1, 0)
        save_photo(root / "loose.png", image, points)
        expect = "holds both identity folders (ann) and photos (loose.png)"
    elif case == "empty-identity":
        named = root / "bob"
        named.mkdir()
        expect = "identity folder holds no photos"
    elif case == "a-file":
        image, points = toy_photo(1, 0)
        root = named = save_photo(tmp_path / "one.png", image, points)
        expect = "is not a folder: expected a folder of photos"
    else:
        expect = "photo folder not found"
    res = embed_align(cli, root, extractor_weights, tmp_path / "o.npy")
    assert res.exit_code == 2, res.output
    assert res.output.strip() == res.output.strip().splitlines()[0]
    assert res.output.startswith(f"error: {named}: {expect}"), res.output


def test_align_options_are_checked(cli, photos, extractor_weights, tmp_path):
    root, _ = photos
    base = ["embed", "--extractor", "iresnet_tiny", "--weights", extractor_weights, root, "--out", tmp_path / "o.npy"]
    assert "error: --align needs --detector NAME" in run(cli, *base, "--align").output
    assert "error: --detector and --detector-weights apply to --align" in run(cli, *base, "--detector",
                                                                                 "known-faces").output
    res = run(cli, *base, "--align", "--detector", "needs-weights")
    assert res.exit_code == 2
    assert "error: detector 'needs-weights' needs weights (its file toy-detector.pth is not in the weights " \
           "directory" in res.output and "pass --detector-weights FILE" in res.output
    res = run(cli, *base, "--align", "--detector", "needs-weights", "--detector-weights", tmp_path / "gone.pth")
    assert res.exit_code == 2 and f"error: {tmp_path / 'gone.pth'}: weights file not found" in res.output


# ------------------------------------------------------------------------------- generate --ref-images


def vec2face_file(path: Path, median_norm: float, extractor: str | None = "iresnet_tiny") -> Path:
    """A vec2face_tiny generator.pth (seeded random weights) recording the feature scale it was 'trained' on,
    as train-generator records it."""
    from facebench_plugins.vec2face.generator import CONFIG_KEY, FEATURE_SCALE_KEY, STATE_KEY
    from facebench_plugins.vec2face.model import Vec2Face, model_config

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Vec2Face(model_config("vec2face_tiny"))
    torch.save({STATE_KEY: model.state_dict(), CONFIG_KEY: model.config.to_dict(),
                FEATURE_SCALE_KEY: {"median_norm": median_norm, "extractor": extractor, "source": "extractor",
                                    "raw": True}}, path)
    return path


def recorded_vectors(monkeypatch, cls) -> list[np.ndarray]:
    """Every vector batch ``cls.generate`` receives (the conditioning the images are made from)."""
    seen: list[np.ndarray] = []
    real = cls.generate

    def spy(self, vectors, **kwargs):
        seen.append(torch.as_tensor(vectors).detach().cpu().numpy().astype(np.float64))
        return real(self, vectors, **kwargs)

    monkeypatch.setattr(cls, "generate", spy)
    return seen


def vec2face_args(root, gen_file, weights, out, *extra):
    return ["generate", "--generator", "vec2face_tiny", "--weights", gen_file, "--ref-images", root,
            "--detector", "known-faces", "--generator-option", f"reference_weights={weights}",
            "--images-per-id", 2, "--set", "generation.perturb.sigmas=[0.0]", "--set", "generation.perturb.shares=[1.0]",
            "--out", out, *extra]


@pytest.fixture(scope="module")
def raw_centres(photos, extractor_weights) -> np.ndarray:
    _, tree = photos
    _, items, labels = sorted_items(tree)
    return centres(independent(items, extractor_weights), labels, unit=False)


def test_vec2face_generates_the_identities_of_the_reference_folders(cli, photos, extractor_weights, raw_centres,
                                                                    tmp_path, monkeypatch):
    from facebench_plugins.vec2face.generator import Vec2FaceGenerator

    root, tree = photos
    median = float(np.median(np.linalg.norm(raw_centres, axis=1)))
    gen_file = vec2face_file(tmp_path / "generator.pth", median)
    seen = recorded_vectors(monkeypatch, Vec2FaceGenerator)
    out = tmp_path / "run"
    text = ok(run(cli, *vec2face_args(root, gen_file, extractor_weights, out)))
    assert "3 identities from 6 photos (identity folders): raw features of iresnet_tiny" in text
    np.testing.assert_allclose(np.load(out / "ids.npy"), raw_centres, rtol=1e-5, atol=1e-5)
    # the conditioning the generator received: each identity's vector, once per image
    np.testing.assert_allclose(np.concatenate(seen), np.repeat(raw_centres, 2, axis=0), rtol=1e-5, atol=1e-5)
    card = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert card["identities"] == 3 and card["images"] == 6
    ref = card["ids_source"]["ref_images"]
    assert [i["name"] for i in ref["identities"]] == ["adam", "zoe", "Émile"]
    assert [len(i["photos"]) for i in ref["identities"]] == [3, 2, 1]
    first = ref["identities"][0]["photos"][0]
    assert first == {"file": "adam/00.png", "sha256": hashlib.sha256((root / "adam" / "00.png").read_bytes()).hexdigest()}
    assert ref["detector"] == {"name": "known-faces", "weights": None, "sha256": None}
    assert ref["extractor"]["name"] == "iresnet_tiny" and ref["extractor"]["features"] == "raw"
    assert ref["extractor"]["sha256"] == hashlib.sha256(extractor_weights.read_bytes()).hexdigest()
    assert card["ids_scale"]["factor"] == 1.0
    # the same vectors as embed --align --raw writes for the folder
    ok(embed_align(cli, root, extractor_weights, tmp_path / "e.npy", "--raw"))
    np.testing.assert_array_equal(np.load(out / "ids.npy"), np.load(tmp_path / "e.centers.npy"))
    # what the run records as its inputs: the photo folder and the extractor's weights, hashed
    provenance = json.loads((out / "provenance.json").read_text())
    assert {"ref_images", "reference_weights"} <= set(provenance["inputs"])


def test_reference_vectors_at_another_scale_than_recorded_are_refused_or_rescaled(cli, photos, extractor_weights,
                                                                                  raw_centres, tmp_path):
    root, _ = photos
    median = float(np.median(np.linalg.norm(raw_centres, axis=1)))
    gen_file = vec2face_file(tmp_path / "generator.pth", 10 * median)
    res = run(cli, *vec2face_args(root, gen_file, extractor_weights, tmp_path / "run"))
    assert res.exit_code == 2
    assert f"error: {root}: identity vectors have median norm {median:.4g} but the generator expects norm " \
           f"{10 * median:.4g}" in res.output
    assert not (tmp_path / "run").exists()
    ok(run(cli, *vec2face_args(root, gen_file, extractor_weights, tmp_path / "run", "--rescale-ids")))
    card = json.loads((tmp_path / "run" / "dataset.json").read_text())
    assert math.isclose(card["ids_scale"]["factor"], 10.0, rel_tol=1e-5)


def test_the_reference_extractor_comes_from_the_generator(cli, photos, extractor_weights, tmp_path):
    root, _ = photos
    # a file that records no extractor (trained on given features): the user must name it
    gen_file = vec2face_file(tmp_path / "generator.pth", 1.0, extractor=None)
    res = run(cli, *vec2face_args(root, gen_file, extractor_weights, tmp_path / "run"))
    assert res.exit_code == 2 and "error: generator 'vec2face_tiny' does not say which feature extractor made " \
                                  "its identity vectors (recorded in generator.pth)" in res.output
    # the released Vec2Face's space is the release's ArcFace-R100, whose file is not here
    res = run(cli, "generate", "--generator", "vec2face", "--untrained", "--ref-images", root, "--detector",
              "known-faces", "--out", tmp_path / "run2")
    assert res.exit_code == 2
    assert "error: generator 'vec2face' embeds reference photos with feature extractor 'arcface-r100', which needs " \
           "weights (its file arcface-r100-glint360k.pth is not in the weights directory" in res.output
    assert "pass --generator-option reference_weights=FILE" in res.output
    # a generator that declares no feature space is refused before anything loads
    res = run(cli, "generate", "--generator", "tinygen", "--ref-images", root, "--detector", "known-faces",
              "--out", tmp_path / "run3")
    assert res.exit_code == 2
    assert res.output.startswith("error: generator 'tinygen' declares no reference extractor")
    assert not (tmp_path / "run2").exists() and not (tmp_path / "run3").exists()


def test_identity_sources_are_exclusive_and_their_options_checked(cli, photos, tmp_path):
    root, _ = photos
    ids = tmp_path / "ids.npy"
    np.save(ids, np.ones((2, conftest.DIM), np.float32))
    base = ["generate", "--generator", "tinygen", "--out", tmp_path / "run"]
    res = run(cli, *base, "--ids", ids, "--ref-images", root, "--detector", "known-faces")
    assert "error: give exactly one of --ids FILE, --n-ids N or --ref-images DIR" in res.output
    res = run(cli, *base, "--ids", ids, "--detector", "known-faces")
    assert "error: --detector apply to --ref-images" in res.output
    res = run(cli, *base, "--ids", ids, "--generator-option", "reference_weights=x.pth")
    assert "error: --generator-option reference_weights apply to --ref-images" in res.output
    res = run(cli, "generate", "--generator", "vec2face_tiny", "--untrained", "--ref-images", root,
              "--out", tmp_path / "run")
    assert "error: --ref-images needs --detector NAME" in res.output
    res = run(cli, "generate", "--generator", "vec2face_tiny", "--untrained", "--ref-images", tmp_path / "nobody",
              "--detector", "known-faces", "--out", tmp_path / "run")
    assert f"error: {tmp_path / 'nobody'}: photo folder not found" in res.output
    assert not (tmp_path / "run").exists()


def test_a_photo_without_a_face_stops_generate_before_any_run_folder(cli, extractor_weights, tmp_path):
    root = tmp_path / "people"
    write_tree(root, {"ann": 1})
    save_photo(root / "ann" / "zz.png", np.full((SIDE, SIDE, 3), 200, np.uint8), None)
    gen_file = vec2face_file(tmp_path / "generator.pth", 1.0)
    res = run(cli, *vec2face_args(root, gen_file, extractor_weights, tmp_path / "run", "--rescale-ids"))
    assert res.exit_code == 2
    assert res.output.startswith(f"error: {root / 'ann' / 'zz.png'}: no face found by detector 'known-faces'")
    assert not (tmp_path / "run").exists()


def test_an_interrupted_run_resumes_from_its_saved_vectors_byte_identically(cli, photos, extractor_weights,
                                                                           raw_centres, tmp_path, monkeypatch):
    from facebench.generation import sharded as generation

    root, _ = photos
    gen_file = vec2face_file(tmp_path / "generator.pth", float(np.median(np.linalg.norm(raw_centres, axis=1))))
    ok(run(cli, *vec2face_args(root, gen_file, extractor_weights, tmp_path / "full", "--ids-per-shard", 1)))
    real, calls = generation.generate_shard, []

    def stop_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(generation, "generate_shard", stop_second)
    part = tmp_path / "part"
    assert run(cli, *vec2face_args(root, gen_file, extractor_weights, part, "--ids-per-shard", 1)).exit_code == 130
    monkeypatch.setattr(generation, "generate_shard", real)
    BROKEN.append("a resumed run must not detect the photos again")  # its vectors come from ids.npy
    text = ok(run(cli, *vec2face_args(root, gen_file, extractor_weights, part, "--ids-per-shard", 1)))
    assert "generated 2 of 3 shards in this run" in text
    assert conftest.tree_bytes(part / "dataset.folder") == conftest.tree_bytes(tmp_path / "full" / "dataset.folder")
    card, full = (json.loads((d / "dataset.json").read_text()) for d in (part, tmp_path / "full"))
    assert card["ids_source"] == full["ids_source"]


def test_a_changed_photo_refuses_to_resume_a_finished_run(cli, extractor_weights, raw_centres, tmp_path):
    root = tmp_path / "people"
    tree = write_tree(root)
    gen_file = vec2face_file(tmp_path / "generator.pth", float(np.median(np.linalg.norm(raw_centres, axis=1))))
    args = vec2face_args(root, gen_file, extractor_weights, tmp_path / "run")
    ok(run(cli, *args))
    assert "already complete (3 identities)" in ok(run(cli, *args))
    image, points = toy_photo(5, 5)  # another photo of zoe
    save_photo(tree["zoe"][0][0], image, points)
    res = run(cli, *args)
    assert res.exit_code == 2
    assert "holds a finished dataset made with other parameters (ids_sha256, ids_source.ref_images.identities, " \
           "ids_source.ref_images.sha256)" in res.output


arc2face_needed = pytest.mark.skipif(
    not all(__import__("importlib").util.find_spec(m) for m in ("diffusers", "transformers")),
    reason="needs the arc2face extra")


@arc2face_needed
def test_arc2face_generates_the_reference_identities_from_unit_features(cli, photos, extractor_weights, tmp_path,
                                                                        monkeypatch):
    from facebench_plugins.arc2face.generator import Arc2FaceGenerator

    root, tree = photos
    model = tmp_path / "a2f"
    ok(run(cli, "arc2face", "make-tiny", model))
    seen = recorded_vectors(monkeypatch, Arc2FaceGenerator)
    out = tmp_path / "run"
    text = ok(run(cli, "generate", "--generator", "arc2face_tiny", "--weights", model, "--ref-images", root,
                  "--detector", "known-faces", "--generator-option", f"reference_weights={extractor_weights}",
                  "--generator-option", "steps=2", "--images-per-id", 1, "--out", out))
    assert "3 identities from 6 photos (identity folders): unit features of iresnet_tiny" in text
    _, items, labels = sorted_items(tree)
    want = centres(independent(items, extractor_weights), labels, unit=True)
    np.testing.assert_allclose(np.load(out / "ids.npy"), want, atol=1e-6)
    np.testing.assert_allclose(np.concatenate(seen), want, atol=1e-6)
    ok(embed_align(cli, root, extractor_weights, tmp_path / "e.npy", "--no-flip"))
    np.testing.assert_array_equal(np.load(out / "ids.npy"), np.load(tmp_path / "e.centers.npy"))
    card = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert card["images"] == 3 and card["generator"] == "arc2face_tiny"
    assert [i["name"] for i in card["ids_source"]["ref_images"]["identities"]] == ["adam", "zoe", "Émile"]
    assert card["ids_source"]["ref_images"]["extractor"]["features"] == "unit"
    assert "reference_weights" not in card["generator_info"].get("options", {})  # a reference option, not the model's


def test_the_generators_declare_their_reference_feature_space():
    from facebench.pluginmanager import registry

    generators = registry("generator")
    assert generators.get("vec2face").extras["reference_extractor"]["extractor"] == "arcface-r100"
    assert generators.get("vec2face").extras["reference_extractor"]["features"] == "raw"
    assert generators.get("arc2face").extras["reference_extractor"] == {
        **generators.get("arc2face").extras["reference_extractor"], "extractor": "iresnet100", "features": "unit"}


def test_help_shows_the_reference_routes():
    embed = CliRunner().invoke(create_cli(), ["embed", "--help"], terminal_width=200).output
    assert "--align" in embed and "--detector-weights" in embed
    assert "facebench embed --align --detector retinaface_r50 --detector-weights Resnet50_Final.pth \\" in embed
    generate = CliRunner().invoke(create_cli(), ["generate", "--help"], terminal_width=200).output
    assert "--ref-images" in generate
    assert "--detector retinaface_r50 --generator-option reference_weights=arcface-r100.pth" in generate
