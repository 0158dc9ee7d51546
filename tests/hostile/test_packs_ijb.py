"""Hostile IJB packs through ``facebench evaluate --suite ijbc|ijbb``: meta files someone else made.

Every case starts from the toy IJB-C pack (``toyfaces protocols``, the insightface layout: ``meta/`` lists
and ``loose_crop/`` images), copied to ``DATA/IJBC`` (or renamed to ``DATA/IJBB``) and changed in one way.
A refused pack is exit 2 with one ``error:`` line naming the file (and the line) and no run folder left
behind; a harmless extra gives the clean pack's numbers. The first case is the acceptance of issue 21: an
``IJBB`` folder that also holds ``ijbc_*`` files is scored from its ``ijbb_*`` files, and the row records
which files it read and their sha256.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import conftest as fx
import pytest

from hostile.conftest import bomb_png, invoke, refused, succeeded

META = ("face_tid_mid.txt", "name_5pts_score.txt", "template_pair_label.txt", "1N_gallery_G1.csv",
        "1N_gallery_G2.csv", "1N_probe_mixed.csv")
#: Result figures that must not move when a harmless extra is added to a pack.
FIGURES = ("pairs", "same_pairs", "images", "templates", "tar_at_far_1e-1", "tar_at_far_1e-2", "tar_at_far_1e-4",
           "eer", "rank_1", "rank_5")



def ijb_pack(toy: Path, data: Path, target: str = "ijbc") -> Path:
    """``data/IJBC`` (or ``data/IJBB`` with every meta file renamed ``ijbb_*``): a copy of the toy pack."""
    root = data / target.upper()
    shutil.copytree(toy / "toy_ijb", root)
    if target != "ijbc":
        for name in META:
            (root / "meta" / f"ijbc_{name}").rename(root / "meta" / f"{target}_{name}")
    return root


def evaluate(cli, model, data, out, suite="ijbc"):
    return invoke(cli, ["evaluate", "--suite", suite, "--model", model, "--backbone", "pixels", "--data-root", data,
                        "--out", out, "--device", "cpu", "--bootstrap", "0"])


def rows_of(out: Path) -> dict[str, dict]:
    return {r["benchmark"]: r for r in json.loads((out / "results.json").read_text())}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def clean(toy, model, tmp_path_factory) -> dict[str, dict]:
    """The clean pack's rows (``--suite ijbc``), the numbers a harmless extra must not move."""
    base = tmp_path_factory.mktemp("clean")
    ijb_pack(toy, base / "data")
    with pytest.MonkeyPatch.context() as mp:
        result = evaluate(fx.cli_with_test_extractors(mp), model, base / "data", base / "run")
    succeeded(result)
    return rows_of(base / "run")


# ------------------------------------------------------------------------------------ the right target


def test_ijbb_beside_ijbc_files_is_scored_from_the_ijbb_files(toy, model, cli, tmp_path):
    """Acceptance: ``--suite ijbb`` on an ``IJBB/meta`` that also holds IJB-C's lists reports IJB-B's pair
    count and the sha256 of the ``ijbb_*`` files it read (before the fix: IJB-C's pair list, hashed as IJB-B)."""
    data = tmp_path / "data"
    root = ijb_pack(toy, data, "ijbb")
    meta = root / "meta"
    for name in META:  # IJB-C's full lists beside IJB-B's
        shutil.copy(toy / "toy_ijb" / "meta" / f"ijbc_{name}", meta / f"ijbc_{name}")
    lines = (meta / "ijbb_template_pair_label.txt").read_text().splitlines()
    kept = lines[:25] + lines[-50:]  # IJB-B's own, shorter pair list: genuine and impostor pairs
    (meta / "ijbb_template_pair_label.txt").write_text("\n".join(kept) + "\n")
    assert len(kept) != len(lines)

    out = tmp_path / "run"
    succeeded(evaluate(cli, model, data, out, "ijbb"))
    row = rows_of(out)["ijbb"]
    assert row["pairs"] == len(kept)
    assert row["same_pairs"] == sum(line.endswith(" 1") for line in kept)
    assert row["target"] == "ijbb"
    read = ("face_tid_mid.txt", "name_5pts_score.txt", "template_pair_label.txt")
    assert row["files"] == {f"ijbb_{name}": sha256(meta / f"ijbb_{name}") for name in read}
    provenance = json.loads((out / "provenance.json").read_text())
    hashed = sorted(Path(entry["path"]).name for entry in provenance["inputs"].values())
    assert hashed == sorted(["pixels.pt", *(f"ijbb_{name}" for name in read)])

    # the same numbers as an IJBB folder without the IJB-C files: those were not read
    alone = tmp_path / "alone"
    root2 = ijb_pack(toy, alone, "ijbb")
    shutil.copy(meta / "ijbb_template_pair_label.txt", root2 / "meta" / "ijbb_template_pair_label.txt")
    succeeded(evaluate(cli, model, alone, tmp_path / "run2", "ijbb"))
    again = rows_of(tmp_path / "run2")["ijbb"]
    assert {k: again[k] for k in FIGURES if k in again} == {k: row[k] for k in FIGURES if k in row}
    assert again["pack_sha256"] == row["pack_sha256"]


def test_ijbc_rows_record_the_files_they_read(clean, toy):
    meta = toy / "toy_ijb" / "meta"
    assert clean["ijbc"]["files"] == {f"ijbc_{n}": sha256(meta / f"ijbc_{n}") for n in META[:3]}
    assert clean["ijbc_1n"]["files"] == {f"ijbc_{n}": sha256(meta / f"ijbc_{n}") for n in META[:2] + META[3:]}
    assert clean["ijbc"]["pairs"] == len((meta / "ijbc_template_pair_label.txt").read_text().splitlines())


def test_an_ijbb_pack_missing_its_own_image_list_never_falls_back_to_ijbc(toy, model, cli, tmp_path):
    data = tmp_path / "data"
    root = ijb_pack(toy, data, "ijbb")
    meta = root / "meta"
    shutil.copy(meta / "ijbb_face_tid_mid.txt", meta / "ijbc_face_tid_mid.txt")
    (meta / "ijbb_face_tid_mid.txt").unlink()
    out = tmp_path / "run"
    refused(evaluate(cli, model, data, out, "ijbb"), meta / "ijbb_face_tid_mid.txt", "not found")
    assert not out.exists()


# ------------------------------------------------------------------------------- refused meta files


def edit_line(path: Path, number: int, text: str | bytes) -> None:
    lines = path.read_bytes().splitlines()
    lines[number - 1] = text.encode() if isinstance(text, str) else text
    path.write_bytes(b"\n".join(lines) + b"\n")


def set_field(path: Path, number: int, column: int, value: str, sep: str = " ") -> None:
    fields = path.read_text().splitlines()[number - 1].split(sep)
    fields[column - 1] = value
    edit_line(path, number, sep.join(fields))


def insert_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines.insert(number - 1, text)
    path.write_text("\n".join(lines) + "\n")


MEDIA, LANDMARKS, PAIRS = "meta/ijbc_face_tid_mid.txt", "meta/ijbc_name_5pts_score.txt", "meta/ijbc_template_pair_label.txt"
BEYOND = str(2**63)


def _media(root, line, name):
    set_field(root / MEDIA, line, 1, name)


def _replace_with_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


# (id, change(root), file named, further text the error line must hold)
REFUSED = [
    ("media-absolute-path", lambda r: _media(r, 3, "/etc/passwd"), MEDIA, ["line 3", "/etc/passwd", "leaves"]),
    ("media-dotdot", lambda r: _media(r, 3, "../../outside.jpg"), MEDIA, ["line 3", "leaves"]),
    ("media-dotdot-inside-name", lambda r: _media(r, 4, "a/../../outside.jpg"), MEDIA, ["line 4", "leaves"]),
    ("media-windows-dotdot", lambda r: _media(r, 2, "..\\..\\outside.jpg"), MEDIA, ["line 2", "leaves"]),
    ("media-nul-byte", lambda r: _media(r, 2, "2\x00.jpg"), MEDIA, ["line 2", "NUL"]),
    ("media-image-listed-twice", lambda r: _media(r, 4, "3.jpg"), MEDIA, ["line 4", "listed twice", "line 3"]),
    ("media-template-beyond-int64", lambda r: set_field(r / MEDIA, 5, 2, BEYOND), MEDIA, ["line 5", "64-bit"]),
    ("media-id-of-5000-digits", lambda r: set_field(r / MEDIA, 5, 3, "9" * 5000), MEDIA, ["line 5", "64-bit"]),
    ("media-id-with-underscore", lambda r: set_field(r / MEDIA, 6, 3, "1_000"), MEDIA, ["line 6", "not an integer"]),
    ("media-id-in-another-script", lambda r: set_field(r / MEDIA, 6, 2, "\u0663"), MEDIA, ["line 6", "not an integer"]),
    ("media-not-utf8", lambda r: edit_line(r / MEDIA, 5, b"\xff\xfe.jpg 100 1"), MEDIA, ["line 5", "UTF-8"]),
    ("media-empty-line", lambda r: insert_line(r / MEDIA, 3, ""), MEDIA, ["line 3", "empty line"]),
    ("media-line-without-end", lambda r: (r / MEDIA).write_bytes(b"x" * (2 << 20)), MEDIA, ["line 1", "longer"]),
    ("media-empty-file", lambda r: (r / MEDIA).write_bytes(b""), MEDIA, ["no images"]),
    ("media-list-is-a-folder", lambda r: _replace_with_folder(r / MEDIA), MEDIA, ["folder"]),
    ("landmarks-name-another-image", lambda r: set_field(r / LANDMARKS, 2, 1, "7.jpg"), LANDMARKS,
     ["line 2", "'7.jpg'", "'2.jpg'"]),
    ("landmarks-nan", lambda r: set_field(r / LANDMARKS, 3, 4, "nan"), LANDMARKS, ["line 3", "finite"]),
    ("landmarks-beyond-float32", lambda r: set_field(r / LANDMARKS, 3, 4, "1e39"), LANDMARKS, ["line 3", "finite"]),
    ("landmarks-negative-faceness", lambda r: set_field(r / LANDMARKS, 4, 12, "-0.9"), LANDMARKS,
     ["line 4", "negative"]),
    ("landmarks-all-one-point", lambda r: edit_line(r / LANDMARKS, 6, "6.jpg " + "50 " * 10 + "0.9"), LANDMARKS,
     ["line 6", "do not determine an alignment"]),
    ("landmarks-not-utf8", lambda r: edit_line(r / LANDMARKS, 2, b"2.jpg \xe9 1 2 3 4 5 6 7 8 9 1"), LANDMARKS,
     ["line 2", "UTF-8"]),
    ("landmarks-missing-line", lambda r: (r / LANDMARKS).write_text(
        "\n".join((r / LANDMARKS).read_text().splitlines()[:-1]) + "\n"), LANDMARKS, ["lines but"]),
    ("pairs-template-beyond-int64", lambda r: set_field(r / PAIRS, 7, 1, BEYOND), PAIRS, ["line 7", "64-bit"]),
    ("pairs-label-beyond-int64", lambda r: set_field(r / PAIRS, 8, 3, "9" * 30), PAIRS, ["line 8", "64-bit"]),
    ("pairs-label-2", lambda r: set_field(r / PAIRS, 9, 3, "2"), PAIRS, ["line 9", "not 0 or 1"]),
    ("pairs-label-float", lambda r: set_field(r / PAIRS, 9, 3, "1.0"), PAIRS, ["line 9", "not an integer"]),
    ("pairs-not-utf8", lambda r: edit_line(r / PAIRS, 10, b"100 \xc3\x28 1"), PAIRS, ["line 10", "UTF-8"]),
    ("pairs-empty-line", lambda r: insert_line(r / PAIRS, 6, ""), PAIRS, ["line 6", "empty line"]),
    ("pairs-empty-file", lambda r: (r / PAIRS).write_bytes(b""), PAIRS, ["no pairs"]),
    ("pairs-unknown-template", lambda r: edit_line(r / PAIRS, 3, "100 424242 0"), PAIRS, ["line 3", "424242"]),
]


@pytest.mark.parametrize("change,file,texts", [pytest.param(c, f, t, id=i) for i, c, f, t in REFUSED])
def test_malformed_meta_files_are_refused_naming_file_and_line(toy, model, cli, tmp_path, change, file, texts):
    data = tmp_path / "data"
    root = ijb_pack(toy, data)
    change(root)
    out = tmp_path / "run"
    line = refused(evaluate(cli, model, data, out), root / file, *texts)
    assert "Traceback" not in line
    assert not out.exists(), "a refused pack left a run folder behind"


G1, PROBES = "meta/ijbc_1N_gallery_G1.csv", "meta/ijbc_1N_probe_mixed.csv"

REFUSED_1N = [
    ("gallery-subject-beyond-int64", lambda r: set_field(r / G1, 2, 2, BEYOND, ","), G1, ["line 2", "64-bit"]),
    ("gallery-template-with-two-subjects", lambda r: insert_line(
        r / G1, 3, (r / G1).read_text().splitlines()[1].split(",")[0] + ",9999,x"), G1,
     ["line 3", "subject 9999", "line 2"]),
    ("gallery-without-header", lambda r: (r / G1).write_text(
        "\n".join((r / G1).read_text().splitlines()[1:]) + "\n"), G1, ["line 1", "header"]),
    ("probes-not-utf8", lambda r: edit_line(r / PROBES, 3, b"\x80\x81,1,x"), PROBES, ["line 3", "UTF-8"]),
    ("probes-template-beyond-int64", lambda r: set_field(r / PROBES, 4, 1, "-" + "9" * 19, ","), PROBES,
     ["line 4", "64-bit"]),
    ("gallery-empty", lambda r: (r / G1).write_text("TEMPLATE_ID,SUBJECT_ID,FILENAME\n"), G1, ["no templates"]),
]


@pytest.mark.parametrize("change,file,texts", [pytest.param(c, f, t, id=i) for i, c, f, t in REFUSED_1N])
def test_malformed_1n_lists_are_refused_naming_file_and_line(toy, model, cli, tmp_path, change, file, texts):
    """The 1:N lists, through the 1:N benchmark alone (``--suite toy_ijb_1n``: the toy pack's own layout),
    so that a refusal leaves no finished 1:1 result behind to resume from."""
    data = tmp_path / "data"
    root = data / "toy_ijb"
    shutil.copytree(toy / "toy_ijb", root)
    change(root)
    out = tmp_path / "run"
    refused(evaluate(cli, model, data, out, "toy_ijb_1n"), root / file, *texts)
    assert not out.exists(), "a refused pack left a run folder behind"


def user_suite(path: Path, files: list[str]) -> Path:
    path.write_text('name = "mine"\n[[benchmark]]\nname = "mine_ijb"\nprotocol = "ijb"\nfiles = '
                    + json.dumps(files) + "\n")
    return path


def test_a_user_suite_naming_a_folder_with_both_targets_is_refused_as_ambiguous(toy, model, cli, tmp_path):
    data = tmp_path / "data"
    root = ijb_pack(toy, data, "ijbb")
    for name in META:
        shutil.copy(toy / "toy_ijb" / "meta" / f"ijbc_{name}", root / "meta" / f"ijbc_{name}")
    suite = user_suite(tmp_path / "mine.toml", ["IJBB"])
    out = tmp_path / "run"
    refused(evaluate(cli, model, data, out, suite), root / "meta", "ijbc and ijbb")
    assert not out.exists()
    # the same folder with IJB-B's lists alone is scored as IJB-B
    for name in META:
        (root / "meta" / f"ijbc_{name}").unlink()
    succeeded(evaluate(cli, model, data, out, suite))
    row = rows_of(out)["mine_ijb"]
    assert row["target"] == "ijbb" and set(row["files"]) == {f"ijbb_{n}" for n in META[:3]}


def test_a_user_suite_locating_ijb_by_a_file_of_no_target_is_refused(toy, model, cli, tmp_path):
    data = tmp_path / "data"
    root = ijb_pack(toy, data)
    (root / "meta" / "README.txt").write_text("IJB-C meta files\n")
    suite = user_suite(tmp_path / "mine.toml", ["IJBC/meta/README.txt"])
    out = tmp_path / "run"
    refused(evaluate(cli, model, data, out, suite), root / "meta" / "README.txt", "not an IJB meta file")
    assert not out.exists()


# -------------------------------------------------------------------------------- refused images


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])


IMAGES = [
    ("image-truncated", _truncate, ["undecodable image"]),
    ("image-not-an-image", lambda p: p.write_text("not a picture at all\n"), ["undecodable image"]),
    ("image-decompression-bomb", lambda p: p.write_bytes(bomb_png()), ["decompression bomb"]),
    ("image-missing", lambda p: p.unlink(), ["not found"]),
    ("image-is-a-folder", _replace_with_folder, ["cannot read image"]),
]


@pytest.mark.parametrize("change,texts", [pytest.param(c, t, id=i) for i, c, t in IMAGES])
def test_bad_loose_crops_are_refused_naming_the_image(toy, model, cli, tmp_path, change, texts):
    data = tmp_path / "data"
    root = ijb_pack(toy, data)
    image = root / "loose_crop" / "5.jpg"
    change(image)
    out = tmp_path / "run"
    refused(evaluate(cli, model, data, out), image, *texts)
    assert not out.exists(), "a refused pack left a run folder behind (features of a failed first batch?)"


def test_a_missing_loose_crop_folder_is_refused(toy, model, cli, tmp_path):
    data = tmp_path / "data"
    root = ijb_pack(toy, data)
    shutil.rmtree(root / "loose_crop")
    out = tmp_path / "run"
    refused(evaluate(cli, model, data, out), root / "loose_crop", "IJB image folder not found")
    assert not out.exists()


# ------------------------------------------------------------------ harmless extras give the clean numbers


def _duplicate_first_pair(root: Path) -> None:
    lines = (root / PAIRS).read_text().splitlines()
    (root / PAIRS).write_text("\n".join([lines[0], *lines]) + "\n")


def _crlf(root: Path) -> None:
    for path in (root / "meta").iterdir():
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))


def _bom(root: Path) -> None:
    for name in (MEDIA, LANDMARKS, G1):
        (root / name).write_bytes(b"\xef\xbb\xbf" + (root / name).read_bytes())


def _strays(root: Path) -> None:
    (root / "meta" / "README.txt").write_text("not a list\n")
    (root / "meta" / "ijbc_face_tid_mid.txt.bak").write_bytes(b"\xff\xff garbage")
    (root / "meta" / "ijbb_template_pair_label.txt").write_text("1 2 1\n")  # another target's file
    (root / "loose_crop" / "unlisted.jpg").write_bytes(b"never read")
    (root / "loose_crop" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")


HARMLESS = [("crlf-line-ends", _crlf), ("utf8-byte-order-marks", _bom), ("stray-files-beside-the-lists", _strays)]


@pytest.mark.parametrize("change", [pytest.param(c, id=i) for i, c in HARMLESS])
def test_harmless_extras_give_the_clean_numbers(toy, model, cli, tmp_path, clean, change):
    data = tmp_path / "data"
    change(ijb_pack(toy, data))
    out = tmp_path / "run"
    succeeded(evaluate(cli, model, data, out))
    rows = rows_of(out)
    for bench in ("ijbc", "ijbc_1n"):
        want = {k: clean[bench][k] for k in FIGURES if k in clean[bench]}
        assert {k: rows[bench].get(k) for k in want} == want, bench


def test_a_repeated_pair_line_is_scored_as_listed_and_changes_the_recorded_hash(toy, model, cli, tmp_path, clean):
    data = tmp_path / "data"
    root = ijb_pack(toy, data)
    _duplicate_first_pair(root)
    out = tmp_path / "run"
    succeeded(evaluate(cli, model, data, out))
    row = rows_of(out)["ijbc"]
    assert row["pairs"] == clean["ijbc"]["pairs"] + 1
    assert row["files"]["ijbc_template_pair_label.txt"] == sha256(root / PAIRS)
    assert row["files"]["ijbc_template_pair_label.txt"] != clean["ijbc"]["files"]["ijbc_template_pair_label.txt"]
    assert row["pack_sha256"] != clean["ijbc"]["pack_sha256"]
