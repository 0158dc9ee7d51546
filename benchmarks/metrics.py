"""Speed of the metric primitives against baselines measured in the same process.

1. ``verify()`` (vectorised insightface protocol) against the plain loop over folds x thresholds, on
   6,000 pairs (the LFW size); both must give the same accuracy.
2. ``separability_curve`` at 20k and 100k identities (512-d) against the bare matrix products it needs:
   GEMM throughput is measured on this machine with blocks of the same shape, and the ratio
   "separability time / (needed FLOPs / measured FLOP/s)" shows the overhead of the thresholding.
3. ``vendi_score`` of 10k x 512 embeddings (inter-class diversity of 10k identity centres) against a bare
   ``eigvalsh`` of the same matrix's 512 x 512 kernel ``X^T X / n`` (what it must at least do), and, with
   ``--vendi-gram``, against the naive eigendecomposition of the 10k x 10k Gram kernel ``X X^T / n`` that the
   definition names (minutes on a laptop); the scores must agree to 1e-6 relative.
4. ``vendi_by_identity`` (intra-class diversity) of identities x images-per-identity x 512 against a bare
   batched ``eigvalsh`` of the same per-identity Gram kernels.

Usage: python benchmarks/metrics.py [--sizes 20000,100000] [--device cpu|cuda] [--dim 512]
       [--vendi 10000] [--vendi-gram] [--vendi-identities 10000x50] [--skip-verify] [--only-vendi]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def plain_distances(emb_a, emb_b):
    a = emb_a / np.linalg.norm(emb_a, axis=1, keepdims=True)
    b = emb_b / np.linalg.norm(emb_b, axis=1, keepdims=True)
    return np.sum(np.square(a - b), axis=1)


def plain_verify(emb_a, emb_b, same, folds=10):
    return plain_protocol(plain_distances(emb_a, emb_b), same, folds)


def plain_protocol(dist, same, folds=10):
    """insightface calculate_roc's accuracy part: a loop over folds, and over thresholds inside each."""
    from sklearn.model_selection import KFold

    thresholds = np.arange(0, 4, 0.01)
    accs = []
    for train, test in KFold(n_splits=folds, shuffle=False).split(dist):
        train_acc = [np.mean((dist[train] < t) == same[train]) for t in thresholds]
        best = thresholds[int(np.argmax(train_acc))]
        accs.append(np.mean((dist[test] < best) == same[test]))
    return float(np.mean(accs))


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def bench_verify() -> None:
    from facebench.metrics import verify
    from facebench.metrics.verification import fold_accuracies

    rng = np.random.default_rng(0)
    a = rng.normal(size=(6000, 512)).astype(np.float32)
    same = np.arange(6000) % 600 < 300
    b = np.where(same[:, None], a + 1.2 * rng.normal(size=a.shape), rng.normal(size=a.shape)).astype(np.float32)
    t_fast, res = best_of(lambda: verify(a, b, same), 5)
    t_plain, acc = best_of(lambda: plain_verify(a, b, same), 2)
    assert abs(res.accuracy - acc) < 1e-12, (res.accuracy, acc)
    print(f"verify, 6000 pairs x 512-d, end to end (normalise, distances, folds, ROC/EER/TAR): "
          f"{1e3 * t_fast:.1f} ms; plain loop (folds/thresholds only, no ROC) {1e3 * t_plain:.1f} ms; "
          f"ratio x{t_plain / t_fast:.1f} (accuracy {res.accuracy:.5f} in both)")
    dist = plain_distances(a.astype(np.float64), b.astype(np.float64))
    t_core, (accs, _) = best_of(lambda: fold_accuracies(dist, same, 10), 20)
    t_loop, acc = best_of(lambda: plain_protocol(dist, same), 3)
    assert abs(accs.mean() - acc) < 1e-12
    print(f"protocol core (10 folds x 400 thresholds, from distances): vectorised {1e3 * t_core:.2f} ms, "
          f"plain loop {1e3 * t_loop:.1f} ms, speed-up x{t_loop / t_core:.0f}")


def needed_flops(n: int, dim: int, block: int) -> float:
    """FLOPs of the blocked pass: each row block multiplies against every column up to its end."""
    total = 0.0
    for start in range(0, n, block):
        stop = min(start + block, n)
        total += 2.0 * (stop - start) * stop * dim
    return total


def gemm_throughput(dim: int, block: int, cols: int, device: str) -> float:
    """FLOP/s of float32 (block x dim) @ (dim x cols) products on ``device`` (best of several)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(block, dim, generator=gen).to(device)
    b = torch.randn(cols, dim, generator=gen).to(device)

    def run():
        out = a @ b.T
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return out

    run()
    t, _ = best_of(run, 5)
    return 2.0 * block * cols * dim / t


def bench_separability(n: int, dim: int, device: str) -> None:
    import torch

    from facebench.metrics import separability
    from facebench.metrics.separability import block_rows

    rng = np.random.default_rng(n)
    anchors = rng.normal(size=(max(n // 20, 1), dim)).astype(np.float32)
    centers = anchors[rng.integers(0, len(anchors), n)] + 1.1 * rng.normal(size=(n, dim)).astype(np.float32)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    curve = separability.separability_curve(centers, 0.4, device=device)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    rows = block_rows(n)
    flops = needed_flops(n, dim, rows)
    rate = gemm_throughput(dim, rows, n // 2, device)
    gemm_time = flops / rate
    print(f"separability, {n} identities x {dim}-d on {device}: {elapsed:.2f} s; its matrix products alone "
          f"{gemm_time:.2f} s ({flops / 1e12:.2f} TFLOP at measured {rate / 1e9:.1f} GFLOP/s); "
          f"ratio x{elapsed / gemm_time:.2f}; separable {int(curve[-1])} of {n}; "
          f"block {rows} rows, product matrix <= {rows * n * 4 / 2**20:.0f} MiB")


def bench_vendi(n: int, dim: int, gram: bool) -> None:
    from facebench.metrics import vendi_score
    from facebench.metrics.vendi import entropy_exp

    rng = np.random.default_rng(7)
    anchors = rng.normal(size=(64, dim))
    x = (anchors[rng.integers(0, 64, n)] + 2.0 * rng.normal(size=(n, dim))).astype(np.float32)
    t_score, score = best_of(lambda: vendi_score(x), 3)
    unit = x.astype(np.float64)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    t_product, kernel = best_of(lambda: unit.T @ unit / n, 3)
    t_eig, lam = best_of(lambda: np.linalg.eigvalsh(kernel), 3)
    assert abs(float(entropy_exp(lam)) - score) <= 1e-6 * score
    print(f"vendi_score, {n} x {dim} (float32 in, normalised inside): {1e3 * t_score:.1f} ms; bare eigvalsh of the "
          f"same matrix's {dim} x {dim} kernel {1e3 * t_eig:.1f} ms (ratio x{t_score / t_eig:.2f}); that kernel's "
          f"float64 product X^T X / n {1e3 * t_product:.1f} ms, product + eigvalsh {1e3 * (t_product + t_eig):.1f} ms "
          f"(ratio x{t_score / (t_product + t_eig):.2f}); score {score:.3f}")
    if gram:
        big = unit @ unit.T / n
        t_gram, lam = best_of(lambda: np.linalg.eigvalsh(big), 1)
        naive = float(entropy_exp(lam))
        assert abs(naive - score) <= 1e-6 * score, (naive, score)
        print(f"  naive: eigvalsh of the {n} x {n} Gram kernel {t_gram:.1f} s, ratio x{t_gram / t_score:.0f} slower; "
              f"score {naive:.3f} (relative difference {abs(naive - score) / score:.1e})")


def bench_vendi_identities(identities: int, per_identity: int, dim: int) -> None:
    from facebench.metrics import vendi_by_identity
    from facebench.metrics.vendi import entropy_exp

    rng = np.random.default_rng(8)
    centres = rng.normal(size=(identities, dim)).astype(np.float32)
    labels = np.repeat(np.arange(identities), per_identity)
    feats = centres[labels] + rng.normal(scale=0.8, size=(labels.size, dim)).astype(np.float32)
    start = time.perf_counter()
    _, scores = vendi_by_identity(feats, labels)
    t_ours = time.perf_counter() - start
    unit = feats.astype(np.float64).reshape(identities, per_identity, dim)
    unit /= np.linalg.norm(unit, axis=2, keepdims=True)
    start = time.perf_counter()
    lam = np.linalg.eigvalsh(np.einsum("kmd,knd->kmn", unit, unit) / per_identity)
    t_bare = time.perf_counter() - start
    assert np.allclose(entropy_exp(lam), scores, rtol=1e-6)
    print(f"vendi_by_identity, {identities} identities x {per_identity} images x {dim}: {t_ours:.2f} s "
          f"(read in blocks, float32 in); bare batched Gram products + eigvalsh of the same kernels {t_bare:.2f} s; "
          f"ratio x{t_ours / t_bare:.2f}; mean intra-class score {scores.mean():.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000", help="identity counts for the separability benchmark")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-verify", action="store_true")
    parser.add_argument("--vendi", type=int, default=10_000, help="embeddings for the Vendi benchmark (0: skip)")
    parser.add_argument("--vendi-gram", action="store_true", help="also time the naive n x n Gram eigendecomposition")
    parser.add_argument("--vendi-identities", default="10000x50", help="identities x images for the intra-class "
                                                                       "Vendi benchmark ('' to skip)")
    parser.add_argument("--only-vendi", action="store_true", help="run only the Vendi benchmarks")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name(0)}" if args.device.startswith("cuda") else ""))
    if args.vendi:
        bench_vendi(args.vendi, args.dim, args.vendi_gram)
    if args.vendi_identities:
        ids, per = (int(v) for v in args.vendi_identities.lower().split("x"))
        bench_vendi_identities(ids, per, args.dim)
    if args.only_vendi:
        return
    if not args.skip_verify:
        bench_verify()
    for n in (int(s) for s in args.sizes.split(",") if s):
        bench_separability(n, args.dim, args.device)


if __name__ == "__main__":
    main()
