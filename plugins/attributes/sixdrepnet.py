"""SixDRepNet head-pose estimator (Hempel et al.) in RepVGG deploy form, so the released weights load.

The release ``6DRepNet_300W_LP_AFLW2000.pth`` is a plain state dict of a RepVGG-B1g2 backbone whose
blocks are re-parameterised into one biased 3x3 convolution each (``layerK.i.rbr_reparam``), followed by
global average pooling and ``linear_reg`` (2048 -> 6). The 6 outputs are two 3-vectors turned into a
rotation matrix by Gram-Schmidt; Euler angles (pitch, yaw, roll) follow from the matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from facebench.errors import DataError, FacebenchError
from facebench.safe_load import load_state_dict, state_dict_mismatch
from facebench.weights import resolve_weights

#: RepVGG blocks whose running index is even (2..26) use grouped convolutions in the "g2" variants.
_GROUPED_INDICES = frozenset(range(2, 27, 2))


@dataclass(frozen=True)
class SixDRepNetConfig:
    blocks: tuple[int, int, int, int] = (4, 6, 16, 1)
    widths: tuple[int, int, int, int] = (128, 256, 512, 2048)  # 64/128/256/512 x (2, 2, 2, 4)
    stem: int = 64
    groups: int = 2


B1G2 = SixDRepNetConfig()
TINY = SixDRepNetConfig(blocks=(1, 1, 2, 1), widths=(8, 16, 16, 32), stem=8, groups=2)


class RepVGGDeployBlock(nn.Module):
    """One re-parameterised RepVGG block: a biased 3x3 convolution and ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int = 1):
        super().__init__()
        self.rbr_reparam = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=True)
        self.nonlinearity = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinearity(self.rbr_reparam(x))


class SixDRepNet(nn.Module):
    """Image -> (N, 3, 3) rotation matrix."""

    def __init__(self, config: SixDRepNetConfig = B1G2):
        super().__init__()
        self.config = config
        first = min(config.stem, config.widths[0])
        self.layer0 = RepVGGDeployBlock(3, first, stride=2)
        cin, index = first, 1
        stages = []
        for count, width in zip(config.blocks, config.widths):
            blocks = []
            for i in range(count):
                groups = config.groups if index in _GROUPED_INDICES else 1
                blocks.append(RepVGGDeployBlock(cin, width, stride=2 if i == 0 else 1, groups=groups))
                cin, index = width, index + 1
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear_reg = nn.Linear(config.widths[-1], 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in (self.layer0, self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
        return rotation_from_6d(self.linear_reg(torch.flatten(self.gap(x), 1)))


def rotation_from_6d(six: torch.Tensor) -> torch.Tensor:
    """Two 3-vectors -> orthonormal basis (columns x, y, z) by Gram-Schmidt (Zhou et al. 2019)."""
    a, b = six[:, 0:3], six[:, 3:6]
    x = a / a.norm(dim=1, keepdim=True).clamp_min(1e-8)
    z = torch.linalg.cross(x, b, dim=1)
    z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-8)
    y = torch.linalg.cross(z, x, dim=1)
    return torch.stack([x, y, z], dim=2)


def euler_from_rotation(r: torch.Tensor) -> torch.Tensor:
    """(N,3,3) rotation matrices -> (N,3) angles (pitch about x, yaw about y, roll about z) in degrees."""
    sy = torch.sqrt(r[:, 0, 0] ** 2 + r[:, 1, 0] ** 2)
    regular = sy >= 1e-6
    pitch = torch.where(regular, torch.atan2(r[:, 2, 1], r[:, 2, 2]), torch.atan2(-r[:, 1, 2], r[:, 1, 1]))
    yaw = torch.atan2(-r[:, 2, 0], sy)
    roll = torch.where(regular, torch.atan2(r[:, 1, 0], r[:, 0, 0]), torch.zeros_like(sy))
    return torch.stack([pitch, yaw, roll], dim=1) * (180.0 / math.pi)


def rotation_from_euler(angles: torch.Tensor) -> torch.Tensor:
    """(N,3) (pitch, yaw, roll) in degrees -> (N,3,3) ``Rz(roll) @ Ry(yaw) @ Rx(pitch)``, the inverse of
    :func:`euler_from_rotation` for |yaw| < 90; what a pose model is trained against."""
    p, y, r = (angles * (math.pi / 180.0)).unbind(1)
    one, zero = torch.ones_like(p), torch.zeros_like(p)
    rx = torch.stack([one, zero, zero, zero, p.cos(), -p.sin(), zero, p.sin(), p.cos()], 1).view(-1, 3, 3)
    ry = torch.stack([y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos()], 1).view(-1, 3, 3)
    rz = torch.stack([r.cos(), -r.sin(), zero, r.sin(), r.cos(), zero, zero, zero, one], 1).view(-1, 3, 3)
    return rz @ ry @ rx


def geodesic_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle in radians of the rotation between (N,3,3) matrices ``a`` and ``b`` (SixDRepNet's loss)."""
    cos = ((a.transpose(1, 2) @ b).diagonal(dim1=1, dim2=2).sum(1) - 1) / 2
    return torch.acos(cos.clamp(-1 + 1e-6, 1 - 1e-6))


def load_strict(model: nn.Module, path, what: str) -> None:
    """Load a plain (optionally DataParallel-prefixed) state dict; any mismatch is a one-line error."""
    state = load_state_dict(path, what=what)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    problem = state_dict_mismatch(model.state_dict(), state)
    if problem:
        raise DataError(path, f"{what} does not match the architecture: {problem}")
    model.load_state_dict(state, strict=True)


class PoseExtractor:
    """Feature-extractor wrapper: ``forward_tensor`` gives (pitch, yaw, roll) in degrees, differentiably.

    ``preprocess="vec2face"`` feeds the model as Vec2Face's AttrOP does (BGR, [0, 1], at the generator's
    resolution ``input_size``: 112 for the release, other sizes are resized to it); ``"imagenet"`` as
    SixDRepNet's own demo (RGB resized to 224, ImageNet mean/std).
    ``embed`` returns the angles as a numpy array (they are not L2-normalised features).
    """

    outputs = ("pitch", "yaw", "roll")
    flip_test = False

    def __init__(self, model: SixDRepNet, device: str = "cpu", preprocess: str = "vec2face", input_size: int = 112):
        if preprocess not in ("vec2face", "imagenet"):
            raise FacebenchError(f"sixdrepnet: preprocess must be 'vec2face' or 'imagenet', got '{preprocess}'")
        self.model = model.to(device).eval()
        self.device = device
        self.preprocess = preprocess
        if preprocess == "vec2face":
            self.input_size, self.mean, self.std = (input_size, input_size), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        else:
            self.input_size, self.mean, self.std = (224, 224), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        return euler_from_rotation(self.rotation(x))

    def rotation(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (N,3,H,W), RGB -> (N,3,3) rotation matrices; the path training uses too."""
        x = (x.to(self.device) + 1) / 2
        if tuple(x.shape[-2:]) != self.input_size:
            x = nn.functional.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        if self.preprocess == "vec2face":
            x = x[:, [2, 1, 0]]
        else:
            mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
            x = (x - mean) / std
        return self.model(x)

    def embed(self, images: np.ndarray) -> np.ndarray:
        from facebench.data.tensors import to_model_input

        x = to_model_input(images)  # at the images' own size: rotation() resizes to input_size
        with torch.inference_mode():
            return self.forward_tensor(x).cpu().numpy()


RELEASED_WEIGHTS = "6DRepNet_300W_LP_AFLW2000.pth"
#: The tiny model reads faces at the tiny Vec2Face's and the toy world's resolution.
TINY_INPUT_SIZE = 56


def sixdrepnet_extractor(weights=None, device: str = "cpu", preprocess: str = "vec2face", **_):
    """The released SixDRepNet; its weights file is required (default: the release's file name, looked up
    in the weights directory), since random pose estimates would be useless."""
    weights = RELEASED_WEIGHTS if weights is None else weights
    model = SixDRepNet(B1G2)
    load_strict(model, resolve_weights(weights), "SixDRepNet weights")
    return PoseExtractor(model, device=device, preprocess=preprocess)


def sixdrepnet_tiny_extractor(weights=None, device: str = "cpu", preprocess: str = "vec2face", seed: int = 0,
                              input_size: int = TINY_INPUT_SIZE, **_):
    """A tiny SixDRepNet with the same code path; seeded random weights unless a file is given (for
    example one written by ``facebench toyfaces pose-model``)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SixDRepNet(TINY)
    if weights is not None:
        load_strict(model, resolve_weights(weights), "tiny SixDRepNet weights")
    return PoseExtractor(model, device=device, preprocess=preprocess, input_size=input_size)
