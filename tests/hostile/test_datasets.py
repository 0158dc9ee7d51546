"""Hostile dataset files handed to ``facebench data info|check|convert|grid`` (and one pack to ``evaluate``).

Every dataset reader a user can hand a file to: ``.bin``/``.xz`` verification packs, RecordIO ``.rec`` +
``.idx`` (+ ``property``), LMDB (both Vec2Face layouts, ``.npy`` index masks), image folders, and the
``dataset.json`` card that makes a folder stand for the set inside it. Each case builds a small valid
dataset from toy data, breaks one thing the way a careless or hostile file would, and asserts what a user
sees: exit 2 and one ``error:`` line naming the file (and record/key/line), or the correct result where a
hostile extra is safely ignored; no pickle payload ever runs; a refused ``convert`` leaves neither its
output nor a temporary behind.
"""

from __future__ import annotations

import io
import json
import lzma
import os
import pickle
import shutil
import struct
from pathlib import Path

import conftest as fx
import lmdb
import msgpack
import numpy as np
import pytest

from facebench.cli import create_cli
from facebench.data import encode_image, open_dataset, open_writer

from .conftest import Payload, bomb_png, files_under, invoke, refused, succeeded

IDENTITIES, PER_IDENTITY, SIZE = 3, 2, 16
IMAGES = IDENTITIES * PER_IDENTITY


# ----------------------------------------------------------------------------------------- toy inputs

def png(seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_image(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), "png")


class Calls:
    """A pickle that calls ``func(*args)`` when loaded (numpy's own globals, used the way no array is)."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Valid datasets of every format, built once: each case copies one and breaks it."""
    root = tmp_path_factory.mktemp("datasets")
    train = fx.write_train_folder(root / "train", identities=IDENTITIES, per_identity=PER_IDENTITY, size=SIZE)
    for name, fmt in (("rec", "rec"), ("set.lmdb", "lmdb")):
        with open_writer(root / name, fmt) as writer:
            for data, label in open_dataset(train):
                writer.add(data, label)
    fx.write_pack(root / "pack.bin", pairs=4, size=SIZE)
    return root


def copy(base: Path, name: str, tmp: Path) -> Path:
    src, dst = base / name, tmp / name
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)
    return dst


def data(*args):
    return invoke(create_cli(), ["data", *args])


# ---------------------------------------------------------------------------- .bin / .xz verification packs

def _payload_in_image(marker):
    return [png(0), Payload(marker)], [True]


def _frombytes_huge(marker):
    return b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62) + b"abc."  # BINBYTES8 declaring 4 EiB


def _reconstruct():
    from numpy._core.multiarray import _reconstruct
    return _reconstruct


PACKS = [
    # (id, what the file holds: a Python object to pickle, or raw bytes; fragment of the error line)
    pytest.param(lambda m: pickle.dumps(([png(0), png(1)], [True]), protocol=4)[:-30], "truncated pickle",
                 id="truncated"),
    pytest.param(lambda m: b"", "truncated pickle", id="empty-file"),
    pytest.param(lambda m: b"this is not a pickle", "corrupt pickle", id="not-a-pickle"),
    pytest.param(_payload_in_image, "refused to load pickle global", id="payload-in-images"),
    pytest.param(lambda m: Payload(m), "refused to load pickle global", id="payload-top-level"),
    pytest.param(lambda m: ([png(0), png(1)], [Payload(m)]), "refused to load pickle global", id="payload-in-flags"),
    pytest.param(lambda m: ([png(0), Calls(os.system, f"touch {m}")], [True]), "refused to load pickle global",
                 id="os-system"),
    pytest.param(lambda m: ([png(0), Calls(np.ndarray, (1 << 40,))], [True]), "numpy.ndarray is admitted only",
                 id="ndarray-called-with-1TB"),
    pytest.param(lambda m: ([png(0), Calls(_reconstruct(), np.ndarray, (1 << 40,), b"b")], [True]),
                 "numpy._reconstruct is admitted only", id="reconstruct-1TB"),
    pytest.param(_frombytes_huge, "corrupt pickle (it declares an object larger than memory)", id="bytes-length-4EiB"),
    pytest.param(lambda m: {"images": [png(0), png(1)], "issame": [True]}, "expected a pickled (images, issame)",
                 id="top-level-dict"),
    pytest.param(lambda m: ([png(0), png(1)], [True], "extra"), "expected a pickled (images, issame)",
                 id="top-level-triple"),
    pytest.param(lambda m: ("images", [True]), "images must be a list, found a string", id="images-a-string"),
    pytest.param(lambda m: ([1, 2], [True]), "image entry is an integer", id="image-an-integer"),
    pytest.param(lambda m: ([png(0), png(1)], [2]), "issame holds 2", id="flag-2"),
    pytest.param(lambda m: ([png(0), png(1)], [-1]), "issame holds -1", id="flag-negative"),
    pytest.param(lambda m: ([png(0), png(1)], [0.5]), "issame must be a flat list", id="flag-float"),
    pytest.param(lambda m: ([png(0), png(1)], [float("nan")]), "issame must be a flat list", id="flag-nan"),
    pytest.param(lambda m: ([png(0), png(1)], [None]), "issame must be a flat list", id="flag-none"),
    pytest.param(lambda m: ([png(0), png(1)] * 2, [[1, 0]]), "issame must be a flat list", id="flags-nested"),
    pytest.param(lambda m: ([png(0), png(1)], "1"), "issame must be a list", id="flags-a-string"),
    pytest.param(lambda m: ([png(0), png(1), png(2)], [True]), "unequal pair lists: 3 images for 1",
                 id="odd-image-count"),
    pytest.param(lambda m: ([png(0), b"hello"], [True]), "undecodable image", id="image-not-an-image"),
    pytest.param(lambda m: ([png(0), bomb_png()], [True]), "decompression bomb", id="image-decompression-bomb"),
]
#: Problems of one image, which ``data check`` lists (on stdout) before its one error line.
IMAGE_LEVEL = ("undecodable image", "decompression bomb")


@pytest.mark.parametrize("content,fragment", PACKS)
@pytest.mark.parametrize("command", ["info", "check"])
def test_pack_refused(tmp_path, marker, content, fragment, command):
    pack = tmp_path / "lfw.bin"
    value = content(marker)
    pack.write_bytes(value if isinstance(value, bytes) else pickle.dumps(value, protocol=4))
    result = data(command, pack)
    line = refused(result, pack)
    if command == "info" or fragment not in IMAGE_LEVEL:
        assert fragment in line
    else:
        assert fragment in result.stdout and "at image 1" in result.stdout


def test_pack_image_errors_name_the_image(tmp_path):
    pack = tmp_path / "lfw.bin"
    pack.write_bytes(pickle.dumps(([png(0), png(1), png(2), bomb_png()], [True, False])))
    assert "at image 3" in refused(data("info", pack), pack, "decompression bomb")


def test_truncated_image_in_pack_is_listed_by_check(tmp_path):
    pack = tmp_path / "lfw.bin"
    pack.write_bytes(pickle.dumps(([png(0), png(1)[:60]], [True])))
    result = data("check", pack)
    refused(result, pack, "1 problem(s) found")
    assert f"{pack}: undecodable image" in result.stdout and "at image 1" in result.stdout


XZ = [
    pytest.param(lambda m: lzma.compress(pickle.dumps(_payload_in_image(m))), "refused to load pickle global",
                 id="xz-payload"),
    pytest.param(lambda m: b"\xfd7zXZ\x00\x00garbage after the magic", "corrupt or truncated xz stream",
                 id="xz-corrupt"),
    pytest.param(lambda m: lzma.compress(pickle.dumps(([png(0), png(1)], [True])))[:-40],
                 "corrupt or truncated xz stream", id="xz-truncated"),
    pytest.param(lambda m: lzma.compress(b"\0" * (3 << 20)), "decompression bomb", id="xz-bomb"),
]


@pytest.mark.parametrize("content,fragment", XZ)
def test_xz_pack_refused(tmp_path, marker, monkeypatch, content, fragment):
    from facebench_plugins.formats import binpack

    monkeypatch.setattr(binpack, "XZ_BASE", 1 << 20)  # the bomb case: 3 MiB from a few hundred bytes
    pack = tmp_path / "hadrian.xz"
    pack.write_bytes(content(marker))
    assert fragment in refused(data("info", pack), pack)


def test_pack_with_trailing_bytes_reads_its_pickle(tmp_path):
    """Bytes after the pickle's STOP are ignored, as ``pickle.load`` (and insightface) ignore them."""
    pack = tmp_path / "lfw.bin"
    pack.write_bytes(pickle.dumps(([png(0), png(1), png(2), png(3)], [True, False])) + b"trailing junk")
    info = json.loads(succeeded(data("info", pack, "--json")))
    assert (info["pairs"], info["same"], info["different"]) == (2, 1, 1)


def test_pack_listing_one_array_many_times_is_copied_once(tmp_path):
    """A pickle can list one object a million times in a few bytes per entry (memo references); the
    reader keeps one copy of it, not a million."""
    image = np.frombuffer(png(0), dtype=np.uint8)
    pack = tmp_path / "lfw.bin"
    pack.write_bytes(pickle.dumps(([image] * 20000, [True] * 10000), protocol=4))
    from facebench.data import open_pairs

    reader = open_pairs(pack)
    assert len(reader) == 10000 and reader.pair_bytes(0)[0] is reader.pair_bytes(9999)[1]


def test_evaluate_refuses_a_pack_holding_a_payload(tmp_path, monkeypatch, marker):
    root = tmp_path / "packs"
    root.mkdir()
    (root / "toy_lfw.bin").write_bytes(pickle.dumps(_payload_in_image(marker)))
    weights = fx.write_weights(tmp_path / "pixels.pt")
    out = tmp_path / "run"
    result = invoke(fx.cli_with_test_extractors(monkeypatch),
                    ["evaluate", "--suite", "toy_lfw", "--model", weights, "--backbone", "pixels", "--data-root",
                     root, "--out", out, "--device", "cpu"])
    assert "refused to load pickle global" in refused(result, root / "toy_lfw.bin")
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ RecordIO

def idx_of(rec: Path) -> dict[int, int]:
    return {int(k): int(v) for k, v in (line.split("\t") for line in (rec / "train.idx").read_text().split("\n") if line)}


def patch(path: Path, offset: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset : offset + len(data)] = data
    path.write_bytes(bytes(raw))


def edit_idx(rec: Path, edit) -> None:
    lines = (rec / "train.idx").read_text().splitlines()
    (rec / "train.idx").write_bytes(edit(lines))


def _set_line(n: int, text: str):
    """Replace (1-based) line ``n`` of the index."""
    return lambda lines: "\n".join(lines[: n - 1] + [text] + lines[n:]).encode() + b"\n"


def _header_floats(rec: Path, a: float, b: float) -> None:
    patch(rec / "train.rec", idx_of(rec)[0] + 8 + 24, struct.pack("<2f", a, b))


def _identity_range(rec: Path, key: int, lo: float, hi: float) -> None:
    patch(rec / "train.rec", idx_of(rec)[key] + 8 + 24, struct.pack("<2f", lo, hi))


def _continuation(rec: Path, flag: int) -> None:
    """Set the 3-bit continuation flag of image key 1's frame (the top bits of its length word)."""
    at = idx_of(rec)[1] + 4
    length = struct.unpack_from("<I", (rec / "train.rec").read_bytes(), at)[0]
    patch(rec / "train.rec", at, struct.pack("<I", (flag << 29) | (length & ((1 << 29) - 1))))


REC = [
    # (id, how to break a valid rec folder, the file named, fragments of the error line)
    pytest.param(lambda r: (r / "train.rec").write_bytes((r / "train.rec").read_bytes()[:300]),
                 "train.idx", ("lies outside train.rec", "at line"), id="rec-truncated"),
    pytest.param(lambda r: patch(r / "train.rec", idx_of(r)[1] + 4, struct.pack("<I", (1 << 29) - 1)),
                 "train.rec", ("truncated record (536870911 bytes declared", "offset"), id="record-length-beyond-file"),
    pytest.param(lambda r: patch(r / "train.rec", idx_of(r)[1], b"\0\0\0\0"), "train.rec",
                 ("wrong magic 0x00000000",), id="record-wrong-magic"),
    pytest.param(lambda r: _continuation(r, 2), "train.rec", ("broken record continuation (flag 2)", "key 1"),
                 id="record-continuation-middle-first"),
    pytest.param(lambda r: _continuation(r, 5), "train.rec", ("broken record continuation (flag 5)", "key 1"),
                 id="record-continuation-flag-5"),
    pytest.param(lambda r: patch(r / "train.rec", idx_of(r)[1] + 8, struct.pack("<I", 1 << 31)), "train.rec",
                 ("declares 2147483648 float labels", "key 1"), id="record-label-count-huge"),
    pytest.param(lambda r: _header_floats(r, float("nan"), 10), "train.rec", ("header image key nan", "key 0"),
                 id="header-nan"),
    pytest.param(lambda r: _header_floats(r, 1e9, 1e9 + 3), "train.rec", ("header record declares images 1..",
                                                                        "key 0"), id="header-range-1e9"),
    pytest.param(lambda r: _header_floats(r, 7.5, 10), "train.rec", ("header image key 7.5 is not a whole",),
                 id="header-fractional"),
    pytest.param(lambda r: patch(r / "train.rec", idx_of(r)[0] + 8, struct.pack("<I", 1)), "train.rec",
                 ("label 7 out of range [0, 3)", "key 0"), id="header-with-one-label-is-an-image"),
    pytest.param(lambda r: _identity_range(r, 7, float("nan"), 3), "train.rec", ("identity image key nan", "key 7"),
                 id="identity-range-nan"),
    pytest.param(lambda r: _identity_range(r, 8, 1, 5), "train.rec", ("overlaps identity 0", "identity 1"),
                 id="identity-ranges-overlap"),
    pytest.param(lambda r: _identity_range(r, 9, 5, 1e6), "train.rec", ("outside the images",),
                 id="identity-range-beyond"),
    pytest.param(lambda r: edit_idx(r, _set_line(3, "3\t99999999")), "train.idx",
                 ("offset 99999999 lies outside train.rec", "line 3"), id="idx-offset-beyond-rec"),
    pytest.param(lambda r: edit_idx(r, _set_line(3, "3\t-8")), "train.idx", ("offset -8 lies outside", "line 3"),
                 id="idx-offset-negative"),
    pytest.param(lambda r: edit_idx(r, _set_line(3, "3\tabc")), "train.idx", ("malformed index line", "line 3"),
                 id="idx-not-an-integer"),
    pytest.param(lambda r: edit_idx(r, _set_line(3, "3\t1.5")), "train.idx", ("malformed index line", "line 3"),
                 id="idx-a-float"),
    pytest.param(lambda r: edit_idx(r, _set_line(3, "3\t99999999999999999999")), "train.idx",
                 ("beyond the 64-bit integer range", "line 3"), id="idx-offset-beyond-int64"),
    pytest.param(lambda r: edit_idx(r, _set_line(3, "99999999999999999999\t0")), "train.idx",
                 ("beyond the 64-bit integer range", "line 3"), id="idx-key-beyond-int64"),
    pytest.param(lambda r: edit_idx(r, lambda ls: "\n".join(ls[:3] + [ls[2]] + ls[3:]).encode()), "train.idx",
                 ("listed twice", "line 4"), id="idx-duplicate-line"),
    pytest.param(lambda r: edit_idx(r, lambda ls: "\n".join(ls[:3] + ["99\t" + ls[2].split("\t")[1]] + ls[4:]).encode()),
                 "train.idx", ("listed twice",), id="idx-two-keys-one-record"),
    pytest.param(lambda r: edit_idx(r, _set_line(3, "3\t64\t1")), "train.idx", ("malformed index line", "line 3"),
                 id="idx-three-fields"),
    pytest.param(lambda r: edit_idx(r, lambda ls: b"\xff\xfe\t0\n" + "\n".join(ls).encode()), "train.idx",
                 ("malformed index line '\\xff\\xfe\\t0'", "line 1"), id="idx-not-ascii"),
    pytest.param(lambda r: (r / "train.idx").write_bytes(b""), "train.idx", ("empty index",), id="idx-empty"),
    pytest.param(lambda r: (r / "train.idx").unlink(), "train.idx", ("not found",), id="idx-missing"),
    pytest.param(lambda r: (r / "property").write_bytes(b"\xff3,16,16"), "property", ("not UTF-8", "byte 0"),
                 id="property-not-utf8"),
    pytest.param(lambda r: (r / "property").write_text("three,16,16"), "property",
                 ("expected '<num_classes>,<height>,<width>'",), id="property-not-a-number"),
    pytest.param(lambda r: (r / "property").write_text("99999999999999999999,16,16"), "property",
                 ("declares 99999999999999999999 identities for 6 images",), id="property-huge"),
    pytest.param(lambda r: (r / "property").write_text("2,16,16"), "train.rec", ("label 2 out of range [0, 2)",),
                 id="property-fewer-identities"),
]


@pytest.mark.parametrize("breaks,named,fragments", REC)
def test_rec_refused(base, tmp_path, breaks, named, fragments):
    rec = copy(base, "rec", tmp_path)
    breaks(rec)
    line = refused(data("info", rec), rec / named)
    for fragment in fragments:
        assert fragment in line


def plain_rec(folder: Path, labels: list[float], images: list[bytes] | None = None,
              truncate_last: int | None = None) -> Path:
    """A RecordIO set without header record: each image record carries its label (insightface's
    older layout), written here independently of facebench's writer."""
    folder.mkdir()
    images = images or [png(k) for k in range(len(labels))]
    rec, lines = bytearray(), []
    for key, (label, image) in enumerate(zip(labels, images), 1):
        payload = struct.pack("<IfQQ", 0, label, key, 0) + image
        lines.append(f"{key}\t{len(rec)}")
        rec += struct.pack("<II", 0xCED7230A, len(payload)) + payload + b"\0" * (-len(payload) % 4)
    if truncate_last is not None:
        rec = rec[: int(lines[-1].split("\t")[1]) + truncate_last]
    (folder / "train.rec").write_bytes(bytes(rec))
    (folder / "train.idx").write_text("\n".join(lines) + "\n")
    return folder


LABELS = [
    pytest.param([0, 1, float("nan"), 1], "label nan is not a whole number", "key 3", id="label-nan"),
    pytest.param([0, 1, -1, 1], "label -1 is not a whole number in [0, 2147483648)", "key 3", id="label-negative"),
    pytest.param([0, 1, 1.5, 1], "label 1.5 is not a whole number", "key 3", id="label-fractional"),
    pytest.param([0, 1, 1e30, 1], "label 1e+30 is not a whole number", "key 3", id="label-1e30"),
    pytest.param([0, 1, float("inf"), 1], "label inf is not a whole number", "key 3", id="label-inf"),
]


@pytest.mark.parametrize("labels,fragment,where", LABELS)
def test_rec_labels_refused(tmp_path, labels, fragment, where):
    rec = plain_rec(tmp_path / "old", labels)
    line = refused(data("info", rec), rec / "train.rec")
    assert fragment in line and where in line


def test_rec_record_header_cut_short(tmp_path):
    rec = plain_rec(tmp_path / "old", [0, 1, 0, 1], truncate_last=20)
    assert "truncated record" in refused(data("info", rec), rec / "train.rec")


def test_rec_image_decompression_bomb_names_the_key(tmp_path):
    rec = plain_rec(tmp_path / "old", [0, 1, 0, 1], [png(0), png(1), bomb_png(), png(3)])
    line = refused(data("info", rec), rec / "train.rec", "decompression bomb")
    assert "at key 3" in line


def test_rec_record_that_is_not_an_image_is_listed_by_check(tmp_path):
    rec = plain_rec(tmp_path / "old", [0, 1, 0, 1], [png(0), png(1), b"not an image at all", png(3)])
    result = data("check", rec)
    refused(result, rec, "1 problem(s) found")
    assert f"{rec / 'train.rec'}: undecodable image" in result.stdout and "at key 3" in result.stdout


# ---------------------------------------------------------------------------------------------------- LMDB

def lmdb_put(path: Path, records: dict[bytes, object], raw: bool = False) -> None:
    env = lmdb.open(str(path), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        for key, value in records.items():
            txn.put(key, value if raw else msgpack.packb(value, use_bin_type=True))
    env.close()


def record(label, image=None):
    return [image if image is not None else png(9), label]


LMDB = [
    # (id, records written over a valid 6-record set, fragments of the error line)
    pytest.param({b"__keys__": 6}, ("__keys__ must be a list, found an integer",), id="keys-not-a-list"),
    pytest.param({b"__len__": "6"}, ("__len__ must be a non-negative integer, found bytes",), id="len-a-string"),
    pytest.param({b"__len__": -1}, ("__len__ must be a non-negative integer, found -1",), id="len-negative"),
    pytest.param({b"__len__": 1.5}, ("__len__ must be a non-negative integer, found a number",), id="len-a-float"),
    pytest.param({b"__len__": 7}, ("__keys__ lists 6 keys but __len__ is 7",), id="len-disagrees"),
    pytest.param({b"__keys__": list(range(6))}, ("__keys__ entry 0 must be a key of 1 to 511 bytes",),
                 id="keys-integers"),
    pytest.param({b"__keys__": [b"0", b"1", b"x" * 600, b"3", b"4", b"5"]}, ("600 bytes long",), id="key-too-long"),
    pytest.param({b"__keys__": [b"0", b"1", b"2", b"2", b"4", b"5"]}, ("lists key 2 twice",), id="keys-duplicate"),
    pytest.param({b"__keys__": [b"0", b"1", b"\xff\xfe\n", b"3", b"4", b"5"]},
                 ("record listed in __keys__ is missing", "key \\xff\\xfe\\n"), id="key-not-utf8"),
    pytest.param({b"2": record(1.5)}, ("label is a number, not an integer", "key 2"), id="label-float"),
    pytest.param({b"2": record(-1)}, ("label -1 out of range [0, 3)", "key 2"), id="label-negative"),
    pytest.param({b"2": record(True)}, ("label is true or false", "key 2"), id="label-bool"),
    pytest.param({b"2": record(None)}, ("label is null", "key 2"), id="label-null"),
    pytest.param({b"2": record((1 << 64) - 1)}, ("beyond the 64-bit integer range", "key 2"), id="label-uint64"),
    pytest.param({b"2": record(b"1")}, ("label is bytes, not an integer",), id="label-bytes"),
    pytest.param({b"__classnum__": "3"}, ("__classnum__ must be a non-negative integer",), id="classnum-a-string"),
    pytest.param({b"__classnum__": 2}, ("label 2 out of range [0, 2)", "key 4"), id="classnum-too-small"),
    pytest.param({b"3": {b"image": b"x", b"label": 1}}, ("record is neither", "key 3"), id="record-a-map"),
    pytest.param({b"3": 5}, ("record is neither", "key 3"), id="record-an-integer"),
    pytest.param({b"3": [png(1), b"", 1, png(2), 1]}, ("record is neither", "key 3"), id="record-five-fields"),
    pytest.param({b"0": [7, 0]}, ("record is neither", "key 0"), id="image-an-integer"),
    pytest.param({b"0": record(0, bomb_png())}, ("decompression bomb", "key 0"), id="image-decompression-bomb"),
]


@pytest.mark.parametrize("records,fragments", LMDB)
def test_lmdb_refused(base, tmp_path, records, fragments):
    path = copy(base, "set.lmdb", tmp_path)
    lmdb_put(path, records)
    line = refused(data("info", path), path)
    for fragment in fragments:
        assert fragment in line


def test_lmdb_record_not_msgpack(base, tmp_path):
    path = copy(base, "set.lmdb", tmp_path)
    lmdb_put(path, {b"3": b"\xc1\xc1"}, raw=True)
    assert "at key 3" in refused(data("info", path), path, "record is neither")


@pytest.mark.parametrize("blob", [b"\0" * 9000, b"LMDB? no" * 10], ids=["zeros", "text"])
def test_lmdb_file_that_is_not_lmdb(tmp_path, blob):
    path = tmp_path / "x.lmdb"
    path.write_bytes(blob)
    refused(data("info", path), path, "not an LMDB file")


def _corrupt_root_page(path: Path) -> None:
    """Overwrite the page flags of the main B-tree's root (named by the newest meta page) with 0, so that
    py-lmdb finds a page of the wrong type on the way to ``__keys__``."""
    data = bytearray(path.read_bytes())
    page = struct.unpack_from("<I", data, 40)[0]
    newest = max((0, page), key=lambda base: struct.unpack_from("<Q", data, base + 144)[0])
    root = struct.unpack_from("<Q", data, newest + 128)[0]
    struct.pack_into("<H", data, root * page + 10, 0)
    path.write_bytes(bytes(data))


def test_lmdb_corrupt_page_on_the_way_to_keys(base, tmp_path):
    path = copy(base, "set.lmdb", tmp_path)
    _corrupt_root_page(path)
    assert "at key __keys__" in refused(data("info", path), path, "corrupt LMDB page")


def feature_lmdb(path: Path, features: list) -> Path:
    """The generator-training layout: ``[image, feature as .npy bytes, label]``."""
    records = {}
    for i, feature in enumerate(features):
        records[str(i).encode()] = [png(i), feature, 0]
    lmdb_put(path, {**records, b"__keys__": list(records), b"__len__": len(records), b"__classnum__": 1})
    return path


def npy(array, allow_pickle=False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


FEATURES = [
    pytest.param(lambda m: npy(np.array([Payload(m)], dtype=object), allow_pickle=True),
                 "feature is a pickled object array; refused", id="feature-pickled"),
    pytest.param(lambda m: 5, "feature must be .npy bytes, found an integer", id="feature-an-integer"),
    pytest.param(lambda m: b"not npy", "undecodable .npy feature", id="feature-not-npy"),
    pytest.param(lambda m: npy(np.zeros(4, np.float32)).replace(b"}", b" ", 1), "undecodable .npy feature",
                 id="feature-header-unclosed"),
    pytest.param(lambda m: npy(np.zeros(4, np.float32))[:30], "undecodable .npy feature", id="feature-header-cut"),
    # a header declaring 2**31 floats over 16 bytes: refused before numpy allocates the 8 GiB it declares
    pytest.param(lambda m: npy(np.zeros(4, np.float32)).replace(b"(4,), }" + b" " * 9, b"(2147483648,), }", 1),
                 "undecodable .npy feature (its header declares 8589934592 bytes of data, the record holds 16)",
                 id="feature-shape-huge"),
]


@pytest.mark.parametrize("feature,fragment", FEATURES)
def test_lmdb_feature_refused_by_check(tmp_path, marker, feature, fragment):
    path = feature_lmdb(tmp_path / "gen.lmdb", [npy(np.zeros(4, np.float32)), feature(marker)])
    result = data("check", path)
    refused(result, path, "1 problem(s) found")
    assert f"{path}: {fragment}" in result.stdout and "at key 1" in result.stdout


MASKS = [
    pytest.param(lambda p, m: np.save(p, np.array([Payload(m)], dtype=object), allow_pickle=True),
                 "cannot read index mask", id="mask-pickled"),
    pytest.param(lambda p, m: np.save(p, np.array([0.0, 1.0])), "1-D integer or boolean array", id="mask-float"),
    pytest.param(lambda p, m: np.save(p, np.array([[0, 1]])), "1-D integer or boolean array", id="mask-2d"),
    pytest.param(lambda p, m: np.save(p, np.array([0, 99])), "index 99 outside the 6 records", id="mask-beyond"),
    pytest.param(lambda p, m: np.save(p, np.array([-1, 0])), "index -1 outside the 6 records", id="mask-negative"),
    pytest.param(lambda p, m: np.save(p, np.array([2, 3, 2])), "index 2 selected twice", id="mask-duplicate"),
    pytest.param(lambda p, m: np.save(p, np.array([2**64 - 1], dtype=np.uint64)), "outside the 6 records",
                 id="mask-uint64-huge"),
    pytest.param(lambda p, m: np.save(p, np.ones(3, bool)), "boolean mask has 3 entries for 6 records",
                 id="mask-bool-wrong-length"),
    pytest.param(lambda p, m: p.write_text("0,1,2\n"), "cannot read index mask", id="mask-text"),
    pytest.param(lambda p, m: p.write_bytes(b""), "cannot read index mask", id="mask-empty-file"),
    pytest.param(lambda p, m: np.save(p, np.arange(10))
                 or p.write_bytes(p.read_bytes()[:-20]), "cannot read index mask", id="mask-truncated"),
    pytest.param(lambda p, m: np.savez(open(p, "wb"), a=np.arange(2)), "got an .npz archive", id="mask-npz"),
    pytest.param(lambda p, m: np.save(p, np.arange(2)) or p.write_bytes(p.read_bytes().replace(
                 b"(2,), }" + b" " * 19, b"(18446744073709551616,), }", 1)),
                 "cannot read index mask: its header declares 147573952589676412928 bytes of data, the file holds 16",
                 id="mask-shape-beyond-int64"),
]


@pytest.mark.parametrize("write,fragment", MASKS)
def test_lmdb_mask_refused(base, tmp_path, marker, write, fragment):
    path = copy(base, "set.lmdb", tmp_path)
    mask = tmp_path / "mask.npy"
    write(mask, marker)
    assert fragment in refused(data("info", path, "--mask", mask), mask)


def test_missing_mask_is_named(base, tmp_path):
    path = copy(base, "set.lmdb", tmp_path)
    refused(data("info", path, "--mask", tmp_path / "nope.npy"), tmp_path / "nope.npy", "not found")


# ---------------------------------------------------------------------------------------------- folders

def first_image(folder: Path) -> Path:
    return sorted(folder.glob("*/*.png"))[0]


def _link_image_outside(folder: Path) -> str:
    outside = folder.parent / "private.png"
    outside.write_bytes(png(42))
    (folder / "0000000" / "zz.png").symlink_to(outside)
    return "0000000/zz.png"


def _link_identity_outside(folder: Path) -> str:
    private = folder.parent / "private"
    private.mkdir()
    (private / "a.png").write_bytes(png(42))
    (folder / "stranger").symlink_to(private)
    return "stranger"


def _broken_link(folder: Path) -> str:
    (folder / "0000001" / "gone.png").symlink_to(folder / "0000001" / "nowhere.png")
    return "0000001/gone.png"


def _empty_identity(folder: Path) -> str:
    (folder / "empty").mkdir()
    return "folder empty"


def _no_images(folder: Path) -> str:
    (folder / "notes").mkdir()
    (folder / "notes" / "readme.txt").write_text("no faces here")
    return "folder notes"


def _bomb(folder: Path) -> str:
    (folder / "0000002" / "big.png").write_bytes(bomb_png())
    return "0000002/big.png"


def _empty_image(folder: Path) -> str:
    first_image(folder).write_bytes(b"")
    return first_image(folder).relative_to(folder).as_posix()


FOLDERS = [
    pytest.param(_link_image_outside, "symbolic link leads outside the dataset folder", id="image-link-outside"),
    pytest.param(_link_identity_outside, "symbolic link leads outside the dataset folder", id="identity-link-outside"),
    pytest.param(_broken_link, "broken symbolic link", id="image-link-broken"),
    pytest.param(_empty_identity, "empty identity", id="identity-empty"),
    pytest.param(_no_images, "empty identity", id="identity-without-images"),
    pytest.param(_bomb, "decompression bomb", id="image-decompression-bomb"),
    pytest.param(_empty_image, "empty image record", id="image-empty-file"),
]


@pytest.mark.parametrize("breaks,fragment", FOLDERS)
def test_folder_refused(base, tmp_path, breaks, fragment):
    folder = copy(base, "train", tmp_path)
    where = breaks(folder)
    line = refused(data("info", folder), folder, fragment)
    assert f"at {where}" in line


@pytest.mark.parametrize("name,shown", [
    pytest.param(b"\xff\xfeperson", "\\xff\\xfeperson", id="identity-name-not-utf8"),
    pytest.param(b"evil\nerror: all fine", "evil\\nerror: all fine", id="identity-name-with-newline"),
    pytest.param(b"\x1b[31mred", "\\x1b[31mred", id="identity-name-terminal-escape"),
])
def test_folder_names_are_shown_escaped(base, tmp_path, name, shown):
    folder = copy(base, "train", tmp_path)
    person = os.path.join(os.fsencode(folder), name)
    os.mkdir(person)
    with open(os.path.join(person, b"x.jpg"), "wb") as fh:
        fh.write(b"not an image")
    result = data("check", folder)
    refused(result, folder, "1 problem(s) found")  # exactly one error line: a name cannot forge another
    assert f"undecodable image (not a JPEG/PNG image) at {shown}/x.jpg" in result.stdout


def test_folder_truncated_image_is_listed_by_check(base, tmp_path):
    folder = copy(base, "train", tmp_path)
    image = first_image(folder)
    image.write_bytes(image.read_bytes()[:60])
    result = data("check", folder)
    refused(result, folder, "1 problem(s) found")
    assert f"at {image.relative_to(folder).as_posix()}" in result.stdout


def test_folder_extras_that_are_safely_ignored(base, tmp_path):
    """Hidden files and folders, non-image files, a link that stays inside the folder, and an identity
    folder whose name is not UTF-8 (as torchvision's ImageFolder reads it): read, counted correctly."""
    folder = copy(base, "train", tmp_path)
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x.png").write_bytes(png(1))
    (folder / "0000000" / ".DS_Store").write_bytes(b"\0")
    (folder / "0000000" / "notes.txt").write_text("hello")
    (folder / "0000001" / "again.png").symlink_to(first_image(folder))  # inside: allowed
    odd = os.path.join(os.fsencode(folder), b"\xffperson")
    os.mkdir(odd)
    with open(os.path.join(odd, b"a.png"), "wb") as fh:
        fh.write(png(5))
    info = json.loads(succeeded(data("info", folder, "--json")))
    assert (info["identities"], info["images"]) == (IDENTITIES + 1, IMAGES + 2)
    assert info["images_per_identity"] == {"min": 1, "median": 2.0, "max": 3}


# ------------------------------------------------------------------------------------- dataset.json cards

def world(base: Path, tmp: Path, card: bytes | str | None) -> Path:
    folder = tmp / "world"
    folder.mkdir()
    copy(base, "train", folder)
    if card is not None:
        (folder / "dataset.json").write_bytes(card if isinstance(card, bytes) else card.encode())
    return folder


CARDS = [
    pytest.param(b'{"train": "tr\xffain"}', ("not UTF-8 text", "byte 13"), id="card-not-utf8"),
    pytest.param('{"train": "train",', ("invalid JSON in dataset card", "line 1"), id="card-not-json"),
    pytest.param('["train"]', ("dataset card must hold an object, found a list",), id="card-a-list"),
    pytest.param("[" * 100000 + "]" * 100000, ("nested too deeply",), id="card-nested-deeply"),
    pytest.param('{"train": 5}', ("train must be a string, found an integer",), id="card-train-a-number"),
    pytest.param('{"dataset": ["train"]}', ("dataset must be a string, found a list",), id="card-dataset-a-list"),
    pytest.param('{"name": {"x": 1}, "train": "train"}', ("name must be a string, found an object",),
                 id="card-name-an-object"),
    pytest.param('{"train": "TMP/outside"}', ("leaves the folder", "key train"), id="card-absolute-path"),
    pytest.param('{"train": "../outside"}', ("leaves the folder", "key train"), id="card-dotdot"),
    pytest.param('{"dataset": "train/../../outside"}', ("leaves the folder", "key dataset"), id="card-dotdot-inner"),
    pytest.param('{"train": "tr\\u0000ain"}', ("NUL byte",), id="card-nul"),
    pytest.param('{"train": "missing"}', ("names the dataset 'missing', which is not in",), id="card-set-missing"),
]


@pytest.mark.parametrize("card,fragments", CARDS)
def test_card_refused(base, tmp_path, card, fragments):
    outside = copy(base, "train", tmp_path)  # a valid set outside the world folder: never followed
    shutil.move(outside, tmp_path / "outside")
    if isinstance(card, str):
        card = card.replace("TMP/", json.dumps(str(tmp_path))[1:-1] + "/")
    folder = world(base, tmp_path, card)
    line = refused(data("info", folder), folder / "dataset.json")
    for fragment in fragments:
        assert fragment in line


def test_card_naming_a_link_out_of_its_folder(base, tmp_path):
    copy(base, "train", tmp_path)
    folder = tmp_path / "world"
    folder.mkdir()
    (folder / "faces").symlink_to(tmp_path / "train")
    (folder / "dataset.json").write_text('{"train": "faces"}')
    refused(data("info", folder), folder / "dataset.json", "is a link leading outside")


def test_card_with_unknown_keys_stands_for_its_set(base, tmp_path):
    folder = world(base, tmp_path, json.dumps({"train": "train", "name": "toy", "exec": "rm -rf /",
                                               "generator_info": [1, 2], "path": "/etc"}))
    info = json.loads(succeeded(data("info", folder, "--json")))
    assert info["path"] == str(folder / "train") and info["images"] == IMAGES


# ------------------------------------------------------------------------------------------ data convert

def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


@pytest.mark.parametrize("to,name", [("folder", "out"), ("rec", "out_rec"), ("rec", "out.rec"), ("lmdb", "out.lmdb")])
@pytest.mark.parametrize("source", ["rec", "set.lmdb"])
def test_convert_failing_midway_leaves_nothing(base, tmp_path, to, name, source):
    src = copy(base, source, tmp_path)
    if source == "rec":
        patch(src / "train.rec", idx_of(src)[4], b"\0\0\0\0")  # record 4 of 6 unreadable
        named = src / "train.rec"
    else:
        lmdb_put(src, {b"3": [7, 1]})
        named = src
    out = tmp_path / "outputs"
    out.mkdir()
    line = refused(data("convert", src, out / name, "--to", to), named)
    assert "key 4" in line or "key 3" in line
    assert list(out.iterdir()) == [] and leftovers(tmp_path) == []


def test_convert_pack_with_payload_leaves_nothing(tmp_path, marker):
    pack = tmp_path / "lfw.bin"
    pack.write_bytes(pickle.dumps(_payload_in_image(marker)))
    refused(data("convert", pack, tmp_path / "pl", "--to", "pairlist"), pack, "refused to load pickle global")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lfw.bin"]


def test_convert_with_pickled_mask_leaves_nothing(base, tmp_path, marker):
    src = copy(base, "set.lmdb", tmp_path)
    np.save(tmp_path / "m.npy", np.array([Payload(marker)], dtype=object), allow_pickle=True)
    refused(data("convert", src, tmp_path / "out", "--to", "folder", "--mask", tmp_path / "m.npy"), tmp_path / "m.npy")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def _same(t):
    return t / "train", t / "train"


def _via_link(t):
    (t / "alias").symlink_to(t / "train")
    return t / "train", t / "alias"


def _dot(t):
    return t / "train", t / "train" / "."


def _inside(t):
    return t / "train", t / "train" / "0000000x"


def _holds(t):
    return t / "train", t


def _card_inner(t):
    (t / "dataset.json").write_text('{"train": "train"}')
    return t, t / "train"


OVERLAPS = [
    pytest.param(_same, "is the dataset being converted", id="dst-is-src"),
    pytest.param(_via_link, "is the dataset being converted", id="dst-is-a-link-to-src"),
    pytest.param(_dot, "is the dataset being converted", id="dst-is-src-dot"),
    pytest.param(_inside, "lies inside the dataset being converted", id="dst-inside-src"),
    pytest.param(_holds, "holds the dataset being converted", id="dst-holds-src"),
    pytest.param(_card_inner, "is the dataset being converted", id="dst-is-the-set-src-card-names"),
]


@pytest.mark.parametrize("paths,fragment", OVERLAPS)
def test_convert_refuses_dst_overlapping_src(base, tmp_path, paths, fragment):
    copy(base, "train", tmp_path)
    src, dst = paths(tmp_path)
    before = files_under(tmp_path)
    refused(data("convert", src, dst, "--to", "folder", "--overwrite"), dst, fragment)
    assert files_under(tmp_path) == before


def test_convert_refuses_dst_that_is_the_rec_index(base, tmp_path):
    src = copy(base, "rec", tmp_path)
    before = files_under(tmp_path)
    dst = src / "train.idx"
    refused(data("convert", src / "train.rec", dst, "--to", "lmdb", "--overwrite"), dst, "being converted")
    assert files_under(tmp_path) == before


# --------------------------------------------------------------------------------------------- data grid

def _pack_with_bomb(tmp: Path, base: Path) -> tuple[Path, Path]:
    pack = tmp / "lfw.bin"
    pack.write_bytes(pickle.dumps(([png(0), bomb_png()], [True])))
    return pack, pack


def _lmdb_float_label(tmp: Path, base: Path) -> tuple[Path, Path]:
    path = copy(base, "set.lmdb", tmp)
    lmdb_put(path, {b"4": record(2.5)})
    return path, path


def _rec_nan_label(tmp: Path, base: Path) -> tuple[Path, Path]:
    rec = plain_rec(tmp / "old", [0, float("nan")])
    return rec, rec / "train.rec"


@pytest.mark.parametrize("make", [pytest.param(_pack_with_bomb, id="pack-bomb"),
                                  pytest.param(_lmdb_float_label, id="lmdb-float-label"),
                                  pytest.param(_rec_nan_label, id="rec-nan-label")])
def test_grid_refused_writes_no_sheet(base, tmp_path, make):
    path, named = make(tmp_path, base)
    sheets = tmp_path / "sheets"
    sheets.mkdir()
    refused(data("grid", path, "--out", sheets / "grid.png"), named)
    assert list(sheets.iterdir()) == []
