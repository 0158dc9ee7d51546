"""MagFace image quality: the L2 norm of an iresnet100 feature (Meng et al. 2021).

MagFace trains the feature norm to grow with recognisability, so Vec2Face's AttrOP uses the norm of
``magface-r100-glint360k.pth``'s 512-d output as the quality score (target 27 in the paper). The
backbone comes from the backbone registry (``iresnet100`` from the FR plugin), so the released
insightface-layout state dict loads unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from facebench import create_backbone
from facebench.errors import FacebenchError
from facebench.weights import resolve_weights

from .sixdrepnet import load_strict


class QualityExtractor:
    """``forward_tensor`` returns the raw (unnormalised) feature whose norm is the quality."""

    input_size = (112, 112)
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    flip_test = False

    def __init__(self, model: torch.nn.Module, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.device = device

    def forward_tensor(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.to(self.device))

    def quality(self, images: np.ndarray) -> np.ndarray:
        """Quality scores (feature norms) of ``uint8`` NHWC RGB images."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.inference_mode():
            return self.forward_tensor(x).norm(dim=1).cpu().numpy()

    def embed(self, images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
        with torch.inference_mode():
            feats = self.forward_tensor(x)
        return torch.nn.functional.normalize(feats, dim=1).cpu().numpy()


def magface_quality_extractor(weights=None, device: str = "cpu", backbone: str = "iresnet100", **kwargs):
    """MagFace quality over ``backbone`` (default iresnet100); a weights file is required."""
    if weights is None:
        raise FacebenchError(
            "magface-quality needs its weights file magface-r100-glint360k.pth (from the Vec2Face release): "
            "pass it with --attrop-quality-weights"
        )
    model = create_backbone(backbone, **kwargs)
    load_strict(model, resolve_weights(weights), "MagFace weights")
    return QualityExtractor(model, device=device)
