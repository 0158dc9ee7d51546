"""An MXNet checkpoint (``PREFIX-symbol.json`` + ``PREFIX-NNNN.params``) as :class:`~.graph.Graph` ops.

The symbol file lists nodes in topological order: ``null`` nodes are the data input and the parameters
(found in the ``.params`` file as ``arg:NAME`` / ``aux:NAME``), every other node an operator whose
``inputs`` are ``[node index, output index, version]``. Attribute values are strings (``"(3, 3)"``,
``"True"``, ``"2e-05"``), parsed here without ``eval``; an attribute left out takes MXNet's default (a
BatchNorm without ``fix_gamma`` fixes gamma at 1, its ``eps`` is 1e-3).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from facebench.errors import DataError, MissingFileError
from facebench.safe_load import expect, read_json, shown_name

from .graph import Graph, Op
from .mxnet_params import read_params

#: A symbol file larger than this is not a face-recognition network (LResNet100E-IR's is 0.4 MB).
MAX_SYMBOL_BYTES = 64 << 20
_PASS = {"Dropout", "_copy", "identity", "BlockGrad", "Cast", "_CrossDeviceCopy"}
_SCALAR = {"_minus_scalar": ("sub", -1), "_MinusScalar": ("sub", -1), "_plus_scalar": ("add", 1),
           "_PlusScalar": ("add", 1), "_mul_scalar": ("mul", 1), "_MulScalar": ("mul", 1),
           "_div_scalar": ("div", 1), "_DivScalar": ("div", 1)}
_ADD = {"elemwise_add", "_Plus", "_plus", "broadcast_add", "_add", "add_n", "ElementWiseSum"}
_TUPLE = re.compile(r"^\s*[\(\[]?\s*(-?\d+\s*(,\s*-?\d+\s*)*)?,?\s*[\)\]]?\s*$")


def checkpoint_files(src: Path) -> tuple[Path, Path]:
    """``(symbol, params)`` for a ``PREFIX-NNNN.params`` or a ``PREFIX-symbol.json`` given on the command
    line; both are siblings in one folder."""
    name = src.name
    if name.endswith("-symbol.json"):
        prefix = name[: -len("-symbol.json")]
        candidates = sorted(src.parent.glob(f"{glob_escape(prefix)}-[0-9][0-9][0-9][0-9].params"))
        if len(candidates) != 1:
            found = ", ".join(c.name for c in candidates) or "none"
            raise DataError(src, f"name the parameter file to import ({prefix}-NNNN.params beside it; found "
                                 f"{found})")
        return src, candidates[0]
    match = re.fullmatch(r"(.+)-\d{4}\.params", name)
    if not match:
        raise DataError(src, "an MXNet checkpoint is PREFIX-symbol.json + PREFIX-NNNN.params (epoch in four digits)")
    symbol = src.with_name(f"{match.group(1)}-symbol.json")
    if not symbol.is_file():
        raise MissingFileError(symbol, f"MXNet symbol file of {src.name}")
    return symbol, src


def glob_escape(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def _attr_dict(path: Path, node: dict, index: int) -> dict[str, str]:
    attrs = node.get("attrs", node.get("attr", node.get("param", {})))
    expect(path, attrs, dict, f"nodes[{index}].attrs")
    for key, value in attrs.items():
        expect(path, value, str, f"nodes[{index}].attrs.{key}")
    return attrs


class _Attrs:
    def __init__(self, path: Path, label: str, values: dict[str, str]):
        self.path, self.label, self.values = path, label, values

    def fail(self, key: str, want: str) -> DataError:
        return DataError(self.path, f"{self.label}: attribute {key}={shown_name(self.values[key])!r} is not {want}")

    def ints(self, key: str, default: tuple[int, ...]) -> tuple[int, ...]:
        if key not in self.values:
            return default
        match = _TUPLE.match(self.values[key])
        if not match:
            raise self.fail(key, "a tuple of integers")
        return tuple(int(v) for v in re.findall(r"-?\d+", self.values[key]))

    def int(self, key: str, default: int) -> int:
        values = self.ints(key, (default,))
        if len(values) != 1:
            raise self.fail(key, "an integer")
        return values[0]

    def float(self, key: str, default: float) -> float:
        if key not in self.values:
            return default
        try:
            value = float(self.values[key])
        except ValueError:
            raise self.fail(key, "a number") from None
        if not np.isfinite(value):
            raise self.fail(key, "a finite number")
        return value

    def bool(self, key: str, default: bool) -> bool:
        if key not in self.values:
            return default
        text = self.values[key].strip().lower()
        if text not in ("true", "false", "1", "0"):
            raise self.fail(key, "true or false")
        return text in ("true", "1")

    def text(self, key: str, default: str) -> str:
        return self.values.get(key, default)


def read_mxnet(src: Path) -> tuple[Graph, dict[str, Any]]:
    """The graph of an MXNet checkpoint and what it says about itself (MXNet version, files)."""
    symbol_path, params_path = checkpoint_files(src)
    symbol = read_json(symbol_path, what="MXNet symbol file", limit=MAX_SYMBOL_BYTES)
    nodes = expect(symbol_path, symbol.get("nodes"), list, "nodes")
    heads = expect(symbol_path, symbol.get("heads"), list, "heads")
    params = read_params(params_path)
    used: set[str] = set()
    kinds: list[str] = []  # per node: "data", "param", "op"
    data_nodes: list[int] = []
    ops: list[Op] = []
    alias: dict[str, str] = {}

    def ref(index: int, entry: Any, k: int) -> tuple[int, int]:
        where = f"nodes[{index}].inputs[{k}]" if index < len(nodes) else f"heads[{k}]"
        if (not isinstance(entry, list) or len(entry) not in (2, 3)
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in entry)):
            raise DataError(symbol_path, f"{where} must be [node, output, version]")
        if not 0 <= entry[0] < index:
            raise DataError(symbol_path, f"{where} refers to node {entry[0]}, not an earlier node")
        return entry[0], entry[1]

    def tensor(i: int, out: int) -> str:
        name = f"{i}:{out}"
        return alias.get(name, name)

    for index, node in enumerate(nodes):
        expect(symbol_path, node, dict, f"nodes[{index}]")
        op_name = expect(symbol_path, node.get("op"), str, f"nodes[{index}].op")
        name = expect(symbol_path, node.get("name"), str, f"nodes[{index}].name")
        inputs = expect(symbol_path, node.get("inputs", []), list, f"nodes[{index}].inputs")
        refs = [ref(index, entry, k) for k, entry in enumerate(inputs)]
        label = f"{op_name} node '{shown_name(name)}'"
        attrs = _Attrs(symbol_path, label, _attr_dict(symbol_path, node, index))
        if op_name == "null":
            if name in params:
                kinds.append("param")
            elif name == "data":
                kinds.append("data")
                data_nodes.append(index)
            else:
                kinds.append("missing")
            continue
        kinds.append("op")
        data_refs = [(i, o) for i, o in refs if kinds[i] in ("data", "op")]
        weights = [nodes[i]["name"] for i, _ in refs if kinds[i] in ("param", "missing")]
        for i, _ in refs:
            if kinds[i] == "missing":
                raise DataError(params_path, f"the parameter '{shown_name(nodes[i]['name'])}' of {label} "
                                             f"(in {symbol_path.name}) is not in the file")
        used.update(weights)
        out = f"{index}:0"
        if op_name in _PASS:
            if len(data_refs) != 1:
                raise DataError(symbol_path, f"{label} reads {len(data_refs)} data tensors")
            alias[out] = tensor(*data_refs[0])
            continue
        ins = [tensor(i, o) for i, o in data_refs]
        op = _op(symbol_path, label, name, op_name, attrs, ins, out, [params[w] for w in weights])
        ops.append(op)
    if len(data_nodes) != 1:
        raise DataError(symbol_path, f"the symbol has {len(data_nodes)} data inputs; a face-recognition model "
                                     "has one ('data')")
    if len(heads) != 1:
        raise DataError(symbol_path, f"the symbol has {len(heads)} outputs (heads); an embedding model has one")
    head = ref(len(nodes), heads[0], 0)
    graph = Graph(symbol_path, f"{data_nodes[0]}:0", tensor(*head), ops, "MXNet")
    version = symbol.get("attrs", {}).get("mxnet_version") if isinstance(symbol.get("attrs"), dict) else None
    meta = {"files": [symbol_path, params_path], "unused": sorted(set(params) - used),
            "mxnet_version": version[1] if isinstance(version, list) and len(version) == 2 else None}
    return graph, meta


def _op(path: Path, label: str, name: str, op_name: str, a: _Attrs, ins: list[str], out: str,
        weights: list[np.ndarray]) -> Op:
    def need(n: int) -> None:
        if len(weights) != n:
            raise DataError(path, f"{label} has {len(weights)} parameters where {n} were expected")

    def data() -> list[str]:
        if len(ins) != 1:
            raise DataError(path, f"{label} reads {len(ins)} data tensors where one was expected")
        return ins

    if op_name == "Convolution":
        kernel = a.ints("kernel", ())
        if len(kernel) != 2 or a.text("layout", "NCHW") not in ("NCHW", "None"):
            raise DataError(path, f"{label} is not a 2-d NCHW convolution (kernel {list(kernel)})")
        no_bias = a.bool("no_bias", False)
        need(1 if no_bias else 2)
        pad, stride = a.ints("pad", (0, 0)), a.ints("stride", (1, 1))
        dilate = a.ints("dilate", (1, 1))
        if len(pad) != 2 or len(stride) != 2 or len(dilate) != 2:
            raise DataError(path, f"{label}: stride, pad and dilate must have two values each")
        op = Op("conv", name, op_name, data(), out, {"weight": weights[0], "bias": None if no_bias else weights[1]})
        op.attrs = {"stride": stride, "pads": (pad[0], pad[1], pad[0], pad[1]), "groups": a.int("num_group", 1),
                    "dilation": dilate}
        return op
    if op_name == "BatchNorm":
        need(4)
        if a.int("axis", 1) != 1:
            raise DataError(path, f"{label} normalises axis {a.int('axis', 1)}; only channels (axis 1) are imported")
        gamma = np.ones_like(weights[0]) if a.bool("fix_gamma", True) else weights[0]
        op = Op("bn", name, op_name, data(), out, {"gamma": gamma, "beta": weights[1], "mean": weights[2],
                                                  "var": weights[3]})
        op.attrs = {"eps": a.float("eps", 1e-3)}
        return op
    if op_name == "LeakyReLU":
        act = a.text("act_type", "leaky")
        if act == "prelu":
            need(1)
            return Op("prelu", name, op_name, data(), out, {"slope": weights[0]})
        if act == "leaky":
            need(0)
            return Op("prelu", name, op_name, data(), out, {"slope": np.full(1, a.float("slope", 0.25), np.float32)})
        raise DataError(path, f"{label}: activation {shown_name(act)} is not imported (prelu, leaky, relu)")
    if op_name == "Activation":
        if a.text("act_type", "") != "relu":
            raise DataError(path, f"{label}: activation {shown_name(a.text('act_type', ''))} is not imported")
        return Op("prelu", name, op_name, data(), out, {"slope": np.zeros(1, np.float32)})
    if op_name in _SCALAR:
        kind, sign = _SCALAR[op_name]
        value = a.float("scalar", 0.0 if kind in ("add", "sub") else 1.0)
        if kind in ("mul", "div") and value == 0:
            raise DataError(path, f"{label} scales by 0")
        scale = {"mul": value, "div": 1.0 / value}.get(kind, 1.0)
        shift = sign * value if kind in ("add", "sub") else 0.0
        op = Op("affine", name, op_name, data(), out, {"scale": np.array([scale]), "shift": np.array([shift])})
        op.attrs = {"op": kind}
        return op
    if op_name in _ADD:
        if len(ins) != 2 or weights:
            raise DataError(path, f"{label} adds {len(ins)} data tensors; a residual sum adds two")
        return Op("add", name, op_name, ins, out)
    if op_name == "Flatten":
        return Op("flatten", name, op_name, data(), out)
    if op_name == "FullyConnected":
        no_bias = a.bool("no_bias", False)
        need(1 if no_bias else 2)
        if not a.bool("flatten", True):
            raise DataError(path, f"{label} has flatten=False; not imported")
        return Op("fc", name, op_name, data(), out, {"weight": weights[0], "bias": None if no_bias else weights[1]})
    raise DataError(path, f"{label}: the operator {shown_name(op_name)} is not part of the layouts facebench "
                          "imports (Convolution, BatchNorm, LeakyReLU, elemwise_add, FullyConnected, ...)")
