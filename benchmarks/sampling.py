"""Identity-sampling time against the bare matrix products it cannot avoid.

Exact rejection at tau needs every kept vector compared with every later one: about n^2 / 2 dot products
of dimension D. The baseline times exactly those blocked products (candidate blocks of ``--batch`` against
all earlier rows, with the row maxima) and nothing else, in the same process; the ratio shows what the
sampler adds (drawing from the PCA statistics, the in-block greedy pass, the float64 recheck near tau).

Without ``--features``/``--stats`` the statistics are fitted on synthetic correlated 512-d features.

    python benchmarks/sampling.py --sizes 20000 100000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from facebench.generation.sampling import PCAStats, load_feature_matrix, sample_identities


def synthetic_stats(dim: int = 512, n: int = 4000, seed: int = 0) -> PCAStats:
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((dim, dim)) * np.linspace(1.0, 0.3, dim)[:, None]
    return PCAStats.fit(rng.standard_normal((n, dim)) @ mixing + 0.5)


def bare_products(vectors: np.ndarray, batch: int, block: int, device: str) -> float:
    """Seconds for the blocked n^2/2 similarity products (with row maxima) over ``vectors``."""
    x = torch.nn.functional.normalize(torch.from_numpy(vectors).float(), dim=1).to(device)
    start = time.perf_counter()
    for b in range(0, len(x), batch):
        cand = x[b:b + batch]
        best = torch.full((len(cand),), -2.0, device=device)
        for k in range(0, b, block):
            best = torch.maximum(best, (cand @ x[k:min(k + block, b)].T).amax(dim=1))
        (cand @ cand.T).cpu()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20000, 100000])
    parser.add_argument("--tau", type=float, default=0.3)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--features", help="real identity features (.npy) to fit the statistics on")
    parser.add_argument("--stats", help="saved PCA statistics (.npz)")
    args = parser.parse_args()

    if args.stats:
        stats, source = PCAStats.load(args.stats), args.stats
    elif args.features:
        stats, source = PCAStats.fit(load_feature_matrix(args.features)), args.features
    else:
        stats, source = synthetic_stats(), "synthetic correlated 512-d features"
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, tau {args.tau}, batch {args.batch}, "
          f"statistics from {source}")
    print(f"{'identities':>10} {'sampling s':>11} {'bare matmul s':>14} {'ratio':>6} {'rejected':>9} {'ids/s':>9}")
    for n in args.sizes:
        start = time.perf_counter()
        result = sample_identities(stats, n, tau=args.tau, seed=0, batch=args.batch, device=args.device)
        sampling = time.perf_counter() - start
        bare = bare_products(result.vectors, args.batch, 8192, args.device)
        print(f"{n:>10} {sampling:>11.2f} {bare:>14.2f} {sampling / bare:>6.2f} "
              f"{100 * result.rejection_rate:>8.2f}% {n / sampling:>9.0f}")


if __name__ == "__main__":
    main()
