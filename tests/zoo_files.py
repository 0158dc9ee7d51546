"""Model files in the layouts insightface distributes, made from facebench backbones with random weights, for
the ``weights import`` tests: ONNX exported as arcface_torch's ``torch2onnx.py`` does (BatchNorms folded into
the convolutions) or in the MXNet-converted layout (``Sub``/``Mul`` at the start, BatchNorms kept), and MXNet
checkpoints (``model-symbol.json`` + ``model-0000.params``) in the node layout of insightface's
``fresnet.py`` (LResNet*E-IR) and ``fmobilefacenet.py`` (MobileFaceNet), written with facebench's own
``.params`` writer. An ONNX file computes the torch model on what it is fed (:func:`source_input`); an MXNet
checkpoint, fed pixels 0..255, computes the torch model on (pixels - 127.5) / 127.5 (its first convolution
is stored divided by 127.5 * 0.0078125, which the import multiplies back)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

import facebench

MX_SCALE = 0.0078125  # fresnet / fmobilefacenet: data = (data - 127.5) * 0.0078125


def randomised(arch: str, seed: int = 0, **options) -> torch.nn.Module:
    """``arch`` with every BatchNorm statistic, gamma, beta and PReLU slope random (folding them matters)."""
    torch.manual_seed(seed)
    model = facebench.create_backbone(arch, **options).eval()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if not value.dtype.is_floating_point or value.dim() == 0:
                continue
            if value.dim() > 1:  # conv and fc weights at 1 / sqrt(fan-in): activations stay O(1) at any depth
                value.normal_(0, (value[0].numel()) ** -0.5)
            elif name.endswith("running_var"):
                value.uniform_(0.5, 1.5)
            elif name.endswith(("running_mean", ".bias")):
                value.normal_(0, 0.1)
            elif "prelu" in name or name.endswith("layers.2.weight"):
                value.uniform_(0.05, 0.5)
            else:
                value.normal_(1, 0.1)
    return model


class _Pixels(torch.nn.Module):
    """An MXNet-converted model: the graph takes pixels 0..255 and normalises them itself."""

    def __init__(self, body):
        super().__init__()
        self.body = body

    def forward(self, x):
        return self.body((x - 127.5) * MX_SCALE)


def trained_on_bgr(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` that gives the same embeddings when fed BGR: its first convolution's input
    channels reversed (what a model trained on BGR images holds; nothing in the graph says so)."""
    import copy

    twin = copy.deepcopy(model)
    first = next(m for m in twin.modules() if isinstance(m, torch.nn.Conv2d))
    with torch.no_grad():
        first.weight.copy_(first.weight.flip(1))
    return twin


def export_onnx(model: torch.nn.Module, path: Path, *, pixels: bool = False, bgr: bool = False,
                external: bool = False) -> Path:
    """``torch2onnx.py``'s export (opset 11, input ``data``, batch ``None``) of a model computing what
    ``model`` computes; ``pixels``: the MXNet-converted layout (the graph normalises pixels 0..255 itself,
    BatchNorms kept); ``bgr``: a model fed BGR (:func:`trained_on_bgr`)."""
    import onnx

    size = int(model.input_size)
    model = trained_on_bgr(model) if bgr else model
    net = _Pixels(model) if pixels else model
    example = torch.rand(1, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net.eval(), example, str(path), input_names=["data"], keep_initializers_as_inputs=False,
                          opset_version=11, dynamo=False, do_constant_folding=not pixels)
    proto = onnx.load(str(path))
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "None"
    if external:
        onnx.save(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data", size_threshold=0)
    else:
        onnx.save(proto, str(path))
    return path


def source_input(x: torch.Tensor, *, pixels: bool, bgr: bool) -> torch.Tensor:
    """What the exported file is fed for facebench input ``x`` (insightface's ArcFaceONNX convention)."""
    fed = x * 127.5 + 127.5 if pixels else x
    return fed.flip(1) if bgr else fed


# ------------------------------------------------------------------------------------------- MXNet files

class Symbol:
    """An MXNet symbol under construction and the parameters it names (``arg:``/``aux:``)."""

    def __init__(self):
        self.nodes: list[dict] = [{"op": "null", "name": "data", "inputs": []}]
        self.params: dict[str, np.ndarray] = {}

    def var(self, name: str, value, aux: bool = False) -> int:
        self.nodes.append({"op": "null", "name": name, "inputs": []})
        self.params[("aux:" if aux else "arg:") + name] = np.asarray(value, np.float32)
        return len(self.nodes) - 1

    def op(self, op: str, name: str, inputs: list[int], **attrs) -> int:
        node = {"op": op, "name": name, "inputs": [[i, 0, 0] for i in inputs]}
        if attrs:
            node["attrs"] = {k: str(v) for k, v in attrs.items()}
        self.nodes.append(node)
        return len(self.nodes) - 1

    def conv(self, x: int, name: str, conv: torch.nn.Conv2d, scale: float = 1.0) -> int:
        w = self.var(f"{name}_weight", conv.weight.detach().numpy() * scale)
        return self.op("Convolution", name, [x, w], kernel=tuple(conv.kernel_size), stride=tuple(conv.stride),
                       pad=tuple(conv.padding), num_filter=conv.out_channels, num_group=conv.groups, no_bias="True")

    def bn(self, x: int, name: str, bn: torch.nn.BatchNorm1d | torch.nn.BatchNorm2d, eps: float | None,
           *, fix_gamma: bool = False, mean_shift=0.0) -> int:
        """``bn`` as an MXNet BatchNorm with ``eps`` (None: left out, MXNet's default 1e-3): the stored
        variance is adjusted so the function is the torch module's; a fixed gamma is stored as 5 (ignored)."""
        mx_eps = 1e-3 if eps is None else eps
        gamma = np.full(bn.num_features, 5.0) if fix_gamma else bn.weight.detach().numpy()
        ids = [self.var(f"{name}_gamma", gamma), self.var(f"{name}_beta", bn.bias.detach().numpy()),
               self.var(f"{name}_moving_mean", bn.running_mean.numpy() + mean_shift, aux=True),
               self.var(f"{name}_moving_var", bn.running_var.numpy() + bn.eps - mx_eps, aux=True)]
        attrs = {"fix_gamma": str(fix_gamma), "momentum": 0.9}
        if eps is not None:
            attrs["eps"] = eps
        return self.op("BatchNorm", name, [x, *ids], **attrs)

    def prelu(self, x: int, name: str, prelu: torch.nn.PReLU) -> int:
        g = self.var(f"{name}_gamma", prelu.weight.detach().numpy())
        return self.op("LeakyReLU", name, [x, g], act_type="prelu")

    def input(self) -> int:
        x = self.op("_copy", "id", [0])
        x = self.op("_minus_scalar", "_minusscalar0", [x], scalar=127.5)
        return self.op("_mul_scalar", "_mulscalar0", [x], scalar=MX_SCALE)

    def save(self, folder: Path, head: int, extra: dict[str, np.ndarray] | None = None) -> Path:
        from facebench_plugins.fr.importers.mxnet_params import save_params

        folder.mkdir(parents=True, exist_ok=True)
        arg_nodes = [i for i, n in enumerate(self.nodes) if n["op"] == "null"]
        symbol = {"nodes": self.nodes, "arg_nodes": arg_nodes, "node_row_ptr": list(range(len(self.nodes) + 1)),
                  "heads": [[head, 0, 0]], "attrs": {"mxnet_version": ["int", 10300]}}
        (folder / "model-symbol.json").write_text(json.dumps(symbol, indent=2))
        save_params(folder / "model-0000.params", {**self.params, **(extra or {})})
        return folder / "model-0000.params"


def write_fresnet(model: torch.nn.Module, folder: Path) -> Path:
    """An IResNet as insightface's ``fresnet.py`` (unit v3, output 'E') saves it: eps 2e-5, fc1 with a fixed
    gamma, an unused ``fc7_weight`` (the softmax layer a training checkpoint keeps)."""
    s = Symbol()
    first = model.conv1
    x = s.conv(s.input(), "conv0", first, scale=1 / (127.5 * MX_SCALE))
    x = s.prelu(s.bn(x, "bn0", model.bn1, 2e-5), "relu0", model.prelu)
    for stage in range(1, 5):
        for j, block in enumerate(getattr(model, f"layer{stage}")):
            name = f"stage{stage}_unit{j + 1}"
            body = s.bn(x, f"{name}_bn1", block.bn1, 2e-5)
            body = s.prelu(s.bn(s.conv(body, f"{name}_conv1", block.conv1), f"{name}_bn2", block.bn2, 2e-5),
                           f"{name}_relu1", block.prelu)
            body = s.bn(s.conv(body, f"{name}_conv2", block.conv2), f"{name}_bn3", block.bn3, 2e-5)
            if block.downsample is not None:
                short = s.bn(s.conv(x, f"{name}_conv1sc", block.downsample[0]), f"{name}_sc", block.downsample[1], 2e-5)
            else:
                short = x
            x = s.op("elemwise_add", f"_plus{stage}_{j}", [body, short])
    x = s.op("Dropout", "dropout0", [s.bn(x, "bn1", model.bn2, 2e-5)], p=0.4)
    w, b = s.var("pre_fc1_weight", model.fc.weight.detach().numpy()), s.var("pre_fc1_bias", model.fc.bias.detach().numpy())
    x = s.op("FullyConnected", "pre_fc1", [x, w, b], num_hidden=model.fc.out_features)
    head = s.bn(x, "fc1", model.features, 2e-5, fix_gamma=True)
    extra = {"arg:fc7_weight": np.zeros((10, model.fc.out_features), np.float32)}
    return s.save(folder, head, extra)


def write_fmobilefacenet(model: torch.nn.Module, folder: Path, fc_bias: bool = True) -> Path:
    """A MobileFaceNet as insightface's ``fmobilefacenet.py`` saves it (model-y1-test2): BatchNorms with MXNet's
    default eps, an embedding FullyConnected with a bias (moved into fc1's mean on import), fc1 fixed gamma."""
    from facebench_plugins.fr.backbones.mobilefacenet import ConvBlock, DepthWise, LinearBlock, Residual

    s = Symbol()
    counter = [0]

    def unit(x: int, module, name: str, scale: float = 1.0) -> int:
        if isinstance(module, ConvBlock | LinearBlock):
            conv, bn = module.layers[0], module.layers[1]
            x = s.bn(s.conv(x, f"{name}_conv2d", conv, scale), f"{name}_batchnorm", bn, None)
            return s.prelu(x, f"{name}_relu", module.layers[2]) if isinstance(module, ConvBlock) else x
        if isinstance(module, DepthWise):
            out = x
            for part, suffix in zip(module.layers, ("conv_sep", "conv_dw", "conv_proj")):
                out = unit(out, part, f"{name}_{suffix}")
            if module.residual:
                counter[0] += 1
                out = s.op("elemwise_add", f"_plus{counter[0]}", [out, x])
            return out
        if isinstance(module, Residual):
            for i, block in enumerate(module.layers):
                x = unit(x, block, f"{name}_block{i}")
            return x
        raise TypeError(type(module).__name__)

    x = s.input()
    for i, layer in enumerate(model.layers):
        x = unit(x, layer, f"layer{i}", 1 / (127.5 * MX_SCALE) if i == 0 else 1.0)
    x = unit(x, model.conv_sep, "conv_6sep")
    x = unit(x, model.features.layers[0], "conv_6dw7_7")
    linear, bn1d = model.features.layers[2], model.features.layers[3]
    bias = np.random.default_rng(1).normal(0, 0.1, linear.out_features).astype(np.float32) if fc_bias else None
    ins = [x, s.var("fc1_weight", linear.weight.detach().numpy())]
    if fc_bias:
        ins.append(s.var("pre_fc1_bias", bias))
    x = s.op("FullyConnected", "pre_fc1", ins, num_hidden=linear.out_features, no_bias=str(not fc_bias))
    head = s.bn(x, "fc1", bn1d, 2e-5, fix_gamma=True, mean_shift=0.0 if bias is None else bias)
    return s.save(folder, head)


def fixed_gamma(model: torch.nn.Module) -> torch.nn.Module:
    """The embedding BatchNorm's gamma at 1, as a file whose fc1 has ``fix_gamma`` computes it."""
    features = model.features if isinstance(model.features, torch.nn.BatchNorm1d) else model.features.layers[3]
    with torch.no_grad():
        features.weight.fill_(1.0)
    return model
