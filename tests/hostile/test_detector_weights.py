"""Hostile detector weights, options and images: the files given as RetinaFace's ``*_Final.pth`` or
MTCNN's ``pnet.pt`` / ``rnet.pt`` / ``onet.pt`` (missing, a pickle payload, another layout, wrong shapes,
dtypes or values, cut short), options of the wrong type or range, and images that are not H x W x 3
``uint8``. Through ``facebench data align`` (the command a user gives a detector file to) the user sees exit
2 and one ``error:`` line naming the file, and no output folder; through ``facebench.load_detector`` one
``FacebenchError`` line naming the file or the option. No pickle runs, nothing reaches the network."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from facebench_plugins.detectors import mtcnn as mt
from facebench_plugins.detectors import retinaface as rf

import facebench
from facebench.cli import create_cli
from facebench.errors import FacebenchError

from .conftest import Payload, invoke, refused

_REPRS = re.compile(r"np\.(str_|int64|float64|bool_)\(|array\(|<class |object at 0x|tensor\(")


def refused_api(call, *names) -> str:
    """``call()`` raises one ``FacebenchError`` whose single line names each of ``names``."""
    with pytest.raises(FacebenchError) as info:
        call()
    line = str(info.value)
    assert "\n" not in line and "Traceback" not in line, line
    for name in names:
        assert str(name) in line, f"{name} not named in: {line}"
    assert not _REPRS.search(line), f"a Python repr in the error line: {line}"
    return line


@pytest.fixture(scope="module")
def mnet_state() -> dict[str, torch.Tensor]:
    """A state dict in mobilenet0.25_Final.pth's layout (random values)."""
    return rf.RetinaFaceNet(rf.MNET).state_dict()


@pytest.fixture(scope="module")
def mtcnn_states() -> list[dict[str, torch.Tensor]]:
    return [net().state_dict() for net in (mt.PNet, mt.RNet, mt.ONet)]


@pytest.fixture
def photos(tmp_path) -> Path:
    """One identity with one photo: what ``data align`` is pointed at."""
    from PIL import Image

    src = tmp_path / "photos"
    (src / "alice").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(src / "alice" / "1.png")
    return src


def align(src: Path, out: Path, detector: str, *extra):
    return invoke(create_cli(), ["data", "align", src, "--detector", detector, "--out", out, "--device", "cpu",
                                 *extra])


def weights_refused(src: Path, tmp_path: Path, path: Path, *words: str, detector: str = "retinaface_mnet") -> str:
    out = tmp_path / "aligned"
    line = refused(align(src, out, detector, "--weights", path), path, *words)
    assert not out.exists(), "a run folder was left behind"
    return line


# ------------------------------------------------------------------------------------ RetinaFace files


def test_missing_weights_file_is_named(tmp_path, photos):
    weights_refused(photos, tmp_path, tmp_path / "mobilenet0.25_Final.pth", "not found")


def test_missing_default_file_names_it_and_where_it_comes_from(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEBENCH_WEIGHTS", str(tmp_path))
    refused_api(lambda: facebench.load_detector("retinaface_r50"), "Resnet50_Final.pth", "not found",
                "Pytorch_Retinaface")


def test_pickle_payload_is_refused_and_not_run(tmp_path, photos, marker):
    path = tmp_path / "mobilenet0.25_Final.pth"
    torch.save({"body.stage1.0.0.weight": Payload(marker)}, path)
    weights_refused(photos, tmp_path, path, "Python object")
    refused_api(lambda: facebench.load_detector("retinaface_mnet", weights=path), path)


def test_another_layout_is_refused_naming_missing_and_unexpected_keys(tmp_path, photos):
    path = tmp_path / "mobilenet0.25_Final.pth"
    torch.save(mt.PNet().state_dict(), path)
    weights_refused(photos, tmp_path, path, "missing", "unexpected", "conv1.weight")


def test_the_tiny_layout_given_as_the_released_one_is_refused_naming_shapes(tmp_path, photos):
    path = tmp_path / "mobilenet0.25_Final.pth"
    torch.save(rf.RetinaFaceNet(rf.TINY).state_dict(), path)
    weights_refused(photos, tmp_path, path, "shape mismatch", "body.stage1.0.0.weight (4, 3, 3, 3) != (8, 3, 3, 3)")


def test_one_wrong_shape_is_named(tmp_path, mnet_state):
    state = dict(mnet_state, **{"ClassHead.0.conv1x1.bias": torch.zeros(3)})
    path = tmp_path / "m.pth"
    torch.save(state, path)
    refused_api(lambda: facebench.load_detector("retinaface_mnet", weights=path), path,
                "1 shape mismatch (ClassHead.0.conv1x1.bias (3,) != (4,))")


def test_a_missing_and_an_extra_tensor_are_named(tmp_path, mnet_state):
    state = {k: v for k, v in mnet_state.items() if k != "fpn.merge1.0.weight"}
    state["fpn.merge3.0.weight"] = torch.zeros(1)
    path = tmp_path / "m.pth"
    torch.save(state, path)
    refused_api(lambda: facebench.load_detector("retinaface_mnet", weights=path), path,
                "1 missing (fpn.merge1.0.weight)", "1 unexpected (fpn.merge3.0.weight)")


def test_a_prefix_on_some_keys_only_is_refused(tmp_path, mnet_state):
    state = {("module." + k if i % 2 else k): v for i, (k, v) in enumerate(mnet_state.items())}
    path = tmp_path / "m.pth"
    torch.save(state, path)
    refused_api(lambda: facebench.load_detector("retinaface_mnet", weights=path), path, "missing", "unexpected")


@pytest.mark.parametrize("cut", [0, 100, -200])
def test_truncated_or_empty_file_is_refused(tmp_path, photos, mnet_state, cut):
    whole = tmp_path / "whole.pth"
    torch.save(mnet_state, whole)
    data = whole.read_bytes()
    path = tmp_path / "mobilenet0.25_Final.pth"
    path.write_bytes(data[:cut] if cut >= 0 else data[:cut])
    weights_refused(photos, tmp_path, path, "cannot read")


@pytest.mark.parametrize("content,words", [
    (lambda s: list(s.values()), "expected a state dict"),
    (lambda s: torch.zeros(3), "expected a state dict"),
    (lambda s: {"state_dict": s}, "expected a state dict"),
])
def test_a_checkpoint_that_is_not_a_plain_state_dict_is_refused(tmp_path, mnet_state, content, words):
    path = tmp_path / "m.pth"
    torch.save(content(mnet_state), path)
    refused_api(lambda: facebench.load_detector("retinaface_mnet", weights=path), path, words)


def test_values_that_are_not_finite_are_refused_naming_the_tensor(tmp_path, photos, mnet_state):
    state = dict(mnet_state)
    state["BboxHead.1.conv1x1.weight"] = state["BboxHead.1.conv1x1.weight"].clone()
    state["BboxHead.1.conv1x1.weight"][0, 0] = float("nan")
    path = tmp_path / "mobilenet0.25_Final.pth"
    torch.save(state, path)
    weights_refused(photos, tmp_path, path, "BboxHead.1.conv1x1.weight", "not finite")


def test_a_tensor_of_the_wrong_kind_of_dtype_is_refused(tmp_path, mnet_state):
    state = dict(mnet_state, **{"fpn.output1.0.weight": mnet_state["fpn.output1.0.weight"] > 0})
    path = tmp_path / "m.pth"
    torch.save(state, path)
    refused_api(lambda: facebench.load_detector("retinaface_mnet", weights=path), path, "fpn.output1.0.weight",
                "dtype bool")


def test_a_directory_given_as_a_retinaface_file_is_refused(tmp_path):
    refused_api(lambda: facebench.load_detector("retinaface_mnet", weights=tmp_path), tmp_path, "directory")


# ------------------------------------------------------------------------------------ MTCNN folders


def mtcnn_folder(tmp_path: Path, states, **replace) -> Path:
    folder = tmp_path / "mtcnn"
    folder.mkdir(exist_ok=True)
    for name, state in zip(mt.FILES, states):
        if name in replace:
            if replace[name] is not None:
                torch.save(replace[name], folder / name)
        else:
            torch.save(state, folder / name)
    return folder


def test_mtcnn_folder_missing_a_stage_names_the_file(tmp_path, mtcnn_states):
    folder = mtcnn_folder(tmp_path, mtcnn_states, **{"onet.pt": None})
    refused_api(lambda: facebench.load_detector("mtcnn", weights=folder), folder / "onet.pt", "not found")


def test_mtcnn_stage_files_swapped_are_refused_naming_the_file(tmp_path, mtcnn_states):
    folder = mtcnn_folder(tmp_path, mtcnn_states, **{"pnet.pt": mtcnn_states[1]})
    refused_api(lambda: facebench.load_detector("mtcnn", weights=folder), folder / "pnet.pt", "P-Net",
                "unexpected (dense4.weight")


def test_mtcnn_payload_is_refused_and_not_run(tmp_path, mtcnn_states, marker):
    folder = mtcnn_folder(tmp_path, mtcnn_states, **{"rnet.pt": {"conv1.weight": Payload(marker)}})
    refused_api(lambda: facebench.load_detector("mtcnn", weights=folder), folder / "rnet.pt", "Python object")


def test_mtcnn_weights_given_as_a_file_are_refused(tmp_path, mtcnn_states):
    folder = mtcnn_folder(tmp_path, mtcnn_states)
    refused_api(lambda: facebench.load_detector("mtcnn", weights=folder / "pnet.pt"), folder / "pnet.pt",
                "a folder holding pnet.pt, rnet.pt, onet.pt")


# ------------------------------------------------------------------------------------ options, devices, images


@pytest.mark.parametrize("name,options,words", [
    ("retinaface_tiny", {"score_threshold": "high"}, "option 'score_threshold' expects float, got str"),
    ("retinaface_tiny", {"top_k": 2.5}, "option 'top_k' expects int"),
    ("retinaface_tiny", {"top_k": True}, "option 'top_k' expects int"),
    ("retinaface_tiny", {"nms_threshold": 2.0}, "'nms_threshold' must be within [0, 1]"),
    ("retinaface_tiny", {"keep_top_k": 0}, "'keep_top_k' must be at least 1"),
    ("retinaface_tiny", {"nms": 0.3}, "unknown option 'nms'"),
    ("retinaface_tiny", {"seed": "1"}, "option 'seed' expects int"),
    ("mtcnn_tiny", {"thresholds": [0.6, 0.7]}, "'thresholds' takes 3 numbers"),
    ("mtcnn_tiny", {"thresholds": "0.6"}, "option 'thresholds' expects a list"),
    ("mtcnn_tiny", {"factor": 0.9999}, "'factor' must be within [0.1, 0.95]"),
    ("mtcnn_tiny", {"min_face_size": 1}, "'min_face_size' must be at least 4"),
])
def test_a_detector_option_of_the_wrong_type_or_range_is_one_line(name, options, words):
    line = refused_api(lambda: facebench.load_detector(name, **options), f"detector '{name}'", words)
    assert "config" not in line


def test_a_detector_option_of_the_wrong_type_through_the_command(tmp_path, photos):
    out = tmp_path / "aligned"
    result = align(photos, out, "retinaface_tiny", "--detector-option", 'score_threshold="high"')
    refused(result, "score_threshold")
    assert not out.exists()


def test_an_unknown_device_is_one_line():
    refused_api(lambda: facebench.load_detector("retinaface_tiny", device="tpu"), "tpu")


@pytest.fixture(scope="module")
def tiny() -> dict:
    return {name: facebench.load_detector(name, seed=1) for name in ("retinaface_tiny", "mtcnn_tiny")}


@pytest.mark.parametrize("image,words", [
    (np.zeros((32, 32, 3), np.float32), "got float32 of shape (32, 32, 3)"),
    (np.zeros((32, 32), np.uint8), "got uint8 of shape (32, 32)"),
    (np.zeros((32, 32, 4), np.uint8), "got uint8 of shape (32, 32, 4)"),
    (np.zeros((0, 32, 3), np.uint8), "got uint8 of shape (0, 32, 3)"),
    (np.zeros((2, 32, 32, 3), np.uint8), "got uint8 of shape (2, 32, 32, 3)"),
    ([[[0, 0, 0]]], "got list"),
])
@pytest.mark.parametrize("name", ["retinaface_tiny", "mtcnn_tiny"])
def test_an_image_that_is_not_hxwx3_uint8_is_one_line(tiny, name, image, words):
    detector = tiny[name]
    refused_api(lambda: detector.detect(image), "(H, W, 3)", words)


@pytest.mark.parametrize("name", ["retinaface_tiny", "mtcnn_tiny"])
def test_tiny_and_odd_sized_images_give_sorted_detections_not_errors(tiny, name):
    detector = tiny[name]
    for shape in ((1, 1, 3), (3, 200, 3), (13, 7, 3)):
        found = detector.detect(np.full(shape, 128, np.uint8))
        assert found.boxes.shape == (len(found), 4) and (np.diff(found.scores) <= 0).all()


def test_a_read_only_image_is_detected_as_a_writable_one(tiny):
    image = np.random.default_rng(1).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    frozen = image.copy()
    frozen.setflags(write=False)
    for detector in tiny.values():
        a, b = detector.detect(image), detector.detect(frozen)
        np.testing.assert_array_equal(a.boxes, b.boxes)
    assert np.array_equal(frozen, image)
