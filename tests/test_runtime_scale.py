"""The runtime and training-kit pieces a GPU job depends on, checked on CPU with their stand-ins: process
group timeouts (gloo for NCCL), bf16 and the GradScaler, exact fp32 products, RNG states saved on more
GPUs than a resumed job sees, and dataset hashing that is done once."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from conftest import free_port

from facebench import provenance as prov
from facebench.errors import ConfigError
from facebench.runtime import (
    amp_dtype,
    dist_timeout,
    exact_fp32,
    grad_scaler,
    wait_timeout,
)
from facebench.training import Position, capture_rng_state, restore_checkpoint, restore_rng_state


def test_timeouts_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("FACEBENCH_DIST_TIMEOUT", raising=False)
    monkeypatch.delenv("FACEBENCH_WAIT_TIMEOUT", raising=False)
    assert dist_timeout() == timedelta(minutes=30) and wait_timeout() == timedelta(days=1)
    monkeypatch.setenv("FACEBENCH_DIST_TIMEOUT", "7.5")
    assert dist_timeout() == timedelta(seconds=7.5)
    monkeypatch.setenv("FACEBENCH_DIST_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="FACEBENCH_DIST_TIMEOUT='soon': expected a number of seconds"):
        dist_timeout()


_RANKS = textwrap.dedent("""
    import sys, time
    from facebench.runtime import barrier, init_distributed, shutdown, wait_for_all
    ctx = init_distributed("cpu")
    if ctx.rank == 1:
        time.sleep(float(sys.argv[2]))
    try:
        (barrier if sys.argv[1] == "barrier" else wait_for_all)(ctx)
    except Exception as exc:
        print("failed:", type(exc).__name__, flush=True)
        sys.exit(3)
    print("passed", ctx.backend, flush=True)
    shutdown(ctx)
""")


def _two_ranks(mode: str, delay: float, timeout: float) -> list[subprocess.CompletedProcess]:
    port = free_port()
    procs = []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), FACEBENCH_DIST_TIMEOUT=str(timeout), OMP_NUM_THREADS="1")
        procs.append(subprocess.Popen([sys.executable, "-c", _RANKS, mode, str(delay)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    out = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, stderr = p.communicate()
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


def test_the_collective_timeout_is_applied_and_wait_for_all_outlasts_it():
    """gloo stands in for NCCL: a rank 9 s late makes a plain barrier fail under a 5 s timeout, while
    ``wait_for_all`` (the barrier for uneven one-off work) waits for it."""
    late = _two_ranks("barrier", 9, 5)
    assert late[0].returncode == 3 and "failed" in late[0].stdout, (late[0].stdout, late[0].stderr[-2000:])
    waited = _two_ranks("wait", 9, 5)
    for done in waited:
        assert done.returncode == 0 and "passed gloo" in done.stdout, done.stderr[-2000:]


def test_bf16_is_an_amp_dtype_and_needs_no_scaler():
    assert amp_dtype("bf16") is torch.bfloat16 and amp_dtype("fp16") is torch.float16
    with pytest.raises(ConfigError, match="unknown mixed-precision dtype 'fp8'"):
        amp_dtype("fp8")
    # on CPU every scaler is a pass-through; the bf16 one would be even on CUDA
    assert not grad_scaler(torch.device("cpu"), True, dtype="bf16").is_enabled()


def test_exact_fp32_turns_off_reduced_precision_and_restores_it():
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        with exact_fp32():
            assert torch.get_float32_matmul_precision() == "highest"
            assert not torch.backends.cuda.matmul.allow_tf32
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(before)


def test_a_scaler_saved_disabled_loads_into_an_enabled_one():
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    assert disabled.state_dict() == {}
    enabled = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0)
    with pytest.raises(RuntimeError):  # what torch does by itself
        enabled.load_state_dict(disabled.state_dict())
    data = {"scaler": disabled.state_dict(), "position": Position(1, 0, 5)}
    assert restore_checkpoint(data, scaler=enabled) == Position(1, 0, 5)
    assert enabled.get_scale() == 1024.0  # an enabled scaler starts afresh
    # the reverse: a GPU run's scaler state resumed on the CPU (AMP off there)
    scaled = {"scaler": enabled.state_dict(), "position": Position(2, 0, 9)}
    off = torch.amp.GradScaler("cpu", enabled=False)
    assert restore_checkpoint(scaled, scaler=off) == Position(2, 0, 9)
    assert off.state_dict() == {} and not off.is_enabled()


def test_cuda_rng_states_of_more_gpus_than_visible_restore_the_visible_ones(monkeypatch):
    """A checkpoint saved on 8 GPUs resumed where 2 are visible: devices 0 and 1 get their states and
    nothing asks for device 2 (torch's own set_rng_state_all would)."""
    calls = []

    def fake_set(state, device="cuda"):
        if int(device) >= 2:
            raise RuntimeError(f"invalid device ordinal {device}")
        calls.append((int(device), int(state[0])))

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state", fake_set)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", fake_set)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.tensor([i], dtype=torch.uint8)
                                                                   for i in range(8)])
    state = capture_rng_state()
    assert len(state["cuda"]) == 8
    restore_rng_state(state)
    assert calls == [(0, 0), (1, 1)]


def test_folder_hash_is_unchanged_by_the_streaming_walk_and_computed_once(tmp_path, monkeypatch):
    root = tmp_path / "data"
    for rel, data in {"a/x.jpg": b"1", "a/b/y.jpg": b"22", "a-c/z.jpg": b"333", "b.txt": b"4"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    expected = hashlib.sha256()
    for child in sorted(p for p in root.rglob("*") if p.is_file()):  # the definition
        expected.update(child.relative_to(root).as_posix().encode() + b"\0")
        expected.update(hashlib.sha256(child.read_bytes()).hexdigest().encode())
    assert prov.sha256_path(root, workers=1) == expected.hexdigest()
    prov._MEMO.clear()
    assert prov.sha256_path(root, workers=3) == expected.hexdigest()
    prov._MEMO.clear()
    reads = []
    monkeypatch.setattr(prov, "sha256_file", lambda p: reads.append(p) or "x")
    assert prov.sha256_path(root) == expected.hexdigest()  # from the cache file: nothing read
    assert reads == []
    time.sleep(0.01)
    (root / "a" / "x.jpg").write_bytes(b"9")  # same size, new content
    prov._MEMO.clear()
    prov.sha256_path(root)
    assert len(reads) == 4  # the fingerprint changed: hashed again


@pytest.mark.parametrize("entry", [b"[1, 2]", b"not json", b"[" * 100_000, b"\xff\xfe", b'{"path": 3}'])
def test_a_damaged_hash_cache_entry_is_hashed_again(tmp_path, entry):
    root = tmp_path / "data"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.jpg").write_bytes(b"1")
    first = prov.sha256_path(root)
    prov._MEMO.clear()
    prov._cache_file(str(root.resolve())).write_bytes(entry)
    assert prov.sha256_path(root) == first


def test_background_hash_returns_the_same_digest(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(3000))
    assert prov.BackgroundHash(path).result() == hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(FileNotFoundError):
        prov.BackgroundHash(Path(tmp_path / "missing")).result()
