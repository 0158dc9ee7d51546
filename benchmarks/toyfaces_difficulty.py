"""How hard each toyfaces pack is: train a small CNN on a toy training set, verify on every pack.

This is the measurement behind the difficulty defaults in ``docs/toyfaces.md``: with the defaults, a
~1.1M-parameter CNN (three stride-2 stages, 128-d embedding, CosFace s=30 m=0.3, 8 epochs) trained on
300 identities x 25 images at 56 px should reach 90-99% on ``toy_lfw`` and less on the pose, age,
facial-hair and exposure packs. Verification follows the LFW protocol: flip-summed embeddings, cosine
similarity, 10 folds, threshold chosen on the other nine.

    python benchmarks/toyfaces_difficulty.py --out /tmp/toy-difficulty [--epochs 8]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from facebench_plugins.toyfaces.build import ToyConfig, build_world
from facebench_plugins.toyfaces.packs import PACKS
from torch import nn

from facebench.data import open_dataset, open_pairs
from facebench.data.tensors import to_model_input


def small_cnn(size: int, dim: int = 128) -> nn.Module:
    def stage(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout),
                             nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout))

    return nn.Sequential(stage(3, 32), stage(32, 64), stage(64, 128), nn.Flatten(), nn.Dropout(0.2),
                         nn.Linear(128 * (size // 8) ** 2, dim), nn.BatchNorm1d(dim))


def train(net: nn.Module, images: torch.Tensor, labels: torch.Tensor, classes: int, epochs: int) -> None:
    centres = nn.Parameter(torch.randn(classes, 128) * 0.01)
    opt = torch.optim.SGD([*net.parameters(), centres], lr=0.1, momentum=0.9, weight_decay=5e-4)
    steps = epochs * (len(images) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=steps)
    start = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(images))
        for b in range(len(images) // 128):
            idx = order[b * 128 : (b + 1) * 128]
            x, y = images[idx], labels[idx]
            x = torch.where((torch.rand(len(x)) < 0.5)[:, None, None, None], x.flip(-1), x)
            cos = F.normalize(net(x)) @ F.normalize(centres).T
            loss = F.cross_entropy(30 * (cos - 0.3 * F.one_hot(y, classes)), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch}: loss {loss.item():.3f} ({time.perf_counter() - start:.0f}s)", flush=True)


def verification_accuracy(similarity: np.ndarray, same: np.ndarray, folds: int = 10) -> float:
    thresholds = np.linspace(-1, 1, 401)
    accs = []
    for test in np.array_split(np.arange(len(same)), folds):
        fit = np.setdiff1d(np.arange(len(same)), test)
        best = thresholds[np.argmax([((similarity[fit] > t) == same[fit]).mean() for t in thresholds])]
        accs.append(((similarity[test] > best) == same[test]).mean())
    return float(np.mean(accs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="Where the toy world is built (reused if present).")
    parser.add_argument("--identities", type=int, default=300)
    parser.add_argument("--images-per-identity", type=int, default=25)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--pairs", type=int, default=600)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("FACEBENCH_QUIET", "1")
    torch.manual_seed(args.seed)
    out = Path(args.out)
    if not out.exists():
        build_world(out, ToyConfig(identities=args.identities, images_per_identity=args.images_per_identity,
                                   size=args.size, pairs=args.pairs, seed=args.seed), workers=2)
    reader = open_dataset(out / "train")
    images = to_model_input(np.stack([reader.image(i) for i in range(len(reader))]))
    net = small_cnn(args.size)
    train(net, images, torch.from_numpy(reader.labels), reader.num_classes, args.epochs)
    net.eval()
    print(f"\n{'pack':14} accuracy (10-fold, %)")
    for name in PACKS:
        pack = open_pairs(out / f"{name}.bin")
        x = to_model_input(pack.images())
        with torch.no_grad():
            emb = F.normalize(net(x) + net(x.flip(-1))).numpy()
        sim = (emb[0::2] * emb[1::2]).sum(1)
        print(f"{name:14} {100 * verification_accuracy(sim, pack.issame):6.2f}")


if __name__ == "__main__":
    main()
