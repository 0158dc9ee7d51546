"""Face detectors: the released state-dict layouts (compared with the names the reference code gives them,
kept as data in ``data/compat/detectors.json``), anchors, decoding, NMS and MTCNN's box arithmetic against hand
computations, the face a photo means (``pick_face``), detection on small images with the tiny variants,
and the listings of ``facebench plugins`` and ``doctor``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import one_thread  # noqa: F401 (fixture)
from facebench_plugins.detectors import mtcnn as mt
from facebench_plugins.detectors import retinaface as rf

import facebench
from facebench.cli import create_cli
from facebench.data.detection import (
    CENTRE_FRACTION,
    Detections,
    NoFaceError,
    detect_and_align,
    nms,
    nms_torch,
    pick_face,
)

pytestmark = pytest.mark.usefixtures("one_thread")

LAYOUTS = json.loads((Path(__file__).parent / "data" / "compat" / "detectors.json").read_text())["layouts"]


def layout(module: torch.nn.Module) -> dict[str, list]:
    return {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in module.state_dict().items()}


def photo(height: int = 72, width: int = 96, seed: int = 0) -> np.ndarray:
    """A small photo-like image: smooth colour blobs and a little grain."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.zeros((height, width, 3))
    for _ in range(6):
        cy, cx, r = rng.uniform(0, 1, 3)
        image += rng.uniform(0, 255, 3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.05 + 0.1 * r))[..., None]
    image = image / image.max() * 230 + rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("name,build", [
    ("retinaface_mnet", lambda: rf.RetinaFaceNet(rf.MNET)),
    ("retinaface_r50", lambda: rf.RetinaFaceNet(rf.R50)),
    ("mtcnn_pnet", mt.PNet), ("mtcnn_rnet", mt.RNet), ("mtcnn_onet", mt.ONet),
])
def test_modules_have_the_release_layout(name, build):
    with torch.device("meta"):
        module = build()
    ours, release = layout(module), LAYOUTS[name]
    assert list(ours) == list(release)  # same names, same order
    assert ours == release


def save_state(state: dict, path: Path, prefix: str = "", drop_counters: bool = False) -> Path:
    torch.save({prefix + k: v for k, v in state.items() if not (drop_counters and k.endswith("num_batches_tracked"))},
               path)
    return path


@pytest.mark.parametrize("prefix,drop_counters", [("", False), ("module.", False), ("module.", True)])
def test_released_retinaface_file_loads_strictly_and_detects_the_same(tmp_path, prefix, drop_counters):
    """A file in mobilenet0.25_Final.pth's layout (with or without DataParallel's ``module.`` and the BN
    counters) loads into ``retinaface_mnet`` and gives exactly what the network it came from gives."""
    net = rf.random_retinaface(rf.MNET, seed=3, size=64)
    path = save_state(net.state_dict(), tmp_path / rf.MNET_WEIGHTS, prefix, drop_counters)
    detector = facebench.load_detector("retinaface_mnet", weights=path)
    for key, value in net.state_dict().items():
        if not (drop_counters and key.endswith("num_batches_tracked")):  # a counter inference never reads
            assert torch.equal(detector.net.state_dict()[key], value), key
    image = photo()
    expected = rf.RetinaFaceDetector(net, rf.RetinaFaceOptions(), torch.device("cpu"), "x").detect(image)
    found = detector.detect(image)
    assert len(found) == len(expected) > 0
    np.testing.assert_array_equal(found.boxes, expected.boxes)
    np.testing.assert_array_equal(found.landmarks, expected.landmarks)


def test_released_mtcnn_folder_loads_strictly_and_detects_the_same(tmp_path):
    nets = mt.random_mtcnn(seed=1)
    for net, name in zip(nets, mt.FILES):
        save_state(net.state_dict(), tmp_path / name)
    detector = facebench.load_detector("mtcnn", weights=tmp_path)
    tiny = facebench.load_detector("mtcnn_tiny", seed=1)
    image = photo(96, 128, seed=2)
    found, expected = detector.detect(image), tiny.detect(image)
    assert len(found) == len(expected) > 0
    np.testing.assert_array_equal(found.boxes, expected.boxes)
    np.testing.assert_array_equal(found.landmarks, expected.landmarks)


def test_mtcnn_default_files_come_from_the_weights_directory(tmp_path, monkeypatch):
    nets = mt.random_mtcnn(seed=1)
    for net, name in zip(nets, mt.FILES):
        save_state(net.state_dict(), tmp_path / name)
    monkeypatch.setenv("FACEBENCH_WEIGHTS", str(tmp_path))
    detector = facebench.load_detector("mtcnn")
    image = photo(96, 128, seed=2)
    np.testing.assert_array_equal(detector.detect(image).boxes, facebench.load_detector("mtcnn_tiny", seed=1)
                                  .detect(image).boxes)


# ----------------------------------------------------------------------------------------- RetinaFace maths


def test_anchors_on_a_hand_case():
    """20 x 30 image: level strides 8/16/32 give 3x4, 2x2, 1x1 cells of two anchors each."""
    a = rf.anchors(20, 30)
    assert a.shape == (3 * 4 * 2 + 2 * 2 * 2 + 1 * 1 * 2, 4) and a.dtype == np.float32
    # first cell of the first level, both sizes; then the next cell along the row
    np.testing.assert_allclose(a[0], [4 / 30, 4 / 20, 16 / 30, 16 / 20], rtol=1e-6)
    np.testing.assert_allclose(a[1], [4 / 30, 4 / 20, 32 / 30, 32 / 20], rtol=1e-6)
    np.testing.assert_allclose(a[2], [12 / 30, 4 / 20, 16 / 30, 16 / 20], rtol=1e-6)
    # the first cell of the second row of level one: row-major order
    np.testing.assert_allclose(a[8], [4 / 30, 12 / 20, 16 / 30, 16 / 20], rtol=1e-6)
    # level two starts after 24 anchors, level three after 32
    np.testing.assert_allclose(a[24], [8 / 30, 8 / 20, 64 / 30, 64 / 20], rtol=1e-6)
    np.testing.assert_allclose(a[32:], [[16 / 30, 16 / 20, 256 / 30, 256 / 20], [16 / 30, 16 / 20, 512 / 30,
                                                                                  512 / 20]], rtol=1e-6)


def test_anchor_count_matches_the_network_output():
    net = rf.RetinaFaceNet(rf.TINY).eval()
    for h, w in ((37, 53), (64, 64), (1, 9)):
        with torch.no_grad():
            loc, conf, marks = net(torch.zeros(1, 3, h, w))
        assert loc.shape[1] == conf.shape[1] == marks.shape[1] == len(rf.anchors(h, w))


def test_decoding_on_a_hand_case():
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    loc = torch.tensor([[1.0, -1.0, math.log(2) / 0.2, 0.0]])
    box = rf.decode_boxes(loc, prior, (0.1, 0.2))
    # centre (0.5 + 0.1 * 0.2, 0.5 - 0.1 * 0.4) = (0.52, 0.46); size (0.4, 0.4)
    torch.testing.assert_close(box, torch.tensor([[0.32, 0.26, 0.72, 0.66]]))
    pre = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0, 1.0, -1.0, -1.0, 2.0, 0.5]])
    points = rf.decode_landmarks(pre, prior, (0.1, 0.2))
    torch.testing.assert_close(points, torch.tensor([[[0.5, 0.5], [0.52, 0.5], [0.5, 0.54], [0.48, 0.46],
                                                      [0.54, 0.52]]]))


def test_retinaface_feeds_bgr_minus_the_mean():
    """The network sees the image in BGR with (104, 117, 123) subtracted, unscaled."""
    net = rf.random_retinaface(rf.TINY, seed=0, size=64)
    seen = {}
    net.body.stage1[0][0].register_forward_hook(lambda m, i, o: seen.update(x=i[0].clone()))
    image = photo(16, 24)
    rf.RetinaFaceDetector(net, rf.RetinaFaceOptions(), torch.device("cpu"), "x").detect(image)
    expected = image[:, :, ::-1].astype(np.float32) - np.array([104, 117, 123], np.float32)
    np.testing.assert_array_equal(seen["x"][0].permute(1, 2, 0).numpy(), expected)


def test_retinaface_postprocessing_against_an_independent_pass():
    """detect() = raw outputs -> score > 0.02 -> best 5000 -> NMS 0.4 (edge pixels counted) -> best 750 ->
    score >= 0.6, recomputed here with plain loops."""
    detector = facebench.load_detector("retinaface_tiny", seed=4)
    image = photo(80, 112, seed=5)
    boxes, scores, points = detector.raw(image)
    order = [i for i in sorted(range(len(scores)), key=lambda i: -scores[i]) if scores[i] > 0.02][:5000]
    kept = []
    for i in order:
        def iou(a, b):
            w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
            h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
            inter = w * h
            area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
            return inter / (area(a) + area(b) - inter)
        if all(iou(boxes[i].astype(np.float64), boxes[j].astype(np.float64)) <= 0.4 for j in kept):
            kept.append(i)
    kept = [i for i in kept[:750] if scores[i] >= 0.6]
    found = detector.detect(image)
    assert len(found) == len(kept) > 0
    np.testing.assert_array_equal(found.boxes, boxes[kept])
    np.testing.assert_array_equal(found.landmarks, points[kept])


def test_retinaface_options_defaults_are_the_references_and_act():
    o = rf.RetinaFaceOptions()
    assert (o.confidence_threshold, o.top_k, o.nms_threshold, o.keep_top_k, o.score_threshold) == \
        (0.02, 5000, 0.4, 750, 0.6)
    image = photo(seed=6)
    every = facebench.load_detector("retinaface_tiny", seed=1, score_threshold=0.0).detect(image)
    cut = float(np.median(every.scores))
    confident = facebench.load_detector("retinaface_tiny", seed=1, score_threshold=cut).detect(image)
    few = facebench.load_detector("retinaface_tiny", seed=1, score_threshold=0.0, keep_top_k=3).detect(image)
    assert 0 < len(confident) < len(every) and (confident.scores >= cut).all()
    np.testing.assert_array_equal(confident.boxes, every.boxes[every.scores >= cut])
    np.testing.assert_array_equal(few.boxes, every.boxes[:3])


# ----------------------------------------------------------------------------------------- NMS


def test_nms_on_hand_cases():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    # IoU(a, b) = 81 / 119 = 0.681; with edge pixels 100 / 142 = 0.704; over the smaller box 0.81 / 0.826
    assert nms(boxes, scores, 0.5).tolist() == [0, 2]
    assert nms(boxes, scores, 0.7).tolist() == [0, 1, 2]
    assert nms(boxes, scores, 0.7, offset=1.0).tolist() == [0, 2]
    assert nms(boxes, scores, 0.71, offset=1.0).tolist() == [0, 1, 2]
    assert nms(boxes, scores, 0.8, mode="min").tolist() == [0, 2]
    assert nms(boxes, scores, 0.82, mode="min").tolist() == [0, 1, 2]
    # highest score first, whatever the input order
    assert nms(boxes[::-1].copy(), scores[::-1].copy(), 0.5).tolist() == [3, 1]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).tolist() == []


def test_nms_agrees_with_torchvision_without_edge_pixels():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (400, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 40, (400, 2))], 1).astype(np.float32)
    scores = rng.permutation(400).astype(np.float32) / 400
    for threshold in (0.3, 0.5, 0.7):
        ours = nms(boxes, scores, threshold)
        theirs = nms_torch(torch.from_numpy(boxes), torch.from_numpy(scores), threshold).numpy()
        assert ours.tolist() == theirs.tolist()


# ----------------------------------------------------------------------------------------- MTCNN maths


def test_mtcnn_pyramid_on_a_hand_case():
    # 80 x 100, min face 20: the shorter side at 12/20 is 48; levels while >= 12: 48, 34.0, 24.1, 17.1, 12.1
    scales = mt.pyramid(80, 100, 20, 0.709)
    np.testing.assert_allclose(scales, [0.6 * 0.709 ** k for k in range(5)])
    assert mt.pyramid(10, 100, 20, 0.709) == []


def test_mtcnn_cell_boxes_square_and_shift_on_hand_cases():
    prob = torch.zeros(3, 4)
    prob[1, 2] = 0.9
    prob[2, 0] = 0.6
    offsets = torch.arange(48, dtype=torch.float32).reshape(4, 3, 4) / 100
    rows = mt.cell_boxes(offsets, prob, 0.5, 0.6)
    # cell (row 1, col 2) at scale 0.5: x1 = floor((2*2+1)/0.5) = 10, y1 = floor(3/0.5) = 6, x2 = floor(16/0.5) = 32,
    # y2 = floor(14/0.5) = 28; cells in row-major order; its offsets are the four channels at (1, 2)
    torch.testing.assert_close(rows[0], torch.tensor([10, 6, 32, 28, 0.9, 0.06, 0.18, 0.30, 0.42]))
    torch.testing.assert_close(rows[1, :5], torch.tensor([2, 10, 24, 32, 0.6]))
    square = mt.square(torch.tensor([[10.0, 20.0, 30.0, 60.0]]))  # 20 x 40 -> 40 x 40 about (20, 40)
    torch.testing.assert_close(square, torch.tensor([[0.0, 20.0, 40.0, 60.0]]))
    moved = mt.shift(torch.tensor([[0.0, 0.0, 9.0, 19.0]]), torch.tensor([[0.1, -0.1, 0.2, 0.5]]))
    torch.testing.assert_close(moved, torch.tensor([[1.0, -2.0, 11.0, 29.0]]))  # width 10, height 20 (+1)
    moved = mt.shift(torch.tensor([[0.0, 0.0, 10.0, 20.0]]), torch.tensor([[0.1, -0.1, 0.2, 0.5]]), inclusive=False)
    torch.testing.assert_close(moved, torch.tensor([[1.0, -2.0, 12.0, 30.0]]))


def test_mtcnn_crops_clip_to_the_image_without_padding():
    image = torch.arange(2 * 10 * 12, dtype=torch.float32).reshape(1, 2, 10, 12)
    boxes = torch.tensor([[-3.7, 2.2, 4.9, 5.0], [20.0, 1.0, 30.0, 5.0], [3.0, 3.0, 3.5, 4.0]])
    batch, valid = mt.crops(image, boxes, 2)
    assert valid.tolist() == [True, False, True]
    # box 1: x from 1 (clipped, 1-based) to 4, y from 2 to 5 -> image[:, 1:5, 0:4] averaged into 2 x 2
    expected = torch.nn.functional.adaptive_avg_pool2d(image[:, :, 1:5, 0:4], 2)
    torch.testing.assert_close(batch[:1], expected)
    assert batch.shape == (2, 2, 2, 2)


def test_mtcnn_dense_layers_read_width_height_channel_order():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(1, 2, 3, 4)
    flat = mt._transposed_flat(x)
    assert flat[0, :4].tolist() == [x[0, 0, 0, 0], x[0, 1, 0, 0], x[0, 0, 1, 0], x[0, 1, 1, 0]]


def test_mtcnn_options_defaults_are_the_references():
    o = mt.MTCNNOptions()
    assert (o.min_face_size, o.thresholds, o.factor, o.nms_thresholds) == (20, (0.6, 0.7, 0.7), 0.709,
                                                                           (0.5, 0.7, 0.7, 0.7))


# ----------------------------------------------------------------------------------------- detecting


@pytest.mark.parametrize("name", ["retinaface_tiny", "mtcnn_tiny"])
def test_tiny_detectors_return_sorted_detections_of_the_right_shapes(name):
    image = photo(72, 96, seed=7)
    detector = facebench.load_detector(name, seed=1)
    found = detector.detect(image)
    assert isinstance(found, Detections) and len(found) > 0
    assert found.boxes.shape == (len(found), 4) and found.scores.shape == (len(found),)
    assert found.landmarks.shape == (len(found), 5, 2)
    assert {a.dtype for a in (found.boxes, found.scores, found.landmarks)} == {np.dtype(np.float32)}
    assert (np.diff(found.scores) <= 0).all()
    assert ((found.scores > 0) & (found.scores <= 1)).all()
    again = facebench.load_detector(name, seed=1).detect(image)
    np.testing.assert_array_equal(again.boxes, found.boxes)  # seeded
    other = facebench.load_detector(name, seed=4).detect(image)
    assert len(other) != len(found) or not np.array_equal(other.boxes, found.boxes)


def test_tiny_detectors_say_they_are_untrained_in_their_record():
    detector = facebench.load_detector("retinaface_tiny")
    assert detector.info == {"detector": "retinaface_tiny", "weights": None,
                             "options": {"confidence_threshold": 0.02, "top_k": 5000, "nms_threshold": 0.4,
                                         "keep_top_k": 750, "score_threshold": 0.6}}


def test_detections_sort_validate_and_stay_read_only():
    d = Detections(np.array([[0, 0, 1, 1], [0, 0, 4, 2]]), np.array([0.2, 0.9]), np.zeros((2, 5, 2)))
    assert len(d) == 2 and d.scores.tolist() == pytest.approx([0.9, 0.2])
    assert d.boxes.tolist() == [[0, 0, 4, 2], [0, 0, 1, 1]] and d.areas.tolist() == [8, 1]
    with pytest.raises(ValueError):
        d.boxes[0, 0] = 5
    assert len(Detections.empty()) == 0
    with pytest.raises(ValueError, match="K, 5, 2"):
        Detections(np.zeros((2, 4)), np.zeros(2), np.zeros((2, 4, 2)))
    with pytest.raises(ValueError, match="finite"):
        Detections(np.full((1, 4), np.nan), np.ones(1), np.zeros((1, 5, 2)))


# ----------------------------------------------------------------------------------------- pick_face


def faces(*rows) -> Detections:
    """Detections from (x1, y1, x2, y2, score) rows."""
    rows = np.array(rows, np.float32).reshape(-1, 5)
    return Detections(rows[:, :4], rows[:, 4], np.zeros((len(rows), 5, 2)))


def test_pick_face_rule():
    shape = (200, 300, 3)  # centre (150, 100); near: |dx| <= 75, |dy| <= 50
    assert CENTRE_FRACTION == 0.25
    # a small centred face beats a larger one at the edge
    d = faces((130, 80, 170, 120, 0.8), (0, 0, 100, 100, 0.99))
    assert d.boxes[pick_face(d, shape)].tolist() == [130, 80, 170, 120]
    # of two near the centre, the larger
    d = faces((140, 90, 160, 110, 0.99), (100, 60, 190, 150, 0.7), (0, 0, 120, 150, 0.9))
    assert d.boxes[pick_face(d, shape)].tolist() == [100, 60, 190, 150]
    # none near the centre: the largest of all
    d = faces((0, 0, 40, 40, 0.99), (230, 150, 300, 200, 0.5))
    assert d.boxes[pick_face(d, shape)].tolist() == [230, 150, 300, 200]
    # the border of "near" counts as near: centre at dx = 75 exactly
    d = faces((215, 90, 235, 110, 0.5), (0, 0, 60, 60, 0.9))
    assert d.boxes[pick_face(d, shape)].tolist() == [215, 90, 235, 110]
    # equal areas: the higher score
    d = faces((120, 70, 160, 110, 0.6), (140, 90, 180, 130, 0.9))
    assert pick_face(d, shape) == 0 and d.scores[0] == pytest.approx(0.9)
    assert pick_face(Detections.empty(), shape) is None


class FixedDetector:
    """Returns given detections whatever the image."""

    def __init__(self, detections):
        self.detections = detections

    def detect(self, image):
        return self.detections


def test_detect_and_align_aligns_the_picked_face():
    alignment = pytest.importorskip("facebench.data.alignment")
    image = photo(120, 160, seed=8)
    template = np.asarray(alignment.ARCFACE_TEMPLATE, np.float32)
    centred = template * 0.6 + np.array([50, 30], np.float32)  # near the centre (80, 60)
    edge = template * 0.65 + np.array([0, 0], np.float32)
    # the larger face's centre (37.5, 37.5) is 42.5 px from the centre's column: farther than 160 / 4
    d = Detections(np.array([[0, 0, 75, 75], [50, 30, 117, 97]], np.float32), np.array([0.9, 0.8]),
                   np.stack([edge, centred]))
    crop, found, index = detect_and_align(FixedDetector(d), image)
    assert index == 1 and found is d
    np.testing.assert_array_equal(crop, facebench.align(image, centred, 112))
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    with pytest.raises(NoFaceError, match="no face"):
        detect_and_align(FixedDetector(Detections.empty()), image)


def test_detect_and_align_with_a_tiny_detector():
    pytest.importorskip("facebench.data.alignment")
    image = photo(72, 96, seed=9)
    detector = facebench.load_detector("retinaface_tiny", seed=0)
    crop, found, index = detect_and_align(detector, image, size=56)
    assert crop.shape == (56, 56, 3) and index == pick_face(found, image.shape)


# ----------------------------------------------------------------------------------------- CLI listings


def test_plugins_lists_the_detectors():
    from click.testing import CliRunner

    result = CliRunner().invoke(create_cli(), ["plugins", "--kind", "detector", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {r["name"] for r in rows} == {"retinaface_mnet", "retinaface_r50", "retinaface_tiny", "mtcnn",
                                         "mtcnn_tiny"}
    assert {r["kind"] for r in rows} == {"detector"} and {r["plugin"] for r in rows} == {"detectors"}


def test_doctor_lists_the_detector_files(tmp_path):
    from click.testing import CliRunner

    (tmp_path / "pnet.pt").write_bytes(b"x")
    result = CliRunner().invoke(create_cli(), ["doctor", "--weights-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    files = {f["file"]: f for f in json.loads(result.output)["weights"]}
    for name, owner in (("mobilenet0.25_Final.pth", "detector retinaface_mnet"),
                        ("Resnet50_Final.pth", "detector retinaface_r50"), ("pnet.pt", "detector mtcnn"),
                        ("rnet.pt", "detector mtcnn"), ("onet.pt", "detector mtcnn")):
        assert files[name]["declared_by"] == owner
    assert files["pnet.pt"]["path"] == str(tmp_path / "pnet.pt") and files["onet.pt"]["path"] is None
    assert json.loads(result.output)["components"]["detector"] == 5
