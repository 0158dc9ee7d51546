"""Hostile TinyFace packs through ``facebench evaluate --suite tinyface``: file names are the labels.

Every case starts from the toy TinyFace set (``toyfaces protocols``: ``Probe/``, ``Gallery_Match/`` and
``Gallery_Distractor/``, images named ``<identity>_<n>.jpg``), copied to ``DATA/tinyface`` and changed in
one way. A name that would make a wrong label (``-1_0.jpg`` is the distractors' label; negative, non-ASCII,
non-integer or beyond-int64 identities), a name that is not UTF-8, a bad image or a missing folder is exit 2
with one ``error:`` line naming the file and no run folder left behind; hidden and non-image files are
ignored (the clean set's numbers); the row records the sha256 of all three folders, so a changed gallery is
scored again on resume.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import conftest as fx
import pytest

from hostile.conftest import bomb_png, invoke, refused, succeeded

FIGURES = ("probes", "gallery_matches", "distractors", "rank_1", "rank_5", "rank_20")



def tiny_pack(toy: Path, data: Path) -> Path:
    root = data / "tinyface"
    shutil.copytree(toy / "toy_tinyface", root)
    return root


def evaluate(cli, model, data, out):
    return invoke(cli, ["evaluate", "--suite", "tinyface", "--model", model, "--backbone", "pixels", "--data-root",
                        data, "--out", out, "--device", "cpu", "--bootstrap", "0"])


def row_of(out: Path) -> dict:
    (row,) = json.loads((out / "results.json").read_text())
    return row


@pytest.fixture(scope="module")
def clean(toy, model, tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("clean")
    tiny_pack(toy, base / "data")
    with pytest.MonkeyPatch.context() as mp:
        succeeded(evaluate(fx.cli_with_test_extractors(mp), model, base / "data", base / "run"))
    return row_of(base / "run")


def a_face(root: Path) -> bytes:
    return (root / "Probe" / "0_0.jpg").read_bytes()


def _add(folder: str, name: str | bytes):
    """A copy of a probe image added to ``folder`` as ``name``; returns the path the error must name."""
    def change(root: Path) -> Path:
        if isinstance(name, bytes):  # a name that is not UTF-8
            path = os.path.join(os.fsencode(root / folder), name)
            Path(os.fsdecode(path)).write_bytes(a_face(root))
            return Path(os.fsencode(root / folder).decode() + "/" + name.decode("utf-8", "backslashreplace"))
        (root / folder / name).write_bytes(a_face(root))
        return root / folder / name
    return change


def _replace(folder: str, name: str, data):
    def change(root: Path) -> Path:
        path = root / folder / name
        path.write_bytes(data(path) if callable(data) else data)
        return path
    return change


def _empty_probe(root: Path) -> Path:
    for path in (root / "Probe").iterdir():
        path.unlink()
    return root / "Probe"


def _remove_folder(name: str):
    def change(root: Path) -> Path:
        shutil.rmtree(root / name)
        return root / name
    return change


def _folder_is_a_file(root: Path) -> Path:
    shutil.rmtree(root / "Gallery_Match")
    (root / "Gallery_Match").write_text("not a folder\n")
    return root / "Gallery_Match"


def _unmatched_probe(root: Path) -> Path:
    (root / "Probe" / "4242_0.jpg").write_bytes(a_face(root))
    return root / "Probe" / "4242_0.jpg"


# (id, change(root) -> the path the error names, further text the error line must hold)
REFUSED = [
    ("match-named-like-a-distractor", _add("Gallery_Match", "-1_0.jpg"), ["-1", "distractors"]),
    ("probe-named-like-a-distractor", _add("Probe", "-1_5.jpg"), ["-1", "distractors"]),
    ("probe-negative-identity", _add("Probe", "-7_0.jpg"), ["-7", "non-negative"]),
    ("match-non-integer-identity", _add("Gallery_Match", "x_0.jpg"), ["integer identity"]),
    ("probe-without-identity", _add("Probe", "face.jpg"), ["integer identity"]),
    ("probe-identity-beyond-int64", _add("Probe", f"{2**63}_0.jpg"), ["64-bit"]),
    ("probe-identity-of-60-digits", _add("Probe", "9" * 60 + "_0.jpg"), ["64-bit"]),
    ("probe-identity-in-another-script", _add("Probe", "\u0663_0.jpg"), ["integer identity"]),
    ("probe-identity-with-plus-sign", _add("Probe", "+3_0.jpg"), ["integer identity"]),
    ("match-identity-with-space", _add("Gallery_Match", " 3_0.jpg"), ["integer identity"]),
    ("probe-name-not-utf8", _add("Probe", b"3_\xff.jpg"), ["not UTF-8"]),
    ("distractor-name-not-utf8", _add("Gallery_Distractor", b"\xfe\xff.jpg"), ["not UTF-8"]),
    ("probe-without-gallery-match", _unmatched_probe, ["4242", "no image in Gallery_Match"]),
    ("probe-folder-empty", _empty_probe, ["holds no images"]),
    ("distractor-folder-missing", _remove_folder("Gallery_Distractor"), ["not found"]),
    ("match-folder-is-a-file", _folder_is_a_file, ["not a folder"]),
    ("probe-image-truncated", _replace("Probe", "1_0.jpg", lambda p: p.read_bytes()[:40]), ["undecodable image"]),
    ("distractor-not-an-image", _replace("Gallery_Distractor", "00003.jpg", b"GIF89a? no, text"),
     ["undecodable image"]),
    ("match-decompression-bomb", _replace("Gallery_Match", "2_1.png", bomb_png()), ["decompression bomb"]),
    ("probe-empty-file", _replace("Probe", "2_0.jpg", b""), ["empty image"]),
]


@pytest.mark.parametrize("change,texts", [pytest.param(c, t, id=i) for i, c, t in REFUSED])
def test_bad_names_images_and_folders_are_refused_naming_the_file(toy, model, cli, tmp_path, change, texts):
    data = tmp_path / "data"
    named = change(tiny_pack(toy, data))
    out = tmp_path / "run"
    refused(evaluate(cli, model, data, out), named, *texts)
    assert not out.exists(), "a refused pack left a run folder behind"


def _strays(root: Path) -> None:
    face = a_face(root)
    (root / "Probe" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "Probe" / "._1_0.jpg").write_bytes(b"\0\5\26\7 AppleDouble")  # macOS resource fork
    (root / "Gallery_Match" / ".-1_0.jpg").write_bytes(face)  # hidden: not part of the set
    (root / "Gallery_Match" / ".trash").mkdir()
    (root / "Gallery_Match" / ".trash" / "-1_0.jpg").write_bytes(face)
    (root / "Gallery_Match" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (root / "Gallery_Distractor" / "README.txt").write_text("distractors\n")
    (root.parent / "tinyface_notes.txt").write_text("beside the pack\n")


def test_a_non_image_file_whose_name_is_not_utf8_is_ignored(toy, model, cli, tmp_path, clean):
    """Only images must have UTF-8 names (they are the labels); a stray file of another system's encoding is
    no part of the set, and the folder hash of the run's inputs hashes its name as its bytes."""
    data = tmp_path / "data"
    root = tiny_pack(toy, data)
    Path(os.fsdecode(os.path.join(os.fsencode(root / "Gallery_Distractor"), b"notes-\xe9.txt"))).write_text("x\n")
    out = tmp_path / "run"
    result = evaluate(cli, model, data, out)
    succeeded(result)
    assert {k: row_of(out).get(k) for k in FIGURES} == {k: clean.get(k) for k in FIGURES}


def test_hidden_and_non_image_files_are_ignored(toy, model, cli, tmp_path, clean):
    data = tmp_path / "data"
    _strays(tiny_pack(toy, data))
    out = tmp_path / "run"
    succeeded(evaluate(cli, model, data, out))
    row = row_of(out)
    assert {k: row.get(k) for k in FIGURES} == {k: clean.get(k) for k in FIGURES}


def test_the_row_records_the_hash_of_every_folder_read(clean, toy):
    from facebench.provenance import sha256_path

    root = toy / "toy_tinyface"
    assert clean["files"] == {name: sha256_path(root / name)
                              for name in ("Gallery_Distractor", "Gallery_Match", "Probe")}


def test_a_changed_gallery_is_never_resumed_from_the_old_row(toy, model, cli, tmp_path, clean):
    """Before issue 21 only ``Probe`` identified the set: a distractor added after a finished run was not
    seen, and the rerun reused the old row. Now the rerun is scored again; the run's feature cache of the
    old set refuses to be mixed with the new one (one line naming it) until the features are recomputed
    (evaluation runs' feature cache: see the closing note of issue 21's pack work)."""
    data = tmp_path / "data"
    root = tiny_pack(toy, data)
    out = tmp_path / "run"
    succeeded(evaluate(cli, model, data, out))
    assert row_of(out)["distractors"] == clean["distractors"]
    (root / "Gallery_Distractor" / "99999.jpg").write_bytes(a_face(root))
    result = evaluate(cli, model, data, out)
    assert "already evaluated" not in result.output
    if result.exit_code == 2:
        refused(result, out, "made with other parameters (packs.tinyface")
        assert row_of(out)["distractors"] == clean["distractors"]  # the old results stay as they were
    else:
        row = row_of(out)
        assert row["distractors"] == clean["distractors"] + 1
        assert row["files"]["Gallery_Distractor"] != clean["files"]["Gallery_Distractor"]
        assert row["files"]["Probe"] == clean["files"]["Probe"]
    # a fresh run of the changed set records the new folder's hash
    succeeded(evaluate(cli, model, data, tmp_path / "fresh"))
    row = row_of(tmp_path / "fresh")
    assert row["distractors"] == clean["distractors"] + 1
    assert row["files"]["Gallery_Distractor"] != clean["files"]["Gallery_Distractor"]
    assert row["files"]["Probe"] == clean["files"]["Probe"]
