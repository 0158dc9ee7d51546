"""facebench's sharded ``partial_fc`` head side by side with insightface's ``PartialFC_V2``, on 2 gloo ranks.

    python benchmarks/parity/partial_fc.py --insightface PATH/TO/insightface [--classes 1003] [--batch 16]

PATH is a checkout of github.com/deepinsight/insightface (or its ``recognition/arcface_torch`` folder).
Its ``partial_fc_v2.py`` (``PartialFC_V2``: the gather with its gradient, the distributed cross-entropy,
negative sampling) and ``losses.py`` (``CombinedMarginLoss``) are loaded from there by file path and run
as they are, on the CPU: the reference calls ``.cuda()`` on fresh tensors, which this script makes a
no-op in its two worker processes (nothing else of the reference is changed).

Both sides get the same class centres (facebench's shard of each rank copied into the reference's), the
same per-rank embeddings and labels, and (for negative sampling) the same global RNG state before the
forward pass, so both draw the same negatives. Printed per setting: the largest absolute differences of
the loss, of each rank's centre gradients and of the embedding gradients (what DDP then averages into the
backbone), relative to the largest absolute value of the reference's; all should be below 1e-5. A
missing reference path skips with a message.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from _common import load_file_module

#: (name, facebench head options, CombinedMarginLoss (s, m1, m2, m3), sample_rate)
SETTINGS = (
    ("arcface s64 m0.5 (straight-through)", {"loss": "arcface", "scale": 64.0, "margin": 0.5,
                                             "straight_through": True, "guard": False}, (64.0, 1.0, 0.5, 0.0), 1.0),
    ("cosface s64 m0.35", {"loss": "cosface", "scale": 64.0, "margin": 0.35}, (64.0, 1.0, 0.0, 0.35), 1.0),
    ("arcface, sample_rate 0.3", {"loss": "arcface", "scale": 64.0, "margin": 0.5,
                                  "straight_through": True, "guard": False}, (64.0, 1.0, 0.5, 0.0), 0.3),
)
WORLD = 2
TOLERANCE = 1e-5


def reference_dir(path: Path) -> Path | None:
    for candidate in (path / "recognition" / "arcface_torch", path):
        if (candidate / "partial_fc_v2.py").is_file() and (candidate / "losses.py").is_file():
            return candidate
    return None


def _relative(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """The largest absolute difference over the largest absolute value of the reference (float32 rounds
    relative to the size of what it holds: the centre gradients reach about 12 here)."""
    return float((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-12))


def compare(rank: int, ref_dir: Path, classes: int, batch: int, out: Path) -> None:
    """One rank: every setting through both heads; this rank's differences go to ``out/rank{rank}.json``."""
    import torch.distributed as dist

    from facebench.pluginmanager import registry

    warnings.filterwarnings("ignore")  # the reference's torch.cuda.amp.autocast is deprecated
    torch.set_num_threads(1)
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # the reference's .cuda() calls, on the CPU
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    pfc = load_file_module("reference_partial_fc_v2", ref_dir / "partial_fc_v2.py")
    losses = load_file_module("reference_losses", ref_dir / "losses.py")
    dim = 64
    rows: dict[str, dict[str, float]] = {}
    for name, options, margins, rate in SETTINGS:
        g = torch.Generator().manual_seed(7)
        embeddings = torch.randn(WORLD * batch, dim, generator=g)[rank * batch:(rank + 1) * batch]
        labels = torch.randint(0, classes, (WORLD * batch,), generator=g)[rank * batch:(rank + 1) * batch]
        torch.manual_seed(0)
        ours = registry("head").create("partial_fc", dim, classes, sample_rate=rate, **options)
        theirs = pfc.PartialFC_V2(losses.CombinedMarginLoss(*margins), dim, classes, sample_rate=rate)
        assert (theirs.class_start, theirs.num_local) == (ours.class_start, ours.num_local), "shards differ"
        with torch.no_grad():
            theirs.weight.copy_(ours.weight)
        results = []
        for head in (ours, theirs):
            x = embeddings.clone().requires_grad_(True)
            torch.manual_seed(1000 + rank)  # the negatives: the same draw on both sides
            loss = head(x, labels.clone())
            loss.backward()
            results.append((loss.detach(), head.weight.grad.clone(), x.grad.clone()))
        (l1, c1, e1), (l2, c2, e2) = results
        rows[name] = {"loss": _relative(l1, l2), "centre_grads": _relative(c1, c2),
                      "embedding_grads": _relative(e1, e2), "loss_value": float(l1)}
    (out / f"rank{rank}.json").write_text(json.dumps(rows))
    dist.destroy_process_group()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--insightface", type=Path, default=None, help="a checkout of deepinsight/insightface")
    parser.add_argument("--classes", type=int, default=1003, help="classes (odd: the shards differ in size)")
    parser.add_argument("--batch", type=int, default=16, help="embeddings per rank")
    args = parser.parse_args()
    ref_dir = reference_dir(args.insightface) if args.insightface else None
    if ref_dir is None:
        print("skipped: no insightface checkout with recognition/arcface_torch/partial_fc_v2.py "
              f"({args.insightface or 'pass --insightface PATH'})")
        return 0
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(compare, args=(ref_dir, args.classes, args.batch, Path(tmp)), nprocs=WORLD)
        per_rank = [json.loads((Path(tmp) / f"rank{r}.json").read_text()) for r in range(WORLD)]
    print(f"partial_fc vs insightface PartialFC_V2 ({ref_dir}), {WORLD} gloo ranks, {args.classes} classes, "
          f"{args.batch} embeddings per rank; largest differences over the ranks, relative to the reference's largest value:")
    worst = 0.0
    for name, *_ in SETTINGS:
        diffs = {k: max(r[name][k] for r in per_rank) for k in ("loss", "centre_grads", "embedding_grads")}
        worst = max(worst, *diffs.values())
        print(f"  {name:38s} loss {per_rank[0][name]['loss_value']:.4f}  "
              + "  ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    print(f"largest difference {worst:.2e} (target {TOLERANCE:.0e}): {'ok' if worst <= TOLERANCE else 'DIFFERENT'}")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
