"""Map a linearized source graph onto a facebench backbone's state dict, folding what differs.

What an export changes, and how it is undone exactly (in float64, stored as float32):

- a BatchNorm folded into the preceding convolution (``torch.onnx.export`` in eval mode) leaves a conv
  with a bias: facebench keeps its BatchNorm and sets it to the identity plus that bias (weight 1, mean 0,
  running_var 1 - 1e-5 so that var + eps is exactly 1);
- a BatchNorm with another epsilon (MXNet: 2e-5, or its default 1e-3) or MXNet's ``fix_gamma`` (gamma
  read as 1): the running variance or gamma is rescaled so facebench's eps 1e-5 gives the same output;
- a bias on a layer facebench has without one (MobileFaceNet's embedding Linear): moved into the following
  BatchNorm's running mean;
- the input normalisation at the graph's start (``Sub``/``Mul`` nodes, MXNet's ``_minus_scalar`` /
  ``_mul_scalar``, or what the model expects outside the graph): composed into one per-channel
  ``x * scale + shift`` in terms of facebench's input, (pixels - 127.5) / 127.5 in RGB; the scale goes into
  the first convolution's input channels (and a BGR model's channels are swapped there). A shift is refused:
  it cannot be folded into a zero-padded convolution exactly;
- PReLU slopes stored as (C, 1, 1), (1, C, 1, 1) or one shared value become facebench's (C,).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facebench.errors import DataError
from facebench.safe_load import shown_name

from .graph import Block, Graph, Op

#: facebench's BatchNorm epsilon (every backbone uses torch's default)
EPS = 1e-5
#: a running variance whose float32 sum with EPS is exactly 1.0: an identity BatchNorm
VAR_ONE = np.float32(1.0 - EPS)
assert np.float32(VAR_ONE + np.float32(EPS)) == np.float32(1.0)


@dataclass
class InputConvention:
    pixels: bool  # the graph takes pixel values 0..255 (else (pixels - 127.5) / 127.5)
    bgr: bool
    scale: np.ndarray  # per channel of the graph's input, folded into the first convolution

    def describe(self) -> str:
        order = "BGR" if self.bgr else "RGB"
        source = f"{order} pixels 0..255" if self.pixels else f"{order} (pixels - 127.5) / 127.5"
        scale = ", ".join(f"{v:.7g}" for v in np.unique(self.scale))
        return f"the source takes {source}; folded input scale {scale}"


class Cursor:
    """Items of one linear stretch of the graph, taken in order; a mismatch names what was expected."""

    def __init__(self, path: Path, items: list[Op | Block], where: str):
        self.path, self.items, self.pos, self.where = path, items, 0, where

    def peek(self) -> Op | Block | None:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def _found(self) -> str:
        item = self.peek()
        return "the end of the graph" if item is None else item.label

    def take(self, kind: str, what: str) -> Op:
        item = self.peek()
        if not isinstance(item, Op) or item.kind != kind:
            raise DataError(self.path, f"expected {what} ({self.where}), found {self._found()}")
        self.pos += 1
        return item

    def maybe(self, kind: str) -> Op | None:
        item = self.peek()
        if isinstance(item, Op) and item.kind == kind:
            self.pos += 1
            return item
        return None

    def block(self, what: str) -> Block:
        item = self.peek()
        if not isinstance(item, Block):
            raise DataError(self.path, f"expected {what} ({self.where}), found {self._found()}")
        self.pos += 1
        return item

    def end(self, what: str) -> None:
        if self.peek() is not None:
            raise DataError(self.path, f"expected {what} ({self.where}), found {self._found()}")


class Target:
    """The backbone's skeleton (on the meta device) and the state dict filled for it."""

    def __init__(self, graph: Graph, model: Any, arch: str):
        self.graph, self.model, self.arch = graph, model, arch
        self.path = graph.path
        self.expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        self.state: dict[str, np.ndarray] = {}

    def fail(self, problem: str) -> DataError:
        return DataError(self.path, problem)

    def put(self, key: str, value: np.ndarray, label: str) -> None:
        value = np.asarray(value, np.float64)
        if key not in self.expected:
            raise self.fail(f"{label}: {self.arch} has no tensor {key}")
        if tuple(value.shape) != self.expected[key]:
            raise self.fail(f"{label}: shape {tuple(value.shape)} does not fit {key} {self.expected[key]} of "
                            f"{self.arch} (another architecture or size?)")
        if not np.isfinite(value).all():
            raise self.fail(f"{label} holds values that are not finite (NaN or infinity)")
        self.state[key] = value.astype(np.float32)

    def check_conv(self, prefix: str, op: Op) -> None:
        module = self.model.get_submodule(prefix)
        pads = op.attrs["pads"]
        want = (tuple(module.stride), tuple(module.padding) * 2, module.groups, tuple(module.dilation))
        have = (tuple(op.attrs["stride"]), (pads[0], pads[1], pads[2], pads[3]), op.attrs["groups"],
                tuple(op.attrs["dilation"]))
        if have != want:
            raise self.fail(f"{op.label}: stride {have[0]}, pads {have[1]}, groups {have[2]}, dilation {have[3]} "
                            f"differ from {prefix} of {self.arch} (stride {want[0]}, pads {want[1]}, groups "
                            f"{want[2]}, dilation {want[3]})")

    def bn(self, prefix: str, op: Op | None, *, channels: int, bias: np.ndarray | None = None) -> None:
        """A BatchNorm from ``op`` (None: the identity), with ``bias`` (a preceding layer's) moved into it."""
        label = op.label if op is not None else f"the bias before {prefix}"
        if op is None:
            gamma, beta, mean, var = (np.ones(channels), np.zeros(channels), np.zeros(channels),
                                      np.full(channels, VAR_ONE, np.float64))
            if bias is not None:
                beta = np.broadcast_to(np.asarray(bias, np.float64).reshape(-1), (channels,))
        else:
            p = {k: np.asarray(op.params[k], np.float64).reshape(-1) for k in ("gamma", "beta", "mean", "var")}
            gamma, beta, mean, var = p["gamma"], p["beta"], p["mean"], p["var"]
            if bias is not None:
                mean = mean - np.asarray(bias, np.float64).reshape(-1)
            eps = float(op.attrs["eps"])
            if (var + eps <= 0).any() or eps < 0:
                raise self.fail(f"{label} has a negative variance (var + eps <= 0)")
            # var + eps must equal var' + EPS; where that would make var' negative, rescale gamma instead
            shifted = var + eps - EPS
            keep = shifted <= 0
            gamma = np.where(keep, gamma * np.sqrt((var + EPS) / (var + eps)), gamma)
            var = np.where(keep, var, shifted)
        for name, value in (("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var)):
            self.put(f"{prefix}.{name}", value, label)

    def conv_bn(self, conv_key: str, bn_key: str, conv: Op, bn: Op | None,
                input_scale: InputConvention | None = None) -> None:
        self.check_conv(conv_key, conv)
        weight = np.asarray(conv.params["weight"], np.float64)
        if input_scale is not None:
            if weight.shape[1] != 3:
                raise self.fail(f"{conv.label}: the first convolution reads {weight.shape[1]} channels, not 3")
            weight = weight * input_scale.scale.reshape(1, 3, 1, 1)
            if input_scale.bgr:
                weight = weight[:, ::-1]
        self.put(f"{conv_key}.weight", weight, conv.label)
        self.bn(bn_key, bn, channels=weight.shape[0], bias=conv.params.get("bias"))

    def prelu(self, key: str, op: Op) -> None:
        slope = np.asarray(op.params["slope"], np.float64).reshape(-1)
        channels = self.expected[f"{key}.weight"][0]
        if slope.size == 1:
            slope = np.full(channels, slope[0])
        self.put(f"{key}.weight", slope, op.label)

    def fc_bn(self, fc_key: str, bn_key: str, fc: Op, bn: Op | None, *, fc_bias: bool) -> None:
        weight, bias = fc.params["weight"], fc.params.get("bias")
        self.put(f"{fc_key}.weight", weight, fc.label)
        if fc_bias:
            self.put(f"{fc_key}.bias", np.zeros(weight.shape[0]) if bias is None else bias, fc.label)
            bias = None
        self.bn(bn_key, bn, channels=weight.shape[0], bias=bias)

    def finish(self) -> dict[str, np.ndarray]:
        for key in self.expected:
            if key.endswith("num_batches_tracked"):
                self.state[key] = np.zeros((), np.int64)
        return self.state


def input_convention(cursor: Cursor, graph: Graph, mode: str, bgr: bool) -> InputConvention:
    """Consume the graph's leading normalisation (affine ops, a BatchNorm on the image) and compose it with
    what the source expects outside the graph, in terms of facebench's input."""
    scale, shift, seen = np.ones(3), np.zeros(3), set()
    while isinstance(op := cursor.peek(), Op) and op.kind in ("affine", "bn"):
        cursor.pos += 1
        if op.kind == "affine":
            s, t = op.params["scale"], op.params["shift"]
            seen.add(op.attrs.get("op"))
        else:
            s = np.asarray(op.params["gamma"], np.float64) / np.sqrt(np.asarray(op.params["var"], np.float64)
                                                                       + op.attrs["eps"])
            t = np.asarray(op.params["beta"], np.float64) - np.asarray(op.params["mean"], np.float64) * s
        s, t = (np.asarray(v, np.float64).reshape(-1) for v in (s, t))
        if s.size not in (1, 3) or t.size not in (1, 3):
            raise DataError(graph.path, f"{op.label} normalises {max(s.size, t.size)} values per pixel; an image "
                                        "has 3 channels")
        scale, shift = scale * s, shift * s + t
    if mode == "auto":  # insightface's model_zoo rule: Sub and Mul in the graph mean it takes raw pixels
        mode = "pixels" if graph.format == "MXNet" or ({"sub", "mul"} <= seen or {"sub", "div"} <= seen) else "unit"
    pixels = mode == "pixels"
    gain, offset = (127.5, 127.5) if pixels else (1.0, 0.0)
    total_scale, total_shift = scale * gain, scale * offset + shift
    if (np.abs(total_shift) > 1e-6 * np.maximum(1.0, np.abs(total_scale))).any() or (total_scale == 0).any():
        shown = ", ".join(f"{v:.6g}" for v in total_shift)
        fed = "pixels 0..255" if pixels else "input in [-1, 1]"
        raise DataError(graph.path, f"the source's input normalisation ({fed}, then the graph's own) leaves a "
                                    f"shift of {shown} on facebench's "
                                    "(pixels - 127.5) / 127.5 input, which cannot be folded into the zero-padded "
                                    "first convolution exactly (try --input pixels or --input unit)")
    return InputConvention(pixels, bgr, np.broadcast_to(total_scale, (3,)).astype(np.float64))


# ---------------------------------------------------------------------------------------------- IResNet

def iresnet(target: Target, items: list[Op | Block], convention: dict[str, Any]) -> InputConvention:
    graph, model = target.graph, target.model
    c = Cursor(graph.path, items, "the IResNet stem")
    norm = input_convention(c, graph, convention["mode"], convention["bgr"])
    conv = c.take("conv", "the first convolution")
    target.conv_bn("conv1", "bn1", conv, c.maybe("bn"), norm)
    target.prelu("prelu", c.take("prelu", "the PReLU after the first convolution"))
    blocks: list[Block] = []
    while isinstance(c.peek(), Block):
        blocks.append(c.block("a residual block"))
    stages: list[list[Block]] = []
    for block in blocks:
        if block.shortcut or not stages:
            stages.append([])
        stages[-1].append(block)
    expected = [len(getattr(model, f"layer{i}")) for i in range(1, 5)]
    found = [len(s) for s in stages]
    if found != expected or (blocks and not blocks[0].shortcut):
        raise DataError(graph.path, f"the graph's residual blocks per stage are {tuple(found)}; {target.arch} has "
                                    f"{tuple(expected)} (another depth? pick the matching --arch)")
    for s, stage in enumerate(stages, start=1):
        for b, block in enumerate(stage):
            p = f"layer{s}.{b}"
            m = Cursor(graph.path, block.main, f"{p}, {block.label}")
            target.bn(f"{p}.bn1", m.take("bn", "the block's first BatchNorm"), channels=target.expected[f"{p}.bn1.weight"][0])
            conv1 = m.take("conv", "the block's first convolution")
            target.conv_bn(f"{p}.conv1", f"{p}.bn2", conv1, m.maybe("bn"))
            target.prelu(f"{p}.prelu", m.take("prelu", "the block's PReLU"))
            conv2 = m.take("conv", "the block's second convolution")
            target.conv_bn(f"{p}.conv2", f"{p}.bn3", conv2, m.maybe("bn"))
            m.end("the end of the block's branch")
            if block.shortcut:
                sc = Cursor(graph.path, block.shortcut, f"{p} shortcut")
                conv = sc.take("conv", "the shortcut's 1x1 convolution")
                target.conv_bn(f"{p}.downsample.0", f"{p}.downsample.1", conv, sc.maybe("bn"))
                sc.end("the end of the shortcut")
    c.where = "the IResNet head"
    target.bn("bn2", c.take("bn", "the BatchNorm after the last stage"), channels=target.expected["bn2.weight"][0])
    c.maybe("flatten")
    fc = c.take("fc", "the embedding layer (fully connected)")
    target.fc_bn("fc", "features", fc, c.maybe("bn"), fc_bias=True)
    c.end("the graph's output after the embedding BatchNorm")
    return norm


# ------------------------------------------------------------------------------------------ MobileFaceNet

def mobilefacenet(target: Target, items: list[Op | Block], convention: dict[str, Any]) -> InputConvention:
    from facebench_plugins.fr.backbones.mobilefacenet import ConvBlock, DepthWise, LinearBlock, Residual

    graph, model = target.graph, target.model

    def fill(module: Any, prefix: str, c: Cursor, norm: InputConvention | None = None) -> None:
        c.where = prefix
        if isinstance(module, ConvBlock | LinearBlock):
            conv = c.take("conv", "a convolution")
            target.conv_bn(f"{prefix}.layers.0", f"{prefix}.layers.1", conv, c.maybe("bn"), norm)
            if isinstance(module, ConvBlock):
                target.prelu(f"{prefix}.layers.2", c.take("prelu", "a PReLU"))
        elif isinstance(module, DepthWise) and module.residual:
            block = c.block("a residual depthwise block")
            if block.shortcut:
                raise DataError(graph.path, f"{block.label}: its shortcut has layers; {prefix} of {target.arch} "
                                            "adds its input unchanged")
            inner = Cursor(graph.path, block.main, prefix)
            for j, part in enumerate(module.layers):
                fill(part, f"{prefix}.layers.{j}", inner)
            inner.where = prefix
            inner.end("the end of the residual branch")
        elif isinstance(module, DepthWise | Residual):
            for j, part in enumerate(module.layers):
                fill(part, f"{prefix}.layers.{j}", c)
        else:  # pragma: no cover - the module tree is ours
            raise TypeError(type(module).__name__)

    c = Cursor(graph.path, items, "the MobileFaceNet stem")
    norm = input_convention(c, graph, convention["mode"], convention["bgr"])
    for i, layer in enumerate(model.layers):
        fill(layer, f"layers.{i}", c, norm if i == 0 else None)
    fill(model.conv_sep, "conv_sep", c)
    fill(model.features.layers[0], "features.layers.0", c)
    c.where = "the embedding head"
    c.maybe("flatten")
    fc = c.take("fc", "the embedding layer (fully connected)")
    target.fc_bn("features.layers.2", "features.layers.3", fc, c.maybe("bn"), fc_bias=False)
    c.end("the graph's output after the embedding BatchNorm")
    return norm


def layout_of(model: Any) -> Any:
    """The mapping for a backbone module, by its class (None: not importable)."""
    from facebench_plugins.fr.backbones.iresnet import IResNet
    from facebench_plugins.fr.backbones.mobilefacenet import MobileFaceNet

    if isinstance(model, IResNet):
        if any(".attn." in k for k in model.state_dict()):
            return None
        return iresnet
    if isinstance(model, MobileFaceNet):
        return mobilefacenet
    return None


def unused_note(names: list[str]) -> str:
    shown = ", ".join(shown_name(n) for n in names[:3])
    return f"{len(names)} parameters of the file are not part of the embedding graph ({shown}{', ...' if len(names) > 3 else ''})"
