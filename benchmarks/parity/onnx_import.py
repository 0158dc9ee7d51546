"""``facebench weights import`` side by side with onnxruntime on the original ONNX file.

    python benchmarks/parity/onnx_import.py --onnx FILE --arch NAME [--input auto|pixels|unit] [--bgr]
                                            [--faces DIR] [--count 16]
    python benchmarks/parity/onnx_import.py --make DIR [--full]

The first form imports FILE (as ``facebench weights import`` does) and runs both the imported backbone and
onnxruntime on the original file with the same faces: onnxruntime is fed as insightface's
``model_zoo/arcface_onnx.py`` feeds it (RGB, NCHW; pixels 0..255 for a graph that normalises itself,
(pixels - 127.5) / 127.5 otherwise), facebench its own input, (pixels - 127.5) / 127.5 in RGB. Faces are
the images of ``--faces DIR`` (112x112, or resized) or random 112x112 pixels.

The second form first writes ONNX files in the layouts insightface distributes, exported from facebench
backbones with random weights (BatchNorm statistics and PReLU slopes randomised so that folding them
matters) the way arcface_torch's ``torch2onnx.py`` exports (``torch.onnx.export`` of the eval-mode model,
opset 11, input ``data``, batch dimension ``None``, constant folding on: BatchNorms folded into the
convolutions, ``onnx::Conv_*`` initializer names), plus the layout of insightface's MXNet-converted models
(``Sub`` 127.5 and ``Mul`` 0.0078125 at the start of the graph, BatchNorms kept), then compares each.
``--full`` adds the released sizes (iresnet50 as buffalo_l's w600k_r50, iresnet100 as antelopev2's
glintr100 and Arc2Face's arcface.onnx, mbf). No insightface file is used: they cannot be fetched here.

Printed per file: the largest absolute difference of the embeddings over the largest absolute value of
onnxruntime's, and the smallest cosine between the two; the import passes at 1e-4. onnxruntime is not a
facebench dependency: without it the script says so and stops.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from zoo_files import export_onnx, randomised  # noqa: E402

TOLERANCE = 1e-4
#: (file name, backbone, MXNet-converted layout?) made by --make; the second list with --full
TINY = (("iresnet_tiny_arcface_torch.onnx", "iresnet_tiny", False), ("iresnet_tiny_mxnet_converted.onnx",
        "iresnet_tiny", True), ("mbf_tiny_arcface_torch.onnx", "mbf_tiny", False))
FULL = (("w600k_r50_layout.onnx", "iresnet50", False), ("glintr100_layout.onnx", "iresnet100", False),
        ("mbf_arcface_torch.onnx", "mbf", False), ("iresnet50_mxnet_converted.onnx", "iresnet50", True))


def export(arch: str, path: Path, mxnet_converted: bool, seed: int = 0) -> None:
    """``torch2onnx.py``'s export (or an MXNet-converted layout) of a randomised ``arch``: the writer the
    tests build their model-zoo files with (``tests/zoo_files.py``)."""
    export_onnx(randomised(arch, seed), path, pixels=mxnet_converted)


def faces(folder: str | None, count: int, size: int) -> np.ndarray:
    """(N, size, size, 3) uint8 RGB faces: the images of ``folder`` or random pixels."""
    from PIL import Image

    if folder is None:
        return np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)) for p in paths])


def compare(onnx_file: Path, arch: str, mode: str, bgr: bool, count: int, folder: str | None) -> float:
    import onnxruntime as ort
    from facebench_plugins.fr.importers import convert

    import facebench

    tensors, info = convert(onnx_file, arch, mode=mode, bgr=bgr)
    model = facebench.create_backbone(arch).eval()
    model.load_state_dict(tensors, strict=True)
    size = int(model.input_size)
    pixels = faces(folder, count, size).astype(np.float32)
    nchw = pixels.transpose(0, 3, 1, 2)
    fed = nchw[:, ::-1] if info["bgr"] else nchw
    fed = np.ascontiguousarray(fed if info["pixels"] else (fed - 127.5) / 127.5)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    theirs = np.concatenate([session.run(None, {name: fed[i:i + 1]})[0] for i in range(len(fed))])
    with torch.no_grad():
        ours = model(torch.from_numpy((nchw - 127.5) / 127.5)).numpy()
    relative = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    cosine = float(((ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)).min())
    verdict = "ok" if relative <= TOLERANCE else "FAIL"
    print(f"{onnx_file.name:38s} {arch:13s} {len(fed):3d} faces  {info['input']}")
    print(f"{'':38s} max |facebench - onnxruntime| / max |onnxruntime| = {relative:.2e}  min cosine "
          f"{cosine:.9f}  [{verdict}]")
    return relative


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", type=Path, help="an ONNX face-recognition model")
    parser.add_argument("--arch", help="its facebench backbone (iresnet50, iresnet100, mbf, ...)")
    parser.add_argument("--input", default="auto", choices=("auto", "pixels", "unit"))
    parser.add_argument("--bgr", action="store_true")
    parser.add_argument("--make", type=Path, help="write ONNX files in insightface's layouts here and compare them")
    parser.add_argument("--full", action="store_true", help="with --make: also the released sizes (slow)")
    parser.add_argument("--faces", help="a folder of aligned face images (default: random pixels)")
    parser.add_argument("--count", type=int, default=16)
    args = parser.parse_args()
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("onnxruntime is not installed: skipped (pip install onnxruntime, in another environment if "
              "need be, and put it on PYTHONPATH)")
        return 0
    torch.set_num_threads(max(1, min(4, torch.get_num_threads())))
    if args.onnx is not None:
        if args.arch is None:
            parser.error("--onnx needs --arch")
        if not args.onnx.is_file():
            print(f"{args.onnx}: not found: skipped")
            return 0
        worst = compare(args.onnx, args.arch, args.input, args.bgr, args.count, args.faces)
        return 0 if worst <= TOLERANCE else 1
    folder = args.make or Path(tempfile.mkdtemp(prefix="onnx-parity-"))
    folder.mkdir(parents=True, exist_ok=True)
    worst = 0.0
    for name, arch, converted in TINY + (FULL if args.full else ()):
        path = folder / name
        export(arch, path, converted)
        worst = max(worst, compare(path, arch, "auto", False, args.count, args.faces))
    print(f"largest relative difference over all files: {worst:.2e} (tolerance {TOLERANCE:g})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
