"""AttrOP speed: seconds per steered image with the generator's weights frozen (what ``AttrOP.apply`` does)
against the same optimisation with the weights left trainable, so that every backward step also computes
their gradients (what AttrOP did before), measured in this process on the same vectors.

    python benchmarks/attrop_speed.py                       # tiny Vec2Face, tiny SE-IResNet, tiny SixDRepNet
    python benchmarks/attrop_speed.py --images 128 --steps 10

Random weights are used (the cost of a step does not depend on their values). Both runs take exactly
``--steps`` steps per image (targets out of reach), so they do the same number of forward passes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import facebench
from facebench.generation.attrop import AttrOP, AttrOPConfig, parse_attrop
from facebench.pluginmanager import registry


class BackboneIdentity:
    """A randomly initialised FR backbone as AttrOP's identity model (input size 56)."""

    def __init__(self, name: str):
        self.model = facebench.create_backbone(name).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def run(attrop: AttrOP, generator, ids, vectors, per_id: int, frozen: bool) -> float:
    start = time.perf_counter()
    if frozen:
        attrop.apply(generator, ids, vectors, per_id, np.random.default_rng(0))
    else:  # the loop of apply() without its freezing
        rows = np.repeat(np.arange(len(ids)), per_id)
        for lo in range(0, len(vectors), attrop.config.batch_size):
            idx = np.arange(lo, min(lo + attrop.config.batch_size, len(vectors)))
            attrop.optimize(generator, ids[rows[idx]], vectors[idx], np.full(len(idx), 89.0),
                            np.full(len(idx), np.nan))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--identity", default="se_iresnet_tiny")
    args = parser.parse_args()

    torch.manual_seed(0)
    generator = facebench.load_generator("vec2face_tiny")
    pose = registry("feature_extractor").create("sixdrepnet-tiny")
    for p in pose.model.parameters():
        p.requires_grad_(False)
    cfg = AttrOPConfig(spec="pose=89:1", steps=args.steps, max_steps=args.steps, batch_size=args.batch,
                       pose_tol=0.0)
    attrop = AttrOP(parse_attrop(cfg.spec), cfg, identity=BackboneIdentity(args.identity), pose=pose)
    rng = np.random.default_rng(0)
    ids = rng.standard_normal((args.images, generator.feature_dim)).astype(np.float32)
    ids /= np.linalg.norm(ids, axis=1, keepdims=True)
    vectors = ids.copy()

    run(attrop, generator, ids[:2], vectors[:2], 1, frozen=True)  # warm-up
    trainable = run(attrop, generator, ids, vectors, 1, frozen=False)
    frozen = run(attrop, generator, ids, vectors, 1, frozen=True)
    n = args.images
    print(f"AttrOP, tiny Vec2Face + {args.identity} + sixdrepnet-tiny, {n} images x {args.steps} steps, "
          f"batch {args.batch}, {torch.get_num_threads()} threads")
    print(f"  generator weights trainable (before): {trainable:7.2f} s  {trainable / n * 1000:7.1f} ms/image")
    print(f"  generator weights frozen (now):       {frozen:7.2f} s  {frozen / n * 1000:7.1f} ms/image")
    print(f"  speed-up: x{trainable / frozen:.2f}")


if __name__ == "__main__":
    main()
