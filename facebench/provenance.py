"""Where a result came from: versions, device, seed, command line and hashes of every input file."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import DataError
from .safe_load import resolves_inside

_HASH_CHUNK = 1 << 20
#: Hashes of paths already seen by this process, keyed by (path, fingerprint).
_MEMO: dict[tuple[str, str], str] = {}


def cache_dir() -> Path:
    """Where facebench keeps what it can recompute (``$FACEBENCH_CACHE``, default ``~/.cache/facebench``)."""
    return Path(os.environ.get("FACEBENCH_CACHE") or "~/.cache/facebench").expanduser()


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stat_key(st: os.stat_result) -> str:
    # inode and ctime change on any rewrite, even one that keeps the size and lands in the same mtime tick
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}"


def _walk_files(root: str, rel: str = "", _open: tuple[str, ...] = ()) -> Iterator[tuple[str, str]]:
    """``(relative posix name, absolute path)`` of every file under ``root`` in the order of
    ``sorted(Path(root).rglob("*"))`` (component by component), listing one directory at a time so a
    folder of millions of files is never held as one list of paths.

    Symbolic links are confined to ``root``: a link resolving inside it is hashed as its target (a file's
    content, a folder's files), a link leading outside is refused (a folder hashed for provenance must hold
    its own files: a link to ``/`` would otherwise hash the whole disk, and a skipped link would leave
    files the run reads out of the hash), and a link back to a folder being walked (a loop) is refused."""
    here = os.path.join(root, rel) if rel else root
    try:
        entries = sorted(os.scandir(here), key=lambda e: e.name)
    except NotADirectoryError:
        return
    inside = _open or (os.path.realpath(root),)
    for entry in entries:
        name = f"{rel}/{entry.name}" if rel else entry.name
        if entry.is_symlink():
            _check_link(entry.path, inside)
        if entry.is_dir():
            real = os.path.realpath(entry.path)
            if real in inside:
                raise DataError(entry.path, f"a symbolic link loop in {root} (back to {real}); "
                                            "cannot hash the folder")
            yield from _walk_files(root, name, (*inside, real))
        elif entry.is_file():
            yield name, entry.path


def _check_link(link: str, inside: tuple[str, ...]) -> None:
    """Refuse a symbolic link whose target is not under the hashed folder (``inside[0]``, resolved)."""
    if not resolves_inside(link, inside[0]):
        raise DataError(link, f"a symbolic link leading outside {inside[0]} (to {os.path.realpath(link)}); a "
                              "folder hashed for provenance must hold its own files (copy them in, e.g. cp -rL)")


def _folder_fingerprint(path: str) -> tuple[str, int]:
    """A digest of every file's name, size, mtime, ctime and inode (stat only, no reads) and the file count."""
    digest = hashlib.sha256()
    count = 0
    for rel, full in _walk_files(path):
        digest.update(os.fsencode(rel) + f"\0{_stat_key(os.stat(full))}\n".encode())
        count += 1
    return digest.hexdigest(), count


def _hash_folder(path: str, workers: int) -> str:
    """The folder digest: sha256 over (relative name, NUL, sha256 of the file) in sorted order. Files are
    read by ``workers`` threads (hashlib and file reads release the GIL), in a bounded window."""
    digest = hashlib.sha256()

    def add(rel: str, file_digest: str) -> None:
        digest.update(os.fsencode(rel))  # a name that is not UTF-8 hashes as its bytes
        digest.update(b"\0")
        digest.update(file_digest.encode())

    if workers <= 1:
        for rel, full in _walk_files(path):
            add(rel, sha256_file(full))
        return digest.hexdigest()
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    window: deque = deque()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for rel, full in _walk_files(path):
            window.append((rel, pool.submit(sha256_file, full)))
            if len(window) >= 8 * workers:
                rel0, fut = window.popleft()
                add(rel0, fut.result())
        while window:
            rel0, fut = window.popleft()
            add(rel0, fut.result())
    return digest.hexdigest()


def _cache_file(key: str) -> Path:
    return cache_dir() / "sha256" / f"{hashlib.sha256(os.fsencode(key)).hexdigest()[:32]}.json"


def _cached(key: str, fingerprint: str) -> str | None:
    import json

    if (key, fingerprint) in _MEMO:
        return _MEMO[(key, fingerprint)]
    try:
        saved = json.loads(_cache_file(key).read_text())
    except (OSError, ValueError, RecursionError):  # a cache entry that cannot be read is hashed again
        return None
    if not isinstance(saved, dict):
        return None
    if saved.get("path") == key and saved.get("fingerprint") == fingerprint and isinstance(saved.get("sha256"), str):
        _MEMO[(key, fingerprint)] = saved["sha256"]
        return saved["sha256"]
    return None


def _remember(key: str, fingerprint: str, value: str, *, on_disk: bool) -> None:
    import json

    _MEMO[(key, fingerprint)] = value
    if not on_disk:
        return
    try:  # a cache that cannot be written only costs time: never an error
        from .atomic import write_text

        write_text(_cache_file(key), json.dumps({"path": key, "fingerprint": fingerprint, "sha256": value}),
                   "hash cache")
    except Exception:  # noqa: BLE001
        pass


def sha256_path(path: str | os.PathLike, *, workers: int | None = None) -> str:
    """Hash of a file, or of a directory's files (relative names and contents, in sorted order; symbolic
    links confined to the directory, see :func:`_walk_files`).

    Hashed once: the result is cached (in memory, and for folders and files over 64 MB in
    :func:`cache_dir`) under a fingerprint of names, sizes, mtimes, ctimes and inodes, so a rerun or a
    resume on a 4M-image folder costs one listing, not a read of every image. ``workers`` threads read
    the files of a folder (default 8; 1 = serial)."""
    path = Path(path)
    key = str(path.resolve())
    if path.is_file():
        st = path.stat()
        fingerprint = _stat_key(st)
        value = _cached(key, fingerprint)
        if value is None:
            value = sha256_file(path)
            _remember(key, fingerprint, value, on_disk=st.st_size >= 64 << 20)
        return value
    fingerprint, _ = _folder_fingerprint(key)
    value = _cached(key, fingerprint)
    if value is None:
        value = _hash_folder(key, 8 if workers is None else workers)
        _remember(key, fingerprint, value, on_disk=True)
    return value


class BackgroundHash:
    """:func:`sha256_path` of one path on a daemon thread, so a long hash (a training set on a shared
    filesystem) overlaps with work instead of stalling it; :meth:`result` waits for it. Serial reads: a
    daemon thread must not own a thread pool that would hold the interpreter open on a crash."""

    def __init__(self, path: str | os.PathLike):
        import threading

        self.path = path
        self._value: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="facebench-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = sha256_path(self.path, workers=1)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread by result()
            self._error = exc

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_commit(start: str | os.PathLike | None = None) -> str | None:
    """The commit of the facebench checkout, when it runs from one."""
    here = Path(start) if start else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def environment(device: str | None = None) -> dict[str, Any]:
    """Versions and machine facts; torch is only imported if it already is (keeps light commands fast)."""
    torch_mod = sys.modules.get("torch")
    info: dict[str, Any] = {
        "facebench": package_version("facebench"),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": package_version("numpy"),
        "torch": getattr(torch_mod, "__version__", None) or package_version("torch"),
        "device": device,
    }
    return info


def provenance(
    *,
    command: list[str] | None = None,
    seed: int | None = None,
    device: str | None = None,
    inputs: dict[str, str | os.PathLike] | None = None,
    extra: dict[str, Any] | None = None,
    hashes: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The ``provenance.json`` record of a run; ``hashes`` holds digests of inputs already computed."""
    record = environment(device)
    record.update(
        {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": list(command if command is not None else sys.argv),
            "seed": seed,
            "inputs": {
                label: {"path": str(Path(p).resolve()), "sha256": (hashes or {}).get(label) or sha256_path(p)}
                for label, p in (inputs or {}).items()
            },
        }
    )
    if extra:
        record.update(extra)
    return record
