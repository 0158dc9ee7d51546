"""The Vec2Face+ release's LMDB datasets, written here exactly as the release's converters write them, read
back through ``data info|convert|check``, ``train-fr --data`` and the reader API the pose-model trainer uses.

- VFace10K/20K/100K (``VFaces/vface*.lmdb``): SOTA-Face-Recognition-Train-and-Test's ``imagelist2lmdb``:
  one record ``msgpack.dumps((image file bytes, int(label)))`` per image under ``b"0".."N-1"``, labels
  numbered by identity folder in list order, ``__keys__``/``__len__``/``__classnum__`` (max label + 1),
  commits every ``write_frequency`` records. The same reader reads the legacy msgpack encoding (bytes as
  the str type, msgpack < 1.0), which that repository's unpinned requirement allows.
- ``WebFace4M_with_landmarks.lmdb``: Vec2Face+'s ``scripts/prepare_training_set.py`` with a landmark list:
  ``msgpack.dumps((image, feature .npy bytes, int(label), landmark image bytes))``.

Every expected value comes from what the test wrote, not from facebench.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import lmdb
import msgpack
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageDraw

from facebench.cli import create_cli
from facebench.data import encode_image, open_dataset
from facebench.errors import DataError

SIZE = 32
#: identity folder name -> images: uneven counts, folders not in label order, as a generated set may be.
IDENTITIES = {"000007": 3, "000002": 4, "000011": 2, "000005": 3}


def face(identity: int, k: int) -> np.ndarray:
    rng = np.random.default_rng(100 * identity + k)
    base = np.zeros((SIZE, SIZE, 3), np.uint8)
    base[..., identity % 3] = 40 + 50 * (identity % 4)
    return np.clip(base + rng.integers(0, 60, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)


def landmark_png(points: np.ndarray, size: int = SIZE) -> bytes:
    """Five landmarks drawn as white dots on black, as the release's landmark images show them."""
    img = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(img)
    for x, y in points:
        draw.ellipse([x - 1, y - 1, x + 1, y + 1], fill=(255, 255, 255))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def release_lmdb(path: Path, records: list, classnum: int, *, legacy: bool = False, write_frequency: int = 5) -> None:
    """The loop both release converters share: one record per index, commit every ``write_frequency``,
    then the meta keys in their own transaction."""
    dumps = (lambda v: msgpack.packb(v, use_bin_type=False)) if legacy else msgpack.dumps
    db = lmdb.open(str(path), subdir=False, map_size=1 << 24, readonly=False, meminit=False, map_async=True)
    txn = db.begin(write=True)
    for idx, record in enumerate(records):
        txn.put(f"{idx}".encode("ascii"), dumps(record))
        if idx % write_frequency == 0:
            txn.commit()
            txn = db.begin(write=True)
    txn.commit()
    keys = [f"{k}".encode("ascii") for k in range(len(records))]
    with db.begin(write=True) as txn:
        txn.put(b"__keys__", dumps(keys))
        txn.put(b"__len__", dumps(len(keys)))
        txn.put(b"__classnum__", dumps(int(classnum)))
    db.sync()
    db.close()


def write_vface(path: Path, *, legacy: bool = False) -> list[tuple[bytes, int]]:
    """A VFace set as ``imagelist2lmdb`` writes it from an image list ``<folder>/<identity>/<n>.jpg``:
    labels count identities in list order; returns the (JPEG bytes, label) records."""
    images, labels, order = [], [], {}
    for name, count in IDENTITIES.items():
        label = order.setdefault(name, len(order))
        for k in range(count):
            images.append(encode_image(face(int(name), k), "jpg"))
            labels.append(label)
    records = [(data, int(label)) for data, label in zip(images, labels)]
    release_lmdb(path, records, max(labels) + 1, legacy=legacy)
    return records


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def write_landmarks_set(path: Path, n: int = 10, classes: int = 4) -> dict:
    """``WebFace4M_with_landmarks.lmdb`` as ``prepare_training_set.py`` writes it (float32 512-d features
    saved with ``np.save``, PNG landmark images at the face's size)."""
    rng = np.random.default_rng(5)
    faces = [encode_image(face(i % classes, i), "jpg") for i in range(n)]
    feats = rng.normal(size=(n, 512)).astype(np.float32)
    labels = [i % classes for i in range(n)]
    points = rng.uniform(4, SIZE - 4, size=(n, 5, 2))
    marks = [landmark_png(p) for p in points]
    records = [(faces[i], npy(feats[i]), int(labels[i]), marks[i]) for i in range(n)]
    release_lmdb(path, records, classes)
    return {"faces": faces, "features": feats, "labels": labels, "landmarks": marks}


def run(*args):
    return CliRunner().invoke(create_cli(), [str(a) for a in args])


def raw_records(path: Path) -> tuple[list, dict]:
    """Every record and meta key of an LMDB file, read with lmdb + msgpack alone."""
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        meta = {k.decode(): msgpack.unpackb(txn.get(k), raw=True) for k in (b"__keys__", b"__len__", b"__classnum__")}
        records = [msgpack.unpackb(txn.get(k), raw=True) for k in meta["__keys__"]]
    env.close()
    return records, meta


# ------------------------------------------------------------------------------------------------ VFace


@pytest.mark.parametrize("legacy", [False, True], ids=["msgpack-bin", "msgpack-legacy-str"])
def test_vface_info_and_reader_give_what_was_written(tmp_path, legacy):
    path = tmp_path / "vface10k.lmdb"
    records = write_vface(path, legacy=legacy)
    result = run("data", "info", path, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    counts = list(IDENTITIES.values())
    assert info["format"] == "lmdb" and info["layout"] == "image, label"
    assert info["identities"] == len(IDENTITIES) and info["images"] == sum(counts)
    assert info["images_per_identity"] == {"min": min(counts), "median": float(np.median(counts)), "max": max(counts)}
    assert info["empty_identities"] == 0
    assert info["image_sizes"] == [{"width": SIZE, "height": SIZE, "count": sum(counts)}]
    reader = open_dataset(path)
    assert [(reader.image_bytes(i), reader.label(i)) for i in range(len(reader))] == records
    assert not reader.has_features() and not reader.has_landmarks()
    with pytest.raises(DataError, match="record has no landmark image"):
        reader.landmark_image(0)


def test_vface_check_and_convert_round_trip(tmp_path):
    path = tmp_path / "vface20k.lmdb"
    records = write_vface(path)
    result = run("data", "check", path)
    assert result.exit_code == 0, result.output
    assert f"ok: {path} (lmdb), {len(records)} images read without a problem" in result.output

    folder = tmp_path / "vface20k"
    result = run("data", "convert", path, folder, "--to", "folder")
    assert result.exit_code == 0, result.output
    back = open_dataset(folder)
    # the folder format orders by identity: compare as multisets of (bytes, label)
    assert sorted((back.image_bytes(i), back.label(i)) for i in range(len(back))) == sorted(records)

    copy = tmp_path / "copy.lmdb"
    result = run("data", "convert", path, copy, "--to", "lmdb")
    assert result.exit_code == 0, result.output
    stored, meta = raw_records(copy)
    assert [(r[0], r[1]) for r in stored] == records and all(len(r) == 2 for r in stored)
    assert meta["__len__"] == len(records) and meta["__classnum__"] == len(IDENTITIES)


def test_train_fr_trains_on_a_vface_set(tmp_path):
    path = tmp_path / "vface10k.lmdb"
    records = write_vface(path)
    out = tmp_path / "run"
    result = run("train-fr", "--recipe", "tiny-arcface", "--data", path, "--out", out, "--device", "cpu",
                 "--set", "optim.batch_per_gpu=6", "--set", "optim.epochs=1", "--set", "data.workers=0")
    assert result.exit_code == 0, result.output
    card = json.loads((out / "model.json").read_text())
    assert card["num_classes"] == len(IDENTITIES) and card["num_images"] == len(records)
    assert card["steps"] == len(records) // 6


def test_a_malformed_vface_record_is_one_error_line(tmp_path):
    path = tmp_path / "vface10k.lmdb"
    write_vface(path)
    env = lmdb.open(str(path), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        txn.put(b"4", msgpack.dumps((b"\xff\xd8\xff", 1))[:-3])  # a record cut short
    env.close()
    result = run("data", "info", path)
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {path}: record is neither (image, label), [image, feature, label] nor [image, "
                      "feature, label, landmark image] at key 4"], result.output
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------------- pose-model layout


def test_landmarks_set_reader_gives_features_labels_and_landmark_images(tmp_path):
    path = tmp_path / "WebFace4M_with_landmarks.lmdb"
    made = write_landmarks_set(path)
    reader = open_dataset(path)
    assert reader.layout == "image, feature, label, landmark image"
    assert reader.has_features() and reader.has_landmarks()
    assert reader.labels.tolist() == made["labels"] and reader.num_classes == 4
    for i in range(len(reader)):
        assert reader.image_bytes(i) == made["faces"][i]
        np.testing.assert_array_equal(reader.feature(i), made["features"][i])
        assert reader.landmark_bytes(i) == made["landmarks"][i]
        expected = np.asarray(Image.open(io.BytesIO(made["landmarks"][i])).convert("RGB"))
        np.testing.assert_array_equal(reader.landmark_image(i), expected)
    # DataLoader workers get a pickled reader: it reopens the file and reads the same landmark images
    again = pickle.loads(pickle.dumps(reader))
    np.testing.assert_array_equal(again.landmark_image(7), reader.landmark_image(7))
    # a mask selects records (and their landmark images) as for HSFace subsets
    np.save(tmp_path / "mask.npy", np.array([3, 8]))
    sub = open_dataset(path, mask=tmp_path / "mask.npy")
    assert sub.landmark_bytes(1) == made["landmarks"][8]
    assert sub.labels.tolist() == [1, 0]  # labels 3 and 0, renumbered densely in label order


def test_landmarks_set_info_check_and_convert(tmp_path):
    path = tmp_path / "WebFace4M_with_landmarks.lmdb"
    made = write_landmarks_set(path)
    info = json.loads(run("data", "info", path, "--json").output)
    assert info["layout"] == "image, feature, label, landmark image"
    assert info["identities"] == 4 and info["images"] == 10
    result = run("data", "check", path)
    assert result.exit_code == 0 and "10 images read without a problem" in result.output, result.output

    copy = tmp_path / "copy.lmdb"
    assert run("data", "convert", path, copy, "--to", "lmdb").exit_code == 0
    stored, meta = raw_records(copy)
    assert [r[0] for r in stored] == made["faces"] and [r[2] for r in stored] == made["labels"]
    assert [r[3] for r in stored] == made["landmarks"]
    np.testing.assert_array_equal(np.stack([np.load(io.BytesIO(r[1])) for r in stored]), made["features"])
    assert meta["__classnum__"] == 4

    folder = tmp_path / "faces"
    assert run("data", "convert", path, folder, "--to", "folder").exit_code == 0
    back = open_dataset(folder)
    assert sorted((back.image_bytes(i), back.label(i)) for i in range(len(back))) == \
        sorted(zip(made["faces"], made["labels"]))


def test_a_broken_landmark_image_is_listed_by_check(tmp_path):
    path = tmp_path / "WebFace4M_with_landmarks.lmdb"
    made = write_landmarks_set(path, n=6)
    env = lmdb.open(str(path), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        txn.put(b"2", msgpack.dumps((made["faces"][2], npy(made["features"][2]), 2, made["landmarks"][2][:40])))
    env.close()
    result = run("data", "check", path)
    assert result.exit_code == 2
    assert f"{path}: undecodable image" in result.stdout and "at key 2 (landmark image)" in result.stdout
    assert [line for line in result.output.splitlines() if line.startswith("error:")] == \
        [f"error: {path}: 1 problem(s) found"]


def test_writer_writes_the_release_landmark_layout(tmp_path):
    from facebench.data import open_writer

    marks = [landmark_png(np.full((5, 2), 8.0 + i)) for i in range(3)]
    with open_writer(tmp_path / "lm.lmdb", "lmdb", features=True, landmarks=True) as w:
        for i, mark in enumerate(marks):
            w.add(encode_image(face(i, 0), "png"), i, feature=np.full(4, i, np.float32), landmark=mark)
    stored, meta = raw_records(tmp_path / "lm.lmdb")
    assert [len(r) for r in stored] == [4, 4, 4] and [r[3] for r in stored] == marks
    assert [r[2] for r in stored] == [0, 1, 2] and meta["__classnum__"] == 3
    with pytest.raises(ValueError, match="pass features=True"):
        open_writer(tmp_path / "x.lmdb", "lmdb", landmarks=True)
