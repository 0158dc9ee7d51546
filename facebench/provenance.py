"""Where a result came from: versions, device, seed, command line and hashes of every input file."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

_HASH_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_path(path: str | os.PathLike) -> str:
    """Hash of a file, or of a directory's files (relative names and contents, in sorted order)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(child.relative_to(path).as_posix().encode())
        digest.update(b"\0")
        digest.update(sha256_file(child).encode())
    return digest.hexdigest()


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
) -> dict[str, Any]:
    """The ``provenance.json`` record of a run."""
    record = environment(device)
    record.update(
        {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": list(command if command is not None else sys.argv),
            "seed": seed,
            "inputs": {
                label: {"path": str(Path(p).resolve()), "sha256": sha256_path(p)} for label, p in (inputs or {}).items()
            },
        }
    )
    if extra:
        record.update(extra)
    return record
