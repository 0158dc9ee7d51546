"""Generation at scale, on CPU: ranks that finish unevenly, encoding off the generating thread, a shard
manifest that costs O(shards) to keep, and identity sampling that stays exact when float32 matmuls may
use reduced precision (TF32 on CUDA)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import conftest as fx
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facebench import atomic, shards
from facebench.generation import sampling
from facebench.generation import sharded as generation
from facebench.shards import ShardManifest, journal_path, read_manifest

HERE = Path(__file__).resolve().parent


def _args(ids: Path, out: Path) -> list[str]:
    return ["generate", "--generator", "tinygen", "--ids", str(ids), "--images-per-id", "4", "--ids-per-shard", "2",
            "--batch-size", "3", "--out", str(out), "--format", "testfolder", "--device", "cpu"]


def test_ranks_that_finish_unevenly_wait_longer_than_the_collective_timeout(tmp_path, monkeypatch):
    """Rank 1 generates 6 s longer than rank 0 while the collective timeout is 3 s: rank 0 waits in the
    gloo wait group, not a collective, and the dataset equals one process's."""
    ids = tmp_path / "ids.npy"
    np.save(ids, np.random.default_rng(0).standard_normal((12, fx.DIM)).astype(np.float32) * 1.5)
    assert CliRunner().invoke(fx.gen_cli(monkeypatch), _args(ids, tmp_path / "single")).exit_code == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "FACEBENCH_QUIET": "1", "PYTHONPATH": str(HERE), "TINYGEN_DELAY_RANK1": "1.0",
           "FACEBENCH_DIST_TIMEOUT": "3", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           str(HERE / "conftest.py"), *_args(ids, tmp_path / "ranks")]
    start = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert time.monotonic() - start > 6
    single = fx.tree_bytes(tmp_path / "single" / "dataset.testfolder")
    assert fx.tree_bytes(tmp_path / "ranks" / "dataset.testfolder") == single


def test_images_are_encoded_off_the_generating_thread(tmp_path, monkeypatch):
    threads = []
    real = generation.encode_image
    monkeypatch.setattr(generation, "encode_image",
                        lambda *a, **k: threads.append(threading.current_thread().name) or real(*a, **k))
    ids = np.random.default_rng(1).standard_normal((3, fx.DIM)).astype(np.float32)
    config = generation.GenerationConfig(images_per_id=4, batch_size=5)
    result = generation.generate_shard(fx.TinyGenerator(), ids, 0, 0, config)
    assert len(result.images) == 12 and len(threads) == 12
    assert threading.main_thread().name not in threads
    monkeypatch.setenv("FACEBENCH_ENCODE_THREADS", "1")
    again = generation.generate_shard(fx.TinyGenerator(), ids, 0, 0, config)
    assert again.images == result.images  # same bytes whatever the number of encoding threads


def test_a_long_manifest_is_journaled_and_written_in_linear_total_bytes(tmp_path, monkeypatch):
    written = []
    real = atomic.write_json
    monkeypatch.setattr(shards.atomic, "write_json",
                        lambda path, data, *a: written.append(len(json.dumps(data))) or real(path, data, *a))
    path = tmp_path / "manifest.json"
    manifest = ShardManifest(path, {"p": 1})
    info = {"images": 5000, "perturb.mean_sigma": 0.123456, "attrop.iterations": 5}
    n = 3000
    for shard in range(n):
        manifest.mark_done(shard, info)
    per_entry = len(json.dumps({"0": info}))
    # rewriting after every shard would be ~n^2/2 entries (4.5M); journaled, a small multiple of n
    assert sum(written) < 6 * n * per_entry
    assert journal_path(path).exists()
    saved = read_manifest(path)
    assert len(saved["done"]) == n and saved["done"]["2999"] == info
    with open(journal_path(path), "a") as fh:
        fh.write('{"shard": "3000", "inf')  # a line cut short by a kill
    resumed = ShardManifest(path, {"p": 1})
    assert len(resumed.done) == n and not resumed.is_done(3000)
    assert not journal_path(path).exists()  # folded into the file on resume
    assert len(json.loads(path.read_text())["done"]) == n


def test_sampling_stays_exact_when_matmuls_may_use_reduced_precision(monkeypatch):
    """TF32 (about 1e-3 error) would exceed the 1e-4 recheck margin; sampling runs its products in full
    fp32 whatever the global setting, and the result has no pair above tau in float64."""
    seen = []
    real = sampling._max_cos_to_kept
    monkeypatch.setattr(sampling, "_max_cos_to_kept",
                        lambda *a: seen.append(torch.get_float32_matmul_precision()) or real(*a))
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        rng = np.random.default_rng(0)
        stats = sampling.PCAStats.fit(rng.standard_normal((400, 64)))
        result = sampling.sample_identities(stats, 100, tau=0.3, seed=1, batch=64)
        assert torch.get_float32_matmul_precision() == "medium"  # restored
    finally:
        torch.set_float32_matmul_precision(before)
    assert seen and set(seen) == {"highest"}
    unit = result.vectors.astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -1)
    assert sims.max() <= 0.3


@pytest.mark.parametrize("n", [1, 64, 65, 200])
def test_manifests_of_any_length_read_back_whole(tmp_path, n):
    path = tmp_path / "m.json"
    manifest = ShardManifest(path, {"p": 2})
    for shard in range(n):
        manifest.mark_done(shard, {"k": shard})
    assert read_manifest(path)["done"] == {str(k): {"k": k} for k in range(n)}
    assert ShardManifest(path, {"p": 2}).done == manifest.done
