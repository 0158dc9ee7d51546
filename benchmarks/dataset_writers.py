"""Dataset writers: images/s of each format's writer on already-encoded JPEGs, which is what ``generate``'s
final assembly does on rank 0, and the minutes that gives for 15M images. For ``rec`` the same writer is
also run with the record framing done as a Python loop over every 4-byte word (how it was framed before),
in this process, as the baseline of the ratio.

    python benchmarks/dataset_writers.py                  # 20,000 images of 112 px, every format
    python benchmarks/dataset_writers.py --images 100000 --formats rec lmdb
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

from facebench.data import encode_image, open_writer


def python_loop_magic(payload: bytes) -> list[int]:
    """The old framing scan: every 4-aligned word compared in Python."""
    from facebench_plugins.formats.recordio import _MAGIC_BYTES

    return [i for i in range(0, len(payload) - 3, 4) if payload[i:i + 4] == _MAGIC_BYTES]


def images_per_s(fmt: str, data: bytes, n: int, per_id: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with open_writer(Path(tmp) / f"set.{fmt}", fmt) as writer:
            for i in range(n):
                writer.add(data, i // per_id)
        return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--per-id", type=int, default=50)
    parser.add_argument("--formats", nargs="+", default=["folder", "rec", "lmdb"])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    data = encode_image((rng.random((112, 112, 3)) * 255).astype(np.uint8), "jpg")  # noise: a large JPEG
    print(f"{args.images:,} images of {len(data):,} bytes, {args.per_id} per identity")
    for fmt in args.formats:
        rate = images_per_s(fmt, data, args.images, args.per_id)
        print(f"{fmt:>7}: {rate:>9,.0f} img/s   15M images: {15e6 / rate / 60:6.1f} min")
        if fmt == "rec":
            with mock.patch("facebench_plugins.formats.recordio._aligned_magic", python_loop_magic):
                old = images_per_s(fmt, data, args.images, args.per_id)
            print(f"{'rec, old framing':>7}: {old:>9,.0f} img/s   15M images: {15e6 / old / 60:6.1f} min   "
                  f"speed-up x{rate / old:.1f}")


if __name__ == "__main__":
    main()
