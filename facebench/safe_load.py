"""Loading checkpoints and arrays without executing them.

``torch.load`` on an untrusted file can run arbitrary code; facebench always loads with
``weights_only=True`` (and ``.npy`` arrays with ``allow_pickle=False``) and turns every failure into a
one-line error naming the file.
"""

from __future__ import annotations

import math
import os
import re
import tokenize
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from .errors import DataError, MissingFileError, first_line


def _magic(path: str | os.PathLike, what: str) -> bytes:
    """The first six bytes of an array file (``.npy`` and ``.npz`` tell themselves apart by them)."""
    if not os.path.isfile(path):
        raise MissingFileError(path, f"{what} file")
    try:
        with open(path, "rb") as fh:
            return fh.read(6)
    except OSError as exc:
        raise DataError(path, f"cannot read {what}: {exc.strerror or first_line(exc)}") from None


#: What numpy's ``.npy`` header parser raises on a garbled header (it evaluates the header as a literal).
HEADER_ERRORS = (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError, TypeError, KeyError,
                  RecursionError, MemoryError, OverflowError)


def npy_header(path: str | os.PathLike, *, what: str = "array", data: bytes | None = None,
               where: str | None = None) -> tuple[tuple[int, ...], bool, Any, int]:
    """``(shape, fortran_order, dtype, data offset)`` of a ``.npy`` file from its header alone, so a caller
    can refuse a pickled, oversized or truncated array before anything is read or allocated. A file that
    is no ``.npy`` or whose header is garbled is one error naming the file. ``data`` is the array's bytes
    where they are held inside ``path`` (an LMDB record, named by ``where``) rather than being the file."""
    import io

    import numpy as np

    try:
        with io.BytesIO(data) if data is not None else open(path, "rb") as fh:
            if fh.read(6) != b"\x93NUMPY":
                raise DataError(path, f"{what}: not a .npy array (no NUMPY header)", where)
            fh.seek(0)
            version = np.lib.format.read_magic(fh)
            readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            if version not in readers:
                raise DataError(path, f"{what}: unsupported .npy version {version[0]}.{version[1]}", where)
            shape, fortran, dtype = readers[version](fh)
            return tuple(int(n) for n in shape), bool(fortran), dtype, fh.tell()
    except DataError:
        raise
    except HEADER_ERRORS as exc:
        raise DataError(path, f"cannot read {what}: {shown_name(_array_error(exc))[:200]}", where) from None


def load_array(path: str | os.PathLike, *, what: str = "array") -> Any:
    """A plain ``.npy`` array, never unpickled. A missing, empty, truncated or pickled file, or an ``.npz``
    archive, is one error naming the file; what the array must hold is the caller's check."""
    import numpy as np

    magic = _magic(path, what)
    if magic.startswith(b"PK"):
        raise DataError(path, f"{what} must be a .npy array, got an .npz archive")
    if magic != b"\x93NUMPY":  # numpy's own message for this would suggest allow_pickle=True
        raise DataError(path, f"cannot read {what}: " + ("the file is empty" if not magic else "not a .npy file"))
    shape, _, dtype, offset = npy_header(path, what=what)
    if not dtype.hasobject:  # a pickled array is refused below, in numpy's words turned into ours
        declared, held = math.prod(shape) * dtype.itemsize, os.path.getsize(path) - offset
        if declared != held:  # checked before numpy reserves what the header claims
            raise DataError(path, f"cannot read {what}: its header declares {declared} bytes of data, the file "
                                  f"holds {held} ({'truncated' if held < declared else 'trailing bytes'})")
    try:
        return np.load(path, allow_pickle=False)
    except HEADER_ERRORS as exc:  # a garbled header
        raise DataError(path, f"cannot read {what}: {_array_error(exc)}") from None


def _array_error(exc: BaseException) -> str:
    """Why numpy could not read an array, in words that never suggest ``allow_pickle=True``."""
    if isinstance(exc, (SyntaxError, tokenize.TokenError)):
        return "garbled header"
    if isinstance(exc, OverflowError):  # numpy multiplies the declared shape in int64
        return "its header declares a shape beyond the 64-bit integer range"
    reason = first_line(exc)
    return "it holds Python objects (pickled), which facebench never loads" if "allow_pickle" in reason else reason


def load_npz(path: str | os.PathLike, keys: Iterable[str], *, what: str = "archive") -> dict[str, Any]:
    """The arrays ``keys`` of an ``.npz`` archive, never unpickled. A missing, empty or truncated file, a
    plain ``.npy``, a missing key or a member that is garbled or pickled is one error naming the file;
    what each array must hold is the caller's check."""
    import zipfile

    import numpy as np

    magic = _magic(path, what)
    if magic == b"\x93NUMPY":
        raise DataError(path, f"{what} must be an .npz archive, got a .npy array")
    if not magic.startswith(b"PK"):
        raise DataError(path, f"cannot read {what}: " + ("the file is empty" if not magic else "not an .npz archive"))
    keys = list(keys)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise DataError(path, f"{what}: missing {', '.join(missing)}")
            return {k: npz[k] for k in keys}
    except (*HEADER_ERRORS, zipfile.BadZipFile) as exc:
        raise DataError(path, f"cannot read {what}: {_array_error(exc)}") from None


def _first_sentence(exc: BaseException) -> str:
    """The first sentence of a library's message (torch appends paragraphs of advice), or the exception's
    type where the message says nothing readable (a ``KeyError`` of a random number)."""
    text = first_line(exc)
    if isinstance(exc, EOFError):
        return "the file ends early (empty or cut short)"
    if isinstance(exc, (KeyError, IndexError)) or not text.strip():
        return f"malformed file ({type(exc).__name__})"
    return shown_name(text.split(". ", 1)[0])[:200]


def _refusal(exc: BaseException) -> str:
    """Why torch's weights-only loader refused a file, without torch's advice to load it unsafely."""
    text = str(exc)
    found = (re.search(r"[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)", text)
             or re.search(r"Unsupported operand (\d+)", text))
    if found and "GLOBAL" in found.group(0):
        return f"it holds a Python object ({found.group(1)}), not only tensors; facebench loads weights only"
    if found:
        return f"it is not a plain tensor checkpoint (pickle opcode {found.group(1)})"
    reason = next((line.split("error:", 1)[-1].strip() for line in text.splitlines() if "Unpickler error" in line),
                  None)
    return f"it is not a plain tensor checkpoint ({shown_name(reason or 'unreadable pickle')[:200]})"


def load_checkpoint(path: str | os.PathLike, *, what: str = "checkpoint", map_location: Any = "cpu") -> Any:
    import pickle

    import torch

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MissingFileError(path, what)
    try:
        with warnings.catch_warnings():  # torch warns of pickle protocols it did not write; the load decides
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise DataError(path, f"refused to load {what}: {_refusal(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - any failure of the loader on a file someone handed over
        raise DataError(path, f"cannot read {what}: {_first_sentence(exc)}") from None


def load_state_dict(
    path: str | os.PathLike, *, key: str | None = None, what: str = "weights", expected_keys: Any = None
) -> dict[str, Any]:
    """A state dict from ``path`` (optionally under ``key``); wrong structure is a one-line error."""
    return state_dict_in(load_checkpoint(path, what=what), path, key=key, what=what)


def state_dict_in(obj: Any, path: str | os.PathLike, *, key: str | None = None,
                  what: str = "weights") -> dict[str, Any]:
    """The state dict inside an already loaded checkpoint ``obj`` (read once, used for several things)."""
    import torch

    if key is not None:
        if not isinstance(obj, dict) or key not in obj:
            found = ", ".join(sorted(map(str, obj))[:8]) if isinstance(obj, dict) else type(obj).__name__
            raise DataError(path, f"{what}: expected a dict with key '{key}', found {found}")
        obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DataError(path, f"{what}: expected a state dict of tensors, found {type(obj).__name__}")
    return obj


def state_dict_mismatch(expected: dict[str, Any], state: dict[str, Any], *, show: int = 3) -> str | None:
    """One line naming missing, unexpected and wrong-shape keys of ``state`` against ``expected``, or None.

    Every loader of released weights reports a layout mismatch the same way, so a user can tell at a
    glance whether a file belongs to another architecture (many missing) or another size (shapes).
    """
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    parts = [f"{len(items)} {label} ({', '.join(items[:show])}{', ...' if len(items) > show else ''})"
             for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", wrong))
             if items]
    return "; ".join(parts) or None


# ----------------------------------------------------------------------------- text files a user hands over
# Every JSON/TOML/text file facebench reads back (run folders, manifests, dataset cards, pack lists, model
# configs) may come from someone else: these readers turn every way it can be wrong into one DataError
# naming the file, and ``expect`` checks a field's type where the value is used.

_TYPE_WORDS = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
               bool: "true or false", type(None): "null"}


def type_word(value_or_type: Any) -> str:
    """``an object``, ``a list``, ``a string`` ...: JSON's words for a Python type, as users read them."""
    tp = value_or_type if isinstance(value_or_type, type) else type(value_or_type)
    return _TYPE_WORDS.get(tp, tp.__name__)


def expect(path: str | os.PathLike, value: Any, types: type | tuple[type, ...], key: str) -> Any:
    """``value`` when it is one of ``types`` (``float`` admits integers; ``int`` and ``float`` never admit
    ``true``/``false``), else a DataError naming the file and the key: ``done must be an object, found a
    list``."""
    types = types if isinstance(types, tuple) else (types,)
    admitted = types + ((int,) if float in types else ())
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, admitted)
    if not ok:
        wanted = " or ".join(type_word(t) for t in types)
        raise DataError(path, f"{key} must be {wanted}, found {type_word(value)}")
    return value


def _opened(path: str | os.PathLike, what: str) -> Any:
    """``path`` opened for reading bytes; missing, a folder or refused is one error naming it."""
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller's with closes it
    except FileNotFoundError:
        raise MissingFileError(path, what) from None
    except IsADirectoryError:
        raise DataError(path, f"{what} is a folder, not a file") from None
    except OSError as exc:
        raise DataError(path, f"cannot read {what}: {exc.strerror or first_line(exc)}") from None


def read_text(path: str | os.PathLike, *, what: str = "file", limit: int | None = None) -> str:
    """A UTF-8 text file, whole. Missing, unreadable, larger than ``limit`` bytes, or not UTF-8 (the byte
    offset named) is one error naming the file."""
    path = os.fspath(path)
    with _opened(path, what) as fh:
        try:
            data = fh.read(limit + 1 if limit is not None else -1)
        except OSError as exc:
            raise DataError(path, f"cannot read {what}: {exc.strerror or first_line(exc)}") from None
    if limit is not None and len(data) > limit:
        raise DataError(path, f"{what} is larger than {limit} bytes; refusing to read it")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"{what} is not UTF-8 text", f"byte {exc.start}") from None


#: A ``\\uD800``-``\\uDFFF`` escape: JSON admits one alone, which Python decodes into a string that no
#: encoder, font or file name takes (only the rare file holding one is walked, by :func:`_lone_surrogate`).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _lone_surrogate(value: Any) -> bool:
    """Whether a parsed JSON value holds a string (key or value) with a surrogate no pair completed."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def read_json(path: str | os.PathLike, *, what: str = "JSON file", expect_type: type | None = dict,
              limit: int | None = None) -> Any:
    """A JSON file as Python values (an object unless ``expect_type`` says otherwise; None admits any)."""
    import json

    text = read_text(path, what=what, limit=limit)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"invalid JSON in {what}: {exc.msg}", f"line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise DataError(path, f"invalid JSON in {what}: nested too deeply") from None
    except ValueError:  # an integer of more digits than Python converts (4300): no field holds one
        raise DataError(path, f"invalid JSON in {what}: a number too long to read") from None
    if _SURROGATE_ESCAPE.search(text) and _lone_surrogate(value):
        raise DataError(path, f"invalid JSON in {what}: a string holds a lone surrogate escape (\\udXXX), "
                              "which stands for no character")
    if expect_type is not None and not (isinstance(value, expect_type) and not isinstance(value, bool)):
        raise DataError(path, f"{what} must hold {type_word(expect_type)}, found {type_word(value)}")
    return value


def read_toml(path: str | os.PathLike, *, what: str = "TOML file") -> dict[str, Any]:
    """A TOML file as a dict; invalid TOML or bytes that are not UTF-8 are one error naming the file."""
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    text = read_text(path, what=what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DataError(path, f"invalid TOML in {what}: {first_line(exc)}") from None


# ---------------------------------------------------------------------------------- names inside a folder

def inside(root: str | os.PathLike, name: str, *, file: str | os.PathLike, where: str | None = None,
           what: str = "image") -> Path:
    """``root / name`` for a ``name`` read from ``file`` (a pack's list, a card): a relative path that stays
    under ``root``. An absolute path, a ``..`` step, a NUL byte or an empty name is refused, naming the file
    and ``where`` (its line): a list handed over by someone else must not make facebench read, hash or show
    files outside the folder the user pointed at."""
    text = str(name)
    if not text or "\x00" in text:
        raise DataError(file, f"{what} name {text!r} is empty or holds a NUL byte", where)
    parts = PurePosixPath(text.replace("\\", "/")).parts
    if text.startswith(("/", "\\")) or PureWindowsPath(text).drive or ".." in parts:
        raise DataError(file, f"{what} path {text!r} leaves the folder {root} (absolute paths and '..' are "
                              "refused)", where)
    return Path(root) / text


def resolves_inside(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``path``, symbolic links followed, is ``root`` or lies under it (links followed too)."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


# ------------------------------------------------------------------ names and lines from someone else's file

#: Control characters (a newline could start a fake ``error:`` line) and the surrogates that stand for
#: bytes that are not UTF-8 in a file name.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def shown_name(name: str | bytes) -> str:
    """A file name or record key as an error line shows it: bytes that are not UTF-8 and control
    characters escaped (``\\xff``, ``\\n``), so a name from someone else's file can neither break the
    one-line error nor the terminal."""
    if isinstance(name, str):
        try:
            name = name.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate that stands for no byte (from JSON text)
            name = name.encode("utf-8", "backslashreplace")
    text = name.decode("utf-8", "backslashreplace")
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


# Numbered lines of a list file someone else made (IJB meta files, pair lists): strict UTF-8, bounded length.
# List files are read a line at a time (an IJB-C pair list has 15.6M lines). A byte that is not UTF-8 is
# refused with its line number instead of being decoded into a replacement character that would then name
# an image nobody listed; a "line" longer than :data:`MAX_LINE` bytes (a file with no line ends) is refused
# before it fills memory. A UTF-8 byte-order mark on the first line is dropped, as editors write one.

#: The longest line a list file may hold, in bytes (an IJB landmark line is under 200).
MAX_LINE = 1 << 20


def numbered_lines(path: str | os.PathLike, *, what: str = "list file") -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every line of ``path`` (line ends kept); every way the file can be
    unreadable is one :class:`DataError` naming it (and the line)."""
    with _opened(path, what) as fh:
        number = 0
        while True:
            try:
                raw = fh.readline(MAX_LINE + 1)
            except OSError as exc:
                raise DataError(path, f"cannot read {what}: {exc.strerror or first_line(exc)}",
                                f"line {number + 1}") from None
            if not raw:
                return
            number += 1
            if len(raw) > MAX_LINE:
                raise DataError(path, f"line longer than {MAX_LINE} bytes (not a {what}?)", f"line {number}")
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(path, f"{what} is not UTF-8 text (byte {exc.start + 1} of the line)",
                                f"line {number}") from None
            yield number, text
