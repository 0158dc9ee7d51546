"""What every hostile-input case shares: the network made to fail loudly, and the one assertion of what a
user must see when facebench refuses a file (exit 2, one ``error:`` line naming the file, no traceback, no
numpy repr), plus the checks that nothing was written outside ``--out`` and no pickle payload ran.

Each case builds its input from toy data in the test; nothing here is fetched or committed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import invoke  # noqa: F401 - the hostile cases import it from here

#: Environment switches facebench must set itself before a library could reach the network; the suite
#: removes them so a case shows that facebench sets them, not the test.
OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "DIFFUSERS_OFFLINE")


class NetworkAttempt(AssertionError):
    """A hostile input made facebench (or a library it called) try to reach the network."""


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every connection and name lookup fails loudly and is recorded: ``no_network`` lists the attempts
    (a library that swallows the error still shows up there)."""
    attempts: list[str] = []

    def refuse(what):
        def _refused(*args, **kwargs):
            attempts.append(f"{what}{args[1:] if what == 'connect' else args}")
            raise NetworkAttempt(f"network attempt during a hostile-input test: {what} {args!r}")
        return _refused

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    for name in OFFLINE_SWITCHES:
        monkeypatch.delenv(name, raising=False)
    yield attempts
    assert not attempts, f"network attempts: {attempts}"


#: What a user must never see in an error line: a Python or numpy repr of a value.
_REPRS = re.compile(r"np\.(str_|int64|float64|bool_)\(|array\(|<class |object at 0x")


def refused(result, *names: str | os.PathLike) -> str:
    """Assert the command refused with exit 2 and exactly one ``error:`` line (nothing else on stderr)
    that names each of ``names``; return that line."""
    output = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"uncaught {type(result.exception).__name__}: {result.exception}\n{output}")
    assert "Traceback" not in output, output
    assert result.exit_code == 2, f"exit {result.exit_code}: {output}"
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, output
    stderr = [line for line in result.stderr.splitlines() if line.strip()]
    assert stderr == errors, f"more than the error line on stderr: {result.stderr}"
    line = errors[0]
    for name in names:
        assert str(name) in line, f"{name} not named in: {line}"
    assert not _REPRS.search(line), f"a Python repr in the error line: {line}"
    return line


def succeeded(result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def files_under(root: Path) -> dict[str, tuple[int, float]]:
    """Every file under ``root`` with its size and mtime: compared before and after a command to show that
    it wrote nothing outside its output."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
    return out


class Payload:
    """A pickle whose unpickling writes a marker file: loading it anywhere shows as that file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


@pytest.fixture
def marker(tmp_path):
    """The file a pickle payload would create; the test fails if it exists afterwards."""
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a pickle payload was executed"


def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A PNG header declaring ``width`` x ``height`` pixels, with a few bytes of data: a decompression bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


#: The smallest toy protocols (IJB-C, RFW, TinyFace) the pack cases start from.
SMALL = ["--size", "32", "--set", "ijb_identities=6", "--set", "templates_per_identity=3", "--set", "rfw_pairs=40",
         "--set", "tinyface_identities=5", "--set", "tinyface_distractors=8", "--set", "tinyface_side=12",
         "--set", "twins_pairs=40"]


@pytest.fixture(scope="session")
def toy(tmp_path_factory) -> Path:
    """The toy protocols in the real layouts, built once for the session (each case copies what it changes)."""
    from facebench.cli import create_cli

    out = tmp_path_factory.mktemp("toy") / "toy-protocols"
    result = CliRunner().invoke(create_cli(), ["toyfaces", "protocols", str(out), "--seed", "3", *SMALL])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def model(tmp_path_factory) -> Path:
    """The weights of the ``pixels`` test extractor (tests/conftest.py)."""
    import conftest as fx

    return fx.write_weights(tmp_path_factory.mktemp("model") / "pixels.pt")


def made_tiny(tmp_path_factory, family: str) -> Path:
    """A tiny random-weight model folder made by ``facebench FAMILY make-tiny`` (once per test module)."""
    from facebench.cli import create_cli

    out = tmp_path_factory.mktemp(family) / "tiny"
    succeeded(invoke(create_cli(), [family, "make-tiny", out]))
    return out


def copy_of(folder: Path, tmp_path: Path) -> Path:
    """A per-case copy of a module's model folder, for the case to corrupt."""
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    return copy


def identity_vectors(tmp_path_factory, rows: int, dim: int = 512) -> Path:
    """``rows`` random identity vectors saved as ``ids.npy``."""
    import numpy as np

    path = tmp_path_factory.mktemp("ids") / "ids.npy"
    np.save(path, np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32))
    return path

