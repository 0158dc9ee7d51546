"""Vec2Face+'s pose model: a landmark image -> one feature row that conditions the decoder.

Four 3x3 stride-2 convolutions with ReLU (3 -> 32 -> 64 -> 128 -> 256 channels; 112 -> 7 pixels) are
flattened and mapped by ``linear`` to the model width, returned as (N, 1, D). The release initialises
``linear`` to zero. Where the row enters: :meth:`Vec2Face.forward_decoder` with ``cond`` fills every
masked decoder position with it (the release's ``forward_decoder(..., cond)``). Module names follow the
release's ``PoseCondModel`` (``conv1``..``conv4``, ``linear``), so ``pose_model.pth``'s ``pose_model`` entry
loads unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn

from facebench.errors import ConfigError


@dataclass
class PoseCondConfig:
    """Input size and widths of the pose model; the defaults are the release's (112 px, 768 out)."""

    input_size: int = 112
    channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    out_dim: int = 768

    def __post_init__(self) -> None:
        if self.input_size < 16:
            raise ConfigError(f"pose model input_size must be at least 16, got {self.input_size}")
        if len(self.channels) != 4 or any(int(c) < 1 for c in self.channels):
            raise ConfigError(f"pose model channels must be four positive widths, got {self.channels}")
        if self.out_dim < 1:
            raise ConfigError(f"pose model out_dim must be at least 1, got {self.out_dim}")

    @property
    def grid(self) -> int:
        """Side of the last feature map: each stride-2 convolution (kernel 3, padding 1) halves it, rounding up."""
        side = self.input_size
        for _ in range(4):
            side = (side + 1) // 2
        return side

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PoseCondConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(map(str, data)) - known)
        if unknown:
            raise ConfigError(f"unknown pose model keys: {', '.join(unknown)}")
        values = dict(data)
        for key, top in (("input_size", 1024), ("out_dim", 1 << 16)):  # stored sizes are data: typed, bounded
            if key in values and (type(values[key]) is not int or not 1 <= values[key] <= top):
                raise ConfigError(f"pose model {key} must be an integer from 1 to {top}, got {_shown(values[key])}")
        if "channels" in values:
            widths = values["channels"]
            if not (isinstance(widths, list) and all(type(c) is int and 1 <= c <= 4096 for c in widths)):
                raise ConfigError(f"pose model channels must be a list of widths from 1 to 4096, got {_shown(widths)}")
            values["channels"] = list(widths)
        return cls(**values)


def _shown(value: Any) -> str:
    """A stored value as an error line shows it: small numbers and short lists as they are, else the type."""
    if type(value) in (int, float) and abs(value) < 1e18 or isinstance(value, list) and len(repr(value)) < 80:
        return repr(value)
    return type(value).__name__


class PoseCondModel(nn.Module):
    def __init__(self, config: PoseCondConfig | None = None):
        super().__init__()
        self.config = cfg = config or PoseCondConfig()
        c1, c2, c3, c4 = cfg.channels
        self.conv1 = nn.Conv2d(3, c1, kernel_size=3, stride=2, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(c2, c3, kernel_size=3, stride=2, padding=1)
        self.relu3 = nn.ReLU()
        self.conv4 = nn.Conv2d(c3, c4, kernel_size=3, stride=2, padding=1)
        self.relu4 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(cfg.grid * cfg.grid * c4, cfg.out_dim)
        if not self.linear.weight.is_meta:
            nn.init.zeros_(self.linear.weight)  # a fresh pose model adds nothing to the masked rows
            nn.init.zeros_(self.linear.bias)

    def check_input(self, landmarks: torch.Tensor) -> None:
        s = self.config.input_size
        if landmarks.ndim != 4 or tuple(landmarks.shape[1:]) != (3, s, s):
            raise ConfigError(f"landmark images must have shape (N, 3, {s}, {s}), got {tuple(landmarks.shape)}")

    def forward(self, landmarks: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) landmark images in [-1, 1] -> (N, 1, out_dim)."""
        x = self.relu1(self.conv1(landmarks))
        x = self.relu2(self.conv2(x))
        x = self.relu3(self.conv3(x))
        x = self.relu4(self.conv4(x))
        return self.linear(self.flatten(x)).unsqueeze(1).contiguous()
