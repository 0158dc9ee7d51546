"""``.bin`` packs whose images are numpy uint8 arrays, the way OpenCV writes them, and hostile variants.

A pack made with OpenCV holds ``cv2.imencode``'s output: an (N, 1) uint8 array of JPEG/PNG bytes per image
(insightface's ``recognition/arcface_paddle/test_tipc/data/small_lfw.bin`` is one). Such packs load and
evaluate under every pickle protocol numpy writes (0-4: ``_reconstruct`` and its state; 5: ``_frombuffer``
with the bytes in-band). The unpickler admits those numpy globals only the way numpy's own pickles call
them, arrays only of uint8 and bool, and never lets a pickle's declared shape size an allocation: each case
here asserts one line naming the file, and that no payload ran.
"""

from __future__ import annotations

import json
import pickle
import pickletools

import conftest as fx
import numpy as np
import pytest
from numpy._core.multiarray import _reconstruct, scalar
from numpy._core.numeric import _frombuffer

from facebench.cli import create_cli
from facebench.data import decode_image, encode_image, open_pairs

from .conftest import Payload, invoke, refused, succeeded

SIZE = 16


def jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return encode_image(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), "jpg")


def imencoded(data: bytes, shape: str = "column") -> np.ndarray:
    """``data`` as ``cv2.imencode`` returns it: a writable (N, 1) uint8 array (or another layout)."""
    array = np.frombuffer(data, dtype=np.uint8).copy()
    return {"column": array.reshape(-1, 1), "row": array.reshape(1, -1), "flat": array}[shape]


class Calls:
    """A pickle that calls ``func(*args)`` when loaded, then sets ``state`` on the result (BUILD)."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def data(*args):
    return invoke(create_cli(), ["data", *args])


U1 = np.dtype(np.uint8)


# ------------------------------------------------------------------------------------------ accepted

@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("shape", ["column", "row", "flat"])
def test_opencv_pack_loads_under_every_protocol(tmp_path, marker, protocol, shape):
    originals = [jpeg(k) for k in range(4)]
    pack = tmp_path / "lfw.bin"
    pack.write_bytes(pickle.dumps(([imencoded(b, shape) for b in originals], [True, False]), protocol=protocol))
    info = json.loads(succeeded(data("info", pack, "--json")))
    assert (info["pairs"], info["same"], info["different"], info["images"]) == (2, 1, 1, 4)
    assert "2 pairs read without a problem" in succeeded(data("check", pack))
    reader = open_pairs(pack)
    assert [reader.pair_bytes(k)[side] for k in range(2) for side in (0, 1)] == originals
    assert list(reader.issame) == [True, False]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_flags_as_a_numpy_bool_array_and_bool_scalars(tmp_path, protocol):
    images = [imencoded(jpeg(k)) for k in range(6)]
    for flags in (np.array([True, False, True]), [np.True_, np.False_, np.True_], np.array([1, 0, 1], np.uint8)):
        pack = tmp_path / "lfw.bin"
        pack.write_bytes(pickle.dumps((images, flags), protocol=protocol))
        assert list(open_pairs(pack).issame) == [True, False, True]


def numpy1_names(raw: bytes, protocol: int) -> bytes:
    """A numpy 2 pickle as numpy 1 writes it: ``numpy.core.*`` for ``numpy._core.*``."""
    if protocol >= 4:  # SHORT_BINUNICODE names: fix each length byte, then let pickletools re-frame
        for old in (b"numeric", b"multiarray"):
            name = b"numpy._core." + old
            raw = raw.replace(bytes([0x8C, len(name)]) + name, bytes([0x8C, len(name) - 1]) + b"numpy.core." + old)
        raw = pickletools.optimize(raw)
    else:
        raw = raw.replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy._core" not in raw and b"numpy.core." in raw
    return raw


@pytest.mark.parametrize("protocol", [2, 3, 5])
def test_numpy_1_module_names_load_too(tmp_path, protocol):
    """Packs pickled under numpy 1 name ``numpy.core.*`` (insightface's small_lfw.bin does), numpy 2
    ``numpy._core.*``: both are admitted, for the same few functions (arrays and bool scalars)."""
    originals = [jpeg(k) for k in range(4)]
    images = [imencoded(b) for b in originals]
    for flags in (np.array([True, False]), [np.True_, np.False_]):
        pack = tmp_path / "lfw.bin"
        pack.write_bytes(numpy1_names(pickle.dumps((images, flags), protocol=protocol), protocol))
        reader = open_pairs(pack)
        assert [reader.pair_bytes(k)[side] for k in range(2) for side in (0, 1)] == originals
        assert list(reader.issame) == [True, False]


def test_strided_and_fortran_arrays_give_their_bytes_in_order(tmp_path):
    """numpy pickles a Fortran-ordered array with its ``F`` flag and a strided one as 'K' plus the axis
    order; either way the image is the array's bytes in C order."""
    payload = np.arange(24, dtype=np.uint8).reshape(4, 6)
    for array in (np.asfortranarray(payload), payload.T, payload[:, ::2]):
        for protocol in (2, 5):
            pack = tmp_path / "odd.bin"
            pack.write_bytes(pickle.dumps(([array, array], [True]), protocol=protocol))
            assert open_pairs(pack).pair_bytes(0)[0] == np.ascontiguousarray(array).tobytes()


def test_evaluate_scores_an_opencv_pack_as_the_same_pack_of_bytes(tmp_path, monkeypatch):
    """``evaluate`` on the pack OpenCV would write gives exactly the row of the same images as bytes."""
    rows = {}
    for kind in ("bytes", "arrays"):
        root = tmp_path / kind
        root.mkdir()
        fx.write_pack(root / "toy_lfw.bin", pairs=40, size=32)
        if kind == "arrays":
            reader = open_pairs(root / "toy_lfw.bin")
            images = [imencoded(reader.pair_bytes(k)[side]) for k in range(len(reader)) for side in (0, 1)]
            (root / "toy_lfw.bin").write_bytes(pickle.dumps((images, [bool(f) for f in reader.issame]),
                                                            protocol=5))
        out = tmp_path / f"run-{kind}"
        result = invoke(fx.cli_with_test_extractors(monkeypatch),
                        ["evaluate", "--suite", "toy_lfw", "--model", fx.write_weights(tmp_path / "pixels.pt"),
                         "--backbone", "pixels", "--data-root", root, "--out", out, "--device", "cpu",
                         "--bootstrap", "0"])
        succeeded(result)
        row = json.loads((out / "results.json").read_text())[0]
        rows[kind] = {k: row[k] for k in ("accuracy", "std", "threshold", "pairs")}
    assert rows["arrays"] == rows["bytes"] and rows["bytes"]["pairs"] == 40


# ------------------------------------------------------------------------------------------ refused

def _out_of_band(marker):
    return pickle.dumps(([imencoded(jpeg(0)), imencoded(jpeg(1))], [True]), protocol=5,
                        buffer_callback=lambda buffer: False)


def _opcodes(obj) -> bytes:
    """``obj``'s pickle opcodes without the protocol header and the STOP."""
    return pickle.dumps(obj, protocol=2)[2:-1]


def _state_twice(marker):
    """An array shell filled twice (a second BUILD on an array numpy already filled)."""
    state = _opcodes((1, (3,), U1, False, b"abc"))
    shell = _opcodes(Calls(_reconstruct, (np.ndarray, (0,), b"b")))
    return b"\x80\x02(" + shell + state + b"b" + state + b"b" + _opcodes(jpeg(1)) + b"l]\x88a\x86."


HOSTILE = [
    # (id, what the pack holds: a Python object to pickle (protocol 4 unless bytes), fragment of the error)
    pytest.param(lambda m: ([np.frombuffer(jpeg(0), np.uint8).astype(np.float32), imencoded(jpeg(1))], [True]),
                 "numpy dtype 'f4' refused", id="float32-image"),
    pytest.param(lambda m: ([imencoded(jpeg(0)), imencoded(jpeg(1))], np.array([1], np.int64)),
                 "numpy dtype 'i8' refused", id="int64-flags"),
    pytest.param(lambda m: (np.array([jpeg(0), jpeg(1)], dtype=object), [True]), "numpy dtype 'O",
                 id="object-array-of-images"),
    pytest.param(lambda m: ([np.zeros(4, dtype=[("a", "u1")]), imencoded(jpeg(1))], [True]),
                 "numpy dtype 'V1' refused", id="structured-dtype"),
    pytest.param(lambda m: ([np.zeros(4, dtype="S4"), imencoded(jpeg(1))], [True]), "numpy dtype 'S4' refused",
                 id="bytes-string-array"),
    pytest.param(lambda m: ([imencoded(jpeg(0)) > 0, imencoded(jpeg(1))], [True]),
                 "image entry is a numpy bool array, not encoded bytes", id="bool-array-as-image"),
    pytest.param(lambda m: ([Calls(_reconstruct, (np.ndarray, (0,), b"b"), (1, (1 << 40,), U1, False, b"abc")),
                             imencoded(jpeg(1))], [True]), "needs 1099511627776 bytes, the pickle holds 3",
                 id="state-declares-1TB"),
    pytest.param(lambda m: ([Calls(_frombuffer, (b"abc", U1, (1 << 20, 1 << 20), "C")), imencoded(jpeg(1))],
                            [True]), "needs 1099511627776 bytes, the pickle holds 3", id="frombuffer-declares-1TB"),
    pytest.param(lambda m: ([Calls(_frombuffer, (b"abc", U1, (1 << 62, 1 << 62, 1 << 62), "C")), jpeg(1)],
                            [True]), "the pickle holds 3", id="shape-beyond-int64"),
    pytest.param(lambda m: ([Calls(_frombuffer, (b"abc", U1, (-1, -3), "C")), jpeg(1)], [True]),
                 "shape must be a tuple of non-negative whole numbers", id="negative-shape"),
    pytest.param(lambda m: ([Calls(_frombuffer, (b"a", U1, (1,) * 40, "C")), jpeg(1)], [True]),
                 "shape must be a tuple of non-negative whole numbers", id="forty-axes"),
    pytest.param(lambda m: ([Calls(_frombuffer, (b"abcdefghi", U1, (10, 1), "C")), jpeg(1)], [True]),
                 "needs 10 bytes, the pickle holds 9", id="data-one-byte-short"),
    pytest.param(lambda m: ([Calls(_frombuffer, ([1, 2, 3], U1, (3,), "C")), jpeg(1)], [True]),
                 "numpy array data must be bytes", id="frombuffer-data-a-list"),
    pytest.param(lambda m: ([Calls(_frombuffer, (b"abc", U1, (3,), "X")), jpeg(1)], [True]),
                 "numpy._frombuffer is admitted only", id="frombuffer-unknown-order"),
    pytest.param(lambda m: ([Calls(_frombuffer, (b"abcdef", U1, (2, 3), "K", (0, 0))), jpeg(1)], [True]),
                 "axis order must be a permutation", id="frombuffer-bad-axis-order"),
    pytest.param(lambda m: ([Calls(_reconstruct, (np.ndarray, (0,), b"O")), jpeg(1)], [True]),
                 "numpy._reconstruct is admitted only", id="reconstruct-object-typecode"),
    pytest.param(lambda m: ([Calls(_reconstruct, (np.ndarray, (0,), b"b")), jpeg(1)], [True]),
                 "numpy array without its data", id="array-shell-never-filled"),
    pytest.param(lambda m: ([Calls(_reconstruct, (np.ndarray, (0,), b"b"), (1, (3,), "u1", False, b"abc")),
                             jpeg(1)], [True]), "numpy array without a numpy.dtype", id="state-dtype-a-string"),
    pytest.param(lambda m: ([Calls(_reconstruct, (np.ndarray, (0,), b"b"), (1, (3,), U1, False, b"abc", 7)),
                             jpeg(1)], [True]), "numpy array state is admitted only", id="state-six-fields"),
    pytest.param(lambda m: ([Calls(np.dtype, ("u1", True, True)), jpeg(1)], [True]),
                 "numpy.dtype is admitted only", id="dtype-aligned"),
    pytest.param(lambda m: ([Calls(np.dtype, ("u1", False, True), (3, "|", None, ("a",), {"a": (U1, 0)}, 1, 1, 0)),
                             jpeg(1)], [True]), "numpy.dtype state with fields", id="dtype-state-with-fields"),
    pytest.param(lambda m: ([imencoded(jpeg(0)), imencoded(jpeg(1))], [Calls(scalar, (np.dtype("f8"), b"\0" * 8))]),
                 "numpy dtype 'f8' refused", id="float-scalar-flag"),
    pytest.param(lambda m: ([imencoded(jpeg(0)), imencoded(jpeg(1))], [Calls(scalar, (np.dtype("b1"), b"\1" * 9))]),
                 "needs 1 bytes, the pickle holds 9", id="bool-scalar-nine-bytes"),
    pytest.param(lambda m: ([imencoded(jpeg(0)), Calls(np.frombuffer, (b"abc", U1))], [True]),
                 "refused to load pickle global 'numpy", id="numpy-frombuffer"),
    pytest.param(lambda m: ([imencoded(jpeg(0)), Calls(np.fromfile, ("/etc/passwd",))], [True]),
                 "refused to load pickle global", id="numpy-fromfile"),
    pytest.param(lambda m: ([imencoded(jpeg(0)), imencoded(jpeg(1)), Payload(m)], [True]),
                 "refused to load pickle global", id="payload-after-arrays"),
    pytest.param(lambda m: ([Calls(_frombuffer, (b"abc", Payload(m), (3,), "C")), jpeg(1)], [True]),
                 "refused to load pickle global", id="payload-as-dtype"),
    pytest.param(lambda m: ([imencoded(jpeg(0)), imencoded(jpeg(1))], np.array([Payload(m)], dtype=object)),
                 "numpy dtype 'O", id="payload-in-object-flags"),
    pytest.param(_state_twice, "numpy array state is admitted only", id="array-state-set-twice"),
    pytest.param(_out_of_band, "corrupt pickle", id="protocol-5-out-of-band-buffers"),
]


@pytest.mark.parametrize("content,fragment", HOSTILE)
@pytest.mark.parametrize("protocol", [2, 5])
def test_array_pack_refused(tmp_path, marker, content, fragment, protocol):
    pack = tmp_path / "lfw.bin"
    value = content(marker)
    pack.write_bytes(value if isinstance(value, bytes) else pickle.dumps(value, protocol=protocol))
    line = refused(data("info", pack), pack)
    assert fragment in line, line


def test_refusal_names_the_offset(tmp_path, marker):
    pack = tmp_path / "lfw.bin"
    pack.write_bytes(pickle.dumps(([np.zeros(8, np.float64), jpeg(1)], [True]), protocol=4))
    line = refused(data("check", pack), pack, "numpy dtype 'f8' refused")
    assert f"of {pack.stat().st_size}" in line and "at offset " in line


def test_undecodable_array_image_is_listed_by_check(tmp_path):
    """An array entry is bytes like any other: garbage is reported by ``check`` naming the image."""
    pack = tmp_path / "lfw.bin"
    pack.write_bytes(pickle.dumps(([imencoded(jpeg(0)), imencoded(b"not an image at all")], [True]), protocol=5))
    result = data("check", pack)
    refused(result, pack, "1 problem(s) found")
    assert f"{pack}: undecodable image" in result.stdout and "at image 1" in result.stdout


def test_one_array_listed_many_times_is_kept_once(tmp_path):
    image = imencoded(jpeg(0))
    pack = tmp_path / "lfw.bin"
    pack.write_bytes(pickle.dumps(([image] * 20000, [True] * 10000), protocol=5))
    reader = open_pairs(pack)
    assert len(reader) == 10000 and reader.pair_bytes(0)[0] is reader.pair_bytes(9999)[1]
    assert decode_image(reader.pair_bytes(0)[0]).shape == (SIZE, SIZE, 3)
