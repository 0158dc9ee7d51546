"""An ONNX face-recognition model as :class:`~.graph.Graph` ops, read with the ``onnx`` package only.

Nothing is executed and no runtime is needed: the protobuf is parsed (``load_external_data=False``), each
node becomes an op, and an initializer is turned into an array only when an op needs it, after its declared
shape has been checked against the bytes that hold it (a tensor claiming 10^12 elements is refused before
anything is allocated). External data (``model.onnx.data``) is read only from files inside the model's
folder; non-float weights, computed weights and unknown operators are refused, naming the node.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from facebench.errors import DataError, MissingFileError, first_line
from facebench.safe_load import inside, resolves_inside, shown_name

from .graph import Graph, Op

#: The most elements one tensor may declare (the largest FR layer, IResNet-200's fc, has 12.8M).
MAX_ELEMENTS = 1 << 31
MAX_DIMS = 8

#: ONNX TensorProto data types this reader converts: code -> (name, little-endian numpy dtype, typed field)
_TYPES = {
    1: ("FLOAT", "<f4", "float_data"),
    10: ("FLOAT16", "<f2", "int32_data"),
    11: ("DOUBLE", "<f8", "double_data"),
    7: ("INT64", "<i8", "int64_data"),
    6: ("INT32", "<i4", "int32_data"),
}
_FLOATS = {1, 10, 11}
_PASS = {"Identity", "Dropout", "Cast", "Squeeze", "Unsqueeze"}


def _type_name(code: int) -> str:
    from onnx import TensorProto

    try:
        return TensorProto.DataType.Name(code)
    except ValueError:
        return f"type {code}"


class _Tensors:
    """Initializers and Constant outputs by name, converted on first use with every size checked."""

    def __init__(self, path: Path, model: Any):
        self.path = path
        self.folder = path.parent
        self.protos: dict[str, Any] = {t.name: t for t in model.graph.initializer}
        self.cache: dict[str, np.ndarray] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.protos or name in self.cache

    def add(self, name: str, proto: Any) -> None:
        self.protos[name] = proto

    def array(self, name: str, node: str, *, floats: bool = True) -> np.ndarray:
        if name in self.cache:
            return self.cache[name]
        proto = self.protos.get(name)
        if proto is None:
            raise DataError(self.path, f"{node} reads '{shown_name(name)}' as a weight, but it is computed in "
                                       "the graph (no initializer or Constant holds it)")
        array = self._convert(proto, name, node, floats)
        self.cache[name] = array
        return array

    def _convert(self, proto: Any, name: str, node: str, floats: bool) -> np.ndarray:
        what = f"initializer '{shown_name(name)}' of {node}"
        if proto.data_type not in _TYPES or (floats and proto.data_type not in _FLOATS):
            raise DataError(self.path, f"{what} is {_type_name(proto.data_type)}; facebench imports float "
                                       "weights only (a quantized model cannot be imported)")
        dims = list(proto.dims)
        if len(dims) > MAX_DIMS or any(d < 0 for d in dims):
            raise DataError(self.path, f"{what} declares an impossible shape {dims}")
        count = int(np.prod(dims, dtype=object)) if dims else 1
        if count > MAX_ELEMENTS:
            raise DataError(self.path, f"{what} declares {count} elements (shape {dims}); refusing to allocate it")
        _, dtype, field = _TYPES[proto.data_type]
        itemsize = np.dtype(dtype).itemsize
        if proto.data_location == 1:  # EXTERNAL
            raw = self._external(proto, what, count * itemsize)
        elif proto.HasField("raw_data"):
            raw = proto.raw_data
            if len(raw) != count * itemsize:
                raise DataError(self.path, f"{what} holds {len(raw)} bytes for shape {dims} "
                                           f"({count * itemsize} expected)")
        else:
            values = getattr(proto, field)
            if len(values) != count:
                raise DataError(self.path, f"{what} holds {len(values)} values for shape {dims} ({count} expected)")
            if proto.data_type == 10:  # float16 bits stored in int32_data
                return np.asarray(values, np.uint16).view(np.float16).astype(np.float32).reshape(dims)
            array = np.asarray(values, dtype=dtype).reshape(dims)
            return array.astype(np.float32) if proto.data_type in _FLOATS else array
        array = np.frombuffer(raw, dtype=dtype).reshape(dims)
        return array.astype(np.float32) if proto.data_type in _FLOATS else array.copy()

    def _external(self, proto: Any, what: str, size: int) -> bytes:
        info = {entry.key: entry.value for entry in proto.external_data}
        location = info.get("location", "")
        target = inside(self.folder, location, file=self.path, what=f"external data of {what}")
        if not resolves_inside(target, self.folder):
            raise DataError(self.path, f"external data of {what}: '{shown_name(location)}' is a link leading out "
                                       f"of the model's folder {self.folder}")
        if not target.is_file():
            raise MissingFileError(target, f"external data file of {self.path} ({what})")
        try:
            offset = int(info.get("offset", "0"))
            length = int(info.get("length", str(size)))
        except ValueError:
            raise DataError(self.path, f"external data of {what}: offset and length must be integers") from None
        end = os.path.getsize(target)
        if offset < 0 or length != size or offset + length > end:
            raise DataError(self.path, f"external data of {what}: {length} bytes at offset {offset} of "
                                       f"{target.name} ({end} bytes) do not hold the declared {size} bytes")
        with open(target, "rb") as fh:
            fh.seek(offset)
            return fh.read(length)


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    out = {}
    for attribute in node.attribute:
        try:
            out[attribute.name] = helper.get_attribute_value(attribute)
        except Exception:  # noqa: BLE001 - an attribute of a type we never read
            out[attribute.name] = None
    return out


def load_model(path: Path) -> Any:
    """The ModelProto of ``path`` without its external data; every parse failure is one DataError."""
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError:
        from facebench.errors import UnavailableComponentError

        raise UnavailableComponentError(f"{path}: reading ONNX models needs the onnx package; install with: "
                                        "pip install 'facebench[zoo]'") from None

    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except DecodeError as exc:
        raise DataError(path, f"not an ONNX model (protobuf: {shown_name(first_line(exc))})") from None
    except (OSError, ValueError, RuntimeError) as exc:
        raise DataError(path, f"cannot read the ONNX model: {shown_name(first_line(exc))}") from None
    if not model.graph.node:
        raise DataError(path, "not an ONNX model: it holds no graph nodes")
    return model


def read_onnx(path: Path) -> tuple[Graph, dict[str, Any]]:
    """The graph of an ONNX file and what it says about itself (opset, producer)."""
    model = load_model(path)
    g = model.graph
    tensors = _Tensors(path, model)
    inputs = [i.name for i in g.input if i.name not in tensors]
    if len(inputs) != 1:
        raise DataError(path, f"the graph has {len(inputs)} inputs ({', '.join(map(shown_name, inputs[:4]))}); "
                              "a face-recognition model has one (the image)")
    if len(g.output) != 1:
        raise DataError(path, f"the graph has {len(g.output)} outputs; a face-recognition model has one "
                              "(the embedding)")
    alias: dict[str, str] = {}  # activations renamed by pass-through nodes
    ops: list[Op] = []

    def act(name: str) -> str:
        seen = 0
        while name in alias:
            name, seen = alias[name], seen + 1
            if seen > len(alias):
                raise DataError(path, "the graph has a cycle of pass-through nodes")
        return name

    for index, node in enumerate(g.node):
        label = f"{node.op_type} node '{shown_name(node.name or f'#{index}')}'"
        name = node.name or f"#{index}"
        if node.domain not in ("", "ai.onnx"):
            raise DataError(path, f"{label} is of the custom domain '{shown_name(node.domain)}'; facebench "
                                  "imports standard ONNX operators only")
        attrs = _attrs(node)
        op_type = node.op_type
        ins = [i for i in node.input]
        if not node.output:
            raise DataError(path, f"{label} has no output")
        out = node.output[0]
        if op_type == "Constant":
            value = attrs.get("value")
            if value is None:
                raise DataError(path, f"{label} holds no tensor value")
            tensors.add(out, value)
            continue
        if op_type in _PASS:
            if not ins:
                raise DataError(path, f"{label} has no input")
            if ins[0] in tensors:  # a constant passed through (deduplicated initializers)
                tensors.add(out, tensors.protos[ins[0]])
            else:
                if op_type == "Cast" and attrs.get("to") not in (1, 10, 11):
                    raise DataError(path, f"{label} casts to {_type_name(attrs.get('to') or 0)}, not a float")
                alias[out] = act(ins[0])
            continue
        ops.append(_op(path, tensors, label, name, op_type, [act(i) if i not in tensors else i for i in ins],
                       out, attrs))
    graph = Graph(path, inputs[0], act(g.output[0].name), ops, "ONNX")
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    meta = {"opset": opsets.get("ai.onnx"), "producer": f"{model.producer_name} {model.producer_version}".strip()}
    return graph, meta


def _op(path: Path, tensors: _Tensors, label: str, name: str, op_type: str, ins: list[str], out: str,
        attrs: dict[str, Any]) -> Op:
    def weight(i: int, *, optional: bool = False) -> np.ndarray | None:
        if i >= len(ins) or not ins[i]:
            if optional:
                return None
            raise DataError(path, f"{label} lacks its input {i + 1}")
        return tensors.array(ins[i], label)

    def data(i: int = 0) -> str:
        if i >= len(ins) or not ins[i] or ins[i] in tensors:
            raise DataError(path, f"{label} reads a constant where the image data was expected")
        return ins[i]

    def op(kind: str, inputs: list[str], **params: Any) -> Op:
        return Op(kind, name, op_type, inputs, out, {k: v for k, v in params.items()}, {})

    if op_type == "Conv":
        w = weight(1)
        if w.ndim != 4:
            raise DataError(path, f"{label} has a {w.ndim}-d kernel; only 2-d convolutions are imported")
        result = op("conv", [data()], weight=w, bias=weight(2, optional=True))
        pads = list(attrs.get("pads") or [0, 0, 0, 0])
        auto = attrs.get("auto_pad") or b"NOTSET"
        auto = auto.decode("ascii", "replace") if isinstance(auto, bytes) else str(auto)
        if auto not in ("NOTSET", "VALID") or len(pads) != 4:
            raise DataError(path, f"{label}: padding {auto} {pads} is not imported (explicit pads only)")
        group = attrs.get("group") or 1
        result.attrs = {"stride": tuple(attrs.get("strides") or (1, 1)), "pads": tuple(pads), "groups": int(group),
                        "dilation": tuple(attrs.get("dilations") or (1, 1))}
        return result
    if op_type == "BatchNormalization":
        result = op("bn", [data()], gamma=weight(1), beta=weight(2), mean=weight(3), var=weight(4))
        result.attrs = {"eps": float(attrs.get("epsilon", 1e-5))}
        if attrs.get("training_mode"):
            raise DataError(path, f"{label} is in training mode")
        return result
    if op_type == "PRelu":
        return op("prelu", [data()], slope=weight(1))
    if op_type == "Relu":
        return op("prelu", [data()], slope=np.zeros(1, np.float32))
    if op_type == "LeakyRelu":
        return op("prelu", [data()], slope=np.full(1, attrs.get("alpha", 0.01), np.float32))
    if op_type in ("Add", "Sub", "Mul", "Div"):
        constants = [i for i, n in enumerate(ins) if n in tensors]
        if op_type == "Add" and not constants:
            if len(ins) != 2:
                raise DataError(path, f"{label} adds {len(ins)} tensors")
            return op("add", [ins[0], ins[1]])
        if len(ins) != 2 or len(constants) != 1 or (op_type in ("Sub", "Div") and constants != [1]):
            raise DataError(path, f"{label} is not an activation {op_type.lower()} a constant; not imported")
        c = tensors.array(ins[constants[0]], label).astype(np.float64)
        one, zero = np.ones(1), np.zeros(1)
        scale, shift = {"Add": (one, c), "Sub": (one, -c), "Mul": (c, zero), "Div": (1.0 / c, zero)}[op_type]
        result = op("affine", [ins[1 - constants[0]]], scale=scale, shift=shift)
        result.attrs = {"op": op_type.lower()}
        return result
    if op_type == "Flatten":
        if attrs.get("axis", 1) != 1:
            raise DataError(path, f"{label} flattens from axis {attrs.get('axis')}; only axis 1 is imported")
        return op("flatten", [data()])
    if op_type == "Reshape":
        shape = tensors.array(ins[1], label, floats=False) if len(ins) > 1 and ins[1] in tensors else None
        if shape is None or shape.size != 2:
            raise DataError(path, f"{label} reshapes to {None if shape is None else shape.tolist()}; only a "
                                  "flatten to (N, -1) is imported")
        return op("flatten", [data()])
    if op_type == "Gemm":
        if attrs.get("transA", 0):
            raise DataError(path, f"{label} transposes its input (transA); not imported")
        w = weight(1)
        w = w if attrs.get("transB", 0) else w.T
        bias = weight(2, optional=True)
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        if bias is not None:
            bias = np.broadcast_to(bias.reshape(-1) * beta, (w.shape[0],)).astype(np.float32)
        return op("fc", [data()], weight=(w * alpha).astype(np.float32), bias=bias)
    if op_type == "MatMul":
        w = weight(1)
        if w.ndim != 2:
            raise DataError(path, f"{label} multiplies by a {w.ndim}-d tensor")
        return op("fc", [data()], weight=np.ascontiguousarray(w.T), bias=None)
    raise DataError(path, f"{label}: the operator {shown_name(op_type)} is not part of the layouts facebench "
                          "imports (Conv, BatchNormalization, PRelu, Add, Flatten, Gemm, ...)")
