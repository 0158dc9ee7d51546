"""Hostile Vec2Face+ LMDB files: the VFace FR sets ``(image, label)`` and the pose-model set
``[image, feature, label, landmark image]``, handed to ``data info|check|convert`` and ``train-fr``.

Each case starts from a valid file in the release's layout (tests/test_vface_lmdb.py writes it as the
release's converters do), breaks one thing, and asserts what a user sees: exit 2 and one ``error:`` line
naming the file and the key, or (``data check``) the problem listed with its key; no pickle payload runs;
a refused ``convert`` or ``train-fr`` leaves nothing behind.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import lmdb
import msgpack
import numpy as np
import pytest
from test_vface_lmdb import IDENTITIES, SIZE, landmark_png, npy, write_landmarks_set, write_vface

from facebench.cli import create_cli
from facebench.data import encode_image

from .conftest import Payload, bomb_png, files_under, invoke, refused, succeeded


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("vface")
    write_vface(root / "vface10k.lmdb")
    made = write_landmarks_set(root / "WebFace4M_with_landmarks.lmdb", n=6, classes=3)
    return root, made


def copy(base, name: str, tmp: Path) -> Path:
    shutil.copy2(base[0] / name, tmp / name)
    return tmp / name


def put(path: Path, records: dict[bytes, object]) -> None:
    env = lmdb.open(str(path), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        for key, value in records.items():
            txn.put(key, msgpack.packb(value, use_bin_type=True))
    env.close()


def data(*args):
    return invoke(create_cli(), ["data", *args])


def pose_record(made, i: int, **change):
    """Record ``i`` of the pose-model set with fields replaced (image, feature, label, landmark)."""
    fields = {"image": made["faces"][i], "feature": npy(made["features"][i]), "label": made["labels"][i],
              "landmark": made["landmarks"][i]}
    fields.update(change)
    return [fields["image"], fields["feature"], fields["label"], fields["landmark"]]


def jpeg(size: int = SIZE) -> bytes:
    return encode_image(np.full((size, size, 3), 90, np.uint8), "jpg")


# --------------------------------------------------------- refused by info (the record's fields themselves)

LANDMARK_SET = [
    # (id, records written over the valid 6-record pose-model set, fragments of the error line)
    pytest.param(lambda m: {b"2": pose_record(m, 2, landmark=7)},
                 ("landmark image must be encoded image bytes, found an integer", "at key 2"), id="landmark-integer"),
    pytest.param(lambda m: {b"2": pose_record(m, 2, landmark=None)},
                 ("landmark image must be encoded image bytes, found null", "at key 2"), id="landmark-null"),
    pytest.param(lambda m: {b"2": pose_record(m, 2, landmark=[1, 2])},
                 ("landmark image must be encoded image bytes, found a list", "at key 2"), id="landmark-list"),
    pytest.param(lambda m: {b"3": pose_record(m, 3)[:3]},
                 ("record has 3 fields (image, feature, label) but the first record, key 0, has 4 (image, feature, "
                  "label, landmark image): one file holds one layout", "at key 3"), id="mixed-3-in-4"),
    pytest.param(lambda m: {b"0": pose_record(m, 0)[:3]},
                 ("record has 4 fields (image, feature, label, landmark image) but the first record, key 0, has 3",
                  "at key 1"), id="first-record-3-fields"),
    pytest.param(lambda m: {b"2": [*pose_record(m, 2), b"extra"]}, ("record is neither", "at key 2"),
                 id="five-fields"),
    pytest.param(lambda m: {b"4": [m["faces"][4], npy(m["features"][4]), m["landmarks"][4], 1]},
                 ("label is bytes, not an integer", "at key 4"), id="label-after-landmark"),
    pytest.param(lambda m: {b"4": pose_record(m, 4, label=1.0)}, ("label is a number, not an integer", "at key 4"),
                 id="label-float"),
    pytest.param(lambda m: {b"4": pose_record(m, 4, label=7)}, ("label 7 out of range [0, 3)", "at key 4"),
                 id="label-beyond-classnum"),
    pytest.param(lambda m: {b"4": pose_record(m, 4, label=-2)}, ("label -2 out of range [0, 3)", "at key 4"),
                 id="label-negative"),
    pytest.param(lambda m: {b"5": pose_record(m, 5, image=12)}, ("record is neither", "at key 5"),
                 id="image-integer"),
]


@pytest.mark.parametrize("change,fragments", LANDMARK_SET)
def test_pose_model_set_refused_by_info(base, tmp_path, change, fragments):
    path = copy(base, "WebFace4M_with_landmarks.lmdb", tmp_path)
    put(path, change(base[1]))
    line = refused(data("info", path), path)
    for fragment in fragments:
        assert fragment in line, line


# --------------------------------------------------- listed by check (what only decoding the images shows)

def _size_mismatch(m):
    return landmark_png(np.full((5, 2), 4.0), size=SIZE // 2)


LANDMARK_IMAGES = [
    pytest.param(lambda m, marker: pose_record(m, 3, landmark=b"not an image"),
                 "undecodable image (not a JPEG/PNG image) at key 3 (landmark image)", id="landmark-text"),
    pytest.param(lambda m, marker: pose_record(m, 3, landmark=m["landmarks"][3][:50]),
                 "undecodable image", id="landmark-truncated"),
    pytest.param(lambda m, marker: pose_record(m, 3, landmark=b""), "empty image record at key 3 (landmark image)",
                 id="landmark-empty"),
    pytest.param(lambda m, marker: pose_record(m, 3, landmark=bomb_png()),
                 ("decompression bomb", "at key 3 (landmark image)"), id="landmark-bomb"),
    pytest.param(lambda m, marker: pose_record(m, 3, landmark=_size_mismatch(m)),
                 f"landmark image is {SIZE // 2}x{SIZE // 2} pixels but its face image is {SIZE}x{SIZE} at key 3",
                 id="landmark-other-size"),
    pytest.param(lambda m, marker: pose_record(m, 3, feature=npy_pickled(marker)),
                 "feature is a pickled object array; refused", id="feature-pickled-payload"),
    pytest.param(lambda m, marker: pose_record(m, 3, image=bomb_png()), ("decompression bomb", "at key 3\n"),
                 id="face-bomb"),
]


def npy_pickled(marker: Path) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([Payload(marker)], dtype=object), allow_pickle=True)
    return buf.getvalue()


@pytest.mark.parametrize("record,fragment", LANDMARK_IMAGES)
def test_pose_model_set_problem_listed_by_check(base, tmp_path, marker, record, fragment):
    path = copy(base, "WebFace4M_with_landmarks.lmdb", tmp_path)
    put(path, {b"3": record(base[1], marker)})
    result = data("check", path)
    refused(result, path, "1 problem(s) found")
    for part in (f"{path}: ", *((fragment,) if isinstance(fragment, str) else fragment)):
        assert part in result.stdout, result.stdout


# ----------------------------------------------------------------------------------------- VFace sets

def test_vface_unknown_meta_key_is_ignored(base, tmp_path):
    """A hostile extra that changes nothing: the summary equals the clean file's."""
    clean = json.loads(succeeded(data("info", base[0] / "vface10k.lmdb", "--json")))
    path = copy(base, "vface10k.lmdb", tmp_path)
    put(path, {b"__generator__": {b"name": b"vec2face_plus", b"payload": [1, 2, 3]}})
    again = json.loads(succeeded(data("info", path, "--json")))
    assert {k: v for k, v in again.items() if k != "path"} == {k: v for k, v in clean.items() if k != "path"}


VFACE = [
    pytest.param({b"3": (jpeg(), 1, b"x")}, ("record has 3 fields (image, feature, label) but the first record, "
                                              "key 0, has 2", "at key 3"), id="vface-mixed-3-in-2"),
    pytest.param({b"3": [jpeg(), b"", 1, jpeg()]}, ("record has 4 fields", "at key 3"), id="vface-mixed-4-in-2"),
    pytest.param({b"__classnum__": len(IDENTITIES) - 1}, (f"label {len(IDENTITIES) - 1} out of range",),
                 id="vface-classnum-short"),
    pytest.param({b"__keys__": [str(k).encode() for k in range(11)] + [b"99"]},
                 ("record listed in __keys__ is missing", "at key 99"), id="vface-key-missing"),
]


@pytest.mark.parametrize("records,fragments", VFACE)
def test_vface_refused_by_info(base, tmp_path, records, fragments):
    path = copy(base, "vface10k.lmdb", tmp_path)
    assert sum(IDENTITIES.values()) == 12  # the keys listed above
    put(path, records)
    line = refused(data("info", path), path)
    for fragment in fragments:
        assert fragment in line, line


def test_truncated_vface_file_refused_before_mapping(base, tmp_path):
    path = copy(base, "vface10k.lmdb", tmp_path)
    path.write_bytes(path.read_bytes()[: 3 * 4096])
    refused(data("info", path), path, "truncated LMDB file")


def test_refused_convert_leaves_nothing(base, tmp_path):
    path = copy(base, "WebFace4M_with_landmarks.lmdb", tmp_path)
    put(path, {b"5": pose_record(base[1], 5, landmark=3)})
    out = tmp_path / "out"
    out.mkdir()
    before = files_under(out)
    refused(data("convert", path, out / "copy.lmdb", "--to", "lmdb"), path, "at key 5")
    assert files_under(out) == before


def test_train_fr_refuses_a_bad_vface_label_without_a_run_folder(base, tmp_path):
    path = copy(base, "vface10k.lmdb", tmp_path)
    put(path, {b"6": (jpeg(), 2.5)})
    out = tmp_path / "run"
    result = invoke(create_cli(), ["train-fr", "--recipe", "tiny-arcface", "--data", path, "--out", out,
                                   "--device", "cpu", "--set", "optim.epochs=1", "--set", "optim.batch_per_gpu=4"])
    refused(result, path, "label is a number, not an integer", "at key 6")
    assert not out.exists()
