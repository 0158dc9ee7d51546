"""Training images/s of an FR backbone + ArcFace: eager vs channels_last vs torch.compile.

Each variant runs the trainer's own :class:`facebench.fr.trainer.StepRunner` (SGD, ArcFace,
gradient clipping; fp16 autocast on CUDA) on random 112x112 batches for the same number of timed steps
after warm-up steps. Ratios are against the eager run of the same process, on the same device.

    python benchmarks/fr_train.py                       # se_iresnet50, batch 16, CUDA when present
    python benchmarks/fr_train.py --backbone se_iresnet_tiny --size 56 --batch 64 --steps 10
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from facebench import create_backbone
from facebench.fr.trainer import StepRunner, parameter_groups
from facebench.pluginmanager import registry
from facebench.runtime import grad_scaler, select_device


def measure(variant: str, args: argparse.Namespace, device: torch.device) -> float:
    torch.manual_seed(0)
    backbone = create_backbone(args.backbone, input_size=args.size)
    head = registry("head").create("arcface", 512, args.classes)

    class Both(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone, self.head = backbone, head

        def forward(self, x, y):
            return self.head(self.backbone(x), y)

    module = Both().to(device)
    channels_last = variant in ("channels_last", "compile+channels_last")
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    if variant.startswith("compile"):
        backbone.compile()
    opt = torch.optim.SGD(parameter_groups(module, 5e-4, True), lr=0.01, momentum=0.9)
    runner = StepRunner(module, opt, None, grad_scaler(device, True), device=device, fp16=True, micro_batch=0,
                        grad_clip=5.0, channels_last=channels_last)
    x = torch.rand(args.batch, 3, args.size, args.size) * 2 - 1
    y = torch.randint(0, args.classes, (args.batch,))
    for _ in range(args.warmup):
        runner.step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        runner.step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.batch * args.steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="se_iresnet50")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps (compilation happens here)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    parser.add_argument("--variants", default="eager,channels_last,compile")
    args = parser.parse_args()
    os.environ.setdefault("FACEBENCH_QUIET", "1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    print(f"{args.backbone} training step, batch {args.batch}, {args.size}px, {args.classes} classes, "
          f"device {device} ({torch.get_num_threads()} CPU threads), torch {torch.__version__}")
    baseline = None
    for variant in args.variants.split(","):
        try:
            rate = measure(variant, args, device)
        except Exception as exc:  # e.g. torch.compile without a working compiler
            print(f"{variant:>22}: unavailable ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})")
            continue
        baseline = baseline or rate
        print(f"{variant:>22}: {rate:8.2f} images/s   x{rate / baseline:.2f} vs eager")


if __name__ == "__main__":
    main()
