"""The FID Inception-v3 feature extractor (2048-d pool features), for the standard weights file only.

FID values are comparable across papers only with the TensorFlow Inception graph of 2015-12-05, ported to
PyTorch as ``pt_inception-2015-12-05-6726825d.pth`` (the pytorch-fid release). That port is torchvision's
Inception-v3 with 1008 classes and no auxiliary head, except that some pooling layers behave like the
TensorFlow ones: the average pools of the 35x35, 17x17 and first 8x8 mixed blocks exclude the padding,
and the last block pools its branch with a max instead of an average. The file is checked by its sha256
prefix (the ``6726825d`` in its name), so a different Inception file is refused rather than silently
giving incomparable numbers.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models import inception as tv

from facebench.errors import DataError
from facebench.provenance import sha256_file
from facebench.safe_load import load_state_dict
from facebench.weights import resolve_weights

WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
SHA256_PREFIX = "6726825d"
INPUT_SIZE = 299
FEATURE_DIM = 2048


def _pool_excluding_padding(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class _BlockA(tv.InceptionA):
    def _forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [b1, b5, b3, self.branch_pool(_pool_excluding_padding(x))]


class _BlockC(tv.InceptionC):
    def _forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return [b1, b7, d, self.branch_pool(_pool_excluding_padding(x))]


class _BlockE(tv.InceptionE):
    def __init__(self, in_channels: int, max_pool: bool):
        super().__init__(in_channels)
        self.max_pool = max_pool

    def _forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        if self.max_pool:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _pool_excluding_padding(x)
        return [b1, b3, d, self.branch_pool(pooled)]


def fid_inception_v3() -> tv.Inception3:
    """The architecture of the FID Inception port (random weights until a state dict is loaded)."""
    net = tv.Inception3(num_classes=1008, aux_logits=False, transform_input=False, init_weights=False)
    net.Mixed_5b = _BlockA(192, pool_features=32)
    net.Mixed_5c = _BlockA(256, pool_features=64)
    net.Mixed_5d = _BlockA(288, pool_features=64)
    net.Mixed_6b = _BlockC(768, channels_7x7=128)
    net.Mixed_6c = _BlockC(768, channels_7x7=160)
    net.Mixed_6d = _BlockC(768, channels_7x7=160)
    net.Mixed_6e = _BlockC(768, channels_7x7=192)
    net.Mixed_7b = _BlockE(1280, max_pool=False)
    net.Mixed_7c = _BlockE(2048, max_pool=True)
    return net


def pool_features(net: tv.Inception3, x: torch.Tensor) -> torch.Tensor:
    """(N, 2048) pool3 features of ``x`` in [-1, 1] (any size; resized bilinearly to 299)."""
    if x.shape[-1] != INPUT_SIZE or x.shape[-2] != INPUT_SIZE:
        x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
    for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                 "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                 "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
        x = getattr(net, name)(x)
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


class FidInceptionExtractor:
    """Feature-extractor contract around the FID Inception: ``forward_tensor`` gives raw pool3 features."""

    input_size = INPUT_SIZE
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    flip_test = False
    feature_dim = FEATURE_DIM

    def __init__(self, weights: Any = None, device: str = "cpu", check_hash: bool = True, **_: Any):
        path = resolve_weights(weights or WEIGHTS_FILE)
        if check_hash:
            digest = sha256_file(path)
            if not digest.startswith(SHA256_PREFIX):
                raise DataError(path, f"not the standard FID Inception weights (sha256 {digest[:8]}..., expected "
                                      f"{SHA256_PREFIX}...); FID from other Inception weights is not comparable")
        self.net = fid_inception_v3()
        state = load_state_dict(path, what="FID Inception weights")
        expected = self.net.state_dict()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
        if missing or unexpected or wrong:
            first = (missing or unexpected or wrong)[0]
            raise DataError(path, f"does not fit the FID Inception-v3 layout: {len(missing)} missing, "
                                  f"{len(unexpected)} unexpected and {len(wrong)} misshapen keys (first '{first}')")
        self.net.load_state_dict(state, strict=True)
        self.net.to(device).eval()
        self.device = device
        self.weights = os.fspath(path)

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        return pool_features(self.net, x.to(self.device))

    def embed(self, images: np.ndarray) -> np.ndarray:
        """L2-normalised pool features of ``uint8`` NHWC RGB images (the extractor contract)."""
        from facebench.data.tensors import to_model_input

        with torch.no_grad():
            feats = self.forward_tensor(to_model_input(images, INPUT_SIZE)).float()
        return F.normalize(feats, dim=1).cpu().numpy()
