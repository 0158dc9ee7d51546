"""Vec2Face generation speed: images/s of the plain path (explicit fp32 attention, no_grad) and the fast
path (fused attention, inference_mode; on CUDA also channels_last + fp16 autocast, optionally
torch.compile), for the base and tiny models, measured in this process.

    python benchmarks/generator_speed.py                      # base + tiny on CPU, batch 8
    python benchmarks/generator_speed.py --device cuda --batch 64 --compile

Random weights are used (speed does not depend on the values); both paths get the same vectors and
masks, and the largest difference between their outputs is printed beside the timings.
"""

from __future__ import annotations

import argparse
import time

import torch

import facebench


def time_path(fn, vectors, masks, repeats: int, device: torch.device) -> float:
    fn(vectors, masks=masks)  # warm-up (allocations, compile)
    if device.type == "cuda":
        torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(vectors, masks=masks)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vec2face,vec2face_tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast path")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"best of {args.repeats}")
    print(f"{'model':<16}{'plain img/s':>13}{'fast img/s':>13}{'fast/plain':>12}{'max |diff|':>13}")
    for name in args.models.split(","):
        torch.manual_seed(0)
        gen = facebench.load_generator(name, device=device, compile=args.compile)
        vectors = torch.randn(args.batch, gen.feature_dim, device=device)
        masks = gen.sample_masks(args.batch)
        plain = time_path(gen.generate_plain, vectors, masks, args.repeats, device)
        fast = time_path(gen.generate, vectors, masks, args.repeats, device)
        diff = (gen.generate(vectors, masks=masks) - gen.generate_plain(vectors, masks=masks)).abs().max().item()
        print(f"{name:<16}{args.batch / plain:>13.2f}{args.batch / fast:>13.2f}{plain / fast:>12.2f}{diff:>13.2e}")


if __name__ == "__main__":
    main()
