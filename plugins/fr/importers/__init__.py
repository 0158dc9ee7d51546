"""``facebench weights import``: insightface's distributed models (ONNX, MXNet checkpoints) as plain
facebench state dicts, without onnxruntime or MXNet.

A source file is read into graph ops (``onnx_graph.py``, ``mxnet_symbol.py`` + ``mxnet_params.py``),
followed from input to output (``graph.py``), mapped onto the backbone with every layout difference folded
(``layouts.py``), loaded into the backbone strictly, checked against the source graph executed op by op on
a random face-sized input, and written atomically with a sidecar ``OUT.json`` recording where it came from.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: what ``--input`` accepts: auto (insightface's rule), pixels (0..255), unit ((pixels - 127.5) / 127.5)
INPUT_MODES = ("auto", "pixels", "unit")
#: the largest relative difference between the imported backbone and the source graph an import accepts
TOLERANCE = 1e-4


def source_format(src: Path) -> str:
    name = src.name
    return "MXNet" if name.endswith((".params", "-symbol.json")) else "ONNX"


def read_graph(src: Path) -> tuple[Any, dict[str, Any]]:
    """The source's graph and facts about it, for an ONNX file or an MXNet checkpoint."""
    from facebench.errors import MissingFileError

    if not src.is_file():
        raise MissingFileError(src, "model file", "an ONNX model or an MXNet PREFIX-NNNN.params")
    if source_format(src) == "MXNet":
        from .mxnet_symbol import read_mxnet

        return read_mxnet(src)
    from .onnx_graph import read_onnx

    graph, meta = read_onnx(src)
    meta["files"] = [src]
    return graph, meta


def convert(src: str | os.PathLike, arch: str, *, mode: str = "auto", bgr: bool = False,
            check: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(state dict of torch tensors, info)`` for ``src`` mapped onto backbone ``arch``."""
    import numpy as np
    import torch

    from facebench.errors import ConfigError, DataError
    from facebench.pluginmanager import registry
    from facebench.safe_load import state_dict_mismatch

    from .graph import linearize, simplify
    from .layouts import Target, layout_of

    if mode not in INPUT_MODES:
        raise ConfigError(f"--input must be one of {', '.join(INPUT_MODES)}, got {mode!r}")
    src = Path(src)
    with torch.device("meta"):
        skeleton = registry("backbone").create(arch)
    layout = layout_of(skeleton)
    if layout is None:
        raise ConfigError(f"backbone '{arch}' has no import layout (importable: IResNet and MobileFaceNet "
                          "backbones, see facebench weights import --help)")
    graph, meta = read_graph(src)
    items = linearize(simplify(graph))
    target = Target(graph, skeleton, arch)
    norm = layout(target, items, {"mode": mode, "bgr": bgr})
    state = target.finish()
    problem = state_dict_mismatch(skeleton.state_dict(), state)
    if problem:
        raise DataError(src, f"does not fill backbone '{arch}': {problem}")
    tensors = {k: torch.from_numpy(np.array(state[k], order="C")) for k in skeleton.state_dict()}
    model = registry("backbone").create(arch)
    model.load_state_dict(tensors, strict=True)
    info: dict[str, Any] = {"arch": arch, "format": graph.format, "input": norm.describe(),
                            "pixels": norm.pixels, "bgr": norm.bgr, "tensors": len(tensors),
                            "files": [Path(f) for f in meta.pop("files")], **meta}
    if check:
        info["check"] = check_against_graph(model, items, norm, src)
    return tensors, info


def check_against_graph(model: Any, items: list, norm: Any, src: Path, seed: int = 0) -> dict[str, Any]:
    """Run the imported backbone (float32) and the source graph (op by op, float64) on the same random input; a
    relative difference above :data:`TOLERANCE` refuses the import."""
    import torch

    from facebench.errors import DataError

    from .graph import run

    size = int(getattr(model, "input_size", 112))
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1
    source_input = x * 127.5 + 127.5 if norm.pixels else x
    if norm.bgr:
        source_input = source_input.flip(1)
    model.eval()
    with torch.no_grad():  # the backbone as it will run (float32), the graph in float64
        mine = model(x.float()).double()
        reference = run(items, source_input)
    if tuple(reference.shape) != tuple(mine.shape):
        raise DataError(src, f"the graph gives an output of shape {tuple(reference.shape)}, the backbone "
                              f"{tuple(mine.shape)}")
    relative = float((mine - reference).abs().max() / reference.abs().max().clamp_min(1e-12))
    if not relative <= TOLERANCE:
        raise DataError(src, f"the imported backbone differs from the source graph by {relative:.3g} (relative) "
                             f"on a random input; not written")
    return {"max_relative_difference": relative, "input": f"1 random {size}x{size} input in [-1, 1], seed {seed}"}


def source_files(src: Path) -> list[Path]:
    """The files an import reads: the ONNX file, or an MXNet checkpoint's symbol and parameter files
    (those that exist: a missing one is named by the import itself)."""
    from facebench.errors import MissingFileError

    if not src.is_file():
        raise MissingFileError(src, "model file", "an ONNX model or an MXNet PREFIX-NNNN.params")
    if source_format(src) == "MXNet":
        from .mxnet_symbol import checkpoint_files

        return [f for f in checkpoint_files(src) if f.is_file()]
    return [src]


def import_weights(src: str | os.PathLike, *, arch: str, out: str | os.PathLike, mode: str = "auto",
                   bgr: bool = False, check: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Convert ``src`` for backbone ``arch`` and write ``out`` (a plain state dict) and ``out.json``
    (provenance: source files and their sha256, the input convention folded, the check, and the record of
    the rerun contract, :mod:`facebench.rerun`: the same import again is a no-op, returning the record with
    ``already_complete``; another into the same ``out`` is refused unless ``overwrite``)."""
    import torch

    from facebench import __version__
    from facebench.atomic import atomic_path
    from facebench.errors import ConfigError
    from facebench.provenance import sha256_file
    from facebench.rerun import FINISHED, Rerun, parameters
    from facebench.safe_load import read_json

    src, out = Path(src), Path(out)
    files = source_files(src)
    if any(out.resolve() == f.resolve() for f in files):
        raise ConfigError(f"{out}: --out names the source file itself; choose another name")
    rerun = Rerun(out, command="weights import", what="weights file", folder=False, outputs=[out.name],
                  params=parameters({"arch": arch, "input": mode, "bgr": bgr, "check": check},
                                    inputs={f.name: f for f in files}),
                  overwrite=overwrite, resumable=False)
    if rerun.check() == FINISHED:
        record = read_json(rerun.record_path, what="import record")
        return {**record, "out": out, "record": rerun.record_path, "already_complete": True}
    tensors, info = convert(src, arch, mode=mode, bgr=bgr, check=check)
    files = info.pop("files")
    if any(out.resolve() == f.resolve() for f in files):
        raise ConfigError(f"{out}: --out names the source file itself; choose another name")
    record = {
        "facebench_import": 1, "facebench_version": __version__, "arch": arch, "format": info["format"],
        "sources": [{"file": f.name, "bytes": f.stat().st_size, "sha256": sha256_file(f)} for f in files],
        "input": info["input"], "input_is_pixels": info["pixels"], "input_is_bgr": info["bgr"],
        **{k: info[k] for k in ("opset", "producer", "mxnet_version", "unused", "check") if info.get(k) is not None},
    }
    with rerun.writing(), atomic_path(out, "imported weights") as tmp_weights:
        torch.save(tensors, tmp_weights)
    rerun.finish(record=record)
    info.update(out=out, record=rerun.record_path, sources=record["sources"])
    return info


def sidecar_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".json")
