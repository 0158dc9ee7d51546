"""``facebench data info|convert|check|grid``, and the one-line errors (exit 2) for broken files."""

from __future__ import annotations

import json
import os
import pickle
import struct

import lmdb
import msgpack
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from facebench.cli import create_cli
from facebench.data import encode_image, open_dataset, open_pairs


def _jpeg(seed: int, size: int = 10) -> bytes:
    return encode_image(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def run(*args):
    return CliRunner().invoke(create_cli(), [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "faces"
    sizes = (2, 5, 3)
    for label, count in enumerate(sizes):
        (root / f"p{label}").mkdir(parents=True)
        for j in range(count):
            (root / f"p{label}" / f"{j}.jpg").write_bytes(_jpeg(label * 10 + j, size=10 + label))
    return root


def _exits_with_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_info_json_matches_an_independent_count(folder):
    result = run("data", "info", folder, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["format"] == "folder" and info["identities"] == 3 and info["images"] == 10
    assert info["images_per_identity"] == {"min": 2, "median": 3.0, "max": 5}
    expected = {}
    for path in folder.rglob("*.jpg"):
        expected[Image.open(path).size] = expected.get(Image.open(path).size, 0) + 1
    assert {(s["width"], s["height"]): s["count"] for s in info["image_sizes"]} == expected


def test_info_of_a_pack_reports_pairs(tmp_path):
    with open(tmp_path / "lfw.bin", "wb") as fh:
        pickle.dump(([_jpeg(i) for i in range(10)], [True, True, False, True, False]), fh)
    info = json.loads(run("data", "info", tmp_path / "lfw.bin", "--json").output)
    assert (info["format"], info["pairs"], info["same"], info["different"]) == ("bin", 5, 3, 2)
    assert "pairs" in run("data", "info", tmp_path / "lfw.bin").output


@pytest.mark.parametrize("fmt,name", [("rec", "out_rec"), ("lmdb", "out.lmdb"), ("folder", "out_dir")])
def test_convert_between_training_formats(folder, tmp_path, fmt, name):
    result = run("data", "convert", folder, tmp_path / name, "--to", fmt)
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / name} ({fmt}): 10 images" in result.output
    assert list(open_dataset(tmp_path / name)) == list(open_dataset(folder))
    again = run("data", "convert", folder, tmp_path / name, "--to", fmt)  # the same conversion: nothing to do
    assert again.exit_code == 0 and f"{tmp_path / name}: already complete ({fmt}, 10 images)" in again.output
    other = "lmdb" if fmt != "lmdb" else "folder"
    _exits_with_one_line_error(run("data", "convert", folder, tmp_path / name, "--to", other),
                               "made with other parameters (config.to)")


def test_convert_refuses_mixing_roles(folder, tmp_path):
    _exits_with_one_line_error(run("data", "convert", folder, tmp_path / "x.bin", "--to", "bin"),
                               "holds a training set", "format 'bin' holds pairs data")
    _exits_with_one_line_error(run("data", "convert", folder, tmp_path / "x", "--to", "nope"),
                               "unknown format 'nope'")


def test_convert_pack_to_pair_list_and_back(tmp_path):
    images, flags = [_jpeg(i) for i in range(8)], [True, False, True, False]
    with open(tmp_path / "a.bin", "wb") as fh:
        pickle.dump((images, flags), fh)
    assert run("data", "convert", tmp_path / "a.bin", tmp_path / "pl", "--to", "pairlist").exit_code == 0
    assert run("data", "convert", tmp_path / "pl", tmp_path / "b.bin", "--to", "bin").exit_code == 0
    back = open_pairs(tmp_path / "b.bin")
    assert back.issame.tolist() == flags and [back.pair_bytes(k) for k in range(4)] == [
        (images[2 * k], images[2 * k + 1]) for k in range(4)]


def test_check_lists_every_problem_and_exits_2(folder):
    assert "read without a problem" in run("data", "check", folder).output
    (folder / "p1" / "1.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "p2" / "0.jpg").write_bytes(_jpeg(0)[:60])
    result = run("data", "check", folder)
    assert result.exit_code == 2
    assert "undecodable image" in result.output and "at p1/1.jpg" in result.output and "at p2/0.jpg" in result.output
    assert result.output.strip().splitlines()[-1].endswith("2 problem(s) found")


def test_grid_writes_a_contact_sheet(folder, tmp_path):
    result = run("data", "grid", folder, "--out", tmp_path / "g.png", "--identities", 2, "--per-identity", 2,
                 "--size", 20)
    assert result.exit_code == 0, result.output
    sheet = Image.open(tmp_path / "g.png")
    assert sheet.size == (2 * 22 + 2, 2 * 22 + 2)


def test_evil_pack_is_refused_from_the_cli_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(tmp_path / "evil.bin", "wb") as fh:
        pickle.dump(([_jpeg(0), Evil()], [True]), fh)
    for command in ("info", "check"):
        _exits_with_one_line_error(run("data", command, tmp_path / "evil.bin"), "evil.bin: refused to load pickle global")
    assert not marker.exists()


# ---- truncated and corrupted files of every format: one line, exit 2 -----------------------------

def _rec(tmp_path, folder):
    run("data", "convert", folder, tmp_path / "r", "--to", "rec")
    return tmp_path / "r"


def test_truncated_rec(tmp_path, folder):
    rec = _rec(tmp_path, folder)
    raw = (rec / "train.rec").read_bytes()
    (rec / "train.rec").write_bytes(raw[: len(raw) // 2])
    _exits_with_one_line_error(run("data", "info", rec), "train.idx: offset", "lies outside train.rec", "at line")


def test_corrupted_rec_magic(tmp_path, folder):
    rec = _rec(tmp_path, folder)
    raw = bytearray((rec / "train.rec").read_bytes())
    raw[0:4] = b"\0\0\0\0"
    (rec / "train.rec").write_bytes(bytes(raw))
    result = run("data", "check", rec)
    assert "train.rec: wrong magic 0x00000000" in result.output and "at key 1 (offset 0)" in result.output
    _exits_with_one_line_error(result, "1 problem(s) found")


def test_corrupted_rec_image(tmp_path, folder):
    rec = _rec(tmp_path, folder)
    raw = bytearray((rec / "train.rec").read_bytes())
    first_len = struct.unpack_from("<I", raw, 4)[0]
    raw[8 + 24 : 8 + first_len] = b"\0" * (first_len - 24)
    (rec / "train.rec").write_bytes(bytes(raw))
    result = run("data", "check", rec)
    assert "undecodable image" in result.output and "at key 1" in result.output
    assert result.exit_code == 2


def test_truncated_and_corrupted_lmdb(tmp_path, folder):
    run("data", "convert", folder, tmp_path / "a.lmdb", "--to", "lmdb")
    raw = (tmp_path / "a.lmdb").read_bytes()
    (tmp_path / "t.lmdb").write_bytes(raw[:5000])
    _exits_with_one_line_error(run("data", "info", tmp_path / "t.lmdb"), "t.lmdb: truncated LMDB file (5000 bytes")
    (tmp_path / "z.lmdb").write_bytes(b"\0" * 9000)
    _exits_with_one_line_error(run("data", "info", tmp_path / "z.lmdb"), "z.lmdb: not an LMDB file")
    env = lmdb.open(str(tmp_path / "a.lmdb"), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        txn.put(b"3", msgpack.dumps((b"not an image", 1)))
        txn.put(b"4", b"\xc1")
    env.close()
    result = run("data", "check", tmp_path / "a.lmdb")
    assert "a.lmdb: undecodable image" in result.output and "at key 3" in result.output
    _exits_with_one_line_error(result, "problem(s) found")


def test_truncated_and_corrupted_bin(tmp_path):
    payload = pickle.dumps(([_jpeg(0), _jpeg(1)], [True]))
    (tmp_path / "t.bin").write_bytes(payload[:-30])
    _exits_with_one_line_error(run("data", "info", tmp_path / "t.bin"), "t.bin: truncated pickle at offset")
    (tmp_path / "c.bin").write_bytes(b"\x80\x04\xff-not-a-pickle")
    _exits_with_one_line_error(run("data", "info", tmp_path / "c.bin"), "c.bin: corrupt pickle")
    (tmp_path / "u.bin").write_bytes(pickle.dumps(([_jpeg(0)], [True])))
    _exits_with_one_line_error(run("data", "check", tmp_path / "u.bin"), "unequal pair lists")


def test_corrupted_folder_and_pair_list(tmp_path, folder):
    (folder / "p0" / "0.jpg").write_bytes(b"")
    _exits_with_one_line_error(run("data", "info", folder), "empty image record", "at p0/0.jpg")
    (tmp_path / "pl").mkdir()
    (tmp_path / "pl" / "pairs.csv").write_text("a.jpg,b.jpg,1\n")
    _exits_with_one_line_error(run("data", "info", tmp_path / "pl"), "pairs.csv: image a.jpg not found", "at line 1")
    _exits_with_one_line_error(run("data", "info", tmp_path / "missing"), "missing: dataset not found")


def test_mask_option(tmp_path, folder):
    run("data", "convert", folder, tmp_path / "a.lmdb", "--to", "lmdb")
    np.save(tmp_path / "m.npy", np.arange(2, 7))  # exactly the images of p1
    info = json.loads(run("data", "info", tmp_path / "a.lmdb", "--mask", tmp_path / "m.npy", "--json").output)
    assert (info["images"], info["identities"]) == (5, 1)
    _exits_with_one_line_error(run("data", "info", folder, "--mask", tmp_path / "m.npy"),
                               "--mask applies to formats with index masks (lmdb), not folder")


def test_check_reads_stored_features(tmp_path):
    import io

    env = lmdb.open(str(tmp_path / "g.lmdb"), subdir=False, lock=False)
    with env.begin(write=True) as txn:
        for i in range(2):
            buf = io.BytesIO()
            np.save(buf, np.array([{"a": 1}], dtype=object) if i else np.zeros(4, np.float32), allow_pickle=True)
            txn.put(str(i).encode(), msgpack.dumps([_jpeg(i), buf.getvalue(), 0]))
        txn.put(b"__keys__", msgpack.dumps([b"0", b"1"]))
        txn.put(b"__len__", msgpack.dumps(2))
        txn.put(b"__classnum__", msgpack.dumps(1))
    env.close()
    result = run("data", "check", tmp_path / "g.lmdb")
    assert "g.lmdb: feature is a pickled object array; refused" in result.output and "at key 1" in result.output
    _exits_with_one_line_error(result, "1 problem(s) found")
