"""RetinaFace (Deng et al. 2020) as biubug6/Pytorch_Retinaface releases it, so its files load unchanged.

The network: a backbone giving three feature maps (strides 8, 16, 32) -> a feature pyramid (1x1 lateral
convolutions, nearest upsampling, 3x3 merges) -> one SSH context module per level (3x3, 5x5 and 7x7
branches made of stacked 3x3 convolutions, concatenated, ReLU) -> per level 1x1 heads with two anchors per
cell: face/background logits, four box offsets, ten landmark offsets. Backbones: MobileNetV1 x0.25
(``mobilenet0.25_Final.pth``) and torchvision's ResNet-50 up to ``layer4`` (``Resnet50_Final.pth``).
Leaky ReLU slopes: 0.1 in the MobileNet and, when the pyramid has at most 64 channels, in the pyramid and
SSH modules; 0 otherwise.

Detection as the reference's ``detect.py`` does it: the image in BGR minus (104, 117, 123), not scaled or
resized; anchors (``min_sizes`` [[16, 32], [64, 128], [256, 512]] at steps 8, 16, 32, centred in their
cells, ordered level, row, column, size); boxes and landmarks decoded with variances (0.1, 0.2);
candidates with score > 0.02, the best 5000 -> NMS at IoU 0.4 (edge pixels counted) -> the best 750 ->
faces with score >= 0.6 (``vis_thres``, what the reference draws).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facebench.data.detection import Detections, check_image, nms
from facebench.weights import resolve_weights

from .common import (
    build_options,
    calibrate_batchnorm,
    check_seed,
    device_of,
    load_release,
    seeded,
    smooth_noise,
)

MNET_WEIGHTS = "mobilenet0.25_Final.pth"
R50_WEIGHTS = "Resnet50_Final.pth"
BGR_MEAN = (104.0, 117.0, 123.0)


@dataclass(frozen=True)
class RetinaFaceConfig:
    """The architecture and its anchors. ``width``: the MobileNetV1 width multiplier (0.25 released)."""

    backbone: str = "mobilenet"  # or "resnet50"
    width: float = 0.25
    out_channels: int = 64
    min_sizes: tuple[tuple[int, ...], ...] = ((16, 32), (64, 128), (256, 512))
    steps: tuple[int, ...] = (8, 16, 32)
    variance: tuple[float, float] = (0.1, 0.2)


MNET = RetinaFaceConfig()
R50 = RetinaFaceConfig(backbone="resnet50", out_channels=256)
TINY = RetinaFaceConfig(width=0.125, out_channels=16)


@dataclass(frozen=True)
class RetinaFaceOptions:
    """Post-processing; every default is the reference ``detect.py``'s."""

    confidence_threshold: float = 0.02  # a candidate enters NMS when its face score is above this
    top_k: int = 5000  # at most this many candidates, best first, enter NMS
    nms_threshold: float = 0.4  # a box overlapping a better one by more than this IoU is dropped
    keep_top_k: int = 750  # at most this many faces are kept after NMS
    score_threshold: float = 0.6  # faces reported have at least this score (detect.py's vis_thres)

    def __post_init__(self):
        for name in ("confidence_threshold", "nms_threshold", "score_threshold"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"option '{name}' must be within [0, 1], got {value}")
        for name in ("top_k", "keep_top_k"):
            if getattr(self, name) < 1:
                raise ValueError(f"option '{name}' must be at least 1, got {getattr(self, name)}")


# ----------------------------------------------------------------------------------------- network


def conv_norm(cin: int, cout: int, kernel: int, stride: int = 1, slope: float | None = 0.0,
              groups: int = 1) -> nn.Sequential:
    """Convolution (no bias) and BatchNorm, then leaky ReLU of ``slope`` unless ``slope`` is None."""
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if slope is not None:
        layers.append(nn.LeakyReLU(slope, inplace=True))
    return nn.Sequential(*layers)


def depthwise_separable(cin: int, cout: int, stride: int, slope: float = 0.1) -> nn.Sequential:
    """MobileNetV1's block: depthwise 3x3 (norm, act) then pointwise 1x1 (norm, act), one Sequential."""
    return nn.Sequential(*conv_norm(cin, cin, 3, stride, slope, groups=cin), *conv_norm(cin, cout, 1, 1, slope))


class MobileNetBody(nn.Module):
    """MobileNetV1 at ``width`` as three stages (strides 8, 16, 32); the classifier is not part of it."""

    #: MobileNetV1 x1.0 (output channels, stride) per stage; the first stage opens with a plain 3x3 conv
    STAGES = (((32, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1)),
              ((512, 2),) + ((512, 1),) * 5,
              ((1024, 2), (1024, 1)))

    def __init__(self, width: float):
        super().__init__()
        cin, stages = 3, []
        for s, plan in enumerate(self.STAGES):
            blocks = []
            for b, (channels, stride) in enumerate(plan):
                cout = max(1, int(channels * width))
                first = s == 0 and b == 0
                blocks.append(conv_norm(cin, cout, 3, stride, 0.1) if first else depthwise_separable(cin, cout, stride))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.stage1, self.stage2, self.stage3 = stages
        self.channels = [stage[-1][-2].num_features for stage in stages]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        return [c1, c2, self.stage3(c2)]


class ResNetBody(nn.Module):
    """torchvision's ResNet-50 up to ``layer4``: the outputs of ``layer2``, ``layer3``, ``layer4``."""

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(net, name))
        self.channels = [512, 1024, 2048]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        c2 = self.layer2(x)
        c3 = self.layer3(c2)
        return [c2, c3, self.layer4(c3)]


class FPN(nn.Module):
    def __init__(self, channels: list[int], out: int):
        super().__init__()
        slope = 0.1 if out <= 64 else 0.0
        self.output1, self.output2, self.output3 = (conv_norm(c, out, 1, 1, slope) for c in channels)
        self.merge1 = conv_norm(out, out, 3, 1, slope)
        self.merge2 = conv_norm(out, out, 3, 1, slope)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        p1, p2, p3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        p2 = self.merge2(p2 + F.interpolate(p3, size=p2.shape[-2:], mode="nearest"))
        p1 = self.merge1(p1 + F.interpolate(p2, size=p1.shape[-2:], mode="nearest"))
        return [p1, p2, p3]


class SSH(nn.Module):
    """Context module: half the channels from a 3x3 branch, a quarter each from a 5x5 (two 3x3) and a
    7x7 (three 3x3, sharing the first) branch; BatchNorm without activation closes each branch."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        if cout % 4:
            raise ValueError(f"SSH output channels must be a multiple of 4, got {cout}")
        slope = 0.1 if cout <= 64 else 0.0
        self.conv3X3 = conv_norm(cin, cout // 2, 3, 1, None)
        self.conv5X5_1 = conv_norm(cin, cout // 4, 3, 1, slope)
        self.conv5X5_2 = conv_norm(cout // 4, cout // 4, 3, 1, None)
        self.conv7X7_2 = conv_norm(cout // 4, cout // 4, 3, 1, slope)
        self.conv7x7_3 = conv_norm(cout // 4, cout // 4, 3, 1, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = self.conv5X5_1(x)
        branches = [self.conv3X3(x), self.conv5X5_2(shared), self.conv7x7_3(self.conv7X7_2(shared))]
        return F.relu(torch.cat(branches, dim=1))


class Head(nn.Module):
    """A 1x1 convolution giving ``values`` numbers per anchor, as (N, cells x anchors, values) with the
    cells in row-major order and the anchors of a cell together, the order of the anchors."""

    def __init__(self, cin: int, anchors: int, values: int):
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(cin, anchors * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.values)


class RetinaFaceNet(nn.Module):
    """Image (N, 3, H, W), BGR minus the mean -> box offsets (N, P, 4), face probabilities (N, P, 2),
    landmark offsets (N, P, 10), for the P anchors of :func:`anchors`."""

    def __init__(self, config: RetinaFaceConfig = MNET):
        super().__init__()
        self.config = config
        if config.backbone == "mobilenet":
            self.body = MobileNetBody(config.width)
        elif config.backbone == "resnet50":
            self.body = ResNetBody()
        else:
            raise ValueError(f"unknown RetinaFace backbone {config.backbone!r}")
        out = config.out_channels
        self.fpn = FPN(self.body.channels, out)
        self.ssh1, self.ssh2, self.ssh3 = SSH(out, out), SSH(out, out), SSH(out, out)
        per_cell = [len(sizes) for sizes in config.min_sizes]
        self.ClassHead = nn.ModuleList(Head(out, a, 2) for a in per_cell)
        self.BboxHead = nn.ModuleList(Head(out, a, 4) for a in per_cell)
        self.LandmarkHead = nn.ModuleList(Head(out, a, 10) for a in per_cell)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        levels = self.fpn(self.body(x))
        feats = [self.ssh1(levels[0]), self.ssh2(levels[1]), self.ssh3(levels[2])]
        loc = torch.cat([head(f) for head, f in zip(self.BboxHead, feats)], dim=1)
        conf = torch.cat([head(f) for head, f in zip(self.ClassHead, feats)], dim=1)
        landmarks = torch.cat([head(f) for head, f in zip(self.LandmarkHead, feats)], dim=1)
        return loc, conf.softmax(dim=-1), landmarks


# ----------------------------------------------------------------------------------- anchors, decoding


@lru_cache(maxsize=16)
def _anchors(height: int, width: int, min_sizes: tuple, steps: tuple) -> np.ndarray:
    rows = []
    for sizes, step in zip(min_sizes, steps):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        cx = (np.arange(fw, dtype=np.float64) + 0.5) * step / width
        cy = (np.arange(fh, dtype=np.float64) + 0.5) * step / height
        grid_y, grid_x = np.meshgrid(cy, cx, indexing="ij")  # (fh, fw): row-major cells
        per_size = [np.stack([grid_x, grid_y, np.full_like(grid_x, s / width), np.full_like(grid_y, s / height)],
                             axis=-1) for s in sizes]
        rows.append(np.stack(per_size, axis=2).reshape(-1, 4))  # cell, then size
    out = np.concatenate(rows).astype(np.float32)
    out.setflags(write=False)
    return out


def anchors(height: int, width: int, config: RetinaFaceConfig = MNET) -> np.ndarray:
    """(P, 4) anchors cx, cy, w, h as fractions of the image: per level a ceil(H/step) x ceil(W/step) grid
    of cells, centred at (col + 0.5) * step / W, (row + 0.5) * step / H, one anchor per min size."""
    return _anchors(int(height), int(width), config.min_sizes, config.steps)


def decode_boxes(loc: torch.Tensor, priors: torch.Tensor, variance: tuple[float, float]) -> torch.Tensor:
    """Offsets -> x1, y1, x2, y2 (fractions): centre shifted by ``v0 * offset * anchor size``, size
    scaled by ``exp(v1 * offset)``."""
    centre = priors[:, :2] + loc[:, :2] * variance[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * variance[1])
    corner = centre - size / 2
    return torch.cat([corner, corner + size], dim=1)


def decode_landmarks(pre: torch.Tensor, priors: torch.Tensor, variance: tuple[float, float]) -> torch.Tensor:
    """(P, 10) offsets -> (P, 5, 2) points (fractions): each point is the anchor centre shifted by
    ``v0 * offset * anchor size``."""
    offsets = pre.reshape(-1, 5, 2)
    return priors[:, None, :2] + offsets * variance[0] * priors[:, None, 2:]


# ----------------------------------------------------------------------------------------- detector


class RetinaFaceDetector:
    """``detect(image)`` -> :class:`Detections` for an RGB uint8 image, as the reference's detect.py."""

    def __init__(self, net: RetinaFaceNet, options: RetinaFaceOptions, device, name: str, weights=None):
        self.name = name
        self.options = options
        self.device = device
        self.net = net.to(device).eval()
        self.info = {"detector": name, "weights": None if weights is None else str(weights),
                     "options": dict(options.__dict__)}

    @torch.inference_mode()
    def raw(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every anchor's decoded box (P, 4), face score (P,) and landmarks (P, 5, 2) in pixels."""
        height, width = image.shape[:2]
        bgr = np.ascontiguousarray(image[:, :, ::-1], dtype=np.float32)
        bgr -= np.array(BGR_MEAN, np.float32)
        x = torch.from_numpy(bgr).permute(2, 0, 1)[None].to(self.device)
        loc, conf, pre = self.net(x)
        priors = torch.tensor(anchors(height, width, self.net.config), device=self.device)
        variance = self.net.config.variance
        scale = torch.tensor([width, height], dtype=torch.float32, device=self.device)
        boxes = decode_boxes(loc[0], priors, variance) * scale.repeat(2)
        points = decode_landmarks(pre[0], priors, variance) * scale
        return boxes.cpu().numpy(), conf[0, :, 1].cpu().numpy(), points.cpu().numpy()

    def detect(self, image: np.ndarray) -> Detections:
        image = check_image(image)
        boxes, scores, points = self.raw(image)
        o = self.options
        finite = np.isfinite(boxes).all(1) & np.isfinite(scores) & np.isfinite(points).all((1, 2))
        candidates = np.flatnonzero((scores > o.confidence_threshold) & finite)
        candidates = candidates[np.argsort(-scores[candidates], kind="stable")][:o.top_k]
        kept = candidates[nms(boxes[candidates], scores[candidates], o.nms_threshold, offset=1.0)][:o.keep_top_k]
        kept = kept[scores[kept] >= o.score_threshold]
        return Detections(boxes[kept], scores[kept], points[kept])


# ----------------------------------------------------------------------------------------- factories


def _detector(config: RetinaFaceConfig, name: str, weights, device, options, what: str) -> RetinaFaceDetector:
    opts = build_options(RetinaFaceOptions, options, name)
    dev = device_of(device)
    net = RetinaFaceNet(config)
    path = resolve_weights(weights)
    load_release(net, path, what)
    return RetinaFaceDetector(net, opts, dev, name, weights=path)


def retinaface_mnet(weights=None, device="cpu", **options) -> RetinaFaceDetector:
    """RetinaFace, MobileNetV1 x0.25 backbone: the released ``mobilenet0.25_Final.pth`` (by default
    looked up in the weights directory)."""
    return _detector(MNET, "retinaface_mnet", MNET_WEIGHTS if weights is None else weights, device, options,
                     "RetinaFace MobileNet-0.25 weights")


def retinaface_r50(weights=None, device="cpu", **options) -> RetinaFaceDetector:
    """RetinaFace, ResNet-50 backbone: the released ``Resnet50_Final.pth``."""
    return _detector(R50, "retinaface_r50", R50_WEIGHTS if weights is None else weights, device, options,
                     "RetinaFace ResNet-50 weights")


def random_retinaface(config: RetinaFaceConfig, seed: int = 0, size: int = 128,
                      calibration: np.ndarray | None = None) -> RetinaFaceNet:
    """A RetinaFace of ``config`` with seeded random weights in the release's layout, whose outputs have
    the scale of a trained one: torch's default initialisation, then BatchNorm statistics and head outputs
    set on seeded photo-like noise (:func:`smooth_noise`): box and landmark channels to mean 0, variance 1;
    face and background logits to mean 0, standard deviation 0.5, with the face logit lowered by 1. So on
    any image the scores are spread out (few ties) and a few anchors in a thousand pass the default
    thresholds. ``calibration``: RGB uint8 images (N, H, W, 3) to set the scales on instead (the parity
    script uses its photo: a deep random ResNet's scales do not carry over from noise to a photo).
    For tests and the parity script; it finds nothing in particular."""
    def build():
        net = RetinaFaceNet(config)
        if calibration is None:
            noise = smooth_noise(4, size) - torch.tensor(BGR_MEAN).view(1, 3, 1, 1)
        else:
            bgr = torch.from_numpy(np.ascontiguousarray(calibration[..., ::-1], dtype=np.float32))
            noise = bgr.permute(0, 3, 1, 2) - torch.tensor(BGR_MEAN).view(1, 3, 1, 1)
        calibrate_batchnorm(net, noise)
        with torch.no_grad():
            levels = net.fpn(net.body(noise))
            feats = [net.ssh1(levels[0]), net.ssh2(levels[1]), net.ssh3(levels[2])]
            for heads, spread in ((net.ClassHead, 0.5), (net.BboxHead, 1.0), (net.LandmarkHead, 1.0)):
                for head, feat in zip(heads, feats):
                    conv = head.conv1x1
                    out = conv(feat)
                    mean, std = out.mean(dim=(0, 2, 3)), out.std(dim=(0, 2, 3)).clamp_min(1e-6) / spread
                    conv.weight.div_(std.view(-1, 1, 1, 1))
                    conv.bias.sub_(mean).div_(std)
            for head in net.ClassHead:
                head.conv1x1.bias.view(-1, 2)[:, 1] -= 1.0
        return net

    return seeded(build, seed)


def retinaface_tiny(weights=None, device="cpu", seed: int = 0, **options) -> RetinaFaceDetector:
    """A tiny RetinaFace (MobileNet x0.125, 16-channel pyramid) with the same code path: seeded random
    weights (:func:`random_retinaface`), or a file in its layout when given. For tests and toy runs."""
    opts = build_options(RetinaFaceOptions, options, "retinaface_tiny")
    dev = device_of(device)
    check_seed(seed, "retinaface_tiny")
    if weights is None:
        return RetinaFaceDetector(random_retinaface(TINY, seed), opts, dev, "retinaface_tiny")
    path = resolve_weights(weights)
    net = load_release(RetinaFaceNet(TINY), path, "tiny RetinaFace weights")
    return RetinaFaceDetector(net, opts, dev, "retinaface_tiny", weights=path)
