"""Round trips and independent implementations of RecordIO, LMDB, .bin and pair lists."""

from __future__ import annotations

import io
import pickle
import struct

import lmdb
import msgpack
import numpy as np
import pytest

from facebench.data import encode_image, open_dataset, open_pairs, open_writer
from facebench.errors import DataError, MissingFileError

MAGIC = 0xCED7230A


def _jpeg(seed: int, size: int = 12) -> bytes:
    return encode_image(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.fixture
def samples():
    """(bytes, label) grouped by identity, with uneven identity sizes."""
    out = []
    for label, count in enumerate((3, 1, 4, 2)):
        out += [(_jpeg(label * 10 + j), label) for j in range(count)]
    return out


def _write_folder(root, samples):
    for n, (data, label) in enumerate(samples):
        (root / f"id{label:02d}").mkdir(parents=True, exist_ok=True)
        (root / f"id{label:02d}" / f"{n:03d}.jpg").write_bytes(data)


# ---- an independent RecordIO implementation (dmlc framing + insightface conventions) -------------

def ref_write_rec(rec_path, idx_path, samples, header_last=True):
    """Writes like insightface's RecBuilder: images 1..N, identity records, header at key 0."""
    entries = []
    with open(rec_path, "wb") as rec:
        def put(key, payload):
            entries.append((key, rec.tell()))
            rec.write(struct.pack("<II", MAGIC, len(payload)) + payload + b"\0" * (-len(payload) % 4))

        ranges = {}
        for key, (data, label) in enumerate(samples, 1):
            put(key, struct.pack("<IfQQ", 0, float(label), key, 0) + data)
            lo, _ = ranges.get(label, (key, key))
            ranges[label] = (lo, key + 1)
        start = len(samples) + 1
        for c in range(len(ranges)):
            put(start + c, struct.pack("<IfQQ", 2, 0.0, 0, 0) + struct.pack("<2f", *ranges[c]))
        put(0, struct.pack("<IfQQ", 2, 0.0, 0, 0) + struct.pack("<2f", start, start + len(ranges)))
    with open(idx_path, "w") as fh:
        for key, off in entries:
            fh.write(f"{key}\t{off}\n")


def ref_read_rec(rec_path, idx_path):
    """Reads every image record by the dmlc rules, joining split records (re-inserting the magic)."""
    offsets = dict(tuple(map(int, line.split("\t"))) for line in open(idx_path).read().splitlines())
    data = open(rec_path, "rb").read()

    def record(off):
        parts = []
        while True:
            magic, lrec = struct.unpack_from("<II", data, off)
            assert magic == MAGIC
            cflag, length = lrec >> 29, lrec & ((1 << 29) - 1)
            parts.append(data[off + 8 : off + 8 + length])
            if cflag in (0, 3):
                return struct.pack("<I", MAGIC).join(parts)
            off += 8 + length + (-length % 4)

    flag, _, _, _ = struct.unpack_from("<IfQQ", record(offsets[0]))
    id_start = int(struct.unpack_from("<2f", record(offsets[0]), 24)[0])
    out = []
    for key in range(1, id_start):
        payload = record(offsets[key])
        flag, label, _, _ = struct.unpack_from("<IfQQ", payload)
        out.append((payload[24 + 4 * flag :], int(label)))
    return out


def test_folder_rec_folder_round_trip_keeps_bytes_and_labels(tmp_path, samples):
    _write_folder(tmp_path / "src", samples)
    with open_writer(tmp_path / "rec", "rec") as w:
        for data, label in open_dataset(tmp_path / "src"):
            w.add(data, label)
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == ["property", "train.idx", "train.rec"]
    assert (tmp_path / "rec" / "property").read_text() == "4,12,12"
    rec = open_dataset(tmp_path / "rec")
    assert rec.format_name == "rec" and rec.num_classes == 4
    with open_writer(tmp_path / "back", "folder") as w:
        for data, label in rec:
            w.add(data, label)
    assert list(open_dataset(tmp_path / "back")) == samples


def test_folder_lmdb_folder_round_trip_keeps_bytes_and_labels(tmp_path, samples):
    _write_folder(tmp_path / "src", samples)
    with open_writer(tmp_path / "set.lmdb", "lmdb") as w:
        for data, label in open_dataset(tmp_path / "src"):
            w.add(data, label)
    reader = open_dataset(tmp_path / "set.lmdb")
    assert reader.format_name == "lmdb" and reader.num_classes == 4 and len(reader) == 10
    with open_writer(tmp_path / "back", "folder") as w:
        for data, label in reader:
            w.add(data, label)
    assert list(open_dataset(tmp_path / "back")) == samples


def test_bin_pairlist_bin_round_trip_keeps_pairs_and_flags(tmp_path):
    images = [_jpeg(i) for i in range(12)]
    flags = [True, True, True, False, False, False]
    with open(tmp_path / "a.bin", "wb") as fh:
        pickle.dump((images, flags), fh, protocol=2)
    with open_writer(tmp_path / "pairs", "pairlist") as w:
        for a, b, same in open_pairs(tmp_path / "a.bin"):
            w.add(a, b, same)
    listed = open_pairs(tmp_path / "pairs")
    assert listed.format_name == "pairlist" and listed.issame.tolist() == flags
    with open_writer(tmp_path / "b.bin", "bin") as w:
        for a, b, same in listed:
            w.add(a, b, same)
    with open(tmp_path / "b.bin", "rb") as fh:
        assert pickle.load(fh) == (images, flags)


def test_rec_written_independently_is_read(tmp_path, samples):
    ref_write_rec(tmp_path / "train.rec", tmp_path / "train.idx", samples)
    reader = open_dataset(tmp_path)
    assert list(reader) == samples
    assert reader.labels.tolist() == [label for _, label in samples]
    np.testing.assert_array_equal(reader.image(0).shape, (12, 12, 3))


def test_rec_without_header_record_reads_labels_from_each_image(tmp_path, samples):
    with open(tmp_path / "x.rec", "wb") as rec, open(tmp_path / "x.idx", "w") as idx:
        for key, (data, label) in enumerate(samples):
            idx.write(f"{key}\t{rec.tell()}\n")
            payload = struct.pack("<IfQQ", 0, float(label), key, 0) + data
            rec.write(struct.pack("<II", MAGIC, len(payload)) + payload + b"\0" * (-len(payload) % 4))
    assert list(open_dataset(tmp_path / "x.rec")) == samples


def test_rec_written_by_facebench_is_read_independently(tmp_path, samples):
    # An image whose bytes hold the magic word at 4-aligned payload offsets forces split records.
    tricky = b"\xff\xd8\xff\xe0" + struct.pack("<I", MAGIC) + b"abcd" + struct.pack("<I", MAGIC) + b"tail!"
    data = samples + [(tricky, 4)]
    with open_writer(tmp_path / "out.rec", "rec") as w:
        for image, label in data:
            w.add(image, label)
    raw = (tmp_path / "out.rec").read_bytes()
    # The payload (24-byte header + image) has the magic at offsets 28 and 36: start, middle, end parts.
    split = struct.pack("<II", MAGIC, (1 << 29) | 28)
    assert split in raw
    assert struct.pack("<II", MAGIC, (2 << 29) | 4) + b"abcd" in raw
    assert struct.pack("<II", MAGIC, (3 << 29) | 5) + b"tail!\0\0\0" in raw
    assert ref_read_rec(tmp_path / "out.rec", tmp_path / "out.idx") == data
    back = open_dataset(tmp_path / "out.rec")
    assert back.image_bytes(len(data) - 1) == tricky


def test_rec_splits_only_at_aligned_magic_words(tmp_path, samples):
    """Payloads dense in magic words at every alignment (overlapping too) round-trip through an
    independent dmlc reader, and split into exactly one part more than their 4-aligned magic words."""
    import random

    rng = random.Random(0)
    word = struct.pack("<I", MAGIC)
    images = []
    for _ in range(200):
        parts = [b"\xff\xd8"]
        for _ in range(rng.randrange(1, 12)):
            parts.append(word if rng.random() < 0.4 else bytes(rng.choice([b"\x0a", b"\xd7", b"\xce", b"\x23", b"x"])))
        images.append(b"".join(parts))
    data = samples + [(image, i % 7) for i, image in enumerate(images)]  # a real image first: its size
    with open_writer(tmp_path / "out.rec", "rec") as w:
        for image, label in data:
            w.add(image, label)
    assert ref_read_rec(tmp_path / "out.rec", tmp_path / "out.idx") == data
    raw = (tmp_path / "out.rec").read_bytes()
    offsets = [int(line.split("\t")[1]) for line in (tmp_path / "out.idx").read_text().splitlines()]
    for (image, label), key, start in zip(data, range(1, len(data) + 1), offsets):
        payload = struct.pack("<IfQQ", 0, float(label), key, 0) + image
        aligned = sum(payload[i:i + 4] == word for i in range(0, len(payload) - 3, 4))
        frames, pos = 0, start
        while True:  # count this record's frames by their continuation flags
            _, lrec = struct.unpack_from("<II", raw, pos)
            frames += 1
            length = lrec & ((1 << 29) - 1)
            pos += 8 + length + (-length % 4)
            if lrec >> 29 in (0, 3):
                break
        assert frames == aligned + 1


def test_rec_errors_name_file_and_offset(tmp_path, samples):
    ref_write_rec(tmp_path / "train.rec", tmp_path / "train.idx", samples)
    raw = bytearray((tmp_path / "train.rec").read_bytes())
    first_len = struct.unpack_from("<I", raw, 4)[0]
    second = 8 + first_len + (-first_len % 4)
    raw[second : second + 4] = b"JUNK"
    (tmp_path / "train.rec").write_bytes(bytes(raw))
    reader = open_dataset(tmp_path)
    with pytest.raises(DataError, match=rf"train.rec: wrong magic 0x4b4e554a \(expected 0xced7230a.*\) at key 2 \(offset {second}\)$"):
        reader.image_bytes(1)
    (tmp_path / "train.rec").write_bytes(bytes(raw[: second + 20]))
    with pytest.raises(DataError, match=r"train.idx: offset \d+ lies outside train.rec"):
        open_dataset(tmp_path)
    good_idx = (tmp_path / "train.idx").read_text()
    (tmp_path / "train.idx").write_text("1\t0\n2\tnot-a-number\n")
    with pytest.raises(DataError, match=r"train.idx: malformed index line .*not-a-number.* at line 2"):
        open_dataset(tmp_path)
    assert good_idx
    (tmp_path / "train.idx").unlink()
    with pytest.raises(MissingFileError, match=r"train.idx: RecordIO file not found"):
        open_dataset(tmp_path, format="rec")


def test_rec_label_out_of_range_is_refused(tmp_path, samples):
    ref_write_rec(tmp_path / "train.rec", tmp_path / "train.idx", samples)
    (tmp_path / "property").write_text("3,12,12")
    with pytest.raises(DataError, match=r"label 3 out of range \[0, 3\) at key 9"):
        open_dataset(tmp_path)


# ---- LMDB ----------------------------------------------------------------------------------------

def ref_write_lmdb(path, records, classnum):
    """As the official imagelist2lmdb converter: single-file env, msgpack values, meta keys."""
    env = lmdb.open(str(path), subdir=False, map_size=1 << 24, lock=False)
    with env.begin(write=True) as txn:
        keys = []
        for i, rec in enumerate(records):
            key = str(i).encode()
            txn.put(key, msgpack.dumps(rec))
            keys.append(key)
        txn.put(b"__keys__", msgpack.dumps(keys))
        txn.put(b"__len__", msgpack.dumps(len(keys)))
        txn.put(b"__classnum__", msgpack.dumps(classnum))
    env.close()


def _npy(array, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def test_lmdb_written_independently_both_layouts(tmp_path, samples):
    ref_write_lmdb(tmp_path / "hsface.lmdb", [(d, lab) for d, lab in samples], 4)
    hs = open_dataset(tmp_path / "hsface.lmdb")
    assert list(hs) == samples and not hs.has_features()
    feats = np.random.default_rng(0).normal(size=(len(samples), 8)).astype(np.float32)
    ref_write_lmdb(tmp_path / "WebFace4M.lmdb", [[d, _npy(f), lab] for (d, lab), f in zip(samples, feats)], 4)
    wf = open_dataset(tmp_path / "WebFace4M.lmdb")
    assert list(wf) == samples and wf.has_features()
    np.testing.assert_array_equal(wf.feature(3), feats[3])
    with pytest.raises(DataError, match="record has no feature"):
        hs.feature(0)


def test_lmdb_refuses_pickled_feature(tmp_path, samples):
    evil = np.array([{"x": 1}], dtype=object)
    ref_write_lmdb(tmp_path / "w.lmdb", [[samples[0][0], _npy(evil, allow_pickle=True), 0]], 1)
    reader = open_dataset(tmp_path / "w.lmdb")
    with pytest.raises(DataError, match=r"w.lmdb: feature is a pickled object array; refused .* at key 0"):
        reader.feature(0)


def test_lmdb_feature_layout_round_trip(tmp_path, samples):
    feats = np.arange(len(samples) * 4, dtype=np.float32).reshape(-1, 4)
    with open_writer(tmp_path / "g.lmdb", "lmdb", features=True) as w:
        for (data, label), f in zip(samples, feats):
            w.add(data, label, feature=f)
    env = lmdb.open(str(tmp_path / "g.lmdb"), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        image, feature, label = msgpack.loads(txn.get(b"5"))
        assert msgpack.loads(txn.get(b"__len__")) == len(samples)
        assert msgpack.loads(txn.get(b"__classnum__")) == 4
    env.close()
    assert (image, label) == samples[5]
    np.testing.assert_array_equal(np.load(io.BytesIO(feature)), feats[5])


def test_lmdb_masks_select_subsets(tmp_path, samples):
    ref_write_lmdb(tmp_path / "hs300.lmdb", list(samples), 4)
    np.save(tmp_path / "first2.npy", np.arange(4))  # identities 0 and 1
    sub = open_dataset(tmp_path / "hs300.lmdb", mask=tmp_path / "first2.npy")
    assert len(sub) == 4 and sub.num_classes == 2 and sub.labels.tolist() == [0, 0, 0, 1]
    np.save(tmp_path / "bool.npy", np.array([lab >= 2 for _, lab in samples]))
    last = open_dataset(tmp_path / "hs300.lmdb", mask=tmp_path / "bool.npy")
    assert last.labels.tolist() == [0, 0, 0, 0, 1, 1] and last.image_bytes(0) == samples[4][0]
    np.save(tmp_path / "bad.npy", np.array([0, 99]))
    with pytest.raises(DataError, match="bad.npy: index 99 outside the 10 records"):
        open_dataset(tmp_path / "hs300.lmdb", mask=tmp_path / "bad.npy")


def test_unreadable_npy_files_are_one_line_errors(tmp_path, samples):
    """Every .npy a user hands facebench (masks, features, identity vectors, reference centres) is read by
    safe_load.load_array: an empty, truncated or pickled file or an .npz archive names the file, no traceback."""
    ref_write_lmdb(tmp_path / "hs300.lmdb", list(samples), 4)
    good = io.BytesIO()
    np.save(good, np.arange(4))
    objects = io.BytesIO()
    np.save(objects, np.array([0, 1], dtype=object), allow_pickle=True)
    objects_npy = objects.getvalue()
    size = int.from_bytes(good.getvalue()[8:10], "little")  # a header numpy's tokenizer cannot finish
    garbled = good.getvalue()[:10] + b"{'descr': '<i8', 'shape': (4,".ljust(size - 1) + b"\n" + good.getvalue()[10 + size:]
    cases = {
        "garbled.npy": (garbled, r"garbled.npy: cannot read index mask: garbled header"),
        "empty.npy": (b"", r"empty.npy: cannot read index mask: the file is empty"),
        "cut.npy": (good.getvalue()[:12], r"cut.npy: cannot read index mask: .*"),
        "pickled.npy": (pickle.dumps([0, 1]), r"pickled.npy: cannot read index mask: not a .npy file"),
        "objects.npy": (objects_npy, r"objects.npy: cannot read index mask: it holds Python objects \(pickled\)"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match=message):
            open_dataset(tmp_path / "hs300.lmdb", mask=tmp_path / name)
    np.savez(tmp_path / "archive.npz", mask=np.arange(4))
    with pytest.raises(DataError, match=r"archive.npz: index mask must be a .npy array, got an .npz archive"):
        open_dataset(tmp_path / "hs300.lmdb", mask=tmp_path / "archive.npz")
    with pytest.raises(MissingFileError, match=r"nothere.npy: index mask file not found"):
        open_dataset(tmp_path / "hs300.lmdb", mask=tmp_path / "nothere.npy")


def test_an_npy_header_claiming_more_data_than_the_file_holds_is_refused_before_allocating(tmp_path):
    import tracemalloc

    from facebench.safe_load import load_array

    claim, padded = tmp_path / "claim.npy", tmp_path / "padded.npy"
    with open(claim, "wb") as fh:  # 2^40 int64 values declared (8 TiB), 16 bytes held
        np.lib.format.write_array_header_1_0(fh, {"descr": "<i8", "fortran_order": False, "shape": (2 ** 40,)})
        fh.write(bytes(16))
    np.save(padded, np.arange(4))
    padded.write_bytes(padded.read_bytes() + b"junk")
    tracemalloc.start()
    with pytest.raises(DataError, match=r"claim.npy: cannot read mask: its header declares 8796093022208 bytes "
                                        r"of data, the file holds 16 \(truncated\)"):
        load_array(claim, what="mask")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 1 << 20
    with pytest.raises(DataError, match=r"padded.npy: .*declares 32 bytes of data, the file holds 36 \(trailing"):
        load_array(padded, what="mask")
    np.save(tmp_path / "ok.npy", np.asfortranarray(np.eye(3)[:, :2]))  # a well-formed file still loads
    np.testing.assert_array_equal(load_array(tmp_path / "ok.npy", what="mask"), np.eye(3)[:, :2])


def test_lmdb_errors(tmp_path, samples):
    ref_write_lmdb(tmp_path / "a.lmdb", [(samples[0][0], 7)], 4)
    with pytest.raises(DataError, match=r"label 7 out of range \[0, 4\) at key 0"):
        open_dataset(tmp_path / "a.lmdb").label(0)
    env = lmdb.open(str(tmp_path / "b.lmdb"), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        txn.put(b"0", b"\xc1\xc1 not msgpack")
        txn.put(b"__keys__", msgpack.dumps([b"0"]))
        txn.put(b"__len__", msgpack.dumps(1))
    env.close()
    with pytest.raises(DataError, match=r"b.lmdb: undecodable msgpack record .*at key 0"):
        open_dataset(tmp_path / "b.lmdb").image_bytes(0)
    ref_write_lmdb(tmp_path / "c.lmdb", list(samples), 4)
    raw = (tmp_path / "c.lmdb").read_bytes()
    (tmp_path / "c.lmdb").write_bytes(raw[:100])
    with pytest.raises(DataError, match=r"c.lmdb: (not an LMDB file|truncated LMDB file)"):
        open_dataset(tmp_path / "c.lmdb")


# ---- pair lists ----------------------------------------------------------------------------------

def test_lfw_style_pairs_txt(tmp_path):
    images = {}
    for name, count in (("Ann_Lee", 2), ("Bo_Chen", 1)):
        (tmp_path / name).mkdir()
        for n in range(1, count + 1):
            images[(name, n)] = _jpeg(len(images))
            (tmp_path / name / f"{name}_{n:04d}.jpg").write_bytes(images[(name, n)])
    (tmp_path / "pairs.txt").write_text("1\t1\nAnn_Lee\t1\t2\nAnn_Lee\t2\tBo_Chen\t1\n")
    pairs = open_pairs(tmp_path)
    assert pairs.issame.tolist() == [True, False]
    assert pairs.pair_bytes(1) == (images[("Ann_Lee", 2)], images[("Bo_Chen", 1)])
    (tmp_path / "pairs.txt").write_text("1\t2\nAnn_Lee\t1\t2\nAnn_Lee\t2\tBo_Chen\t1\n")
    with pytest.raises(DataError, match="header declares 4 pairs but 2 follow"):
        open_pairs(tmp_path)
    (tmp_path / "pairs.txt").write_text("Ann_Lee\t1\t3\n")
    with pytest.raises(DataError, match=r"pairs.txt: image Ann_Lee/Ann_Lee_0003.jpg not found .* at line 1"):
        open_pairs(tmp_path)


def test_csv_pairs_errors(tmp_path):
    (tmp_path / "a.jpg").write_bytes(_jpeg(0))
    (tmp_path / "pairs.csv").write_text("path_a,path_b,same\na.jpg,a.jpg,1\na.jpg,a.jpg\n")
    with pytest.raises(DataError, match=r"pairs.csv: expected path_a,path_b,same, found 2 columns at line 3"):
        open_pairs(tmp_path)
    (tmp_path / "pairs.csv").write_text("a.jpg,a.jpg,maybe\n")
    with pytest.raises(DataError, match=r"same flag 'maybe' is not 1/0/true/false at line 1"):
        open_pairs(tmp_path)


def test_xz_packs_as_sota_fr_ships_them(tmp_path):
    import lzma

    images, flags = [_jpeg(i) for i in range(4)], [True, False]
    (tmp_path / "hadrian.xz").write_bytes(lzma.compress(pickle.dumps((images, flags))))
    pack = open_pairs(tmp_path / "hadrian.xz")
    assert pack.format_name == "bin" and pack.issame.tolist() == flags and pack.pair_bytes(1) == tuple(images[2:])
    with open_writer(tmp_path / "copy.xz", "bin") as w:
        for a, b, same in pack:
            w.add(a, b, same)
    assert pickle.loads(lzma.decompress((tmp_path / "copy.xz").read_bytes())) == (images, flags)
    (tmp_path / "broken.xz").write_bytes((tmp_path / "hadrian.xz").read_bytes()[:-40])
    with pytest.raises(DataError, match="broken.xz: corrupt or truncated xz stream"):
        open_pairs(tmp_path / "broken.xz")
