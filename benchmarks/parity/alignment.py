"""Five-point alignment side by side with insightface's ``face_align.norm_crop`` on real photos.

    python benchmarks/parity/alignment.py --insightface PATH/TO/insightface [--python PYTHON] [--ipp on|off]

PATH is a checkout of github.com/deepinsight/insightface. The photos are the ones it ships
(``python-package/insightface/data/images/``: ``t1.jpg``, six people round a table, five of them facing
the camera enough to show both eyes; ``Tom_Hanks_54745.png``, an aligned 112 px crop); the five landmarks of
each face (left eye, right eye, nose tip, left and right mouth corners, pixel coordinates) were placed by
hand on zoomed crops of the photos, to a pixel or two, and are kept below as data. Every face is aligned
at 112, 224 and 128 px (the 128 layout puts the 112 face in the middle), with its landmarks as placed and
moved by a seeded random perturbation (1.5 px per coordinate), in float32 as a detector gives them.

The reference side runs in ``PYTHON`` (default: this interpreter), which needs ``cv2`` and ``skimage``:
``face_align.py`` is loaded from the checkout by file path and ``norm_crop`` called on the same RGB arrays.
facebench does not depend on OpenCV; to give the reference one without touching facebench's environment::

    python -m venv /tmp/venv-align && /tmp/venv-align/bin/pip install "opencv-python-headless<5" scikit-image
    python benchmarks/parity/alignment.py --insightface PATH --python /tmp/venv-align/bin/python

Printed: OpenCV's version, and for each of facebench's arithmetics (``fixed``: OpenCV 3/4, ``float``:
OpenCV 5) the largest difference in grey levels over all crops and how many values differ; the arithmetic
that matches the reference's OpenCV must stay within 1 grey level (target 0 for OpenCV 4). Also the
largest difference between the two 2 x 3 matrices. Without ``--insightface`` it prints why it skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

TOLERANCE = 1  # grey levels
IMAGES = "python-package/insightface/data/images"
FACE_ALIGN = "python-package/insightface/utils/face_align.py"
SIZES = (112, 224, 128)

#: (photo, five landmarks x, y): placed by hand on the photos insightface ships.
FACES = (
    ("t1.jpg", ((86, 328), (127, 309), (121, 341), (114, 371), (147, 352))),  # far left, head tilted
    ("t1.jpg", ((288, 209), (321, 194), (311, 226), (309, 241), (340, 232))),  # looking down, turned
    ("t1.jpg", ((490, 319), (537, 334), (519, 361), (487, 371), (532, 382))),  # smiling, tilted
    ("t1.jpg", ((760, 397), (801, 402), (780, 425), (769, 437), (806, 441))),  # centre, laughing
    ("t1.jpg", ((1149, 327), (1194, 323), (1170, 350), (1155, 366), (1197, 362))),  # far right, frontal
    ("Tom_Hanks_54745.png", ((38, 51), (73, 51), (56, 71), (42, 91), (70, 91))),  # already aligned
)
PERTURBATION = 1.5  # px, standard deviation per coordinate
SEED = 22

#: Runs in the reference's interpreter: norm_crop and estimate_norm of the checkout on every case.
REFERENCE = r"""
import importlib.util, json, sys
import numpy as np
import cv2
if sys.argv[4] == "off":
    cv2.ipp.setUseIPP(False)
spec = importlib.util.spec_from_file_location("face_align", sys.argv[1])
face_align = importlib.util.module_from_spec(spec)
spec.loader.exec_module(face_align)
data = np.load(sys.argv[2])
out = {}
for key in data.files:
    if key.startswith("lmk"):
        n = key[3:]
        image, lmk, size = data["img" + n], data[key], int(data["size" + n])
        out["crop" + n] = face_align.norm_crop(image, lmk, image_size=size)
        out["M" + n] = face_align.estimate_norm(lmk, size)
np.savez(sys.argv[3], **out)
print(json.dumps({"opencv": cv2.__version__, "ipp": bool(cv2.ipp.useIPP())}))
"""


def cases(root: Path):
    """(name, image, float32 landmarks, size) for every face, perturbation and size."""
    from PIL import Image

    rng = np.random.default_rng(SEED)
    photos: dict[str, np.ndarray] = {}
    for photo, points in FACES:
        if photo not in photos:
            with Image.open(root / IMAGES / photo) as im:
                photos[photo] = np.asarray(im.convert("RGB"))
        placed = np.asarray(points, np.float32)
        moved = placed + rng.normal(0, PERTURBATION, placed.shape).astype(np.float32)
        for label, lmk in (("placed", placed), ("perturbed", moved)):
            for size in SIZES:
                yield f"{photo} {points[0]} {label} {size}", photos[photo], lmk, size


def reference(root: Path, python: str, items: list, ipp: str) -> tuple[dict, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        arrays = {}
        for n, (_, image, lmk, size) in enumerate(items):
            arrays.update({f"img{n}": image, f"lmk{n}": lmk, f"size{n}": np.int64(size)})
        np.savez(src, **arrays)
        done = subprocess.run([python, "-c", REFERENCE, str(root / FACE_ALIGN), str(src), str(dst), ipp],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the reference failed in {python}:\n{done.stderr.strip()}")
        info = json.loads(done.stdout.strip().splitlines()[-1])
        with np.load(dst) as out:
            return info, {k: out[k] for k in out.files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--insightface", type=Path, help="a checkout of deepinsight/insightface")
    parser.add_argument("--python", default=sys.executable, help="interpreter with cv2 and skimage")
    parser.add_argument("--ipp", choices=("on", "off"), default="on",
                        help="OpenCV's Intel IPP path (on: as installed; OpenCV 5 rounds a few pixels differently)")
    args = parser.parse_args()
    if args.insightface is None or not (args.insightface / FACE_ALIGN).is_file():
        print(f"skipped: no insightface checkout given (--insightface PATH with {FACE_ALIGN})")
        return

    from facebench.data.alignment import align_face, similarity_matrix

    items = list(cases(args.insightface))
    info, ref = reference(args.insightface, args.python, items, args.ipp)
    major = int(info["opencv"].split(".")[0])
    matching = "float" if major >= 5 else "fixed"
    print(f"insightface {args.insightface}: OpenCV {info['opencv']} (IPP {'on' if info['ipp'] else 'off'}), "
          f"{len(items)} crops of {len(FACES)} faces at {', '.join(map(str, SIZES))} px")
    matrix_diff = max(float(np.abs(similarity_matrix(lmk, size) - ref[f"M{n}"]).max())
                      for n, (_, _, lmk, size) in enumerate(items))
    print(f"  2x3 matrix vs estimate_norm: largest difference {matrix_diff:.2e}")
    verdict = None
    for arithmetic in ("fixed", "float"):
        worst, differing, total, where = 0, 0, 0, ""
        for n, (name, image, lmk, size) in enumerate(items):
            ours = align_face(image, lmk, size, arithmetic=arithmetic).astype(np.int64)
            diff = np.abs(ours - ref[f"crop{n}"].astype(np.int64))
            differing += int((diff > 0).sum())
            total += diff.size
            if diff.max() > worst:
                worst, where = int(diff.max()), name
        note = " (the arithmetic of this OpenCV)" if arithmetic == matching else ""
        print(f"  facebench arithmetic={arithmetic}{note}: largest difference {worst} grey level(s), "
              f"{differing} of {total} values differ" + (f"; worst: {where}" if worst else ""))
        if arithmetic == matching:
            verdict = worst
    print(f"{'PASS' if verdict <= TOLERANCE else 'FAIL'}: largest difference {verdict} (target <= {TOLERANCE})")


if __name__ == "__main__":
    main()
