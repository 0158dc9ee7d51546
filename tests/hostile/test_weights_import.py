"""Hostile model files through ``facebench weights import``: ONNX protobufs and MXNet checkpoints.

Every case starts from a clean file made here (a tiny MobileFaceNet exported as arcface_torch exports, or
saved in insightface's fmobilefacenet MXNet layout with facebench's .params writer) and changes one thing:
external data leading out of the model's folder, declared sizes beyond the bytes that hold them, non-float or
non-finite weights, computed weights, unknown operators, broken .params headers, counts, shapes, type flags
and names, symbol files that are not JSON, refer forward or carry code in an attribute. Each is exit 2 with
one ``error:`` line naming the file, and neither the weights nor their record is written; nothing is
executed and nothing reaches the network.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from hostile.conftest import invoke, refused, succeeded

onnx = pytest.importorskip("onnx")

import zoo_files as zf  # noqa: E402  (tests/ is on the path, as for conftest)


def cli():
    from facebench.cli import create_cli

    return create_cli()


@pytest.fixture(scope="module")
def clean_onnx(tmp_path_factory) -> bytes:
    return zf.export_onnx(zf.randomised("mbf_tiny"), tmp_path_factory.mktemp("onnx") / "m.onnx").read_bytes()


@pytest.fixture(scope="module")
def clean_mxnet(tmp_path_factory) -> tuple[bytes, bytes]:
    folder = tmp_path_factory.mktemp("mx") / "y"
    params = zf.write_fmobilefacenet(zf.randomised("mbf_tiny"), folder)
    return params.with_name("model-symbol.json").read_bytes(), params.read_bytes()


def run(src: Path, out: Path, *extra):
    return invoke(cli(), ["weights", "import", src, "--arch", "mbf_tiny", "--out", out, *extra])


def refused_import(src: Path, tmp_path: Path, *names, extra=()) -> str:
    out = tmp_path / "out" / "w.pth"
    line = refused(run(src, out, *extra), *(names or (src,)))
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no weights, record or temporary
    return line


# ------------------------------------------------------------------------------------------------------- ONNX

def onnx_case(clean: bytes, tmp_path: Path, change) -> Path:
    path = tmp_path / "model" / "m.onnx"
    path.parent.mkdir()
    model = onnx.load_from_string(clean)
    change(model, path)
    onnx.save(model, str(path))
    return path


def first_conv_weight(model):
    node = next(n for n in model.graph.node if n.op_type == "Conv")
    return next(t for t in model.graph.initializer if t.name == node.input[1])


def external(location: str, *, offset=0, length=None):
    def change(model, path):
        tensor = first_conv_weight(model)
        size = len(tensor.raw_data)
        tensor.ClearField("raw_data")
        tensor.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(length or size))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    return change


def test_clean_onnx_imports(clean_onnx, tmp_path):
    path = onnx_case(clean_onnx, tmp_path, lambda m, p: None)
    out = tmp_path / "w.pth"
    assert "checked: the imported backbone reproduces" in succeeded(run(path, out))
    assert out.is_file() and Path(f"{out}.json").is_file()


def test_onnx_garbage(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x96\x01garbage that is no protobuf \xff\xff\xff")
    assert "not an ONNX model" in refused_import(path, tmp_path)


def test_onnx_empty_file(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"")
    assert "holds no graph nodes" in refused_import(path, tmp_path)


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../outside.bin"])
def test_onnx_external_data_leaving_the_folder(clean_onnx, tmp_path, location):
    (tmp_path / "outside.bin").write_bytes(b"\0" * 100000)
    path = onnx_case(clean_onnx, tmp_path, external(location))
    assert "leaves the folder" in refused_import(path, tmp_path)


def test_onnx_external_data_link_out_of_the_folder(clean_onnx, tmp_path):
    (tmp_path / "outside.bin").write_bytes(b"\0" * 100000)
    path = onnx_case(clean_onnx, tmp_path, external("weights.bin"))
    os.symlink(tmp_path / "outside.bin", path.parent / "weights.bin")
    assert "a link leading out of the model's folder" in refused_import(path, tmp_path)


def test_onnx_external_data_missing(clean_onnx, tmp_path):
    path = onnx_case(clean_onnx, tmp_path, external("weights.bin"))
    line = refused_import(path, tmp_path, path.parent / "weights.bin")
    assert "external data file" in line and "not found" in line


def test_onnx_external_data_beyond_its_file(clean_onnx, tmp_path):
    path = onnx_case(clean_onnx, tmp_path, external("weights.bin", offset=64))
    (path.parent / "weights.bin").write_bytes(b"\0" * 100)
    assert "do not hold the declared" in refused_import(path, tmp_path)


def test_onnx_huge_declared_shape(clean_onnx, tmp_path):
    def change(model, path):
        tensor = first_conv_weight(model)
        del tensor.dims[:]
        tensor.dims.extend([1 << 20, 1 << 20, 3, 3])
    line = refused_import(onnx_case(clean_onnx, tmp_path, change), tmp_path)
    assert "refusing to allocate" in line


def test_onnx_shape_beyond_its_bytes(clean_onnx, tmp_path):
    def change(model, path):
        tensor = first_conv_weight(model)
        tensor.dims[0] *= 2
    assert "bytes for shape" in refused_import(onnx_case(clean_onnx, tmp_path, change), tmp_path)


def test_onnx_quantized_weight(clean_onnx, tmp_path):
    def change(model, path):
        tensor = first_conv_weight(model)
        count = int(np.prod(tensor.dims))
        tensor.data_type = onnx.TensorProto.INT8
        tensor.raw_data = bytes(count)
    assert "is INT8; facebench imports float weights only" in refused_import(onnx_case(clean_onnx, tmp_path, change),
                                                                             tmp_path)


def test_onnx_weight_not_an_initializer(clean_onnx, tmp_path):
    def change(model, path):
        node = next(n for n in model.graph.node if n.op_type == "Conv")
        node.input[1] = "made_at_run_time"
    assert "computed in the graph" in refused_import(onnx_case(clean_onnx, tmp_path, change), tmp_path)


def test_onnx_non_finite_weight(clean_onnx, tmp_path):
    def change(model, path):
        tensor = first_conv_weight(model)
        values = np.frombuffer(tensor.raw_data, np.float32).copy()
        values[3] = np.nan
        tensor.raw_data = values.tobytes()
    assert "not finite" in refused_import(onnx_case(clean_onnx, tmp_path, change), tmp_path)


def test_onnx_unknown_operator_with_a_forged_name(clean_onnx, tmp_path):
    """A node name carrying a line break and a fake error line stays inside the one error line, escaped."""
    def change(model, path):
        node = next(n for n in model.graph.node if n.op_type == "PRelu")
        node.op_type = "Softsign"
        node.name = "evil\nerror: all fine"
    line = refused_import(onnx_case(clean_onnx, tmp_path, change), tmp_path)
    assert "the operator Softsign is not part of" in line and "evil\\nerror: all fine" in line


def test_onnx_custom_domain(clean_onnx, tmp_path):
    def change(model, path):
        next(n for n in model.graph.node if n.op_type == "Conv").domain = "com.example"
    assert "custom domain" in refused_import(onnx_case(clean_onnx, tmp_path, change), tmp_path)


def test_onnx_second_output(clean_onnx, tmp_path):
    def change(model, path):
        extra = model.graph.output.add()
        extra.CopyFrom(model.graph.output[0])
        extra.name = "second"
    assert "2 outputs" in refused_import(onnx_case(clean_onnx, tmp_path, change), tmp_path)


def test_onnx_output_that_nothing_reaches(clean_onnx, tmp_path):
    def change(model, path):
        model.graph.output[0].name = "nowhere"
    assert "read by no node and is not the graph's output" in refused_import(onnx_case(clean_onnx, tmp_path, change),
                                                                              tmp_path)


def test_onnx_same_padding(clean_onnx, tmp_path):
    def change(model, path):
        node = next(n for n in model.graph.node if n.op_type == "Conv")
        kept = [a for a in node.attribute if a.name != "pads"]
        del node.attribute[:]
        node.attribute.extend(kept + [onnx.helper.make_attribute("auto_pad", "SAME_UPPER")])
    assert "explicit pads only" in refused_import(onnx_case(clean_onnx, tmp_path, change), tmp_path)


def test_onnx_training_mode_batchnorm(clean_onnx, tmp_path):
    def change(model, path):  # the features BatchNorm1d is the one BatchNorm torch keeps
        node = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
        node.attribute.extend([onnx.helper.make_attribute("training_mode", 1)])
    assert "training mode" in refused_import(onnx_case(clean_onnx, tmp_path, change), tmp_path)


# ------------------------------------------------------------------------------------------------------ MXNet

def mx_case(clean: tuple[bytes, bytes], tmp_path: Path, *, symbol=None, params=None) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    text, data = clean
    (folder / "model-symbol.json").write_bytes(symbol(text) if symbol else text)
    (folder / "model-0000.params").write_bytes(params(data) if params else data)
    return folder / "model-0000.params"


def first_array(data: bytes) -> dict:
    """Offsets of the first array's fields in a V2 file."""
    ndim = struct.unpack_from("<i", data, 32)[0]
    dims_at = 36
    ctx_at = dims_at + 8 * ndim
    return {"magic": 24, "stype": 28, "ndim": 32, "dims": dims_at, "flag": ctx_at + 8}


def patch(data: bytes, at: int, fmt: str, *values) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, at, *values)
    return bytes(out)


def test_clean_mxnet_imports(clean_mxnet, tmp_path):
    succeeded(run(mx_case(clean_mxnet, tmp_path), tmp_path / "w.pth"))


def test_params_wrong_magic(clean_mxnet, tmp_path):
    src = mx_case(clean_mxnet, tmp_path, params=lambda d: patch(d, 0, "<Q", 0x113))
    assert "not an MXNet .params file (magic 0x113" in refused_import(src, tmp_path)


def test_params_shorter_than_its_header(clean_mxnet, tmp_path):
    src = mx_case(clean_mxnet, tmp_path, params=lambda d: d[:10])
    assert "shorter than its 16-byte header" in refused_import(src, tmp_path)


def test_params_count_beyond_the_file(clean_mxnet, tmp_path):
    src = mx_case(clean_mxnet, tmp_path, params=lambda d: patch(d, 16, "<Q", 1 << 60))
    assert "more than the file can hold at byte 16" in refused_import(src, tmp_path)


def test_params_truncated(clean_mxnet, tmp_path):
    src = mx_case(clean_mxnet, tmp_path, params=lambda d: d[: len(d) // 2])
    line = refused_import(src, tmp_path)
    assert "beyond the end of the file" in line or "the file ends inside" in line


def test_params_shape_beyond_the_file(clean_mxnet, tmp_path):
    src = mx_case(clean_mxnet, tmp_path, params=lambda d: patch(d, first_array(d)["dims"], "<q", 1 << 40))
    assert "beyond the end of the file" in refused_import(src, tmp_path)


def test_params_negative_dimension(clean_mxnet, tmp_path):
    src = mx_case(clean_mxnet, tmp_path, params=lambda d: patch(d, first_array(d)["dims"], "<q", -5))
    assert "negative dimension" in refused_import(src, tmp_path)


def test_params_too_many_dimensions(clean_mxnet, tmp_path):
    src = mx_case(clean_mxnet, tmp_path, params=lambda d: patch(d, first_array(d)["ndim"], "<i", 100))
    assert "declares 100 dimensions at byte 32" in refused_import(src, tmp_path)


@pytest.mark.parametrize("flag, word", [(4, "int32"), (99, "unknown type 99")])
def test_params_non_float_type_flag(clean_mxnet, tmp_path, flag, word):
    src = mx_case(clean_mxnet, tmp_path, params=lambda d: patch(d, first_array(d)["flag"], "<i", flag))
    assert f"holds {word} values" in refused_import(src, tmp_path)


def test_params_sparse_array(clean_mxnet, tmp_path):
    src = mx_case(clean_mxnet, tmp_path, params=lambda d: patch(d, first_array(d)["stype"], "<i", 2))
    assert "sparse array" in refused_import(src, tmp_path)


def test_params_name_not_utf8(clean_mxnet, tmp_path):
    def change(data: bytes) -> bytes:
        name = b"arg:layer0_conv2d_weight"
        return data.replace(name, b"arg:\xff\xfe" + name[6:], 1)
    line = refused_import(mx_case(clean_mxnet, tmp_path, params=change), tmp_path)
    assert "is not UTF-8" in line and "\\xff\\xfe" in line


def test_params_names_count_mismatch(clean_mxnet, tmp_path):
    def change(data: bytes) -> bytes:
        count = struct.unpack_from("<Q", data, 16)[0]
        at = data.index(struct.pack("<Q", count) + struct.pack("<Q", len(b"arg:layer0_conv2d_weight")))
        return patch(data, at, "<Q", count + 1)
    line = refused_import(mx_case(clean_mxnet, tmp_path, params=change), tmp_path)
    assert "arrays but" in line and "names" in line


def test_params_trailing_bytes(clean_mxnet, tmp_path):
    src = mx_case(clean_mxnet, tmp_path, params=lambda d: d + b"\0\0\0")
    assert "3 bytes follow the last name" in refused_import(src, tmp_path)


def test_params_duplicate_name(clean_mxnet, tmp_path):
    """Two arrays saved under one name (arg:w twice): which one the graph would get is undefined."""
    def change(data: bytes) -> bytes:
        array = np.zeros(3, np.float32)
        record = struct.pack("<Iii1q", 0xF993FAC9, 0, 1, 3) + struct.pack("<iii", 1, 0, 0) + array.tobytes()
        name = struct.pack("<Q", 5) + b"arg:w"
        return struct.pack("<QQQ", 0x112, 0, 2) + record * 2 + struct.pack("<Q", 2) + name * 2
    assert "the parameter 'w' is stored twice" in refused_import(mx_case(clean_mxnet, tmp_path, params=change),
                                                                 tmp_path)


def test_symbol_not_json(clean_mxnet, tmp_path):
    src = mx_case(clean_mxnet, tmp_path, symbol=lambda t: t[: len(t) // 2])
    line = refused_import(src, tmp_path, src.with_name("model-symbol.json"))
    assert "invalid JSON in MXNet symbol file" in line


def test_symbol_nodes_not_a_list(clean_mxnet, tmp_path):
    src = mx_case(clean_mxnet, tmp_path, symbol=lambda t: json.dumps({"nodes": {}, "heads": []}).encode())
    assert "nodes must be a list" in refused_import(src, tmp_path, src.with_name("model-symbol.json"))


def test_symbol_input_refers_forward(clean_mxnet, tmp_path):
    def change(text: bytes) -> bytes:
        symbol = json.loads(text)
        conv = next(i for i, n in enumerate(symbol["nodes"]) if n["op"] == "Convolution")
        symbol["nodes"][conv]["inputs"][0] = [len(symbol["nodes"]) - 1, 0, 0]
        return json.dumps(symbol).encode()
    src = mx_case(clean_mxnet, tmp_path, symbol=change)
    line = refused_import(src, tmp_path, src.with_name("model-symbol.json"))
    assert "nodes[5].inputs[0] refers to node" in line and "not an earlier node" in line


def test_symbol_attribute_holding_code(clean_mxnet, tmp_path):
    marker = tmp_path / "PWNED"

    def change(text: bytes) -> bytes:
        symbol = json.loads(text)
        conv = next(n for n in symbol["nodes"] if n["op"] == "Convolution")
        conv["attrs"]["kernel"] = f"__import__('pathlib').Path('{marker}').write_text('x')"
        return json.dumps(symbol).encode()
    src = mx_case(clean_mxnet, tmp_path, symbol=change)
    assert "is not a tuple of integers" in refused_import(src, tmp_path, src.with_name("model-symbol.json"))
    assert not marker.exists()


def test_symbol_parameter_missing_from_params(clean_mxnet, tmp_path):
    def change(text: bytes) -> bytes:
        symbol = json.loads(text)
        next(n for n in symbol["nodes"] if n["name"] == "layer0_batchnorm_beta")["name"] = "beta_nobody_saved"
        return json.dumps(symbol).encode()
    line = refused_import(mx_case(clean_mxnet, tmp_path, symbol=change), tmp_path)
    assert "the parameter 'beta_nobody_saved' of BatchNorm node 'layer0_batchnorm'" in line
    assert "is not in the file" in line


def test_symbol_unsupported_operator(clean_mxnet, tmp_path):
    def change(text: bytes) -> bytes:
        symbol = json.loads(text)
        next(n for n in symbol["nodes"] if n["op"] == "LeakyReLU")["op"] = "Pooling"
        return json.dumps(symbol).encode()
    src = mx_case(clean_mxnet, tmp_path, symbol=change)
    assert "the operator Pooling is not part of" in refused_import(src, tmp_path, src.with_name("model-symbol.json"))


def test_symbol_file_missing(clean_mxnet, tmp_path):
    src = mx_case(clean_mxnet, tmp_path)
    src.with_name("model-symbol.json").unlink()
    line = refused_import(src, tmp_path, src.with_name("model-symbol.json"))
    assert "MXNet symbol file of model-0000.params not found" in line


def test_two_epochs_beside_a_symbol(clean_mxnet, tmp_path):
    src = mx_case(clean_mxnet, tmp_path)
    src.with_name("model-0010.params").write_bytes(src.read_bytes())
    symbol = src.with_name("model-symbol.json")
    line = refused_import(symbol, tmp_path, symbol)
    assert "name the parameter file" in line and "model-0000.params, model-0010.params" in line


def test_params_without_an_epoch(clean_mxnet, tmp_path):
    src = mx_case(clean_mxnet, tmp_path)
    renamed = src.with_name("weights.params")
    src.rename(renamed)
    assert "PREFIX-symbol.json + PREFIX-NNNN.params" in refused_import(renamed, tmp_path, renamed)


def test_missing_source(tmp_path):
    src = tmp_path / "nothing.onnx"
    assert "model file not found" in refused_import(src, tmp_path)


def test_out_naming_the_source_is_refused(clean_onnx, tmp_path):
    path = onnx_case(clean_onnx, tmp_path, lambda m, p: None)
    before = path.read_bytes()
    line = refused(run(path, path), path)
    assert "names the source file itself" in line and path.read_bytes() == before
