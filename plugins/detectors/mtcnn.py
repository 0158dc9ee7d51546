"""MTCNN (Zhang et al. 2016) as timesler/facenet-pytorch runs it, so its ``pnet.pt``, ``rnet.pt`` and
``onet.pt`` load unchanged.

Three networks with PReLU activations and ceil-mode max pooling: P-Net (fully convolutional, a 12 x 12
window per output cell at stride 2: face probability and box offsets), R-Net (24 x 24 crops) and O-Net
(48 x 48 crops; also five landmarks). The dense layers of R-Net and O-Net read their feature maps
transposed (width, height, channel order), as the weights converted from the original Caffe models expect.

Detection as ``detect_face`` does it, on the RGB image in [0, 255] normalised to ``(x - 127.5) / 128``:
1. An image pyramid: scales ``12 / min_face_size * factor**k`` while the shorter side stays at least 12 px
   (``min_face_size`` 20, ``factor`` 0.709), each level resized with area interpolation to
   ``int(side * scale + 1)``. Cells with P-Net probability >= 0.6 become boxes ``floor((2 * cell + 1) /
   scale)`` to ``floor((2 * cell + 12) / scale)``; IoU NMS 0.5 within each scale, then 0.7 over all;
   the offsets are applied with the box's width ``x2 - x1`` and the boxes made square about their centre.
2. Each box cut from the image (corners truncated to integers, clipped to the image, no padding),
   resized to 24 x 24 (area); R-Net probability > 0.7 keeps it; IoU NMS 0.7; offsets applied with the
   width ``x2 - x1 + 1``; squared again.
3. The same at 48 x 48 with O-Net: probability > 0.7; landmarks ``x1 - 1 + p * (x2 - x1 + 1)`` on the
   box before its last offsets; the offsets; NMS 0.7 over the smaller box's area, edge pixels counted.
The faces are the last boxes (not squared) with O-Net's probability as the score.
One difference: a box that lies wholly outside the image after a stage is dropped here (the reference
would index past its crops and fail).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facebench.data.detection import Detections, check_image, nms, nms_torch
from facebench.errors import FacebenchError
from facebench.weights import resolve_weights, weights_dir

from .common import build_options, check_seed, device_of, load_release, seeded, smooth_noise

FILES = ("pnet.pt", "rnet.pt", "onet.pt")
BATCH = 512  # crops per R-Net / O-Net forward pass, as the reference batches them


@dataclass(frozen=True)
class MTCNNOptions:
    """Every default is facenet-pytorch's ``MTCNN``/``detect_face``."""

    min_face_size: float = 20.0  # the smallest face searched for, in pixels: the pyramid's first scale
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)  # P-, R-, O-Net face probability to pass
    factor: float = 0.709  # the scale step between pyramid levels
    #: IoU within a P-Net scale, over all P-Net boxes, after R-Net; after O-Net (over the smaller area)
    nms_thresholds: tuple[float, float, float, float] = (0.5, 0.7, 0.7, 0.7)

    def __post_init__(self):
        if len(self.thresholds) != 3 or len(self.nms_thresholds) != 4:
            raise ValueError("option 'thresholds' takes 3 numbers and 'nms_thresholds' 4")
        for name in ("thresholds", "nms_thresholds"):
            if not all(0.0 <= v <= 1.0 for v in getattr(self, name)):
                raise ValueError(f"option '{name}' must hold numbers within [0, 1], got {list(getattr(self, name))}")
        if not 0.1 <= self.factor <= 0.95:
            raise ValueError(f"option 'factor' must be within [0.1, 0.95], got {self.factor}")
        if not self.min_face_size >= 4:
            raise ValueError(f"option 'min_face_size' must be at least 4 (pixels), got {self.min_face_size}")


# ----------------------------------------------------------------------------------------- networks


class PNet(nn.Module):
    """(N, 3, H, W) -> box offsets (N, 4, h, w) and probabilities (N, 2, h, w), one cell per 12 x 12
    window at stride 2."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), self.conv4_1(x).softmax(dim=1)


def _transposed_flat(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, W * H * C) in width, height, channel order: the Caffe-converted dense layers'."""
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class RNet(nn.Module):
    """(N, 3, 24, 24) -> box offsets (N, 4), probabilities (N, 2)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(_transposed_flat(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), self.dense5_1(x).softmax(dim=1)


class ONet(nn.Module):
    """(N, 3, 48, 48) -> box offsets (N, 4), landmarks (N, 10: five x then five y, as fractions of the
    box), probabilities (N, 2)."""

    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(_transposed_flat(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), self.dense6_1(x).softmax(dim=1)


# ----------------------------------------------------------------------------------------- the stages


def pyramid(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """The scales at which P-Net's 12 px window sees faces of ``min_face_size`` px and up."""
    scale = 12.0 / min_face_size
    shorter = min(height, width) * scale
    scales = []
    while shorter >= 12:
        scales.append(scale)
        scale *= factor
        shorter *= factor
    return scales


def normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - 127.5) * 0.0078125


def cell_boxes(offsets: torch.Tensor, prob: torch.Tensor, scale: float, threshold: float) -> torch.Tensor:
    """P-Net's cells with probability >= ``threshold`` as rows x1, y1, x2, y2, score, four offsets in
    image pixels; cells in row-major order. ``offsets`` (4, h, w), ``prob`` (h, w)."""
    rows, cols = torch.nonzero(prob >= threshold, as_tuple=True)
    cell = torch.stack([cols, rows], dim=1).to(prob.dtype)
    top_left = ((2 * cell + 1) / scale).floor()
    bottom_right = ((2 * cell + 12) / scale).floor()
    return torch.cat([top_left, bottom_right, prob[rows, cols, None], offsets[:, rows, cols].T], dim=1)


def square(boxes: torch.Tensor) -> torch.Tensor:
    """Boxes x1, y1, x2, y2 made square (side: the longer one) about their centre."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def shift(boxes: torch.Tensor, offsets: torch.Tensor, inclusive: bool = True) -> torch.Tensor:
    """Apply offsets (fractions of the box's width and height; ``inclusive``: width ``x2 - x1 + 1``)."""
    one = 1 if inclusive else 0
    w, h = boxes[:, 2] - boxes[:, 0] + one, boxes[:, 3] - boxes[:, 1] + one
    return torch.stack([boxes[:, 0] + offsets[:, 0] * w, boxes[:, 1] + offsets[:, 1] * h,
                        boxes[:, 2] + offsets[:, 2] * w, boxes[:, 3] + offsets[:, 3] * h], dim=1)


def crops(image: torch.Tensor, boxes: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each box's pixels (corners truncated, the top-left taken as 1-based and clipped to the image) resized
    to ``size`` x ``size`` with area interpolation; and which boxes had any pixels (the others are left out)."""
    height, width = image.shape[-2:]
    corners = boxes.trunc().int().cpu()
    x1, y1 = corners[:, 0].clamp(min=1), corners[:, 1].clamp(min=1)
    x2, y2 = corners[:, 2].clamp(max=width), corners[:, 3].clamp(max=height)
    valid = (y2 > y1 - 1) & (x2 > x1 - 1)
    out = [F.interpolate(image[:, :, int(a) - 1:int(b), int(c) - 1:int(d)], size=(size, size), mode="area")
           for a, b, c, d, ok in zip(y1, y2, x1, x2, valid) if ok]
    batch = torch.cat(out) if out else image.new_zeros((0, 3, size, size))
    return batch, valid.to(boxes.device)


def batched(net: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    outs = [net(x[i:i + BATCH]) for i in range(0, len(x), BATCH)]
    return tuple(torch.cat(parts) for parts in zip(*outs))


class MTCNNDetector:
    """``detect(image)`` -> :class:`Detections` for an RGB uint8 image, as facenet-pytorch's detect_face."""

    def __init__(self, nets: tuple[PNet, RNet, ONet], options: MTCNNOptions, device, name: str, weights=None):
        self.name = name
        self.options = options
        self.device = device
        self.pnet, self.rnet, self.onet = (net.to(device).eval() for net in nets)
        self.info = {"detector": name, "weights": None if weights is None else str(weights),
                     "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.__dict__.items()}}

    def detect(self, image: np.ndarray) -> Detections:
        image = check_image(image)
        with torch.inference_mode():
            boxes, scores, points = self._stages(image)
        return Detections(boxes, scores, points)

    def _stages(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        o = self.options
        empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
        img = torch.from_numpy(np.array(image)).to(self.device).permute(2, 0, 1)[None].float()
        height, width = image.shape[:2]

        found = []
        for scale in pyramid(height, width, o.min_face_size, o.factor):
            level = F.interpolate(img, size=(int(height * scale + 1), int(width * scale + 1)), mode="area")
            offsets, prob = self.pnet(normalise(level))
            cells = cell_boxes(offsets[0], prob[0, 1], scale, o.thresholds[0])
            found.append(cells[nms_torch(cells[:, :4], cells[:, 4], o.nms_thresholds[0])])
        if not found:
            return empty
        cells = torch.cat(found)
        cells = cells[nms_torch(cells[:, :4], cells[:, 4], o.nms_thresholds[1])]
        boxes = square(shift(cells[:, :4], cells[:, 5:9], inclusive=False))
        if len(boxes) == 0:
            return empty

        batch, valid = crops(img, boxes, 24)
        if len(batch) == 0:
            return empty
        offsets, prob = batched(self.rnet, normalise(batch))
        boxes, score = boxes[valid], prob[:, 1]
        passed = score > o.thresholds[1]
        boxes, score, offsets = boxes[passed], score[passed], offsets[passed]
        keep = nms_torch(boxes, score, o.nms_thresholds[2])
        boxes = square(shift(boxes[keep], offsets[keep]))
        if len(boxes) == 0:
            return empty

        batch, valid = crops(img, boxes, 48)
        if len(batch) == 0:
            return empty
        offsets, marks, prob = batched(self.onet, normalise(batch))
        boxes, score = boxes[valid], prob[:, 1]
        passed = score > o.thresholds[2]
        boxes, score, offsets, marks = boxes[passed], score[passed], offsets[passed], marks[passed]
        w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
        xs = w[:, None] * marks[:, :5] + boxes[:, :1] - 1
        ys = h[:, None] * marks[:, 5:] + boxes[:, 1:2] - 1
        points = torch.stack([xs, ys], dim=2)
        boxes = shift(boxes, offsets)
        boxes, score, points = boxes.cpu().numpy(), score.cpu().numpy(), points.cpu().numpy()
        finite = np.isfinite(boxes).all(1) & np.isfinite(score) & np.isfinite(points).all((1, 2))
        boxes, score, points = boxes[finite], score[finite], points[finite]
        keep = nms(boxes, score, o.nms_thresholds[3], offset=1.0, mode="min")
        return boxes[keep], score[keep], points[keep]


# ----------------------------------------------------------------------------------------- factories


def weight_paths(weights) -> list:
    """The three files: in the folder ``weights``, or (None) in the weights directory."""
    if weights is None:
        return [resolve_weights(name) for name in FILES]
    folder = resolve_weights(weights, allow_dir=True)
    if not folder.is_dir():
        raise FacebenchError(f"{folder}: MTCNN weights are a folder holding {', '.join(FILES)}, not a file "
                             f"(or leave --weights out to use those in the weights directory {weights_dir()})")
    return [resolve_weights(folder / name) for name in FILES]


def load_nets(weights) -> tuple[tuple[PNet, RNet, ONet], object]:
    nets = (PNet(), RNet(), ONet())
    paths = weight_paths(weights)
    for net, path, what in zip(nets, paths, ("MTCNN P-Net weights", "MTCNN R-Net weights", "MTCNN O-Net weights")):
        load_release(net, path, what)
    return nets, paths[0].parent


def mtcnn(weights=None, device="cpu", **options) -> MTCNNDetector:
    """MTCNN with facenet-pytorch's released ``pnet.pt``, ``rnet.pt``, ``onet.pt``: in the folder
    ``weights``, or in the weights directory."""
    opts = build_options(MTCNNOptions, options, "mtcnn")
    dev = device_of(device)
    nets, folder = load_nets(weights)
    return MTCNNDetector(nets, opts, dev, "mtcnn", weights=folder)


def _standardise(layer: nn.Module, output: torch.Tensor, spread: float = 1.0, centre: float = 0.0) -> None:
    """Scale ``layer`` (conv or linear) so the output it gave has per-channel mean ``centre`` and
    standard deviation ``spread``."""
    dims = (0, 2, 3) if output.ndim == 4 else (0,)
    mean, std = output.mean(dim=dims), output.std(dim=dims).clamp_min(1e-6) / spread
    shape = (-1,) + (1,) * (layer.weight.ndim - 1)
    layer.weight.div_(std.view(shape))
    layer.bias.sub_(mean).div_(std).add_(centre)


@torch.no_grad()
def _calibrate(net: nn.Module, x: torch.Tensor, plan: dict[str, tuple[float, float]]) -> None:
    """Layer by layer in forward order, standardise each convolution or linear layer on ``x``: unit scale for
    the hidden ones, ``plan[name] = (spread, centre)`` for the outputs."""
    layers = [(name, m) for name, m in net.named_children() if isinstance(m, (nn.Conv2d, nn.Linear))]
    seen: dict[str, torch.Tensor] = {}
    for name, layer in layers:
        handle = layer.register_forward_hook(lambda m, i, out: seen.__setitem__("out", out))
        net(x)
        handle.remove()
        _standardise(layer, seen["out"], *plan.get(name, (1.0, 0.0)))


def random_mtcnn(seed: int = 0, calibration: np.ndarray | None = None) -> tuple[PNet, RNet, ONet]:
    """The three networks with seeded random weights in the release's layout, scaled to a trained
    model's ranges on photo-like noise (or on ``calibration``, RGB uint8 (N, H, W, 3) images, and crops of
    them): each layer's outputs standardised in turn, box offsets with spread 0.1, landmarks at 0.5 +- 0.15
    of the box, face logits with spread 0.5 and the face logit raised by 0.5, so some windows pass each
    stage's default threshold. For tests and the parity script; it finds nothing in particular."""
    def build():
        nets = (PNet(), RNet(), ONet())
        if calibration is None:
            images = smooth_noise(4, 96)
        else:
            images = torch.from_numpy(np.ascontiguousarray(calibration)).permute(0, 3, 1, 2).float()
        logits = (0.5, 0.0)
        _calibrate(nets[0], normalise(images), {"conv4_1": logits, "conv4_2": (0.1, 0.0)})
        for net, size, plan in ((nets[1], 24, {"dense5_1": logits, "dense5_2": (0.1, 0.0)}),
                                (nets[2], 48, {"dense6_1": logits, "dense6_2": (0.1, 0.0),
                                               "dense6_3": (0.15, 0.5)})):
            _calibrate(net, normalise(_random_crops(images, size, 24)), plan)
        with torch.no_grad():
            for layer in (nets[0].conv4_1, nets[1].dense5_1, nets[2].dense6_1):
                layer.bias[1] += 0.5
        return nets

    return seeded(build, seed)


def _random_crops(images: torch.Tensor, size: int, count: int) -> torch.Tensor:
    """``count`` square crops of random position and side (at least ``size`` / 2) resized to ``size``."""
    n, _, height, width = images.shape
    out = []
    for _ in range(count):
        side = int(torch.randint(max(2, size // 2), min(height, width) + 1, ()))
        top = int(torch.randint(0, height - side + 1, ()))
        left = int(torch.randint(0, width - side + 1, ()))
        crop = images[int(torch.randint(0, n, ())), None, :, top:top + side, left:left + side]
        out.append(F.interpolate(crop, size=(size, size), mode="area"))
    return torch.cat(out)


def mtcnn_tiny(weights=None, device="cpu", seed: int = 0, **options) -> MTCNNDetector:
    """MTCNN with the same code path and seeded random weights (:func:`random_mtcnn`; MTCNN is small
    already), or the three files of the folder ``weights``. For tests and toy runs."""
    opts = build_options(MTCNNOptions, options, "mtcnn_tiny")
    dev = device_of(device)
    check_seed(seed, "mtcnn_tiny")
    if weights is None:
        return MTCNNDetector(random_mtcnn(seed), opts, dev, "mtcnn_tiny")
    nets, folder = load_nets(weights)
    return MTCNNDetector(nets, opts, dev, "mtcnn_tiny", weights=folder)
