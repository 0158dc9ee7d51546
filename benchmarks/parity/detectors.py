"""facebench's face detectors side by side with the implementations they follow, on real photos.

    python benchmarks/parity/detectors.py --retinaface PATH/TO/Pytorch_Retinaface \\
        --facenet-pytorch PATH/TO/facenet-pytorch --insightface PATH/TO/insightface \\
        [--image PHOTO ...] [--mnet-weights mobilenet0.25_Final.pth] [--r50-weights Resnet50_Final.pth] [--seed 0]

The paths are checkouts of github.com/biubug6/Pytorch_Retinaface, github.com/timesler/facenet-pytorch and
(for its multi-face photo ``python-package/insightface/data/images/t1.jpg``) github.com/deepinsight/insightface;
facenet-pytorch's own ``data/multiface.jpg`` is used too when present, and ``--image`` adds photos. Each part
is skipped, with a message, when its reference is not given. Nothing of the references is copied: their
files are loaded by path and run on the CPU as they are.

- RetinaFace: the reference's ``RetinaFace`` network with facebench's state dict loaded into it strictly, and
  the post-processing of its ``detect.py`` (the statements of its detection loop from the image's float
  conversion to the final ``dets``, cut out of the script's syntax tree and executed: priors, decoding,
  thresholds, ``py_cpu_nms``, top-k), with the thresholds of ``detect.py`` (confidence 0.02, top-k 5000,
  NMS 0.4, keep 750) and its drawing threshold ``vis_thres`` 0.6 as the faces reported. Both sides get the
  same BGR pixels (the photo decoded once with Pillow; facebench gets the RGB).
- MTCNN: facenet-pytorch's ``MTCNN(keep_all=True).detect(image, landmarks=True)`` with the same three state
  dicts as facebench's ``mtcnn``, and its defaults (min_face_size 20, thresholds 0.6/0.7/0.7, factor 0.709).

Weights: seeded random ones (the same state dict in both; scaled on the photo itself so that some faces come
out: ``random_retinaface`` / ``random_mtcnn`` with ``calibration=`` the photo), MTCNN's released files (they
ship inside facenet-pytorch's ``data/``), and RetinaFace's released files where given. Printed per photo and
setting: faces found by each side, the largest box, and the largest differences of boxes and landmarks
(pixels) and scores over all faces, matched in score order. Target: the same count, within 0.5 px.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import io
import sys
import time
import types
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import commit_of, load_file_module

TOLERANCE_PX = 0.5


def read_photo(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def canonical(boxes: np.ndarray, scores: np.ndarray, points: np.ndarray):
    """Faces in score order, ties by position: the order both sides are compared in."""
    order = np.lexsort((boxes[:, 1], boxes[:, 0], -scores.astype(np.float64)))
    return boxes[order].astype(np.float32), scores[order].astype(np.float32), points[order].astype(np.float32)


def report(photo: str, setting: str, ref, ours) -> bool:
    """One line per photo and setting; True when within the target."""
    rb, rs, rp = canonical(*ref)
    ob, os_, op = canonical(ours.boxes, ours.scores, ours.landmarks)
    line = f"  {photo:<18} {setting:<34} faces ref {len(rb):>4} facebench {len(ob):>4}"
    if len(rb) != len(ob):
        print(line + "  COUNT DIFFERS")
        return False
    if len(rb) == 0:
        print(line + "  (no faces)")
        return True
    box_d = float(np.abs(rb - ob).max())
    pts_d = float(np.abs(rp - op).max())
    score_d = float(np.abs(rs - os_).max())
    big = int(np.argmax((rb[:, 2] - rb[:, 0]) * (rb[:, 3] - rb[:, 1])))
    largest = ", ".join(f"{v:.1f}" for v in rb[big])
    ok = box_d <= TOLERANCE_PX and pts_d <= TOLERANCE_PX
    print(f"{line}  largest box ({largest}) d {np.abs(rb[big] - ob[big]).max():.2e} px | max d box "
          f"{box_d:.2e} px landmarks {pts_d:.2e} px score {score_d:.1e}  {'ok' if ok else 'OVER TARGET'}")
    return ok


# ----------------------------------------------------------------------------------------- RetinaFace


class RetinaFaceReference:
    """The reference network, config and ``detect.py`` loop statements, loaded from the checkout."""

    def __init__(self, root: Path):
        self.root = root
        sys.path.insert(0, str(root))  # models/retinaface.py imports models.net
        # data/config.py alone, not data/__init__ (OpenCV datasets)
        config = load_file_module("rf_config", root / "data" / "config.py")
        self.cfgs = {"mobilenet": dict(config.cfg_mnet, pretrain=False),
                     "resnet50": dict(config.cfg_re50, pretrain=False)}
        self.RetinaFace = importlib.import_module("models.retinaface").RetinaFace
        prior = load_file_module("rf_prior_box", root / "layers" / "functions" / "prior_box.py")
        box_utils = load_file_module("rf_box_utils", root / "utils" / "box_utils.py")
        nms = load_file_module("rf_py_cpu_nms", root / "utils" / "nms" / "py_cpu_nms.py")
        self.names = {"PriorBox": prior.PriorBox, "decode": box_utils.decode, "decode_landm": box_utils.decode_landm,
                      "py_cpu_nms": nms.py_cpu_nms}
        self.loop = self._loop_statements(root / "detect.py")

    @staticmethod
    def _loop_statements(path: Path) -> ast.Module:
        tree = ast.parse(path.read_text(), filename=str(path))
        main = next(n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test))
        loop = next(n for n in ast.walk(main) if isinstance(n, ast.For))
        body = loop.body
        start = next(i for i, s in enumerate(body) if "np.float32(img_raw)" in ast.unparse(s))
        end = next(i for i, s in enumerate(body) if ast.unparse(s).startswith("dets = np.concatenate"))
        return ast.Module(body=body[start:end + 1], type_ignores=[])

    def network(self, backbone: str, state: dict) -> torch.nn.Module:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's notice about resnet50(pretrained=False)
            net = self.RetinaFace(cfg=self.cfgs[backbone], phase="test")
        net.load_state_dict(state, strict=True)
        return net.eval()

    @torch.no_grad()
    def detect(self, net, backbone: str, rgb: np.ndarray, o) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        args = argparse.Namespace(confidence_threshold=o.confidence_threshold, top_k=o.top_k,
                                  nms_threshold=o.nms_threshold, keep_top_k=o.keep_top_k)
        namespace = dict(self.names, np=np, torch=torch, time=time, net=net, cfg=self.cfgs[backbone],
                         device=torch.device("cpu"), args=args, resize=1, img_raw=np.ascontiguousarray(rgb[:, :, ::-1]))
        with contextlib.redirect_stdout(io.StringIO()):  # its timing line
            exec(compile(self.loop, str(self.root / "detect.py"), "exec"), namespace)
        dets = namespace["dets"]
        dets = dets[dets[:, 4] >= o.score_threshold]  # detect.py draws only these (vis_thres)
        return dets[:, :4], dets[:, 4], dets[:, 5:15].reshape(-1, 5, 2)


def retinaface_part(root: Path, photos: dict, seed: int, released: dict[str, Path | None]) -> bool:
    from facebench_plugins.detectors import retinaface as rf

    ref = RetinaFaceReference(root)
    print(f"RetinaFace: reference {root} at commit {commit_of(root)}")
    ok = True
    defaults = rf.RetinaFaceOptions()
    strict = rf.RetinaFaceOptions(score_threshold=0.95)
    for backbone, config in (("mobilenet", rf.MNET), ("resnet50", rf.R50)):
        for photo, rgb in photos.items():
            net = rf.random_retinaface(config, seed=seed, calibration=rgb[None])
            reference = ref.network(backbone, net.state_dict())
            for options, label in ((defaults, "defaults (vis 0.6)"), (strict, "score >= 0.95")):
                ours = rf.RetinaFaceDetector(net, options, torch.device("cpu"), "parity").detect(rgb)
                ok &= report(photo, f"{backbone} random seed {seed}, {label}", ref.detect(reference, backbone, rgb,
                                                                                          options), ours)
        path = released.get(backbone)
        if path is None:
            print(f"  {backbone}: no released weights file given (--{'mnet' if backbone == 'mobilenet' else 'r50'}"
                  "-weights): released-weight comparison skipped")
            continue
        detector = (rf.retinaface_mnet if backbone == "mobilenet" else rf.retinaface_r50)(weights=path)
        reference = ref.network(backbone, detector.net.state_dict())
        for photo, rgb in photos.items():
            ok &= report(photo, f"{backbone} {path.name}", ref.detect(reference, backbone, rgb, defaults),
                         detector.detect(rgb))
    return ok


# ----------------------------------------------------------------------------------------- MTCNN


def mtcnn_part(root: Path, photos: dict, seed: int) -> bool:
    from facebench_plugins.detectors import mtcnn as mt

    package = types.ModuleType("facenet_reference")  # the models folder alone: the package's __init__
    package.__path__ = [str(root / "models")]       # imports its training utilities too
    sys.modules["facenet_reference"] = package
    reference_mtcnn = importlib.import_module("facenet_reference.mtcnn")
    print(f"MTCNN: reference {root} at commit {commit_of(root)}")

    def reference(nets) -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = reference_mtcnn.MTCNN(keep_all=True, device=torch.device("cpu"))
        for theirs, ours in zip((model.pnet, model.rnet, model.onet), nets):
            theirs.load_state_dict(ours.state_dict(), strict=True)
        return model

    def run(model, rgb):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            boxes, probs, points = model.detect(rgb, landmarks=True)
        if boxes is None:
            return np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2))
        return np.asarray(boxes, np.float32), np.asarray(probs, np.float32), np.asarray(points, np.float32)

    ok = True
    for photo, rgb in photos.items():
        nets = mt.random_mtcnn(seed, calibration=rgb[None])
        ours = mt.MTCNNDetector(nets, mt.MTCNNOptions(), torch.device("cpu"), "parity").detect(rgb)
        ok &= report(photo, f"random seed {seed}, defaults", run(reference(nets), rgb), ours)
    data = root / "data"
    if all((data / name).is_file() for name in mt.FILES):
        detector = mt.mtcnn(weights=data)
        model = reference((detector.pnet, detector.rnet, detector.onet))
        for photo, rgb in photos.items():
            ok &= report(photo, "released pnet/rnet/onet.pt", run(model, rgb), detector.detect(rgb))
    else:
        print(f"  no released files in {data}: released-weight comparison skipped")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retinaface", type=Path, help="Checkout of github.com/biubug6/Pytorch_Retinaface.")
    parser.add_argument("--facenet-pytorch", type=Path, help="Checkout of github.com/timesler/facenet-pytorch.")
    parser.add_argument("--insightface", type=Path, help="Checkout of github.com/deepinsight/insightface (t1.jpg).")
    parser.add_argument("--image", type=Path, action="append", default=[], help="More photos (repeatable).")
    parser.add_argument("--mnet-weights", type=Path, help="A mobilenet0.25_Final.pth (release layout).")
    parser.add_argument("--r50-weights", type=Path, help="A Resnet50_Final.pth (release layout).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    paths = list(args.image)
    if args.insightface:
        paths.append(args.insightface / "python-package" / "insightface" / "data" / "images" / "t1.jpg")
    if args.facenet_pytorch and (args.facenet_pytorch / "data" / "multiface.jpg").is_file():
        paths.append(args.facenet_pytorch / "data" / "multiface.jpg")
    missing = [p for p in paths if not p.is_file()]
    if missing:
        print(f"missing photo(s): {', '.join(map(str, missing))}")
        return 2
    if not paths:
        print("no photos: give --insightface PATH (its t1.jpg), --facenet-pytorch PATH (its multiface.jpg) or --image")
        return 0
    photos = {p.name: read_photo(p) for p in paths}
    print("photos: " + ", ".join(f"{name} {rgb.shape[1]}x{rgb.shape[0]}" for name, rgb in photos.items()))
    print(f"target: the same faces, boxes and landmarks within {TOLERANCE_PX} px")

    ok = True
    if args.retinaface:
        ok &= retinaface_part(args.retinaface, photos, args.seed,
                              {"mobilenet": args.mnet_weights, "resnet50": args.r50_weights})
    else:
        print("RetinaFace: skipped (no --retinaface PATH)")
    if args.facenet_pytorch:
        ok &= mtcnn_part(args.facenet_pytorch, photos, args.seed)
    else:
        print("MTCNN: skipped (no --facenet-pytorch PATH)")
    print("all within target" if ok else "SOME COMPARISONS OVER TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
