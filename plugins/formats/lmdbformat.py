"""The LMDB datasets of the Vec2Face and Vec2Face+ releases, read and written with ``lmdb`` + ``msgpack``.

Keys are ASCII decimals ``b"0"..b"N-1"`` plus ``__keys__`` (msgpack list of the keys), ``__len__`` and
``__classnum__`` (the converters store ``max(label) + 1``). Values are msgpack arrays; bytes may be msgpack
``bin`` (msgpack >= 1.0, which the releases pin) or the legacy ``raw``/str type (older msgpack): both read
as bytes. Three record layouts exist, told apart by the number of fields of a record:

- 2 ``(image, label)``: the FR training sets, HSFace (Vec2Face) and VFace10K/20K/100K (Vec2Face+, written
  by SOTA-Face-Recognition-Train-and-Test's ``imagelist2lmdb``: labels numbered by identity folder);
- 3 ``[image, feature .npy bytes, label]``: the generator-training set ``WebFace4M.lmdb``;
- 4 ``[image, feature .npy bytes, label, landmark image]``: the Vec2Face+ pose-model set
  ``WebFace4M_with_landmarks.lmdb`` (``scripts/prepare_training_set.py``): the landmark image is an
  encoded image of the face's 5-point landmarks drawn at the face image's size.

The layout of a file is that of its first record (key ``__keys__[0]``); every record must have it (the
converters write one layout per file), so a record of another length is refused naming both keys. The
label is field 1 of a 2-field record and field 2 otherwise. The official loaders read the feature with
``allow_pickle=True``; facebench never unpickles it (an object array is refused). HSFace100k/200k are
``.npy`` index masks over HSFace300k: ``open(mask=...)``.
"""

from __future__ import annotations

import contextlib
import errno
import io
import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from facebench import atomic
from facebench.data.formats import TRAIN, DatasetWriter, TrainReader
from facebench.data.images import decode_image, image_size
from facebench.errors import DataError, first_line
from facebench.safe_load import HEADER_ERRORS, load_array, npy_header, shown_name, type_word

META_KEYS = (b"__keys__", b"__len__", b"__classnum__")

#: Record layouts by their number of fields: (the fields, in words; the position of the label).
LAYOUTS = {2: ("image, label", 1), 3: ("image, feature, label", 2),
           4: ("image, feature, label, landmark image", 2)}
NO_LAYOUT = ("record is neither (image, label), [image, feature, label] nor [image, feature, label, landmark "
             "image]")


def _lmdb():
    import lmdb

    return lmdb


def _unpack(value: Any, path: str, where: str) -> Any:
    import msgpack

    try:
        return msgpack.unpackb(value, raw=True, strict_map_key=False)
    except (ValueError, TypeError, msgpack.exceptions.UnpackException) as exc:  # TypeError: a list as map key
        raise DataError(path, f"undecodable msgpack record ({type(exc).__name__})", where) from None


#: The longest key LMDB stores (its default ``maxkeysize``); a longer or empty one cannot be looked up.
MAX_KEY = 511
_INT64 = np.iinfo(np.int64)


def _is_int(value: Any) -> bool:
    """An msgpack integer that fits int64 (``true``/``false`` unpack as bool, which is no label)."""
    return isinstance(value, int) and not isinstance(value, bool) and _INT64.min <= value <= _INT64.max


def _label(value: Any, path: str, where: str) -> int:
    """A record's label: an msgpack integer within int64 (a float, bool or null is no label)."""
    if not _is_int(value):
        problem = (f"label {value} lies beyond the 64-bit integer range" if isinstance(value, int)
                   and not isinstance(value, bool) else f"label is {type_word(value)}, not an integer")
        raise DataError(path, problem, where)
    return value


def _count(value: Any, path: str, key: str) -> int:
    """``__len__``/``__classnum__``: a non-negative integer."""
    if not _is_int(value) or value < 0:
        found = str(value) if isinstance(value, int) and not isinstance(value, bool) else type_word(value)
        raise DataError(path, f"{key} must be a non-negative integer, found {found}", f"key {key}")
    return value


def _record_keys(keys: Any, length: int, path: str) -> tuple[list[bytes], bool]:
    """``__keys__``: ``length`` distinct byte strings LMDB can look up; and whether they are the official
    converters' ``b"0".."N-1"`` (then distinct by construction, and computed instead of stored)."""
    if not isinstance(keys, list):
        raise DataError(path, f"__keys__ must be a list, found {type_word(keys)}", "key __keys__")
    if len(keys) != length:
        raise DataError(path, f"__keys__ lists {len(keys)} keys but __len__ is {length}", "key __keys__")
    numbered = True
    for n, key in enumerate(keys):
        if not isinstance(key, bytes) or not 0 < len(key) <= MAX_KEY:
            found = f"{len(key)} bytes long" if isinstance(key, bytes) else type_word(key)
            raise DataError(path, f"__keys__ entry {n} must be a key of 1 to {MAX_KEY} bytes, found {found}",
                            "key __keys__")
        numbered = numbered and key == str(n).encode()
    if not numbered and len(set(keys)) != len(keys):
        seen: set[bytes] = set()
        twice = next(k for k in keys if k in seen or seen.add(k))
        raise DataError(path, f"__keys__ lists key {shown_name(twice)} twice (one record counted as two "
                              "images)", "key __keys__")
    return keys, numbered


def load_mask(path: str | os.PathLike, size: int) -> np.ndarray:
    """Record indices from a ``.npy`` mask (integer indices, or a boolean array over all records)."""
    mask = load_array(path, what="index mask")
    if mask.dtype == bool:
        if mask.shape != (size,):
            raise DataError(path, f"boolean mask has {mask.size} entries for {size} records")
        return np.flatnonzero(mask).astype(np.int64)
    if mask.ndim != 1 or mask.dtype.kind not in "iu":
        raise DataError(path, f"index mask must be a 1-D integer or boolean array, found {mask.dtype} {mask.shape}")
    if mask.size and (mask.min() < 0 or mask.max() >= size):
        raise DataError(path, f"index {int(mask.max() if mask.max() >= size else mask.min())} outside the "
                              f"{size} records")
    mask = mask.astype(np.int64)
    ordered = np.sort(mask)
    twice = np.flatnonzero(ordered[1:] == ordered[:-1])
    if len(twice):
        raise DataError(path, f"index {int(ordered[twice[0]])} selected twice (one record counted as two images)")
    return mask


def parse_feature(data: bytes, path: str, where: str) -> np.ndarray:
    """A feature stored as ``.npy`` bytes, loaded without pickle."""
    if not isinstance(data, bytes):
        raise DataError(path, f"feature must be .npy bytes, found {type_word(data)}", where)
    if not data.startswith(b"\x93NUMPY"):
        raise DataError(path, "undecodable .npy feature (no .npy header)", where)
    try:  # numpy allocates what the header declares before reading: check the claim against the record first
        shape, _, dtype, offset = npy_header(path, what="feature", data=data, where=where)
    except DataError as exc:
        raise DataError(path, f"undecodable .npy feature ({exc.problem.split(': ', 1)[-1]})", where) from None
    if dtype.hasobject:
        raise DataError(path, "feature is a pickled object array; refused (facebench never unpickles dataset "
                              "contents)", where)
    if any(n < 0 for n in shape):
        raise DataError(path, f"undecodable .npy feature (shape {shape} has a negative dimension)", where)
    declared = math.prod(shape) * dtype.itemsize
    if declared != len(data) - offset:
        raise DataError(path, f"undecodable .npy feature (its header declares {declared} bytes of data, the "
                              f"record holds {len(data) - offset})", where)
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(path, "feature is a pickled object array; refused (facebench never unpickles "
                                  "dataset contents)", where) from None
        raise DataError(path, f"undecodable .npy feature ({exc})", where) from None
    except HEADER_ERRORS as exc:  # a garbled header: numpy's parser raises any of these
        raise DataError(path, f"undecodable .npy feature ({shown_name(first_line(exc))[:200]})", where) from None


_LMDB_MAGIC = 0xBEEFC0DE


def check_lmdb_file(path: str) -> None:
    """Refuse a truncated LMDB file before mapping it (reading past its end would crash with SIGBUS).

    The two meta pages name the last used page; the file must reach the end of that page.
    """
    data_file = os.path.join(path, "data.mdb") if os.path.isdir(path) else path
    size = os.path.getsize(data_file)
    with open(data_file, "rb") as fh:
        head = fh.read(2 * 65536)
    best: tuple[int, int, int] | None = None  # (txnid, last page, page size)
    psize = struct.unpack_from("<I", head, 40)[0] if len(head) >= 44 else 0
    for base in (0, psize) if psize else (0,):
        if len(head) < base + 152:
            continue
        magic = struct.unpack_from("<I", head, base + 16)[0]
        if magic != _LMDB_MAGIC:
            continue
        last_pg, txnid = struct.unpack_from("<QQ", head, base + 136)
        if best is None or txnid > best[0]:
            best = (txnid, last_pg, psize)
    if best is None or not psize:
        raise DataError(path, f"not an LMDB file (no valid meta page; {size} bytes)")
    needed = (best[1] + 1) * best[2]
    if size < needed:
        raise DataError(path, f"truncated LMDB file ({size} bytes, its meta page needs {needed})")


# py-lmdb allows one open environment per file and process: readers of the same file share it.
_ENVS: dict[tuple[int, str], list] = {}


def _shared_env(path: str):
    key = (os.getpid(), os.path.realpath(path))
    for other in [k for k in _ENVS if k[1] == key[1] and k[0] != key[0]]:
        # Inherited through fork (a DataLoader worker): LMDB handles must not cross processes, and
        # py-lmdb refuses a second open of the same file, so drop the parent's copy here first.
        env = _ENVS.pop(other)[0]
        try:
            env.close()
        except _lmdb().Error:
            pass
    if key not in _ENVS:
        check_lmdb_file(path)
        lmdb = _lmdb()
        try:
            env = lmdb.open(path, subdir=Path(path).is_dir(), readonly=True, lock=False, readahead=False,
                            meminit=False, max_readers=256)
        except lmdb.Error as exc:
            raise DataError(path, f"cannot open LMDB ({str(exc).split(':')[-1].strip()})") from None
        _ENVS[key] = [env, 0]
    _ENVS[key][1] += 1
    return _ENVS[key][0]


def _release_env(path: str) -> None:
    key = (os.getpid(), os.path.realpath(path))
    if key in _ENVS:
        _ENVS[key][1] -= 1
        if _ENVS[key][1] <= 0:
            _ENVS.pop(key)[0].close()


class LMDBReader(TrainReader):
    """Opens the environment read-only and lock-free (safe for many DataLoader workers)."""

    format_name = "lmdb"

    def __init__(self, path: str | os.PathLike, mask: str | os.PathLike | None = None):
        self.path = os.fspath(path)
        self.mask_path = os.fspath(mask) if mask is not None else None
        raw_keys = self._get(b"__keys__", "key __keys__")
        raw_len = self._get(b"__len__", "key __len__")
        if raw_keys is None or raw_len is None:
            missing = "__keys__" if raw_keys is None else "__len__"
            raise DataError(self.path, f"not a Vec2Face/HSFace LMDB dataset (key {missing} missing)")
        length = _count(_unpack(raw_len, self.path, "key __len__"), self.path, "__len__")
        keys, numbered = _record_keys(_unpack(raw_keys, self.path, "key __keys__"), length, self.path)
        # The official converters number records b"0".."N-1": then keys are computed, not stored
        # (a list of 15M bytes objects would cost about a gigabyte in every DataLoader worker).
        self._stored_keys = None if numbered else keys
        del keys
        self._length = length
        classnum = self._get(b"__classnum__", "key __classnum__")
        self._classnum = (_count(_unpack(classnum, self.path, "key __classnum__"), self.path, "__classnum__")
                          if classnum is not None else None)
        self.index = (load_mask(self.mask_path, length) if self.mask_path
                      else np.arange(length, dtype=np.int64))
        self._labels: np.ndarray | None = None
        self._remap: np.ndarray | None = None
        self._fields: int | None = None

    def _env(self):
        if getattr(self, "_env_pid", None) != os.getpid():
            self._env_obj = _shared_env(self.path)
            self._env_pid = os.getpid()
            self._txn_obj = self._env_obj.begin(write=False, buffers=False)
        return self._env_obj

    def _txn(self):
        self._env()
        return self._txn_obj

    def close(self) -> None:
        if getattr(self, "_env_pid", None) == os.getpid():
            self._txn_obj.abort()
            _release_env(self.path)
        self._env_pid = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_env_obj", "_txn_obj", "_env_pid")}

    def key(self, j: int) -> bytes:
        """The LMDB key of record ``j`` (before any mask)."""
        return self._stored_keys[j] if self._stored_keys is not None else str(j).encode()

    def _get(self, key: bytes, where: str, txn: Any = None) -> bytes | None:
        """The value stored at ``key`` or None; a corrupt page on the way (a damaged B-tree) is one error
        naming the file and the key, not py-lmdb's ``CorruptedError``."""
        try:
            return (txn or self._txn()).get(key)
        except _lmdb().Error as exc:
            raise DataError(self.path, f"corrupt LMDB page ({first_line(exc)})", where) from None

    def _value(self, key: bytes, where: str, txn: Any = None) -> bytes:
        value = self._get(key, where, txn)
        if value is None:
            raise DataError(self.path, "record listed in __keys__ is missing", where)
        return value

    def _stored_record(self, j: int) -> tuple[list, str]:
        """Record ``j`` of the file (before any mask), its fields checked against the layouts."""
        key = self.key(j)
        where = f"key {shown_name(key)}"
        rec = _unpack(self._value(key, where), self.path, where)
        if not isinstance(rec, (list, tuple)) or len(rec) not in LAYOUTS or not isinstance(rec[0], bytes):
            raise DataError(self.path, NO_LAYOUT, where)
        if len(rec) == 4 and not isinstance(rec[3], bytes):
            found = type_word(rec[3])
            raise DataError(self.path, f"landmark image must be encoded image bytes, found {found}", where)
        _label(rec[LAYOUTS[len(rec)][1]], self.path, where)
        return list(rec), where

    def fields(self) -> int | None:
        """How many fields each record has: those of the file's first record (None for an empty file, or
        once the first record was found unreadable: its own error stands for it)."""
        if self._fields is None and self._length:
            try:
                self._fields = len(self._stored_record(0)[0])
            except DataError:
                self._fields = 0
                raise
        return self._fields or None

    def _same_layout(self, count: int, where: str) -> None:
        """Refuse a record whose length differs from the first record's."""
        try:
            expected = self.fields()
        except DataError:  # the first record is unreadable: reported where that record is read
            return
        if expected is not None and count != expected:
            first = shown_name(self.key(0))
            raise DataError(self.path, f"record has {count} fields ({LAYOUTS[count][0]}) but the first "
                                       f"record, key {first}, has {expected} ({LAYOUTS[expected][0]}): one "
                                       "file holds one layout", where)

    def _record(self, i: int) -> tuple[list, str]:
        rec, where = self._stored_record(int(self.index[i]))
        self._same_layout(len(rec), where)
        return rec, where

    @property
    def layout(self) -> str | None:
        """The record layout in words (``"image, feature, label, landmark image"``); None if empty."""
        fields = self.fields()
        return LAYOUTS[fields][0] if fields else None

    @property
    def labels(self) -> np.ndarray:
        """Read once (only the label of each record is decoded, image bytes are skipped)."""
        if self._labels is None:
            import msgpack

            raw = np.empty(len(self.index), dtype=np.int64)
            try:
                expected = self.fields()
            except DataError:  # the first record is unreadable: reported when the loop reaches it
                expected = None
            txn = self._txn()
            for n, j in enumerate(self.index):
                key = self.key(int(j))
                where = f"key {shown_name(key)}"
                unpacker = msgpack.Unpacker(raw=True)
                unpacker.feed(self._value(key, where, txn))
                try:
                    count = unpacker.read_array_header()
                    if count not in LAYOUTS:
                        raise ValueError(count)
                    for _ in range(LAYOUTS[count][1]):
                        unpacker.skip()
                    label = unpacker.unpack()
                except (ValueError, TypeError, msgpack.exceptions.UnpackException):
                    raise DataError(self.path, NO_LAYOUT, where) from None
                if count != expected and expected is not None:
                    self._same_layout(count, where)
                raw[n] = _label(label, self.path, where)
            if self.mask_path is not None and len(raw):
                # A mask may select identities that are not 0..K-1: renumber them densely in label order.
                uniq = np.unique(raw)
                if uniq[0] != 0 or uniq[-1] != len(uniq) - 1:
                    raw = np.searchsorted(uniq, raw).astype(np.int64)
            whole = self.mask_path is None and isinstance(self._classnum, int)
            limit = self._classnum if whole else np.iinfo(np.int64).max
            bad = np.flatnonzero((raw < 0) | (raw >= limit))
            if len(bad):
                key = shown_name(self.key(int(self.index[bad[0]])))
                raise DataError(self.path, f"label {raw[bad[0]]} out of range [0, {limit})", f"key {key}")
            self._labels = raw
        return self._labels

    @property
    def num_classes(self) -> int:
        """``__classnum__`` for a whole set; for a masked subset (or none stored), max label + 1."""
        if self.mask_path is None and isinstance(self._classnum, int):
            return self._classnum
        labels = self.labels
        return int(labels.max()) + 1 if len(labels) else 0

    def __len__(self) -> int:
        return len(self.index)

    def where(self, i: int) -> str:
        return f"key {shown_name(self.key(int(self.index[i])))}"

    def image_bytes(self, i: int) -> bytes:
        return self._record(i)[0][0]

    def has_features(self) -> bool:
        """Whether records carry an identity feature (the generator- and pose-model-training layouts)."""
        return len(self) > 0 and self.fields() in (3, 4)

    def has_landmarks(self) -> bool:
        """Whether records carry a landmark image (the Vec2Face+ pose-model layout)."""
        return len(self) > 0 and self.fields() == 4

    def feature(self, i: int) -> np.ndarray:
        """The stored identity feature of record ``i`` (generator- and pose-model-training layouts)."""
        rec, where = self._record(i)
        if len(rec) < 3:
            raise DataError(self.path, "record has no feature (layout image, label: an FR training set)",
                            where)
        return parse_feature(rec[1], self.path, where)

    def _landmark(self, rec: list, where: str) -> bytes:
        if len(rec) != 4:
            raise DataError(self.path, f"record has no landmark image (layout {LAYOUTS[len(rec)][0]}; the "
                                       "pose-model layout is image, feature, label, landmark image)", where)
        return rec[3]

    def landmark_bytes(self, i: int) -> bytes:
        """The encoded landmark image of record ``i`` (pose-model layout only)."""
        return self._landmark(*self._record(i))

    def landmark_image(self, i: int) -> np.ndarray:
        """The landmark image of record ``i`` as RGB ``uint8`` HxWx3, the size of its face image (the pose
        model reads both at one size)."""
        rec, where = self._record(i)
        landmark = decode_image(self._landmark(rec, where), path=self.path, where=f"{where} (landmark image)")
        width, height = image_size(rec[0], path=self.path, where=where)
        if landmark.shape[:2] != (height, width):
            found = f"{landmark.shape[1]}x{landmark.shape[0]}"
            raise DataError(self.path, f"landmark image is {found} pixels but its face image is {width}x{height}",
                            where)
        return landmark


class LMDBWriter(DatasetWriter):
    """Writes a single-file LMDB (``subdir=False``, as the official converter does), growing the map as needed.

    ``features=True`` writes the generator-training layout; then ``add`` needs ``feature=`` (an array).
    ``landmarks=True`` (with ``features``) writes the Vec2Face+ pose-model layout; then ``add`` also needs
    ``landmark=`` (the encoded landmark image).
    """

    def __init__(self, path, *, overwrite: bool = False, features: bool = False, landmarks: bool = False,
                 commit_every: int = 1000):
        if landmarks and not features:
            raise ValueError("the landmark layout is [image, feature, label, landmark image]: pass "
                             "features=True")
        super().__init__(path, overwrite=overwrite)
        self.features = features
        self.landmarks = landmarks
        self.commit_every = commit_every

    def _start(self) -> None:
        self._cm = atomic.atomic_path(self.path, "dataset")
        self._tmp = self._cm.__enter__()
        self._map_size = 1 << 26
        self._env = _lmdb().open(os.fspath(self._tmp), subdir=False, map_size=self._map_size, lock=False,
                                 meminit=True, sync=False)
        self._txn = self._env.begin(write=True)
        self._classes = 0
        self._pending: list[tuple[bytes, bytes]] = []  # since the last commit, replayed if the map grows

    def _put(self, key: bytes, value: bytes) -> None:
        lmdb = _lmdb()
        while True:
            try:
                self._txn.put(key, value)
                return
            except lmdb.MapFullError:
                self._txn.abort()
                self._map_size *= 2
                self._env.set_mapsize(self._map_size)
                self._txn = self._env.begin(write=True)
                self._replay()

    def _replay(self) -> None:
        """Rewrite the records of the aborted transaction (kept since the last commit)."""
        for key, value in self._pending:
            self._txn.put(key, value)

    def add(self, image_bytes: bytes, label: int, feature: np.ndarray | None = None,
            landmark: bytes | None = None) -> None:
        import msgpack

        label = int(label)
        if label < 0:
            raise ValueError(f"labels must be non-negative, got {label}")
        if self.features:
            if feature is None:
                raise ValueError("this LMDB writer stores features: pass feature=<array>")
            buf = io.BytesIO()
            np.save(buf, np.asarray(feature), allow_pickle=False)
            record = [bytes(image_bytes), buf.getvalue(), label]
            if self.landmarks:
                if landmark is None:
                    raise ValueError("this LMDB writer stores landmark images: pass landmark=<image bytes>")
                record.append(bytes(landmark))
        else:
            record = (bytes(image_bytes), label)
        key = str(self.count).encode()
        value = msgpack.packb(record, use_bin_type=True)
        self._pending.append((key, value))
        self._put(key, value)
        self._classes = max(self._classes, label + 1)
        self.count += 1
        if self.count % self.commit_every == 0:
            self._commit()
            self._pending = []
            self._txn = self._env.begin(write=True)

    def _commit(self) -> None:
        """Commit, turning LMDB's own errors (a full disk shows as an I/O error) into an OSError on the
        temporary file, which the writer reports as one error naming the dataset."""
        try:
            self._txn.commit()
        except _lmdb().Error as exc:
            raise OSError(errno.EIO, str(exc), os.fspath(self._tmp)) from exc

    def _finish(self) -> None:
        import msgpack

        keys = [str(i).encode() for i in range(self.count)]
        for key, value in ((b"__keys__", keys), (b"__len__", self.count), (b"__classnum__", self._classes)):
            self._pending.append((key, msgpack.packb(value, use_bin_type=True)))
            self._put(key, self._pending[-1][1])
        self._commit()
        self._env.sync(True)
        self._env.close()
        self._cm.__exit__(None, None, None)

    def _abort(self) -> None:
        with contextlib.suppress(_lmdb().Error):  # a failed commit has already ended the transaction
            self._txn.abort()
        self._env.close()
        self._cm.__exit__(RuntimeError, RuntimeError("aborted"), None)


class LMDBFormat:
    name = "lmdb"
    role = TRAIN

    def detect(self, path: str | os.PathLike) -> bool:
        path = Path(path)
        if path.is_dir():
            return (path / "data.mdb").is_file()
        return path.is_file() and path.suffix.lower() in (".lmdb", ".mdb")

    def open(self, path: str | os.PathLike, mask: str | os.PathLike | None = None) -> LMDBReader:
        return LMDBReader(path, mask=mask)

    def writer(self, path: str | os.PathLike, *, overwrite: bool = False, features: bool = False,
               landmarks: bool = False) -> LMDBWriter:
        return LMDBWriter(path, overwrite=overwrite, features=features, landmarks=landmarks)
