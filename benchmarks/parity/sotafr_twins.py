"""facebench's ``sotafr`` format (ND-Twins as SOTA-FR prepares it) side by side with SOTA-FR's own code.

    python benchmarks/parity/sotafr_twins.py --sotafr PATH/TO/SOTA-Face-Recognition-Train-and-Test

PATH is a checkout of github.com/HaiyuWu/SOTA-Face-Recognition-Train-and-Test. Two directions, on seeded
random 112 x 112 pairs with an LFW-like flag order (10 folds, same half first):

1. write: facebench's writer makes ``twins_very_easy/`` and the reference's ``get_val_pair``
   (``data/load_test_sets_recognition.py``, what its ``test.py`` calls) reads it; printed: the largest
   difference between its normalised images and facebench's images normalised the same way
   ((x / 255 - 0.5) / 0.5), whether its flipped half is the mirror, and whether the flags agree.
2. read: the reference's ``convert_to_test`` (``utils/prepare_test_images.py``, what turns a distributed
   ``.xz`` into the folder) writes the folder and facebench's reader reads it back; printed: the largest
   grey-level difference and whether the flags agree. That module imports OpenCV, scikit-image and
   matplotlib at the top for its other functions; ``convert_to_test`` uses only numpy, so those three are
   given empty stand-in modules here instead of being installed.

Direction 1 differs only by the reference's float32 rounding (below 1e-7; measured 2.95e-08 against commit
b8c42fe), direction 2 must print 0 grey levels; both "flags equal". Without ``--sotafr`` (or with a path lacking the files) it says why it
skipped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
from _common import load_file_module

LOADER = "data/load_test_sets_recognition.py"
PREPARE = "utils/prepare_test_images.py"
NAME = "twins_very_easy"


def load_module(path: Path, name: str, stubs: tuple[str, ...] = ()) -> types.ModuleType:
    for stub in stubs:  # imported at the module's top, unused by the functions called here
        sys.modules.setdefault(stub, types.ModuleType(stub))
    return load_file_module(name, path)


def sample(pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(2N, 112, 112, 3) uint8 images and N flags, folds of same-then-different pairs."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(2 * pairs, 112, 112, 3), dtype=np.uint8)
    flags = np.tile(np.r_[np.ones(pairs // 20, bool), np.zeros(pairs // 20, bool)], 10)
    return images, flags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sotafr", default=None, help="checkout of SOTA-Face-Recognition-Train-and-Test")
    parser.add_argument("--pairs", type=int, default=200, help="pairs (a multiple of 20)")
    args = parser.parse_args()
    root = Path(args.sotafr) if args.sotafr else None
    if root is None or not (root / LOADER).is_file() or not (root / PREPARE).is_file():
        print(f"skipped: no SOTA-FR checkout with {LOADER} and {PREPARE} given (--sotafr PATH)")
        return
    from facebench.data import encode_image, open_pairs, open_writer

    images, flags = sample(args.pairs)
    loader = load_module(root / LOADER, "sotafr_loader")
    prepare = load_module(root / PREPARE, "sotafr_prepare", stubs=("cv2", "skimage", "skimage.io", "matplotlib",
                                                                  "matplotlib.pyplot"))
    with tempfile.TemporaryDirectory() as tmp:
        ours = Path(tmp) / "ours"
        with open_writer(ours / NAME, "sotafr") as writer:
            for k in range(args.pairs):
                writer.add(encode_image(images[2 * k], "png"), encode_image(images[2 * k + 1], "png"), flags[k])
        samples, issame = loader.get_val_pair(str(ours), NAME)
        mine = ((images.transpose(0, 3, 1, 2) / 255.0) - 0.5) / 0.5
        n = 2 * args.pairs
        diff = float(np.abs(samples[:n] - mine).max())
        mirror = bool(np.array_equal(samples[n:], samples[:n][..., ::-1]))
        print(f"1. facebench writes, SOTA-FR get_val_pair reads: {args.pairs} pairs, largest difference of the "
              f"normalised images {diff:.3g}, flipped half is the mirror: {mirror}, flags "
              f"{'equal' if np.array_equal(issame.astype(bool), flags) else 'DIFFER'}")

        theirs = Path(tmp) / "theirs"
        prepare.convert_to_test(images.transpose(0, 3, 1, 2), flags, NAME, str(theirs))
        with open_pairs(theirs / NAME) as reader:
            read = reader.images()
            same = reader.issame
        grey = int(np.abs(read.astype(int) - images.astype(int)).max())
        print(f"2. SOTA-FR convert_to_test writes, facebench reads (format {reader.format_name}): largest "
              f"difference {grey} grey levels, flags {'equal' if np.array_equal(same, flags) else 'DIFFER'}")


if __name__ == "__main__":
    main()
