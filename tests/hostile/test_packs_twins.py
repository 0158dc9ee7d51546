"""Hostile ND-Twins folders through ``facebench evaluate --suite twins``: SOTA-FR's prepared layout
``twins_very_easy/twins_very_easy.npy`` + ``issame.txt`` (the ``sotafr`` format), built from the toy twins
mirror and changed in one thing.

An images file that is missing, pickled, of another dtype or shape, truncated, padded, not a ``.npy``, an
``.npz``, Fortran-ordered, a folder or a link out of the pack, and a flag list that is missing, empty, not
UTF-8, holds a token other than 0/1, two tokens on a line, or another count than the images: each is exit 2
with one ``error:`` line naming the file (and the line), no run folder left, no pickle payload run, nothing
allocated from a header's claims. Harmless variants (CRLF, a byte-order mark, blank lines, ``1.0``/``0.0``
as ``np.loadtxt`` reads them, stray files) give the clean folder's numbers.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from hostile.conftest import Payload, invoke, refused, succeeded

NAME = "twins_very_easy"
FIGURES = ("pairs", "same_pairs", "accuracy", "std", "threshold", "eer")


def twins_folder(toy: Path, data: Path) -> Path:
    """``data/twins_very_easy/``: the toy twins under SOTA-FR's name."""
    root = data / NAME
    root.mkdir(parents=True)
    shutil.copy(toy / "toy_twins" / "issame.txt", root / "issame.txt")
    shutil.copy(toy / "toy_twins" / "toy_twins.npy", root / f"{NAME}.npy")
    return root


def evaluate(cli, model, data, out):
    return invoke(cli, ["evaluate", "--suite", "twins", "--model", model, "--backbone", "pixels", "--data-root", data,
                        "--out", out, "--device", "cpu", "--bootstrap", "0"])


def figures(out: Path) -> dict:
    (row,) = json.loads((out / "results.json").read_text())
    return {k: row.get(k) for k in FIGURES}


@pytest.fixture(scope="module")
def clean(toy, model, tmp_path_factory) -> dict:
    import conftest as fx

    base = tmp_path_factory.mktemp("twins")
    twins_folder(toy, base / "data")
    with pytest.MonkeyPatch.context() as mp:
        succeeded(evaluate(fx.cli_with_test_extractors(mp), model, base / "data", base / "run"))
    return figures(base / "run")


def _npy(root: Path) -> Path:
    return root / f"{NAME}.npy"


def _save(array_of):
    def change(root: Path) -> None:
        images = np.load(_npy(root))
        _npy(root).unlink()
        np.save(_npy(root), array_of(images))
    return change


def _bytes(edit):
    def change(root: Path) -> None:
        _npy(root).write_bytes(edit(_npy(root).read_bytes()))
    return change


def _flags(text: str | bytes):
    def change(root: Path) -> None:
        data = text if isinstance(text, bytes) else text.encode()
        (root / "issame.txt").write_bytes(data)
    return change


def _flag_lines(edit):
    def change(root: Path) -> None:
        lines = (root / "issame.txt").read_text().splitlines()
        (root / "issame.txt").write_text("\n".join(edit(lines)) + "\n")
    return change


def _huge_header(root: Path) -> None:
    """A header declaring 10^12 images of 112 x 112 over a few bytes of data."""
    with open(_npy(root), "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (10**12, 3, 112, 112)})
        fh.write(b"\0" * 64)


def _folder(root: Path) -> None:
    _npy(root).unlink()
    _npy(root).mkdir()


def _link_out(root: Path) -> None:
    outside = root.parent.parent / "elsewhere.npy"
    shutil.move(_npy(root), outside)
    _npy(root).symlink_to(outside)


def _flags_link_out(root: Path) -> None:
    outside = root.parent.parent / "issame-elsewhere.txt"
    shutil.move(root / "issame.txt", outside)
    (root / "issame.txt").symlink_to(outside)


def _npz(root: Path) -> None:
    images = np.load(_npy(root))
    with open(_npy(root), "wb") as fh:
        np.savez(fh, images=images)


REFUSED = [
    ("npy-missing", lambda r: _npy(r).unlink(), "twins_very_easy.npy", ["not found"]),
    ("npy-float32", _save(lambda a: a.astype(np.float32)), "twins_very_easy.npy", ["uint8", "float32"]),
    ("npy-channels-last", _save(lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1))), "twins_very_easy.npy",
     ["(2N, 3, H, W)"]),
    ("npy-grey", _save(lambda a: a[:, :1]), "twins_very_easy.npy", ["(2N, 3, H, W)"]),
    ("npy-odd-count", _save(lambda a: a[:-1]), "twins_very_easy.npy", ["pairs", "found 79"]),
    ("npy-no-images", _save(lambda a: a[:0]), "twins_very_easy.npy", ["pairs", "found 0"]),
    ("npy-fortran", _save(lambda a: np.asfortranarray(a)), "twins_very_easy.npy", ["C order"]),
    ("npy-truncated", _bytes(lambda b: b[: len(b) // 2]), "twins_very_easy.npy", ["truncated"]),
    ("npy-trailing-bytes", _bytes(lambda b: b + b"\0" * 7), "twins_very_easy.npy", ["trailing bytes"]),
    ("npy-empty", _bytes(lambda b: b""), "twins_very_easy.npy", ["not a .npy"]),
    ("npy-is-text", _bytes(lambda b: b"images, see README\n"), "twins_very_easy.npy", ["not a .npy"]),
    ("npy-header-garbage", _bytes(lambda b: b[:10] + b"{'descr': nonsense" + b"\n" * 100), "twins_very_easy.npy",
     ["header"]),
    ("npy-huge-header", _huge_header, "twins_very_easy.npy", ["truncated"]),
    ("npy-is-npz", _npz, "twins_very_easy.npy", ["not a .npy"]),
    ("npy-is-a-folder", _folder, "twins_very_easy.npy", ["not a file"]),
    ("npy-links-out", _link_out, "twins_very_easy.npy", ["link leading out"]),
    ("flags-missing", lambda r: (r / "issame.txt").unlink(), "issame.txt", ["not found"]),
    ("flags-links-out", _flags_link_out, "issame.txt", ["link leading out"]),
    ("flags-empty", _flags(""), "issame.txt", ["no pairs"]),
    ("flags-word", _flag_lines(lambda ls: ls[:2] + ["yes"] + ls[3:]), "issame.txt", ["line 3", "'yes'"]),
    ("flags-two", _flag_lines(lambda ls: ["2"] + ls[1:]), "issame.txt", ["line 1", "'2'"]),
    ("flags-negative", _flag_lines(lambda ls: ls[:-1] + ["-1"]), "issame.txt", ["line 40", "'-1'"]),
    ("flags-two-per-line", _flag_lines(lambda ls: ls[:4] + ["1 0"] + ls[5:]), "issame.txt", ["line 5", "'1 0'"]),
    ("flags-one-short", _flag_lines(lambda ls: ls[:-1]), "issame.txt", ["39 pairs", "80 images"]),
    ("flags-one-extra", _flag_lines(lambda ls: ls + ["0"]), "issame.txt", ["41 pairs"]),
    ("flags-not-utf8", _flags(b"1\n0\n\xff\xfe1\n"), "issame.txt", ["not UTF-8", "line 3"]),
    ("flags-nul", _flags(b"1\n\x000\n"), "issame.txt", ["line 2"]),
    ("flags-huge-line", _flags(b"1" * (2 << 20)), "issame.txt", ["longer than"]),
]


@pytest.mark.parametrize("change,file,texts", [pytest.param(c, f, t, id=i) for i, c, f, t in REFUSED])
def test_bad_twins_folders_are_refused_naming_the_file(toy, model, cli, tmp_path, change, file, texts):
    data = tmp_path / "data"
    root = twins_folder(toy, data)
    change(root)
    out = tmp_path / "run"
    refused(evaluate(cli, model, data, out), root / file, *texts)
    assert not out.exists(), "a refused folder left a run folder behind"


def test_a_pickled_images_file_never_runs(toy, model, cli, tmp_path, marker):
    data = tmp_path / "data"
    root = twins_folder(toy, data)
    with open(_npy(root), "wb") as fh:  # an object array: np.save pickles its items
        np.save(fh, np.array([Payload(marker), b"x"], dtype=object), allow_pickle=True)
    refused(evaluate(cli, model, data, tmp_path / "run"), _npy(root), "uint8", "object")
    with open(_npy(root), "wb") as fh:  # a bare pickle under the .npy name
        fh.write(pickle.dumps(Payload(marker)))
    refused(evaluate(cli, model, data, tmp_path / "run"), _npy(root), "not a .npy")


HARMLESS = [
    ("flags-crlf", _flag_lines(lambda ls: [line + "\r" for line in ls])),
    ("flags-bom", lambda r: (r / "issame.txt").write_bytes(b"\xef\xbb\xbf" + (r / "issame.txt").read_bytes())),
    ("flags-blank-lines", _flag_lines(lambda ls: ["", *ls[:3], "   ", *ls[3:], "", ""])),
    ("flags-as-floats", _flag_lines(lambda ls: [f"{int(v)}.0" for v in ls])),
    ("stray-files", lambda r: [(r / "README.txt").write_text("ND-Twins\n"), (r / "other.npy").write_bytes(b"x")]),
]


@pytest.mark.parametrize("change", [pytest.param(c, id=i) for i, c in HARMLESS])
def test_harmless_variants_give_the_clean_numbers(toy, model, cli, tmp_path, clean, change):
    data = tmp_path / "data"
    change(twins_folder(toy, data))
    out = tmp_path / "run"
    succeeded(evaluate(cli, model, data, out))
    assert figures(out) == clean
