"""IResNet with insightface ``arcface_torch`` module names, plus the "mode se" variant of the trainer
the Vec2Face paper used, so released checkpoints of both load with ``strict=True``.

Layout facts (see docs/fr.md): stem conv3x3-BN-PReLU; each stage starts with a stride-2 ``IBasicBlock``
(BN, conv3x3, BN, PReLU, conv3x3 with the stride, BN; 1x1-conv+BN shortcut on the first block; no
activation after the sum); head BN2d, dropout, ``fc`` to the embedding, ``features`` BatchNorm1d whose
scale is frozen at 1. The SE variant multiplies the *shortcut* of each stage's first block by a
squeeze-excitation gate (``attn.fc1``/``attn.fc2``, reduction 16, no biases) and uses dropout 0.4.
"""

from __future__ import annotations

import torch
from torch import nn

#: blocks per stage, as in insightface ``iresnet.py``
LAYERS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    200: (6, 26, 60, 6),
}


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class ShortcutSE(nn.Module):
    """Squeeze-excitation gate (global pool, 1x1 C->C/r, ReLU, 1x1 C/r->C, sigmoid) applied by multiplication."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)
        self.sigmoid = nn.Sigmoid()
        nn.init.xavier_uniform_(self.fc1.weight)
        nn.init.xavier_uniform_(self.fc2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * gate


class IBasicBlock(nn.Module):
    """Pre-activation-style residual block of IResNet (BN before each conv, PReLU in the middle)."""

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 se: bool = False):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=1e-5)
        self.conv1 = _conv3x3(cin, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample
        self.attn = ShortcutSE(planes) if se else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = self.downsample(x) if self.downsample is not None else x
        if self.attn is not None:
            identity = self.attn(identity)
        return out + identity


def _spatial_after_stages(size: int, stages: int = 4) -> int:
    for _ in range(stages):
        size = (size - 1) // 2 + 1  # 3x3 conv, stride 2, padding 1
    return size


class IResNet(nn.Module):
    """IResNet body + FR head; images (N,3,S,S) in [-1,1] -> embeddings (N, num_features), not normalised.

    ``input_size`` fixes the flattened size of ``fc`` (112 -> 7x7, as released; 56 -> 4x4 for the tiny
    CPU models). ``width`` scales the four stage widths (64 = the released models).
    """

    def __init__(self, layers: tuple[int, ...] | list[int], *, num_features: int = 512, dropout: float = 0.0,
                 se: bool = False, input_size: int = 112, width: int = 64, zero_init_residual: bool = False):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"IResNet needs 4 stages, got layers={list(layers)}")
        self.input_size = input_size
        self.num_features = num_features
        planes = [width, width * 2, width * 4, width * 8]
        self.conv1 = _conv3x3(3, width)
        self.bn1 = nn.BatchNorm2d(width, eps=1e-5)
        self.prelu = nn.PReLU(width)
        cin = width
        for i, (n, p) in enumerate(zip(layers, planes), start=1):
            setattr(self, f"layer{i}", self._make_layer(cin, p, n, se))
            cin = p
        self.bn2 = nn.BatchNorm2d(cin, eps=1e-5)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        side = _spatial_after_stages(input_size)
        self.fc = nn.Linear(cin * side * side, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for name, m in self.named_modules():
            if isinstance(m, nn.Conv2d) and ".attn." not in f".{name}.":
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, IBasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    @staticmethod
    def _make_layer(cin: int, planes: int, blocks: int, se: bool) -> nn.Sequential:
        downsample = nn.Sequential(
            nn.Conv2d(cin, planes, kernel_size=1, stride=2, bias=False),
            nn.BatchNorm2d(planes, eps=1e-5),
        )
        # Only the first block of a stage gets the SE gate (as in the paper's trainer).
        modules = [IBasicBlock(cin, planes, 2, downsample, se=se)]
        modules += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*modules)

    def forward_body(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.bn2(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(torch.flatten(self.forward_body(x), 1))
        # The embedding layers run in fp32 even under autocast, as in arcface_torch's fp16 mode.
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.features(self.fc(x.float()))


def _build(depth: int, se: bool, default_dropout: float, **kwargs) -> IResNet:
    kwargs.setdefault("dropout", default_dropout)
    layers = kwargs.pop("layers", LAYERS[depth])
    return IResNet(layers, se=se, **kwargs)


def iresnet18(**kwargs) -> IResNet:
    """insightface IResNet-18 (24.0M parameters)."""
    return _build(18, False, 0.0, **kwargs)


def iresnet34(**kwargs) -> IResNet:
    """insightface IResNet-34 (34.1M parameters)."""
    return _build(34, False, 0.0, **kwargs)


def iresnet50(**kwargs) -> IResNet:
    """insightface IResNet-50 (43.6M parameters, 475 state-dict tensors)."""
    return _build(50, False, 0.0, **kwargs)


def iresnet100(**kwargs) -> IResNet:
    """insightface IResNet-100 (65.2M parameters); the layout of ArcFace-R100 / MagFace-R100 releases."""
    return _build(100, False, 0.0, **kwargs)


def iresnet200(**kwargs) -> IResNet:
    """insightface IResNet-200 (118.8M parameters)."""
    return _build(200, False, 0.0, **kwargs)


def se_iresnet18(**kwargs) -> IResNet:
    """SE-IResNet-18 of the Vec2Face paper's trainer (shortcut SE in each stage's first block, dropout 0.4)."""
    return _build(18, True, 0.4, **kwargs)


def se_iresnet50(**kwargs) -> IResNet:
    """SE-IResNet-50 of the Vec2Face paper's trainer: the layout of the released HSFace FR weights."""
    return _build(50, True, 0.4, **kwargs)


def se_iresnet100(**kwargs) -> IResNet:
    """SE-IResNet-100 of the Vec2Face paper's trainer."""
    return _build(100, True, 0.4, **kwargs)


def se_iresnet200(**kwargs) -> IResNet:
    """SE-IResNet-200 ([6, 26, 60, 6] blocks; the paper's trainer maps "200" to the 100-layer plan)."""
    return _build(200, True, 0.4, **kwargs)


def iresnet_tiny(**kwargs) -> IResNet:
    """Tiny IResNet for CPU tests: one block per stage, width 16, 56 px input by default."""
    kwargs.setdefault("input_size", 56)
    kwargs.setdefault("width", 16)
    kwargs.setdefault("layers", (1, 1, 1, 1))
    return _build(18, False, 0.0, **kwargs)


def se_iresnet_tiny(**kwargs) -> IResNet:
    """Tiny SE-IResNet for CPU tests: one block per stage, width 16, 56 px input by default."""
    kwargs.setdefault("input_size", 56)
    kwargs.setdefault("width", 16)
    kwargs.setdefault("layers", (1, 1, 1, 1))
    return _build(18, True, 0.0, **kwargs)
