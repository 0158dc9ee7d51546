"""Hostile protocol folders and landmarks files handed to ``facebench data pack lfw|cfp``.

The pack builder reads files someone else made: CFP's ``Protocol/`` lists and splits, LFW's ``pairs.txt``
(through the pair-list reader, whose own cases are in ``test_packs_pairlists.py``), a landmarks file, and
the photos they name. Each case starts from a valid toy LFW or CFP folder (the toy photos and landmarks of
``tests/test_data_pack.py``), breaks one thing, and asserts what a user sees: exit 2 and one ``error:`` line
naming the file (and line), nothing written at ``--out``; or, for a hostile extra that changes nothing (a
byte-order mark, CRLF line ends, comments, landmarks of photos no pair uses), the same pack as the clean
folder gives. Faces come from ``--landmarks``, so no detector is involved.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from test_data_pack import cfp_world, lfw_world

from facebench.cli import create_cli

from .conftest import bomb_png, files_under, invoke, refused, succeeded


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A toy LFW and CFP folder with their landmarks files, and the packs they give, built once."""
    root = tmp_path_factory.mktemp("packs")
    lfw_world(root)
    cfp_world(root)
    cli = create_cli()
    for args in (["lfw", root / "lfw", root / "pairs.txt", "--landmarks", root / "lfw_landmarks.txt"],
                 ["cfp", root / "cfp-dataset", "--protocol", "FP", "--landmarks", root / "cfp_landmarks.txt"]):
        succeeded(invoke(cli, ["data", "pack", *args, "--out", root / f"{args[0]}.bin"]))
    return root


@pytest.fixture
def world(clean, tmp_path):
    """A private copy of the clean folders (links kept as links)."""
    for name in ("lfw", "cfp-dataset"):
        shutil.copytree(clean / name, tmp_path / name, symlinks=True)
    for name in ("pairs.txt", "lfw_landmarks.txt", "cfp_landmarks.txt"):
        shutil.copy2(clean / name, tmp_path / name)
    return tmp_path


def pack_cfp(world: Path, out: Path | None = None, landmarks: Path | None = None):
    out = out or world / "cfp_fp.bin"
    return invoke(create_cli(), ["data", "pack", "cfp", world / "cfp-dataset", "--protocol", "FP", "--landmarks",
                                 landmarks or world / "cfp_landmarks.txt", "--out", out])


def pack_lfw(world: Path, out: Path | None = None, landmarks: Path | None = None):
    out = out or world / "lfw.bin"
    return invoke(create_cli(), ["data", "pack", "lfw", world / "lfw", world / "pairs.txt", "--landmarks",
                                 landmarks or world / "lfw_landmarks.txt", "--out", out])


def edit(path: Path, line: int, text: str) -> None:
    """Replace line ``line`` (1-based) of ``path`` with ``text`` (bytes kept as given)."""
    lines = path.read_bytes().splitlines(keepends=True)
    lines[line - 1] = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    path.write_bytes(b"".join(lines))


F_LIST = "cfp-dataset/Protocol/Pair_list_F.txt"
P_LIST = "cfp-dataset/Protocol/Pair_list_P.txt"
SAME_01 = "cfp-dataset/Protocol/Split/FP/01/same.txt"

CFP_CASES = [
    # (id, file, line to replace (0: the whole file), new text, fragment of the error line)
    pytest.param(P_LIST, 2, b"2 ../Data/Images/\xff\xfe.jpg\n", "is not UTF-8 text (byte 18 of the line) at line 2",
                 id="list-not-utf8"),
    pytest.param(P_LIST, 2, "2 ../Data/Images/a\x00b.jpg\n", "empty or holds a NUL byte at line 2", id="list-nul"),
    pytest.param(P_LIST, 2, "2 /etc/passwd\n", "image path '/etc/passwd' leaves the folder", id="list-absolute"),
    pytest.param(P_LIST, 2, "2 ../../outside.jpg\n", "image path '../outside.jpg' leaves the folder",
                 id="list-parent-of-the-cfp-folder"),
    pytest.param(P_LIST, 2, "2 ..\\..\\outside.jpg\n", "leaves the folder", id="list-backslash-parent"),
    pytest.param(P_LIST, 2, "2 Data/../../outside.jpg\n", "leaves the folder", id="list-inner-parent"),
    pytest.param(P_LIST, 2, "12345678901 ../Data/Images/001/profile/02.jpg\n", "expected '<index> <path>'",
                 id="list-index-too-long"),
    pytest.param(P_LIST, 2, "-2 ../Data/Images/001/profile/02.jpg\n", "expected '<index> <path>'",
                 id="list-index-negative"),
    pytest.param(P_LIST, 2, "1 ../Data/Images/001/profile/02.jpg\n", "index 1 is listed twice at line 2",
                 id="list-index-twice"),
    pytest.param(P_LIST, 2, "2 ../Data/Images/001/profile/02.jpg extra\n", "expected '<index> <path>'",
                 id="list-three-fields"),
    pytest.param(P_LIST, 0, "", "lists no photos", id="list-empty"),
    pytest.param(P_LIST, 2, "2 ../Data/Images/" + "x" * 70000 + ".jpg\n", "cannot be read (File name too long) "
                 "at line 2", id="list-name-too-long"),
    pytest.param(P_LIST, 2, "2 ../Data/Images/" + "x" * (1 << 21) + ".jpg\n", "line longer than", id="list-huge-line"),
    pytest.param(SAME_01, 1, "1,2,3\n", "expected '<index>,<index>'", id="split-three-indices"),
    pytest.param(SAME_01, 1, "-1,2\n", "expected '<index>,<index>'", id="split-negative"),
    pytest.param(SAME_01, 1, "1,1e3\n", "expected '<index>,<index>'", id="split-float"),
    pytest.param(SAME_01, 1, "99999,1\n", "index 99999 is not in Pair_list_F.txt at line 1", id="split-index-absent"),
    pytest.param(SAME_01, 1, b"\xc3\x28,1\n", "is not UTF-8 text", id="split-not-utf8"),
]


@pytest.mark.parametrize("name,line,text,fragment", CFP_CASES)
def test_cfp_protocol_file_refused(world, marker, name, line, text, fragment):
    path = world / name
    if line == 0:
        path.write_text(text)
    else:
        edit(path, line, text)
    before = files_under(world)
    result = pack_cfp(world)
    assert fragment in refused(result, path)
    assert files_under(world) == before  # nothing written, no temporary left


def test_protocol_file_linked_out_of_the_folder_is_refused(world, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "same.txt"
    split = world / SAME_01
    shutil.copy2(split, outside)
    split.unlink()
    split.symlink_to(outside)
    assert "is a symbolic link leading out of" in refused(pack_cfp(world), split)


def test_photo_linked_out_of_the_folder_is_refused(world, tmp_path_factory):
    photo = world / "cfp-dataset/Data/Images/001/frontal/01.jpg"
    outside = tmp_path_factory.mktemp("outside") / "01.jpg"
    photo.rename(outside)
    photo.symlink_to(outside)
    assert "is a symbolic link leading out of" in refused(pack_cfp(world), photo)


def test_links_that_stay_inside_are_read(world, clean):
    """A photo folder linked to another place inside the CFP folder reads as the photos themselves."""
    images = world / "cfp-dataset/Data/Images"
    (world / "cfp-dataset/Data/Stored").mkdir()
    (images / "003").rename(world / "cfp-dataset/Data/Stored/003")
    (images / "003").symlink_to(Path("../Stored/003"))
    succeeded(pack_cfp(world))
    assert (world / "cfp_fp.bin").read_bytes() == (clean / "cfp.bin").read_bytes()


@pytest.mark.parametrize("kind", ["bomb", "truncated", "not-an-image"])
def test_photo_that_does_not_decode_is_refused_naming_it(world, kind):
    photo = world / "cfp-dataset/Data/Images/002/profile/01.jpg"
    data = photo.read_bytes()
    photo.write_bytes({"bomb": bomb_png(), "truncated": data[: len(data) // 3], "not-an-image": b"hello"}[kind])
    line = refused(pack_cfp(world), photo)
    assert {"bomb": "decompression bomb", "truncated": "", "not-an-image": ""}[kind] in line
    assert not (world / "cfp_fp.bin").exists()


def test_byte_order_marks_crlf_and_blank_lines_change_nothing(world, clean):
    for name in (F_LIST, P_LIST, SAME_01):
        path = world / name
        text = path.read_text()
        path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode() + b"\r\n\r\n")
    marks = world / "cfp_landmarks.txt"
    marks.write_bytes(b"\xef\xbb\xbf# toy landmarks\n\n" + marks.read_bytes().replace(b"\n", b"\r\n"))
    succeeded(pack_cfp(world))
    assert (world / "cfp_fp.bin").read_bytes() == (clean / "cfp.bin").read_bytes()


def test_landmarks_of_photos_no_pair_uses_change_nothing(world, clean):
    marks = world / "lfw_landmarks.txt"
    marks.write_text(marks.read_text() + "Zed_Zoe/Zed_Zoe_0001.jpg 1 2 3 4 5 6 7 8 9 10\n")
    succeeded(pack_lfw(world))
    assert (world / "lfw.bin").read_bytes() == (clean / "lfw.bin").read_bytes()


LANDMARK_CASES = [
    # (id, line 1 of the landmarks file becomes this (NAME: the photo it listed), fragment of the error)
    pytest.param("NAME nan 2 3 4 5 6 7 8 9 10", "landmarks must be finite numbers at line 1", id="nan"),
    pytest.param("NAME 1 2 3 4 inf 6 7 8 9 10", "landmarks must be finite numbers at line 1", id="inf"),
    pytest.param("NAME 1 2 3 4 5 6 7 8 9 1e400", "landmarks must be finite numbers at line 1", id="overflow"),
    pytest.param("NAME 1 2 3 4 5 6 7 8 9 0x10", "'0x10' is not a number at line 1", id="hex"),
    pytest.param("NAME " + " ".join(["1"] * 30), "(11 fields), found 31 at line 1", id="thirty-numbers"),
    pytest.param("/etc/passwd 1 2 3 4 5 6 7 8 9 10", "photo path '/etc/passwd' leaves the folder", id="absolute"),
    pytest.param("a\x00b 1 2 3 4 5 6 7 8 9 10", "empty or holds a NUL byte at line 1", id="nul"),
    pytest.param(b"\xff\xfe 1 2 3 4 5 6 7 8 9 10", "is not UTF-8 text", id="not-utf8"),
    pytest.param("NAME 5 5 5 5 5 5 5 5 5 5", "cannot be aligned: the landmarks all lie on one point", id="one-point"),
]


@pytest.mark.parametrize("text,fragment", LANDMARK_CASES)
def test_landmarks_file_refused(world, marker, text, fragment):
    marks = world / "lfw_landmarks.txt"
    name = marks.read_text().split()[0]
    edit(marks, 1, text.replace("NAME", name) + "\n" if isinstance(text, str) else text + b"\n")
    before = files_under(world)
    assert fragment in refused(pack_lfw(world), marks)
    assert files_under(world) == before


def test_landmarks_path_that_is_a_folder_is_refused(world):
    assert "is a folder, not the landmarks file" in refused(pack_lfw(world, landmarks=world / "lfw"), world / "lfw")


def test_a_link_planted_at_the_output_is_replaced_not_followed(world, tmp_path_factory):
    target = tmp_path_factory.mktemp("victim") / "precious.txt"
    target.write_text("keep me")
    out = world / "lfw.bin"
    out.symlink_to(target)
    assert "holds no record of the parameters" in refused(pack_lfw(world, out=out), out)
    result = invoke(create_cli(), ["data", "pack", "lfw", world / "lfw", world / "pairs.txt", "--landmarks",
                                   world / "lfw_landmarks.txt", "--out", out, "--overwrite"])
    succeeded(result)
    assert target.read_text() == "keep me" and not out.is_symlink() and out.stat().st_size > 1000
    assert os.listdir(target.parent) == ["precious.txt"]
