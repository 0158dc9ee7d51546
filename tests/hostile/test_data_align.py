"""Hostile inputs to ``facebench data align``: photos that are bombs, truncated, not images or huge; names
that are not UTF-8; links leading out of the photo folder; a FIFO named as a photo; ``--out`` that exists,
is a file, is the source or overlaps it, or holds another command's run; links planted at the names the run
reopens; a detector giving NaN or misshapen landmarks; tampered manifests, staged shards and cards.

Each refusal is one ``error:`` line naming the file, exit 2, no run folder left behind and nothing written
outside ``--out``; what can be recorded instead (``--skip-unreadable``) is recorded and counted.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import test_data_align as aligntest

from facebench.data import open_dataset

from .conftest import bomb_png, files_under, invoke, refused, succeeded

PHOTOS = 8  # identity_photos: alice 3, bob 2, carol 2, dave 1


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The photo folder and the detector's file, built once; each case copies what it changes."""
    root = tmp_path_factory.mktemp("align")
    photos = aligntest.identity_photos(root / "photos")
    photos.weights(root / "faces.json")
    return root


@pytest.fixture
def src(base, tmp_path):
    return Path(shutil.copytree(base / "photos", tmp_path / "photos", symlinks=True))


@pytest.fixture
def weights(base):
    return base / "faces.json"


def align(monkeypatch, src, weights, out, *extra, detector="known-faces"):
    return invoke(aligntest.cli(monkeypatch), aligntest.align_args(src, weights, out, *extra, detector=detector))


def truncated_jpeg() -> bytes:
    from facebench.data import encode_image

    data = encode_image(aligntest.toy_photo(5, 0)[0], "jpg")
    return data[: len(data) // 2]


BROKEN = {
    "bomb": (bomb_png(), "decompression bomb"),
    "truncated": (truncated_jpeg(), "undecodable image"),
    "not an image": (b"<html>a web page saved as a photo</html>", "not a JPEG/PNG image"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_photo_is_refused_naming_it(tmp_path, monkeypatch, src, weights, kind):
    data, words = BROKEN[kind]
    (src / "bob" / "9.png").write_bytes(data)
    out = tmp_path / "out"
    before = files_under(tmp_path)
    line = refused(align(monkeypatch, src, weights, out), "bob/9.png", words, "--skip-unreadable")
    assert not out.exists()  # it failed in the first shard: no run folder is left
    assert files_under(tmp_path) == before, line


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_photo_is_recorded_with_skip_unreadable(tmp_path, monkeypatch, src, weights, kind):
    data, words = BROKEN[kind]
    (src / "bob" / "9.png").write_bytes(data)
    out = tmp_path / "out"
    output = succeeded(align(monkeypatch, src, weights, out, "--skip-unreadable"))
    assert "unreadable 1 (skipped)" in output
    row = {r["photo"]: r for r in aligntest.outcome_rows(out)}["bob/9.png"]
    assert row["outcome"] == "unreadable" and words in row["note"] and row["label"] == row["index"] == ""
    assert len(open_dataset(out)) == 6  # the other photos' crops, as without it


def test_a_huge_file_is_refused_before_it_is_read(tmp_path, monkeypatch, src, weights):
    huge = src / "carol" / "huge.jpg"
    with open(huge, "wb") as fh:
        fh.truncate(300 << 20)  # sparse: 300 MB that occupy nothing
    refused(align(monkeypatch, src, weights, tmp_path / "out"), "huge.jpg", "larger than")


def test_names_that_are_not_utf8_are_aligned_and_shown_escaped(tmp_path, monkeypatch, src, weights):
    os.rename(os.fsencode(src / "alice"), os.fsencode(src) + b"/al\xffce")
    os.rename(os.fsencode(src) + b"/al\xffce/0.png", os.fsencode(src) + b"/al\xffce/\xfe0.png")
    out = tmp_path / "out"
    output = succeeded(align(monkeypatch, src, weights, out))
    assert "aligned 5, no face 2, several faces 1" in output
    text = (out / "outcomes.csv").read_bytes().decode("utf-8")  # strict UTF-8: escaped, not raw bytes
    rows = list(csv.DictReader(text.splitlines()))
    assert [r["photo"] for r in rows][:3] == ["al\\xffce/1.png", "al\\xffce/2.png", "al\\xffce/\\xfe0.png"]
    assert rows[0]["identity"] == "al\\xffce" and rows[0]["label"] == "0"
    assert len(open_dataset(out)) == 6


@pytest.mark.parametrize("where", ["photo", "identity folder"])
def test_a_link_leading_out_of_the_source_is_refused(tmp_path, monkeypatch, src, weights, where):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(src / "alice" / "0.png", outside / "secret.png")
    link = src / "alice" / "9.png" if where == "photo" else src / "erin"
    os.symlink(outside / "secret.png" if where == "photo" else outside, link)
    out = tmp_path / "out"
    refused(align(monkeypatch, src, weights, out), link.name, "out of the photo folder")
    assert not out.exists()


def test_a_broken_link_is_refused(tmp_path, monkeypatch, src, weights):
    os.symlink(tmp_path / "gone.png", src / "bob" / "9.png")
    refused(align(monkeypatch, src, weights, tmp_path / "out"), "9.png", "broken symbolic link")


def test_a_link_inside_the_source_is_read(tmp_path, monkeypatch, src, weights):
    os.symlink(src / "alice" / "0.png", src / "bob" / "9.png")  # the same photo filed under bob too
    out = tmp_path / "out"
    succeeded(align(monkeypatch, src, weights, out, "--encoding", "png"))
    rows = {r["photo"]: r for r in aligntest.outcome_rows(out)}
    assert rows["bob/9.png"]["outcome"] == "aligned" and rows["bob/9.png"]["label"] == "1"
    reader = open_dataset(out)
    np.testing.assert_array_equal(reader.image(int(rows["bob/9.png"]["index"])),
                                  reader.image(int(rows["alice/0.png"]["index"])))


def test_a_fifo_named_as_a_photo_is_refused_without_blocking(tmp_path, monkeypatch, src, weights):
    os.mkfifo(src / "carol" / "2.jpg")
    refused(align(monkeypatch, src, weights, tmp_path / "out"), "2.jpg", "not a regular file")


def test_an_out_folder_holding_other_files_is_refused_and_left_alone(tmp_path, monkeypatch, src, weights):
    out = tmp_path / "out"
    out.mkdir()
    (out / "thesis.tex").write_text("months of work")
    before = files_under(tmp_path)
    refused(align(monkeypatch, src, weights, out), str(out), "thesis.tex", "no data align run")
    assert files_under(tmp_path) == before


def test_an_out_that_is_a_file_is_refused(tmp_path, monkeypatch, src, weights):
    out = tmp_path / "out"
    out.write_text("not a folder")
    refused(align(monkeypatch, src, weights, out), str(out), "is a file")
    assert out.read_text() == "not a folder"


@pytest.mark.parametrize("case", ["the source", "inside the source", "holding the source"])
def test_an_out_overlapping_the_source_is_refused(tmp_path, monkeypatch, src, weights, case):
    out = {"the source": src, "inside the source": src / "alice" / "aligned", "holding the source": tmp_path}[case]
    before = files_under(tmp_path)
    refused(align(monkeypatch, src, weights, out), str(out), "photo folder being aligned")
    assert files_under(tmp_path) == before


def test_an_out_holding_another_commands_run_is_refused(tmp_path, monkeypatch, src, weights):
    out = tmp_path / "generated"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"params": {"generator": "vec2face"}, "done": {"0": True}}))
    refused(align(monkeypatch, src, weights, out), str(out), "run of another command")


@pytest.mark.parametrize("detector,words", [("nan-faces", "must be finite"), ("misshapen-faces", "landmarks (K, 5, 2)")])
def test_a_broken_detector_is_refused_naming_the_photo(tmp_path, monkeypatch, src, weights, detector, words):
    out = tmp_path / "out"
    refused(align(monkeypatch, src, weights, out, detector=detector), "alice/0.png", f"detector '{detector}'", words)
    assert not out.exists()


@pytest.mark.parametrize("name", ["shards", "dataset.folder", "outcomes.csv"])
def test_a_link_planted_at_a_name_the_run_writes_is_refused(tmp_path, monkeypatch, src, weights, name):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(victim, out / name)
    if name == "outcomes.csv":  # a file at a name only a finished run writes: the folder is not a run of ours
        refused(align(monkeypatch, src, weights, out), out, "holds no record")
    else:
        refused(align(monkeypatch, src, weights, out), name, "symbolic link")
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"]


def _interrupted(monkeypatch, src, weights, out):
    """A run stopped after its first shard of two photos (shard 0 staged and recorded)."""
    from facebench.data import align_job

    real, calls = align_job.align_shard, {"n": 0}

    def stop(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(align_job, "align_shard", stop)
    assert align(monkeypatch, src, weights, out, "--photos-per-shard", "2").exit_code == 130
    monkeypatch.setattr(align_job, "align_shard", real)


@pytest.mark.parametrize("damage", ["garbage", "other photos", "crop count"])
def test_a_tampered_staged_shard_is_refused_naming_it(tmp_path, monkeypatch, src, weights, damage):
    import msgpack

    out = tmp_path / "out"
    _interrupted(monkeypatch, src, weights, out)
    shard = out / "shards" / "shard-00000.msgpack"
    data = msgpack.unpackb(shard.read_bytes(), raw=False)
    if damage == "garbage":
        shard.write_bytes(b"\xc1\xc1 not msgpack")
    elif damage == "other photos":
        shard.write_bytes(msgpack.packb({**data, "first": 4}, use_bin_type=True))
    else:
        shard.write_bytes(msgpack.packb({**data, "crops": data["crops"][:1]}, use_bin_type=True))
    refused(align(monkeypatch, src, weights, out, "--photos-per-shard", "2"), "shard-00000.msgpack")


def test_a_tampered_manifest_is_refused_naming_it(tmp_path, monkeypatch, src, weights):
    out = tmp_path / "out"
    _interrupted(monkeypatch, src, weights, out)
    (out / "manifest.json").write_bytes(b'{"params": {"job": "data align"}, "done": [1, 2')
    refused(align(monkeypatch, src, weights, out, "--photos-per-shard", "2"), "manifest.json")


def test_a_tampered_card_is_refused_when_the_shards_are_gone(tmp_path, monkeypatch, src, weights):
    out = tmp_path / "out"
    succeeded(align(monkeypatch, src, weights, out))
    card = json.loads((out / "dataset.json").read_text())
    (out / "dataset.json").write_text(json.dumps({**card, "images": 7}))
    refused(align(monkeypatch, src, weights, out), "dataset.json", "staged shards are gone")


def test_a_tampered_card_is_reassembled_from_kept_shards(tmp_path, monkeypatch, src, weights):
    full, out = tmp_path / "full", tmp_path / "out"
    succeeded(align(monkeypatch, src, weights, full))
    succeeded(align(monkeypatch, src, weights, out, "--keep-shards"))
    (out / "outcomes.csv").write_text("photo,outcome\nalice/0.png,aligned\n")  # edited after the run
    result = align(monkeypatch, src, weights, out, "--keep-shards")
    assert result.exit_code == 0, result.output
    assert "warning:" in result.stderr and "re-assembling" in result.stderr
    assert aligntest.run_bytes(out) == aligntest.run_bytes(full)
