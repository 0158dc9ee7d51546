"""The few operations a face-recognition graph is made of, whatever wrote it (an ONNX exporter, MXNet).

Exporters rename things (``onnx::Conv_123`` after folding a BatchNorm into a convolution) and order nodes as
they please, so nothing here trusts a name: a reader turns its file into :class:`Op` records (kind, the
activation tensors it reads and writes, its constant parameters as float arrays, its attributes), and
:func:`linearize` follows the data from the graph's input to its output, grouping each residual unit (a
tensor read by a long branch and a short one that meet in an ``add``) into a :class:`Block`. The layouts
(``layouts.py``) map that sequence onto a facebench backbone; :func:`run` executes it directly, so an
import can be checked against the source graph itself on any file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facebench.errors import DataError
from facebench.safe_load import shown_name

#: Operation kinds: ``conv`` (weight, bias?; stride, pads (top, left, bottom, right), groups, dilation),
#: ``bn`` (gamma, beta, mean, var; eps), ``prelu`` (slope, one per channel or one for all), ``add`` (two
#: activations), ``affine`` (x * scale + shift, per channel or scalar; ``op`` names the source operator),
#: ``fc`` (weight (out, in), bias?), ``flatten`` (to (N, -1)).
KINDS = ("conv", "bn", "prelu", "add", "affine", "fc", "flatten")


@dataclass
class Op:
    kind: str
    name: str  # the node's name in the file (shown in errors)
    source: str  # the node's operator in the file (Conv, BatchNorm, ...)
    inputs: list[str]
    output: str
    params: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.source} node '{shown_name(self.name)}'"


@dataclass
class Block:
    """A residual unit: ``main`` and ``shortcut`` branches from the same tensor, summed by ``add``."""

    main: list[Op | Block]
    shortcut: list[Op | Block]
    add: Op

    @property
    def label(self) -> str:
        return f"residual block ending at {self.add.label}"


@dataclass
class Graph:
    path: Path
    input: str
    output: str
    ops: list[Op]
    format: str  # "ONNX" or "MXNet"

    def consumers(self) -> dict[str, list[Op]]:
        found: dict[str, list[Op]] = {}
        for op in self.ops:
            for name in dict.fromkeys(op.inputs):
                found.setdefault(name, []).append(op)
        return found


def _error(graph: Graph, problem: str) -> DataError:
    return DataError(graph.path, problem)


def simplify(graph: Graph) -> Graph:
    """Absorb a constant ``affine`` that directly follows a ``conv`` or ``fc`` into its weights and bias (a
    ``MatMul`` + ``Add`` bias, a ``Mul`` after a convolution): the same function, one op fewer."""
    consumers = graph.consumers()
    producer = {op.output: op for op in graph.ops}
    dropped: set[int] = set()
    for op in graph.ops:
        if op.kind != "affine" or len(op.inputs) != 1:
            continue
        prev = producer.get(op.inputs[0])
        if prev is None or prev.kind not in ("conv", "fc") or len(consumers.get(prev.output, [])) != 1:
            continue
        out = prev.params["weight"].shape[0]
        scale, shift = (np.asarray(op.params[k], np.float64).reshape(-1) for k in ("scale", "shift"))
        if scale.size not in (1, out) or shift.size not in (1, out):
            continue
        scale, shift = np.broadcast_to(scale, (out,)), np.broadcast_to(shift, (out,))
        weight = prev.params["weight"].astype(np.float64)
        bias = prev.params.get("bias")
        bias = np.zeros(out) if bias is None else bias.astype(np.float64)
        prev.params["weight"] = (weight * scale.reshape((out,) + (1,) * (weight.ndim - 1))).astype(np.float32)
        prev.params["bias"] = (bias * scale + shift).astype(np.float32)
        prev.output = op.output
        dropped.add(id(op))
    graph.ops = [op for op in graph.ops if id(op) not in dropped]
    return graph


def linearize(graph: Graph) -> list[Op | Block]:
    """The ops from the input to the output in the order the data meets them, residual units grouped."""
    consumers = graph.consumers()
    items, end = _chain(graph, consumers, graph.input, stop_at_add=False, budget=[len(graph.ops) + 1])
    if end is not None:  # pragma: no cover - a chain that is not stopping at an add always ends at the output
        raise _error(graph, f"unexpected {end.label}")
    return items


def _chain(graph: Graph, consumers: dict[str, list[Op]], tensor: str, *, stop_at_add: bool,
           budget: list[int]) -> tuple[list[Op | Block], Op | None]:
    """Follow ``tensor`` forward: ``(items, the add it stops at)``; without ``stop_at_add`` it must reach
    the graph's output."""
    items: list[Op | Block] = []
    while True:
        budget[0] -= 1
        if budget[0] < 0:
            raise _error(graph, "the graph has a cycle (a node reads its own output)")
        users = consumers.get(tensor, [])
        if tensor == graph.output and not users:
            if stop_at_add:
                raise _error(graph, f"a residual branch from '{shown_name(tensor)}' reaches the output without "
                                    "meeting its shortcut")
            return items, None
        if not users:
            raise _error(graph, f"tensor '{shown_name(tensor)}' is read by no node and is not the graph's output")
        if len(users) == 1:
            op = users[0]
            if op.kind == "add":
                if stop_at_add:
                    return items, op
                raise _error(graph, f"{op.label} adds a tensor that has no second branch")
            _single_input(graph, op, tensor)
            items.append(op)
            tensor = op.output
            continue
        if len(users) != 2:
            raise _error(graph, f"tensor '{shown_name(tensor)}' feeds {len(users)} nodes "
                                f"({', '.join(u.label for u in users[:4])}): not a residual unit")
        branches = []
        for user in users:
            if user.kind == "add":
                branches.append(([], user))
                continue
            _single_input(graph, user, tensor)
            sub, add = _chain(graph, consumers, user.output, stop_at_add=True, budget=budget)
            branches.append(([user, *sub], add))
        (first, add_a), (second, add_b) = branches
        if add_a is not add_b:
            raise _error(graph, f"the two branches from '{shown_name(tensor)}' end at different nodes "
                                f"({add_a.label}, {add_b.label})")
        if len(first) == len(second):
            raise _error(graph, f"{add_a.label}: cannot tell the residual branch from the shortcut")
        main, shortcut = (first, second) if len(first) > len(second) else (second, first)
        items.append(Block(main, shortcut, add_a))
        tensor = add_a.output


def _single_input(graph: Graph, op: Op, tensor: str) -> None:
    if op.inputs != [tensor]:
        raise _error(graph, f"{op.label} reads {len(op.inputs)} tensors where one was expected")


def walk(items: list[Op | Block]) -> Iterator[Op]:
    for item in items:
        if isinstance(item, Block):
            yield from walk(item.main)
            yield from walk(item.shortcut)
            yield item.add
        else:
            yield item


# ------------------------------------------------------------------------------------- running the graph

def run(items: list[Op | Block], x: Any) -> Any:
    """The linearized graph applied to ``x`` (a float64 torch tensor), op by op with the file's own
    parameters and attributes: the reference an imported backbone is checked against."""
    import torch
    import torch.nn.functional as F

    def const(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(array, np.float64))

    def channel(array: np.ndarray, like: torch.Tensor) -> torch.Tensor:
        value = const(array).reshape(-1)
        return value.reshape((1, -1) + (1,) * (like.dim() - 2)) if value.numel() > 1 else value.reshape(())

    for item in items:
        if isinstance(item, Block):
            x = run(item.main, x) + run(item.shortcut, x)
            continue
        p, a = item.params, item.attrs
        if item.kind == "conv":
            top, left, bottom, right = a["pads"]
            x = F.pad(x, (left, right, top, bottom))
            bias = const(p["bias"]) if p.get("bias") is not None else None
            x = F.conv2d(x, const(p["weight"]), bias, stride=a["stride"], dilation=a["dilation"], groups=a["groups"])
        elif item.kind == "bn":
            scale = channel(p["gamma"], x) / torch.sqrt(channel(p["var"], x) + a["eps"])
            x = (x - channel(p["mean"], x)) * scale + channel(p["beta"], x)
        elif item.kind == "prelu":
            x = torch.where(x >= 0, x, x * channel(p["slope"], x))
        elif item.kind == "affine":
            x = x * channel(p["scale"], x) + channel(p["shift"], x)
        elif item.kind == "flatten":
            x = torch.flatten(x, 1)
        elif item.kind == "fc":
            x = torch.flatten(x, 1) @ const(p["weight"]).T
            if p.get("bias") is not None:
                x = x + const(p["bias"])
    return x
