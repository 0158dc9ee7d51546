"""Hostile ``--pose-landmarks`` inputs and Vec2Face+ weights given to ``generate``: coordinate files of the
wrong shape or with numbers that are not numbers, text that is not UTF-8, listed names leaving the list's
folder (absolute, ``..``, a link), listed files that are no landmark images (a decompression bomb, text, a
FIFO, the wrong size, too large), ``.npy`` files holding pickles, and a ``pose_model.pth`` that is a pickle
payload or of the wrong layout.

Each is one ``error:`` line naming the file (and line) at fault, exit 2, nothing written and no run folder
left; the extras that change nothing (comments, blank lines, a byte-order mark, a link that stays in the
folder) give the clean file's landmark images.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import test_vec2face_plus as plus
import torch
from facebench_plugins.vec2face import landmarks as L

from facebench.cli import create_cli

from .conftest import Payload, bomb_png, files_under, invoke, refused, succeeded

GOOD = " ".join(f"{v:.2f}" for v in L.posed_points(30).ravel())


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("v2fp")
    plus.save_release_pose(root / "pose_model.pth")
    np.save(root / "ids.npy", np.random.default_rng(0).standard_normal((2, 512)).astype(np.float32))
    return root


def generate(weights: Path, out: Path, poses, *, model: Path | None = None):
    return invoke(create_cli(), ["generate", "--generator", "vec2face_plus_tiny", "--weights",
                                 model or weights / "pose_model.pth", "--ids", weights / "ids.npy",
                                 "--pose-landmarks", poses, "--images-per-id", "2", "--out", out, "--device", "cpu"])


def refused_run(weights: Path, tmp_path: Path, poses, *names, model: Path | None = None) -> str:
    """Refused naming ``names``; nothing written under the test's folder, no run folder."""
    before = files_under(tmp_path)
    line = refused(generate(weights, tmp_path / "run", poses, model=model), *names)
    assert files_under(tmp_path) == before
    assert not (tmp_path / "run").exists()
    return line


def listing(tmp_path: Path, *lines: str, images: dict[str, bytes] | None = None) -> Path:
    folder = tmp_path / "landmarks"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for name, data in (images or {}).items():
        (folder / "images" / name).write_bytes(data)
    path = folder / "list.txt"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def good_jpeg() -> bytes:
    return L.render_landmarks(L.posed_points(-30))[0]


# ------------------------------------------------------------------------------------ coordinate files

@pytest.mark.parametrize("text, where, problem", [
    (f"{GOOD}\n1 2 3 4 5 6 7 8\n", "line 2", "expected 10 numbers"),
    (f"{GOOD} 99 99\n", "line 1", "expected 10 numbers"),
    ("1 2 3\n", "line 1", "expected 10 numbers"),
    (f"{GOOD}\n{GOOD.replace(' ', ' x ', 1)}\n", "line 2", "'x' is not a number"),
    (f"{GOOD}\n{GOOD.replace(GOOD.split()[3], 'nan', 1)}\n", "line 2", "coordinate 4 is not a finite number"),
    (f"{GOOD.replace(GOOD.split()[0], '1e400', 1)}\n", "line 1", "coordinate 1 is not a finite number"),
    (f"{GOOD.replace(GOOD.split()[4], '-3', 1)}\n", "line 1", "point 3 (-3, "),
    (f"{GOOD.replace(GOOD.split()[9], '112', 1)}\n", "line 1", "point 5 ("),
])
def test_malformed_coordinates_are_refused_naming_the_line(weights, tmp_path, text, where, problem):
    path = tmp_path / "poses.txt"
    path.write_text(text)
    line = refused_run(weights, tmp_path, path, path, f"at {where}")
    assert problem in line


def test_non_utf8_coordinates_file(weights, tmp_path):
    path = tmp_path / "poses.txt"
    path.write_bytes(GOOD.encode() + b"\n\xff\xfe 1 2\n")
    assert "not UTF-8" in refused_run(weights, tmp_path, path, path, "at line 2")


def test_empty_file_and_too_many_poses(weights, tmp_path):
    path = tmp_path / "poses.txt"
    path.write_text("# only a comment\n\n")
    assert "lists no landmark images" in refused_run(weights, tmp_path, path, path)
    path.write_text(f"{GOOD}\n" * (L.MAX_POSES + 1))
    assert "more than 10,000" in refused_run(weights, tmp_path, path, path)


def test_npy_of_the_wrong_shape_or_pickled_objects(weights, tmp_path, marker):
    path = tmp_path / "poses.npy"
    np.save(path, np.zeros((3, 4, 2)))
    assert "shape (P, 5, 2) or (P, 10)" in refused_run(weights, tmp_path, path, path)
    with open(path, "wb") as fh:
        np.save(fh, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    assert "pickled" in refused_run(weights, tmp_path, path, path)
    np.save(path, np.full((1, 5, 2), np.nan))
    assert "not a finite number" in refused_run(weights, tmp_path, path, path, "at row 0")


def test_unknown_name_folder_and_missing_file(weights, tmp_path):
    line = refused_run(weights, tmp_path, "frontal,yaw+31", "yaw+31")
    assert "not a named pose" in line and "yaw-90 .. yaw+90" in line
    (tmp_path / "dir").mkdir()
    assert "is a folder" in refused_run(weights, tmp_path, tmp_path / "dir", tmp_path / "dir")
    os.mkfifo(tmp_path / "poses.txt")  # opening it would wait for a writer forever
    assert "not a regular file" in refused_run(weights, tmp_path, tmp_path / "poses.txt", tmp_path / "poses.txt")


def test_comments_blank_lines_and_a_bom_change_nothing(weights, tmp_path):
    clean, noisy = tmp_path / "clean.txt", tmp_path / "noisy.txt"
    clean.write_text(f"{GOOD}\n")
    noisy.write_bytes(b"\xef\xbb\xbf# five points\n\n   " + GOOD.replace(" ", " , ").encode() + b"   \n\n")
    a, b = L.load_pose_set(str(clean)), L.load_pose_set(str(noisy))
    np.testing.assert_array_equal(a.images, b.images)
    assert [e.sha256 for e in a.entries] == [e.sha256 for e in b.entries]
    succeeded(generate(weights, tmp_path / "run", noisy))


# ------------------------------------------------------------------------------ lists of landmark images

@pytest.mark.parametrize("name", ["/etc/passwd", "../outside.jpg", "images/../../outside.jpg"])
def test_listed_names_leaving_the_folder(weights, tmp_path, name):
    (tmp_path / "outside.jpg").write_bytes(good_jpeg())
    path = listing(tmp_path, name)
    assert "leaves the folder" in refused_run(weights, tmp_path, path, path, "at line 1")


def test_listed_link_out_of_the_folder_and_one_that_stays(weights, tmp_path):
    (tmp_path / "outside.jpg").write_bytes(good_jpeg())
    path = listing(tmp_path, "images/in.jpg", "images/escape.jpg", images={"in.jpg": good_jpeg()})
    os.symlink(tmp_path / "outside.jpg", path.parent / "images" / "escape.jpg")
    assert "leads out of the folder" in refused_run(weights, tmp_path, path, path, "at line 2")
    path.write_text("images/in.jpg\nimages/link.jpg\n")
    os.symlink(path.parent / "images" / "in.jpg", path.parent / "images" / "link.jpg")
    pose = L.load_pose_set(str(path))
    np.testing.assert_array_equal(pose.images[0], pose.images[1])


@pytest.mark.parametrize("data, problem", [
    (bomb_png(), "decompression bomb"),
    (b"these are not pixels\n" * 20, "undecodable image"),
    (good_jpeg()[:300], "undecodable image"),
    (b"", "empty image"),
])
def test_listed_files_that_are_not_landmark_images(weights, tmp_path, data, problem):
    path = listing(tmp_path, "images/x.jpg", images={"x.jpg": data})
    assert problem in refused_run(weights, tmp_path, path, path, "images/x.jpg", "at line 1")


def test_listed_image_of_the_wrong_size_fifo_missing_or_too_large(weights, tmp_path):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(buf, format="PNG")
    path = listing(tmp_path, "images/a.jpg", "images/small.png", images={"a.jpg": good_jpeg(),
                                                                          "small.png": buf.getvalue()})
    assert "is 100 x 100, landmark images are 112 x 112" in refused_run(weights, tmp_path, path, path, "at line 2")
    os.mkfifo(path.parent / "images" / "pipe.jpg")
    path.write_text("images/pipe.jpg\n")
    assert "not a regular file" in refused_run(weights, tmp_path, path, path, "at line 1")
    path.write_text("images/a.jpg\nimages/gone.jpg\n")
    assert "not found" in refused_run(weights, tmp_path, path, path, "at line 2")
    with open(path.parent / "images" / "huge.jpg", "wb") as fh:
        fh.truncate(L.MAX_IMAGE_BYTES + 1)
    path.write_text("images/huge.jpg\n")
    assert "more than the" in refused_run(weights, tmp_path, path, path, "at line 1")


def test_non_utf8_name_is_shown_escaped(weights, tmp_path):
    path = listing(tmp_path)
    path.write_bytes(b"images/\xff\n")
    assert "not UTF-8" in refused_run(weights, tmp_path, path, path, "at line 1")


# ------------------------------------------------------------------------------------ Vec2Face+ weights

def test_pose_model_file_that_is_a_pickle_payload(weights, tmp_path, marker):
    bad = tmp_path / "pose_model.pth"
    torch.save({"model_vec2face": {}, "pose_model": Payload(marker)}, bad)
    assert "not only tensors" in refused_run(weights, tmp_path, "frontal", bad, model=bad)
    with open(bad, "wb") as fh:
        pickle.dump(Payload(marker), fh)
    refused_run(weights, tmp_path, "frontal", bad, model=bad)


def test_pose_model_file_of_the_wrong_layout(weights, tmp_path):
    bad = tmp_path / "pose_model.pth"
    data = torch.load(weights / "pose_model.pth", weights_only=False)
    data["pose_model"] = {"conv1.weight": torch.zeros(3)}
    torch.save(data, bad)
    line = refused_run(weights, tmp_path, "frontal", bad, "'pose_model' does not match", model=bad)
    assert "missing (conv1.bias" in line and "shape mismatch (conv1.weight (3,)" in line
    data["pose_model"] = [1, 2, 3]
    torch.save(data, bad)
    assert "expected a state dict of tensors" in refused_run(weights, tmp_path, "frontal", bad, model=bad)
    data = torch.load(weights / "pose_model.pth", weights_only=False)
    data["model_vec2face"] = {k: v for k, v in data["model_vec2face"].items() if not k.endswith((".A", ".B"))}
    torch.save(data, bad)
    assert "--generator-option lora_rank" in refused_run(weights, tmp_path, "frontal", bad, "missing", model=bad)
