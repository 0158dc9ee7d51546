"""Format API, image folder and .bin packs, FR transforms and the torch datasets."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from facebench.data import (
    decode_image,
    encode_image,
    open_dataset,
    open_pairs,
    open_writer,
)
from facebench.errors import DataError, FacebenchError, MissingFileError


def _jpeg(seed: int, size: int = 16) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_image(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


def make_folder(root, sizes=(3, 2, 4)):
    """A folder dataset written with PIL directly (independent of facebench's writer)."""
    expected = []
    for label, count in enumerate(sizes):
        (root / f"person_{label}").mkdir(parents=True)
        for j in range(count):
            data = _jpeg(label * 100 + j)
            (root / f"person_{label}" / f"img{j}.jpg").write_bytes(data)
            expected.append((data, label))
    return expected


def test_folder_reader_labels_from_sorted_names(tmp_path):
    expected = make_folder(tmp_path / "ds")
    reader = open_dataset(tmp_path / "ds")
    assert reader.format_name == "folder"
    assert len(reader) == 9 and reader.num_classes == 3
    assert reader.labels.dtype == np.int64
    assert [(reader.image_bytes(i), reader.label(i)) for i in range(len(reader))] == expected
    img = reader.image(0)
    assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(img, np.asarray(Image.open(io.BytesIO(expected[0][0])).convert("RGB")))


def test_folder_round_trip_keeps_bytes_and_labels(tmp_path):
    expected = make_folder(tmp_path / "src", sizes=(2, 5, 1))
    with open_writer(tmp_path / "dst", "folder") as w:
        for data, label in open_dataset(tmp_path / "src"):
            w.add(data, label)
    back = open_dataset(tmp_path / "dst")
    assert list(back) == expected


def test_writer_output_appears_only_on_success(tmp_path):
    with pytest.raises(RuntimeError), open_writer(tmp_path / "out", "folder") as w:
        w.add(_jpeg(1), 0)
        raise RuntimeError("interrupted")
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir()]
    with open_writer(tmp_path / "out", "folder") as w:
        w.add(_jpeg(1), 0)
    with pytest.raises(FacebenchError, match="already exists"), open_writer(tmp_path / "out", "folder"):
        pass


def test_folder_errors_name_the_place(tmp_path):
    make_folder(tmp_path / "ds", sizes=(1, 1))
    (tmp_path / "ds" / "person_1" / "img0.jpg").write_bytes(b"\xff\xd8\xff garbage")
    reader = open_dataset(tmp_path / "ds")
    with pytest.raises(DataError, match=r"undecodable image .* at person_1/img0.jpg"):
        reader.image(1)
    (tmp_path / "ds" / "person_2").mkdir()
    (tmp_path / "ds" / "person_2" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="empty identity .* at folder person_2"):
        open_dataset(tmp_path / "ds", format="folder")
    with pytest.raises(MissingFileError, match="nowhere: dataset not found"):
        open_dataset(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not a recognised training-set format"):
        open_dataset(tmp_path / "plain")


def _write_pack_independently(path, images, flags, protocol):
    with open(path, "wb") as fh:
        pickle.dump((images, flags), fh, protocol=protocol)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_bin_reads_packs_written_by_plain_pickle(tmp_path, protocol):
    images = [_jpeg(i) for i in range(8)]
    flags = [True, False, True, True]
    _write_pack_independently(tmp_path / "lfw.bin", images, flags, protocol)
    pairs = open_pairs(tmp_path / "lfw.bin")
    assert pairs.format_name == "bin" and len(pairs) == 4
    assert pairs.issame.tolist() == flags
    assert pairs.pair_bytes(2) == (images[4], images[5])
    a, b = pairs.pair_images(1)
    np.testing.assert_array_equal(b, decode_image(images[3]))
    assert pairs.images().shape == (8, 16, 16, 3)


def test_bin_accepts_numpy_bool_flags(tmp_path):
    images = [_jpeg(i) for i in range(4)]
    _write_pack_independently(tmp_path / "x.bin", images, np.array([True, False]), 2)
    assert open_pairs(tmp_path / "x.bin").issame.tolist() == [True, False]


def test_bin_with_zero_pairs_reads_as_an_empty_pack(tmp_path):
    _write_pack_independently(tmp_path / "empty.bin", [], [], 4)
    pairs = open_pairs(tmp_path / "empty.bin")
    assert len(pairs) == 0 and pairs.issame.dtype == bool


def test_bin_writer_is_read_by_plain_pickle(tmp_path):
    images = [_jpeg(i) for i in range(6)]
    with open_writer(tmp_path / "p.bin", "bin") as w:
        for k in range(3):
            w.add(images[2 * k], images[2 * k + 1], k != 1)
    with open(tmp_path / "p.bin", "rb") as fh:
        got_images, got_flags = pickle.load(fh, encoding="bytes")
    assert got_images == images and got_flags == [True, False, True]


class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_bin_refuses_a_pickle_that_runs_a_command(tmp_path):
    marker = tmp_path / "pwned"
    _write_pack_independently(tmp_path / "evil.bin", [_jpeg(0), _RunsCommand(marker)], [True], 4)
    with pytest.raises(DataError, match=r"evil.bin: refused to load pickle global '(posix|os)\.system'.* at offset \d+"):
        open_pairs(tmp_path / "evil.bin")
    assert not marker.exists()


def test_bin_structure_errors(tmp_path):
    _write_pack_independently(tmp_path / "u.bin", [_jpeg(0), _jpeg(1), _jpeg(2)], [True, False], 4)
    with pytest.raises(DataError, match="unequal pair lists: 3 images for 2"):
        open_pairs(tmp_path / "u.bin")
    good = pickle.dumps(([_jpeg(0), _jpeg(1)], [True]), protocol=4)
    (tmp_path / "t.bin").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"t.bin: truncated pickle at offset \d+"):
        open_pairs(tmp_path / "t.bin")
