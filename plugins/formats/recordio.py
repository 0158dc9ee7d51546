"""insightface RecordIO (``train.rec`` + ``train.idx`` + ``property``), read and written without MXNet.

Layout (dmlc-core framing, insightface conventions): each record is ``uint32 magic 0xced7230a``,
``uint32 lrec`` (upper 3 bits: continuation flag, lower 29: length), the payload, zero padding to 4
bytes. A payload that contains the magic word at a 4-aligned offset is split there into start/middle/
end parts and the magic is dropped (re-inserted when joining). The payload is a 24-byte ``IfQQ`` header
(flag, label, id, id2), then ``flag`` float32 labels when ``flag > 0``, then the encoded image. Record 0
is a header whose labels ``(id_start, id_end)`` say that images are keys ``1..id_start-1`` and keys
``id_start..id_end-1`` are one empty record per identity whose labels are its image-key range.
The ``.idx`` text file maps ``key<TAB>offset`` for random access, so DataLoader workers read in parallel.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path

import numpy as np

from facebench import atomic
from facebench.data.formats import TRAIN, DatasetWriter, TrainReader
from facebench.data.images import image_size
from facebench.errors import DataError, MissingFileError
from facebench.safe_load import read_text, shown_name

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_FRAME = struct.Struct("<II")
HEADER = struct.Struct("<IfQQ")
_LENGTH_MASK = (1 << 29) - 1


def rec_paths(path: str | os.PathLike) -> tuple[Path, Path, Path]:
    """``(train.rec, train.idx, property)`` for a directory, or ``(x.rec, x.idx, <dir>/property)`` for a file."""
    path = Path(path)
    rec = path / "train.rec" if path.suffix.lower() != ".rec" else path
    return rec, rec.with_suffix(".idx"), rec.parent / "property"


def read_record(fh, offset: int, path: str | os.PathLike, key: int | None = None) -> bytes:
    """The payload of the record at ``offset`` (of ``key``, which errors name), joining continuation parts."""
    parts: list[bytes] = []
    pos = offset

    def where() -> str:
        return f"offset {pos}" if key is None else f"key {key} (offset {pos})"

    while True:
        fh.seek(pos)
        frame = fh.read(8)
        if len(frame) < 8:
            raise DataError(path, "truncated record (file ends inside the record frame)", where())
        magic, lrec = _FRAME.unpack(frame)
        if magic != MAGIC:
            raise DataError(path, f"wrong magic 0x{magic:08x} (expected 0xced7230a: not a RecordIO record)", where())
        cflag, length = lrec >> 29, lrec & _LENGTH_MASK
        data = fh.read(length)
        if len(data) < length:
            raise DataError(path, f"truncated record ({length} bytes declared, {len(data)} present)", where())
        parts.append(data)
        if cflag == 0 and len(parts) == 1:
            return data
        if cflag not in (0, 1, 2, 3) or (len(parts) == 1 and cflag != 1) or (len(parts) > 1 and cflag == 1):
            raise DataError(path, f"broken record continuation (flag {cflag})", where())
        if cflag == 3:
            return _MAGIC_BYTES.join(parts)
        pos += 8 + length + (-length % 4)


def unpack_payload(payload: bytes, path, where: str) -> tuple[int, np.ndarray | float, int, bytes]:
    """``(flag, label(s), id, image bytes)`` from a record payload."""
    if len(payload) < HEADER.size:
        raise DataError(path, f"record payload too short for the IfQQ header ({len(payload)} bytes)", where)
    flag, label, rid, _ = HEADER.unpack_from(payload)
    body = payload[HEADER.size :]
    if flag > 0:
        if len(body) < 4 * flag:
            raise DataError(path, f"record declares {flag} float labels but holds {len(body)} bytes", where)
        labels = np.frombuffer(body[: 4 * flag], dtype="<f4")
        return flag, labels, rid, body[4 * flag :]
    return flag, label, rid, body


#: Labels and image keys are stored as float32 in the record header; whole numbers in ``[0, 2**31)`` only.
_LIMIT = 1 << 31


def whole(value: float, path: str | os.PathLike, where: str, what: str = "label") -> int:
    """A label or key read from a float header field, refused unless finite, whole and in ``[0, 2**31)``:
    ``int()`` would turn 1.5 into 1 silently and NaN or 1e30 into a traceback."""
    value = float(value)
    if not np.isfinite(value) or value != int(value) or not 0 <= value < _LIMIT:
        shown = f"{value:g}" if np.isfinite(value) else str(value)
        raise DataError(path, f"{what} {shown} is not a whole number in [0, {_LIMIT})", where)
    return int(value)


def _aligned_magic(payload: bytes) -> list[int]:
    """Offsets divisible by 4 where the magic number sits (bytes.find runs in C: a Python loop over every
    4-byte word made writing a .rec about ten times slower than the disk)."""
    cuts, i = [], payload.find(_MAGIC_BYTES)
    while i != -1:
        if i % 4 == 0:
            cuts.append(i)
            i = payload.find(_MAGIC_BYTES, i + 4)
        else:
            i = payload.find(_MAGIC_BYTES, i + 1)
    return cuts


def _frames(payload: bytes) -> list[bytes]:
    """Frame a payload as dmlc's writer does, splitting where the magic sits at a 4-aligned offset."""
    cuts = _aligned_magic(payload)
    pieces, start = [], 0
    for i in cuts:
        pieces.append(payload[start:i])
        start = i + 4
    pieces.append(payload[start:])
    out = []
    for n, piece in enumerate(pieces):
        cflag = 0 if len(pieces) == 1 else (1 if n == 0 else (3 if n == len(pieces) - 1 else 2))
        out.append(_FRAME.pack(MAGIC, (cflag << 29) | len(piece)) + piece + b"\0" * (-len(piece) % 4))
    return out


_INT64 = np.iinfo(np.int64)


def _parse_idx(idx: Path) -> tuple[np.ndarray, np.ndarray]:
    """``key<TAB>offset`` lines as two int64 arrays (pandas' C parser: 15M lines in seconds, not GBs); a
    malformed line, a value beyond int64, or a key or offset listed twice is refused naming the line."""
    import pandas as pd

    try:
        table = pd.read_csv(idx, sep="\t", header=None, names=["key", "offset"], dtype=np.int64,
                            engine="c", skip_blank_lines=True)
        keys, offsets = table["key"].to_numpy(), table["offset"].to_numpy()
    except (ValueError, OverflowError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        keys, offsets = _parse_idx_lines(idx)  # finds the offending line for the message
    for values, what in ((keys, "key"), (offsets, "offset")):
        _refuse_repeats(idx, values, what)
    return keys, offsets


def _parse_idx_lines(idx: Path) -> tuple[np.ndarray, np.ndarray]:
    keys, offsets = [], []
    with open(idx, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                key, offset = (int(f) for f in line.split())
            except ValueError:
                raise DataError(idx, f"malformed index line '{shown_name(line.strip()[:40])}' (expected "
                                     "key<TAB>offset, two integers)", f"line {n}") from None
            if not (_INT64.min <= key <= _INT64.max and _INT64.min <= offset <= _INT64.max):
                raise DataError(idx, "index value beyond the 64-bit integer range", f"line {n}")
            keys.append(key)
            offsets.append(offset)
    return np.asarray(keys, dtype=np.int64), np.asarray(offsets, dtype=np.int64)


def _refuse_repeats(idx: Path, values: np.ndarray, what: str) -> None:
    """Two lines with the same key (which record is it?) or the same offset (one record read twice)."""
    if len(values) < 2 or (values[1:] > values[:-1]).all():  # written in order: the common case, O(n)
        return
    order = np.argsort(values, kind="stable")
    repeated = np.flatnonzero(values[order][1:] == values[order][:-1])
    if len(repeated):
        first, second = sorted((int(order[repeated[0]]), int(order[repeated[0] + 1])))
        raise DataError(idx, f"{what} {values[first]} listed twice (lines {first + 1} and {second + 1})",
                        f"line {second + 1}")


class KeyIndex:
    """Record key -> byte offset, held in numpy arrays (a dict of 15M entries would need ~1.5 GB)."""

    def __init__(self, keys: np.ndarray, offsets: np.ndarray):
        self._keys, self._offsets = keys, offsets
        self._dense: np.ndarray | None = None
        if len(keys) and keys.min() >= 0 and keys.max() < 2 * len(keys) + 16:
            self._dense = np.full(int(keys.max()) + 1, -1, dtype=np.int64)
            self._dense[keys] = offsets
        else:
            self._order = np.argsort(keys, kind="stable")
            self._sorted = keys[self._order]

    def _lookup(self, key: int) -> int:
        if self._dense is not None:
            return int(self._dense[key]) if 0 <= key < len(self._dense) else -1
        pos = int(np.searchsorted(self._sorted, key))
        return int(self._offsets[self._order[pos]]) if pos < len(self._sorted) and self._sorted[pos] == key else -1

    def __contains__(self, key: int) -> bool:
        return self._lookup(int(key)) >= 0

    def __getitem__(self, key: int) -> int:
        offset = self._lookup(int(key))
        if offset < 0:
            raise KeyError(key)
        return offset

    def __len__(self) -> int:
        return len(self._keys)

    def first_missing(self, keys: np.ndarray) -> int | None:
        if self._dense is not None:
            inside = keys < len(self._dense)
            ok = np.zeros(len(keys), dtype=bool)
            ok[inside] = self._dense[keys[inside]] >= 0
        else:
            ok = np.isin(keys, self._sorted)
        missing = np.flatnonzero(~ok)
        return int(keys[missing[0]]) if len(missing) else None

    def sorted_keys(self) -> np.ndarray:
        return np.sort(self._keys)


class RecordIOReader(TrainReader):
    """Random access through ``.idx``; labels come from the identity records (or each image header)."""

    format_name = "rec"

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.rec, self.idx, prop = rec_paths(path)
        self.image_file = os.fspath(self.rec)
        for needed in (self.rec, self.idx):
            if not needed.is_file():
                raise MissingFileError(needed, "RecordIO file", "a .rec needs its .idx beside it")
        self.offsets = self._read_idx()
        fh = self._file(self.rec)
        self.keys, identity_ranges = self._image_keys(fh)
        self._labels = self._read_labels(fh, identity_ranges)
        self.num_classes = self._read_property(prop, identity_ranges)
        bad = np.flatnonzero((self._labels < 0) | (self._labels >= self.num_classes))
        if len(bad):
            i = int(bad[0])
            raise DataError(self.rec, f"label {self._labels[i]} out of range [0, {self.num_classes})",
                            f"key {self.keys[i]}")

    def _read_idx(self) -> KeyIndex:
        size = self.rec.stat().st_size
        keys, offsets = _parse_idx(self.idx)
        if not len(keys):
            raise DataError(self.idx, "empty index")
        bad = np.flatnonzero((offsets < 0) | (offsets >= size))
        if len(bad):
            n = int(bad[0])
            raise DataError(self.idx, f"offset {offsets[n]} lies outside {self.rec.name} ({size} bytes)",
                            f"line {n + 1}")
        return KeyIndex(keys, offsets)

    def _image_keys(self, fh) -> tuple[np.ndarray, list[tuple[int, int]] | None]:
        if 0 in self.offsets:
            flag, label, _, _ = unpack_payload(read_record(fh, self.offsets[0], self.rec, 0), self.rec, "key 0")
            if flag >= 2:  # insightface's header: the image-key range (else key 0 is an image, as im2rec writes)
                id_start, id_end = (whole(v, self.rec, "key 0", "header image key") for v in label[:2])
                count = len(self.offsets)
                if not 1 <= id_start <= id_end or id_start - 1 > count or id_end - id_start > count:
                    raise DataError(self.rec, f"header record declares images 1..{id_start - 1} and identity "
                                              f"records {id_start}..{id_end - 1}, but the index lists {count} "
                                              "keys", "key 0")
                keys = np.arange(1, id_start, dtype=np.int64)
                absent = self.offsets.first_missing(keys)
                if absent is not None:
                    raise DataError(self.idx, f"header record names image key {absent} that the index lacks")
                ranges = []
                for key in range(id_start, id_end):
                    if key not in self.offsets:
                        raise DataError(self.idx, f"identity record key {key} missing from the index")
                    where = f"key {key}"
                    f2, lab, _, _ = unpack_payload(read_record(fh, self.offsets[key], self.rec, key), self.rec, where)
                    if f2 < 2:
                        raise DataError(self.rec, "identity record without an image-key range", where)
                    ranges.append(tuple(whole(v, self.rec, where, "identity image key") for v in lab[:2]))
                return keys, ranges or None
        return self.offsets.sorted_keys(), None

    def _read_labels(self, fh, ranges: list[tuple[int, int]] | None) -> np.ndarray:
        if ranges is not None:
            labels = np.full(len(self.keys), -1, dtype=np.int64)
            first = int(self.keys[0]) if len(self.keys) else 1
            for label, (lo, hi) in enumerate(ranges):
                if hi <= lo:
                    raise DataError(self.rec, "empty identity (no images)", f"identity {label}")
                if lo < first or hi - first > len(labels):
                    raise DataError(self.rec, f"identity image range {lo}..{hi} outside the images",
                                    f"identity {label}")
                taken = np.flatnonzero(labels[lo - first : hi - first] >= 0)
                if len(taken):
                    key = lo + int(taken[0])
                    raise DataError(self.rec, f"identity image range {lo}..{hi} overlaps identity "
                                              f"{labels[key - first]}'s (image key {key})", f"identity {label}")
                labels[lo - first : hi - first] = label
            if (labels < 0).any():
                key = self.keys[int(np.flatnonzero(labels < 0)[0])]
                raise DataError(self.rec, "image not covered by any identity record", f"key {key}")
            return labels
        labels = np.empty(len(self.keys), dtype=np.int64)
        for i, key in enumerate(self.keys.tolist()):
            offset = self.offsets[key]
            where = f"key {key} (offset {offset})"
            fh.seek(offset)
            head = fh.read(8 + HEADER.size + 4)
            if len(head) < 8 + HEADER.size:
                raise DataError(self.rec, "truncated record", where)
            magic, _ = _FRAME.unpack_from(head)
            if magic != MAGIC:
                raise DataError(self.rec, f"wrong magic 0x{magic:08x} (expected 0xced7230a)", where)
            flag, label, _, _ = HEADER.unpack_from(head, 8)
            if flag > 0:
                if len(head) < 8 + HEADER.size + 4:
                    raise DataError(self.rec, f"truncated record (declares {flag} float labels)", where)
                label = struct.unpack_from("<f", head, 8 + HEADER.size)[0]
            labels[i] = whole(label, self.rec, where)
        return labels

    def _read_property(self, prop: Path, ranges) -> int:
        """``num_classes`` from ``property`` (``<num_classes>,<height>,<width>``), else from the identity
        records or the labels. Every identity holds an image, so more identities than images is refused."""
        if not prop.is_file():
            if ranges is not None:
                return len(ranges)
            return int(self._labels.max()) + 1 if len(self._labels) else 0
        text = read_text(prop, what="RecordIO property file", limit=4096).strip()
        try:
            num_classes = int(text.split(",")[0])
        except ValueError:
            raise DataError(prop, f"expected '<num_classes>,<height>,<width>', found '{shown_name(text[:40])}'",
                            "line 1") from None
        if not 0 <= num_classes <= len(self.keys):
            raise DataError(prop, f"declares {num_classes} identities for {len(self.keys)} images (each identity "
                                  "needs at least one)", "line 1")
        return num_classes

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def where(self, i: int) -> str:
        return f"key {self.keys[i]} (offset {self.offsets[self.keys[i]]})"

    def image_bytes(self, i: int) -> bytes:
        key = int(self.keys[i])
        payload = read_record(self._file(self.rec), self.offsets[key], self.rec, key)
        flag, label, _, data = unpack_payload(payload, self.rec, self.where(i))
        stored = whole(label[0] if flag > 0 else label, self.rec, self.where(i))
        if stored != self._labels[i]:
            raise DataError(self.rec, f"record label {stored} disagrees with its identity record "
                                      f"({self._labels[i]})", self.where(i))
        return data


class RecordIOWriter(DatasetWriter):
    """Streams images to ``.rec``/``.idx``, then the identity records and the key-0 header, as insightface's
    ``RecBuilder`` lays them out; writes ``property`` when writing a directory."""

    def __init__(self, path, *, overwrite: bool = False):
        super().__init__(path, overwrite=overwrite)
        self._directory = Path(path).suffix.lower() != ".rec"

    def _start(self) -> None:
        if self._directory:
            self._dir_cm = atomic.atomic_dir(self.path, overwrite=self.overwrite, what="dataset")
            root = self._dir_cm.__enter__()
            rec, idx, prop = rec_paths(root)
            self._prop = prop
        else:
            rec, idx, _ = rec_paths(self.path)
            self._cms = [atomic.atomic_path(rec, "dataset"), atomic.atomic_path(idx, "dataset index")]
            rec, idx = (cm.__enter__() for cm in self._cms)
            self._prop = None
        self._rec = open(rec, "wb")  # noqa: SIM115 - closed in _finish/_abort
        self._idx = open(idx, "w", encoding="ascii")  # noqa: SIM115
        self._ranges: dict[int, list[int]] = {}
        self._last: int | None = None
        self._grouped = True
        self._shape: tuple[int, int] | None = None

    def _write(self, key: int, payload: bytes) -> None:
        self._idx.write(f"{key}\t{self._rec.tell()}\n")
        for frame in _frames(payload):
            self._rec.write(frame)

    def add(self, image_bytes: bytes, label: int) -> None:
        label = int(label)
        if label < 0:
            raise ValueError(f"labels must be non-negative, got {label}")
        key = self.count + 1
        if self._shape is None:
            self._shape = image_size(image_bytes)
        if label != self._last:
            if label in self._ranges:
                self._grouped = False  # identity records need each identity's images to be consecutive
            self._ranges.setdefault(label, [key, key])
            self._last = label
        self._ranges[label][1] = key + 1
        self._write(key, HEADER.pack(0, float(label), key, 0) + bytes(image_bytes))
        self.count += 1

    def _finish(self) -> None:
        id_start = self.count + 1
        num_classes = max(self._ranges) + 1 if self._ranges else 0
        if self._grouped:
            for label in range(num_classes):
                lo, hi = self._ranges.get(label, (0, 0))
                self._write(id_start + label, HEADER.pack(2, 0.0, id_start + label, 0) + struct.pack("<2f", lo, hi))
        id_end = id_start + (num_classes if self._grouped else 0)
        self._write(0, HEADER.pack(2, 0.0, 0, 0) + struct.pack("<2f", id_start, id_end))
        self._rec.close()
        self._idx.close()
        if self._directory:
            h, w = (self._shape[1], self._shape[0]) if self._shape else (112, 112)
            with open(self._prop, "w") as fh:
                fh.write(f"{num_classes},{h},{w}")
            self._dir_cm.__exit__(None, None, None)
        else:
            for cm in reversed(self._cms):
                cm.__exit__(None, None, None)

    def _abort(self) -> None:
        for fh in (self._rec, self._idx):
            with contextlib.suppress(OSError):  # flushing into a full disk fails again: the temporaries go anyway
                fh.close()
        error = RuntimeError("writer aborted")
        cms = [self._dir_cm] if self._directory else self._cms
        for cm in cms:
            try:
                cm.__exit__(RuntimeError, error, None)
            except RuntimeError:
                pass


class RecordIOFormat:
    name = "rec"
    role = TRAIN

    def detect(self, path: str | os.PathLike) -> bool:
        path = Path(path)
        return (path.is_dir() and (path / "train.rec").is_file()) or (path.is_file() and path.suffix.lower() == ".rec")

    def open(self, path: str | os.PathLike) -> RecordIOReader:
        return RecordIOReader(path)

    def writer(self, path: str | os.PathLike, *, overwrite: bool = False) -> RecordIOWriter:
        return RecordIOWriter(path, overwrite=overwrite)
