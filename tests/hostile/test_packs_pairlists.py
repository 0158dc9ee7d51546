"""Hostile pair packs through ``facebench evaluate``: RFW's four ``.bin`` packs (``--suite rfw``), an LFW-style
``pairs.txt`` folder (``--suite sllfw``) and a CSV pair list (``--suite doppelver``).

Each case builds its pack from toy images in the test and changes one thing. A list that names an image
outside the pack's folder (absolute, ``..``), bytes that are not UTF-8, a CSV error, a number that is no
number, or an image that is truncated, not an image or a decompression bomb is exit 2 with one ``error:``
line naming the file (and the line, or the image); a pickle payload never runs; a refused first pack leaves
no run folder; harmless extras (blank lines, CRLF, a byte-order mark, stray files, a missing RFW group) give
the clean pack's numbers.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import conftest as fx
import numpy as np
import pytest

from facebench.data import encode_image, open_pairs, open_writer
from hostile.conftest import Payload, bomb_png, invoke, refused, succeeded

RFW = ("African", "Asian", "Caucasian", "Indian")
FIGURES = ("pairs", "same_pairs", "accuracy", "std", "threshold", "eer")



def evaluate(cli, model, data, out, suite, *extra):
    return invoke(cli, ["evaluate", "--suite", suite, "--model", model, "--backbone", "pixels", "--data-root", data,
                        "--out", out, "--device", "cpu", "--bootstrap", "0", *extra])


def rows_of(out: Path) -> dict[str, dict]:
    return {r["benchmark"]: r for r in json.loads((out / "results.json").read_text())}


def figures(row: dict) -> dict:
    return {k: row.get(k) for k in FIGURES}


# ------------------------------------------------------------------------------------------------ RFW


def rfw_packs(toy: Path, data: Path) -> Path:
    root = data / "RFW"
    root.mkdir(parents=True)
    for group, tone in zip(RFW, ("tone1", "tone2", "tone3", "tone4")):
        shutil.copy(toy / f"toy_rfw_{tone}.bin", root / f"{group}.bin")
    return root


@pytest.fixture(scope="module")
def rfw_clean(toy, model, tmp_path_factory) -> dict[str, dict]:
    base = tmp_path_factory.mktemp("rfw")
    rfw_packs(toy, base / "data")
    with pytest.MonkeyPatch.context() as mp:
        succeeded(evaluate(fx.cli_with_test_extractors(mp), model, base / "data", base / "run", "rfw"))
    return rows_of(base / "run")


def rewrite_pack(path: Path, change) -> None:
    """``path`` rewritten through the ``.bin`` writer with ``change(k, a, b, same) -> (a, b, same)``."""
    with open_pairs(path) as reader:
        pairs = [(reader.pair_bytes(k), bool(reader.issame[k])) for k in range(len(reader))]
    path.unlink()
    with open_writer(path, "bin") as writer:
        for k, ((a, b), same) in enumerate(pairs):
            writer.add(*change(k, a, b, same))


def _image_at(k0: int, data):
    def change(path: Path) -> None:
        rewrite_pack(path, lambda k, a, b, s: (data(a) if k == k0 else a, b, s))
    return change


def _pickled(obj):
    return lambda path: path.write_bytes(pickle.dumps(obj, protocol=2))


def _pack_is_a_folder(path: Path) -> None:
    path.unlink()
    path.mkdir()
    (path / "notes.txt").write_text("not a pack\n")


RFW_REFUSED = [
    ("pack-truncated", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), ["truncated"]),
    ("pack-empty", lambda p: p.write_bytes(b""), []),
    ("pack-is-text", lambda p: p.write_text("African pairs, see README\n"), []),
    ("pack-is-a-folder", _pack_is_a_folder, []),
    ("pack-of-one-object", _pickled([b"only images"]), ["pair"]),
    ("pack-unequal-lists", _pickled(([b"a", b"b", b"c", b"d"], [True])), ["unequal"]),
    ("pack-image-not-an-image", _image_at(3, lambda a: b"no picture here"), ["undecodable image"]),
    ("pack-image-truncated", _image_at(5, lambda a: a[: len(a) // 3]), ["undecodable image"]),
    ("pack-image-decompression-bomb", _image_at(2, lambda a: bomb_png()), ["decompression bomb"]),
    ("pack-image-empty", _image_at(1, lambda a: b""), ["empty image"]),
]


@pytest.mark.parametrize("change,texts", [pytest.param(c, t, id=i) for i, c, t in RFW_REFUSED])
def test_bad_rfw_packs_are_refused_naming_the_pack(toy, model, cli, tmp_path, change, texts):
    data = tmp_path / "data"
    pack = rfw_packs(toy, data) / "African.bin"  # the suite's first pack: nothing finished before it
    change(pack)
    out = tmp_path / "run"
    refused(evaluate(cli, model, data, out, "rfw"), pack, *texts)
    assert not out.exists(), "a refused pack left a run folder behind"


def test_a_pickle_payload_in_an_rfw_pack_never_runs(toy, model, cli, tmp_path, marker):
    data = tmp_path / "data"
    pack = rfw_packs(toy, data) / "African.bin"
    pack.write_bytes(pickle.dumps(([Payload(marker), b"x"], [True])))
    out = tmp_path / "run"
    refused(evaluate(cli, model, data, out, "rfw"), pack)
    assert not out.exists()


def test_a_bad_later_rfw_pack_keeps_the_finished_groups_to_resume(toy, model, cli, tmp_path, rfw_clean):
    data = tmp_path / "data"
    pack = rfw_packs(toy, data) / "Caucasian.bin"
    pack.write_bytes(pack.read_bytes()[:100])
    out = tmp_path / "run"
    result = evaluate(cli, model, data, out, "rfw")  # the groups scored before it print their lines
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(pack) in errors[0] and "truncated" in errors[0], result.output
    assert "Traceback" not in result.output
    assert not (out / "results.json").exists()  # nothing claims to be a finished suite
    shutil.copy(rfw_packs(toy, tmp_path / "again") / "Caucasian.bin", pack)
    # the repaired pack is another input: the rerun contract names it, and --overwrite keeps what checks out
    refused(evaluate(cli, model, data, out, "rfw"), out, "parameters differ", "packs.rfw_caucasian")
    output = succeeded(evaluate(cli, model, data, out, "rfw", "--overwrite"))
    assert output.count("already evaluated") == 2  # African and Asian were kept
    assert {b: figures(r) for b, r in rows_of(out).items()} == {b: figures(r) for b, r in rfw_clean.items()}


def test_stray_files_and_a_missing_group_leave_the_other_groups_as_they_were(toy, model, cli, tmp_path, rfw_clean):
    data = tmp_path / "data"
    root = rfw_packs(toy, data)
    (root / "Indian.bin").unlink()
    (root / "README.txt").write_text("RFW test packs\n")
    (root / "African.bin.bak").write_bytes(b"\x80\x04 not a pack")
    (root / "Asian_test.bin").write_bytes(b"garbage: RFW/Asian.bin comes first")
    out = tmp_path / "run"
    output = succeeded(evaluate(cli, model, data, out, "rfw"))
    assert "missing" in output and "Indian" in output
    rows = rows_of(out)
    assert set(rows) == {"rfw_african", "rfw_asian", "rfw_caucasian"}
    assert {b: figures(r) for b, r in rows.items()} == {b: figures(rfw_clean[b]) for b in rows}
    assert rows["rfw_african"]["group"] == "African"


# --------------------------------------------------------------------------------- pair-list folders

IDENTITIES = ("Ann_Lee", "Bo_Chen", "Cy_Diaz", "Di_Egan", "Ed_Fox", "Flo_Gray")
PER_IDENTITY = 4
PAIRS = 40


def _images(root: Path) -> None:
    rng = np.random.default_rng(0)
    for i, name in enumerate(IDENTITIES):
        (root / name).mkdir(parents=True)
        for n in range(1, PER_IDENTITY + 1):
            image = fx.identity_image(i, rng, noise=30.0)
            (root / name / f"{name}_{n:04d}.jpg").write_bytes(encode_image(image, "jpg"))


def _pair_plan() -> list[tuple[str, int, str, int]]:
    rng = np.random.default_rng(1)
    plan = []
    for k in range(PAIRS):
        i = int(rng.integers(len(IDENTITIES)))
        if k % 2 == 0:
            a, b = rng.choice(PER_IDENTITY, 2, replace=False) + 1
            plan.append((IDENTITIES[i], int(a), IDENTITIES[i], int(b)))
        else:
            j = (i + 1 + int(rng.integers(len(IDENTITIES) - 1))) % len(IDENTITIES)
            plan.append((IDENTITIES[i], int(rng.integers(PER_IDENTITY)) + 1, IDENTITIES[j],
                         int(rng.integers(PER_IDENTITY)) + 1))
    return plan


def lfw_pack(data: Path) -> Path:
    """``data/sllfw``: identity folders and an LFW ``pairs.txt`` (header: 1 fold of 20 + 20 pairs)."""
    root = data / "sllfw"
    _images(root)
    lines = [f"1\t{PAIRS // 2}"]
    for a, n1, b, n2 in _pair_plan():
        lines.append(f"{a}\t{n1}\t{n2}" if a == b else f"{a}\t{n1}\t{b}\t{n2}")
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


def csv_pack(data: Path) -> Path:
    """``data/doppelver``: the same images and pairs as a ``pairs.csv`` with a header."""
    root = data / "doppelver"
    _images(root / "images")
    lines = ["path_a,path_b,same"]
    for a, n1, b, n2 in _pair_plan():
        lines.append(f"images/{a}/{a}_{n1:04d}.jpg,images/{b}/{b}_{n2:04d}.jpg,{int(a == b)}")
    (root / "pairs.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def lists_clean(model, tmp_path_factory) -> dict[str, dict]:
    base = tmp_path_factory.mktemp("lists")
    lfw_pack(base / "data")
    csv_pack(base / "data")
    rows = {}
    with pytest.MonkeyPatch.context() as mp:
        cli = fx.cli_with_test_extractors(mp)
        for suite in ("sllfw", "doppelver"):
            succeeded(evaluate(cli, model, base / "data", base / suite, suite))
            rows[suite] = rows_of(base / suite)[suite]
    return rows


def edit_line(path: Path, number: int, text: str | bytes) -> None:
    lines = path.read_bytes().splitlines()
    lines[number - 1] = text.encode() if isinstance(text, str) else text
    path.write_bytes(b"\n".join(lines) + b"\n")


def _line(number: int, text: str | bytes, name: str):
    return lambda root: edit_line(root / name, number, text)


def _lfw(number, text):
    return _line(number, text, "pairs.txt")


def _csv(number, text):
    return _line(number, text, "pairs.csv")


# (id, change(root), further text the error line must hold); the error names the pairs file
LFW_REFUSED = [
    ("absolute-identity-folder", _lfw(3, "/etc\t1\t2"), ["line 3", "leaves"]),
    ("dotdot-identity-folder", _lfw(3, "../sllfw_private\t1\t2"), ["line 3", "leaves"]),
    ("absolute-second-identity", _lfw(4, "Ann_Lee\t1\t/tmp\t1"), ["line 4", "leaves"]),
    ("image-number-not-a-number", _lfw(5, "Ann_Lee\tx\t2"), ["line 5", "not a non-negative integer"]),
    ("image-number-in-another-script", _lfw(5, "Ann_Lee\t\u0663\t2"), ["line 5", "not a non-negative integer"]),
    ("image-number-of-5000-digits", _lfw(5, "Ann_Lee\t" + "9" * 5000 + "\t2"), ["line 5", "not a non-negative"]),
    ("image-number-negative", _lfw(6, "Ann_Lee\t-1\t2"), ["line 6", "not a non-negative integer"]),
    ("not-utf8", _lfw(7, b"Ann_Lee\xff\t1\t2"), ["line 7", "UTF-8"]),
    ("header-declares-other-count", _lfw(1, "1\t99"), ["header declares 198 pairs"]),
    ("five-fields", _lfw(8, "Ann_Lee\t1\t2\t3\t4"), ["line 8", "5 fields"]),
    ("image-not-there", _lfw(9, "Ann_Lee\t1\t9"), ["line 9", "Ann_Lee_0009.jpg", "not found"]),
    ("line-without-end", lambda r: (r / "pairs.txt").write_bytes(b"1\t20\n" + b"A" * (2 << 20)),
     ["line 2", "longer"]),
]


@pytest.mark.parametrize("change,texts", [pytest.param(c, t, id=i) for i, c, t in LFW_REFUSED])
def test_bad_lfw_pairs_files_are_refused_naming_file_and_line(model, cli, tmp_path, change, texts):
    data = tmp_path / "data"
    root = lfw_pack(data)
    change(root)
    out = tmp_path / "run"
    refused(evaluate(cli, model, data, out, "sllfw"), root / "pairs.txt", *texts)
    assert not out.exists(), "a refused pack left a run folder behind"


CSV_REFUSED = [
    ("absolute-path", _csv(2, "/etc/passwd,images/Ann_Lee/Ann_Lee_0001.jpg,0"), ["line 2", "/etc/passwd", "leaves"]),
    ("dotdot-path", _csv(3, "../outside.jpg,images/Ann_Lee/Ann_Lee_0001.jpg,0"), ["line 3", "leaves"]),
    ("dotdot-inside-path", _csv(4, "images/../../x.jpg,images/Ann_Lee/Ann_Lee_0001.jpg,1"), ["line 4", "leaves"]),
    ("windows-absolute-path", _csv(4, "C:\\secret.jpg,images/Ann_Lee/Ann_Lee_0001.jpg,1"), ["line 4", "leaves"]),
    ("nul-byte-in-path", _csv(5, "images/Ann_Lee/Ann_Lee_0001.jpg\x00,images/Bo_Chen/Bo_Chen_0001.jpg,0"),
     ["line 5", "NUL"]),
    ("field-beyond-csv-limit", _csv(6, '"' + "x" * 200_000 + '",images/Ann_Lee/Ann_Lee_0001.jpg,1'),
     ["line 6", "invalid CSV", "field larger"]),
    ("not-utf8", _csv(7, b"images/\xe9.jpg,images/Ann_Lee/Ann_Lee_0001.jpg,1"), ["line 7", "UTF-8"]),
    ("same-flag-unknown", _csv(8, "images/Ann_Lee/Ann_Lee_0001.jpg,images/Ann_Lee/Ann_Lee_0002.jpg,maybe"),
     ["line 8", "'maybe'"]),
    ("same-flag-of-10000-chars", _csv(8, "images/Ann_Lee/Ann_Lee_0001.jpg,images/Ann_Lee/Ann_Lee_0002.jpg," +
                                      "y" * 10_000), ["line 8", "same flag"]),
    ("two-columns", _csv(9, "images/Ann_Lee/Ann_Lee_0001.jpg,1"), ["line 9", "2 columns"]),
    ("runaway-quote", _csv(10, 'images/Ann_Lee/Ann_Lee_0001.jpg,"images/Ann_Lee/Ann_Lee_0002.jpg,1'),
     ["line 10", "quote left open"]),
    ("header-only", lambda r: (r / "pairs.csv").write_text("path_a,path_b,same\n"), ["no pairs"]),
]


@pytest.mark.parametrize("change,texts", [pytest.param(c, t, id=i) for i, c, t in CSV_REFUSED])
def test_bad_csv_pair_lists_are_refused_naming_file_and_line(model, cli, tmp_path, change, texts):
    data = tmp_path / "data"
    root = csv_pack(data)
    change(root)
    out = tmp_path / "run"
    line = refused(evaluate(cli, model, data, out, "doppelver"), root / "pairs.csv", *texts)
    assert len(line) < 1000, "an error line must not quote a whole field"
    assert not out.exists(), "a refused pack left a run folder behind"


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


IMAGE_REFUSED = [
    ("truncated", lambda p: p.write_bytes(p.read_bytes()[:60]), ["undecodable image"]),
    ("not-an-image", lambda p: p.write_text("a face, honestly\n"), ["undecodable image"]),
    ("decompression-bomb", lambda p: p.write_bytes(bomb_png()), ["decompression bomb"]),
    ("missing", lambda p: p.unlink(), []),
    ("a-folder", _folder, ["Is a directory"]),
]


@pytest.mark.parametrize("suite", ["sllfw", "doppelver"])
@pytest.mark.parametrize("change,texts", [pytest.param(c, t, id=i) for i, c, t in IMAGE_REFUSED])
def test_bad_images_of_a_pair_list_are_refused_naming_the_image(model, cli, tmp_path, change, texts, suite):
    data = tmp_path / "data"
    root = lfw_pack(data) if suite == "sllfw" else csv_pack(data)
    name = "Cy_Diaz/Cy_Diaz_0003.jpg"
    image = root / name if suite == "sllfw" else root / "images" / name
    change(image)
    out = tmp_path / "run"
    refused(evaluate(cli, model, data, out, suite), root, image.relative_to(root), *texts)
    assert not out.exists(), "a refused pack left a run folder behind"


def _crlf_blank_bom(name: str):
    def change(root: Path) -> None:
        lines = (root / name).read_bytes().splitlines()
        lines.insert(3, b"")
        lines.insert(6, b"   ")
        (root / name).write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n\r\n")
    return change


def _strays(root: Path) -> None:
    (root / "README.txt").write_text("pairs of look-alikes\n")
    (root / "pairs.txt.orig").write_bytes(b"/etc/passwd 1 2\n")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")


def _quoted(root: Path) -> None:
    lines = (root / "pairs.csv").read_text().splitlines()
    quoted = [lines[0]] + [",".join(f'"{f}"' for f in line.split(",")) for line in lines[1:]]
    (root / "pairs.csv").write_text("\n".join(quoted) + "\n")


def _stray_not_utf8_name(root: Path) -> None:
    """A stray file whose name is not UTF-8 (as an archive from another system may hold): listed by no
    pair, but hashed with the folder."""
    (Path(os.fsdecode(os.path.join(os.fsencode(root), b"notes-\xe9t\xe9.txt")))).write_text("stray\n")


HARMLESS = [
    ("lfw-crlf-blank-lines-bom", "sllfw", _crlf_blank_bom("pairs.txt")),
    ("lfw-stray-files", "sllfw", _strays),
    ("lfw-stray-file-named-in-latin1", "sllfw", _stray_not_utf8_name),
    ("csv-crlf-blank-lines-bom", "doppelver", _crlf_blank_bom("pairs.csv")),
    ("csv-quoted-fields", "doppelver", _quoted),
]


@pytest.mark.parametrize("suite,change", [pytest.param(s, c, id=i) for i, s, c in HARMLESS])
def test_harmless_extras_give_the_clean_numbers(model, cli, tmp_path, lists_clean, suite, change):
    data = tmp_path / "data"
    root = lfw_pack(data) if suite == "sllfw" else csv_pack(data)
    change(root)
    out = tmp_path / "run"
    result = evaluate(cli, model, data, out, suite)
    succeeded(result)
    assert figures(rows_of(out)[suite]) == figures(lists_clean[suite])


def test_a_repeated_csv_line_is_scored_as_listed(model, cli, tmp_path, lists_clean):
    data = tmp_path / "data"
    root = csv_pack(data)
    lines = (root / "pairs.csv").read_text().splitlines()
    (root / "pairs.csv").write_text("\n".join(lines + lines[1:3]) + "\n")
    out = tmp_path / "run"
    succeeded(evaluate(cli, model, data, out, "doppelver"))
    row = rows_of(out)["doppelver"]
    assert row["pairs"] == lists_clean["doppelver"]["pairs"] + 2
    assert row["pack_sha256"] != lists_clean["doppelver"]["pack_sha256"]
