"""Images per second reading each dataset format through a torch DataLoader with 0, 1 and 2 workers.

Builds a small toyfaces world in a temporary folder, converts its training set to every training format
(and uses its toy_lfw pack for ``bin``), then times a full pass of the FR trainer's dataset (decode +
resize + normalise) per format and worker count. Ratios are against the image-folder, 0-worker run of the same
process, so they compare formats and worker counts on this machine only.

    python benchmarks/data_read.py --identities 200 --images-per-identity 20 --size 112
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from facebench_plugins.toyfaces.build import ToyConfig, build_world
from torch.utils.data import DataLoader, Dataset

from facebench.data import decode_image, open_dataset, open_pairs, open_writer
from facebench.data.tensors import to_model_input
from facebench.fr.augment import AugmentedFaces


class PackImages(Dataset):
    """Every image of a verification pack, in pair order (what an evaluator reads)."""

    def __init__(self, reader, size):
        self.reader, self.size = reader, size

    def __len__(self) -> int:
        return 2 * len(self.reader)

    def __getitem__(self, j: int):
        data = self.reader.pair_bytes(j // 2)[j % 2]
        return to_model_input(decode_image(data, path=self.reader.path), self.size)[0], int(self.reader.issame[j // 2])


def time_pass(dataset: Dataset, workers: int, batch: int) -> float:
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, shuffle=False)
    start = time.perf_counter()
    count = sum(len(batch[1]) for batch in loader)  # (images, labels[, augmentation])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=200)
    parser.add_argument("--images-per-identity", type=int, default=20)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--workers", default="0,1,2")
    args = parser.parse_args()
    os.environ.setdefault("FACEBENCH_QUIET", "1")
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "toy"
        cfg = ToyConfig(identities=args.identities, images_per_identity=args.images_per_identity, size=args.size,
                        pairs=args.pairs, packs=["toy_lfw"])
        start = time.perf_counter()
        build_world(root, cfg, workers=2)
        n = args.identities * args.images_per_identity
        print(f"toyfaces build: {n + 2 * args.pairs} images of {args.size}px in "
              f"{time.perf_counter() - start:.1f}s ({(n + 2 * args.pairs) / (time.perf_counter() - start):.0f} img/s, "
              f"2 processes)")
        paths = {"folder": root / "train", "rec": Path(tmp) / "rec", "lmdb": Path(tmp) / "set.lmdb"}
        source = open_dataset(paths["folder"])
        for fmt in ("rec", "lmdb"):
            with open_writer(paths[fmt], fmt) as writer:
                for data, label in source:
                    writer.add(data, label)
        # the FR trainer's own dataset (decode + resize to uint8; no augmentation, to time reading alone)
        datasets = {fmt: AugmentedFaces(open_dataset(p), input_size=args.size, flip=False)
                    for fmt, p in paths.items()}
        datasets["bin"] = PackImages(open_pairs(root / "toy_lfw.bin"), args.size)

        workers = [int(w) for w in args.workers.split(",")]
        baseline = None
        print(f"\n{'format':8} {'images':>7} " + " ".join(f"{f'{w} workers':>16}" for w in workers))
        for fmt, dataset in datasets.items():
            cells = []
            for w in workers:
                rate = time_pass(dataset, w, args.batch)
                baseline = baseline or rate
                cells.append(f"{rate:8.0f} ({rate / baseline:4.2f}x)")
            print(f"{fmt:8} {len(dataset):7d} " + " ".join(f"{c:>16}" for c in cells))
        print(f"\nimages/s (ratio to folder with {workers[0]} workers); {os.cpu_count()} CPU cores, "
              f"torch {torch.__version__}")


if __name__ == "__main__":
    main()
