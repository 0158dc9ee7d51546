"""The sharded (PartialFC-style) head: on 2 gloo ranks it gives the full head's loss and gradients, it is
the full head in one process, and negative sampling keeps every positive class."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from conftest import one_thread  # noqa: F401 (fixture)

from facebench.pluginmanager import registry

pytestmark = pytest.mark.usefixtures("one_thread")

_RANKS = textwrap.dedent("""
    import json, sys
    import torch
    from torch.nn.parallel import DistributedDataParallel as DDP
    from facebench.pluginmanager import registry
    from facebench.runtime import init_distributed, shutdown
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    C, D, B = 11, 16, 8                      # 11 classes: rank 0 owns 6, rank 1 owns 5
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, 20, generator=g)
    y = torch.tensor([0, 10, 5, 6, 6, 3, 9, 1])
    heads = registry("head")

    torch.manual_seed(1); net = torch.nn.Linear(20, D)
    torch.manual_seed(2); full = heads.create("arcface", D, C, scale=16.0, margin=0.3)
    loss = full(net(x), y)
    loss.backward()

    torch.manual_seed(1); net2 = DDP(torch.nn.Linear(20, D))
    torch.manual_seed(2); part = heads.create("partial_fc", D, C, scale=16.0, margin=0.3)
    lo = ctx.rank * B // 2
    loss2 = part(net2(x[lo:lo + B // 2]), y[lo:lo + B // 2])
    loss2.backward()
    rows = slice(part.class_start, part.class_start + part.num_local)
    err = lambda a, b: float((a - b).abs().max())
    result = {
        "init": err(part.weight.detach(), full.weight.detach()[rows]),
        "loss": err(loss2.detach(), loss.detach()),
        "centres": err(part.weight.grad, full.weight.grad[rows]),
        "backbone": max(err(a.grad, b.grad) for a, b in zip(net2.module.parameters(), net.parameters())),
        "shard": [part.class_start, part.num_local],
    }
    with open(f"{sys.argv[1]}/rank{ctx.rank}.json", "w") as fh:
        json.dump(result, fh)
    shutdown(ctx)
""")


def test_sharded_head_equals_the_full_head_on_two_gloo_ranks(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(_RANKS)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), str(script), str(tmp_path)]
    done = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["shard"] for r in results] == [[0, 6], [6, 5]]
    for rank, values in enumerate(results):
        for key in ("init", "loss", "centres", "backbone"):
            assert values[key] < 1e-5, (rank, key, values[key])


def test_in_one_process_it_is_the_full_head():
    torch.manual_seed(3)
    full = registry("head").create("arcface", 8, 7)
    torch.manual_seed(3)
    part = registry("head").create("partial_fc", 8, 7)
    assert part.num_local == 7 and torch.equal(part.weight, full.weight)
    emb = torch.randn(5, 8, requires_grad=True)
    labels = torch.tensor([0, 3, 3, 6, 2])
    a = full(emb, labels)
    (ga,) = torch.autograd.grad(a, emb)
    b = part(emb, labels)
    (gb,) = torch.autograd.grad(b, emb)
    assert torch.allclose(a, b, atol=1e-6) and torch.allclose(ga, gb, atol=1e-6)


def test_negative_sampling_keeps_the_positives_and_scores_only_the_sample():
    torch.manual_seed(0)
    part = registry("head").create("partial_fc", 8, 40, sample_rate=0.25, loss="cosface")
    emb = torch.randn(6, 8)
    labels = torch.tensor([1, 39, 17, 17, 22, 5])
    state = torch.get_rng_state()
    rows, local = part._sample(labels)
    assert rows.numel() == 10 and set(labels.tolist()) <= set(rows.tolist())
    assert torch.equal(rows[local], labels)  # every label's column points at its own class
    torch.set_rng_state(state)
    loss = part(emb, labels)
    loss.backward()
    cos = F.normalize(emb) @ F.normalize(part.weight.detach()[rows]).T
    logits = (cos - 0.35 * F.one_hot(local, rows.numel())) * 64.0
    assert loss.item() == pytest.approx(F.cross_entropy(logits, local).item(), rel=1e-5)
    untouched = torch.ones(40, dtype=torch.bool)
    untouched[rows] = False
    assert part.weight.grad[untouched].abs().max() == 0 and part.weight.grad[rows].abs().max() > 0


def test_partial_fc_options_are_checked():
    from facebench.errors import ConfigError

    with pytest.raises(ConfigError, match="sample_rate must be in"):
        registry("head").create("partial_fc", 8, 4, sample_rate=0.0)
    with pytest.raises(ConfigError, match="'softmax' is not a cosine margin head"):
        registry("head").create("partial_fc", 8, 4, loss="softmax")
