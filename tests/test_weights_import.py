"""``facebench weights import``: ONNX files (arcface_torch exports with BatchNorms folded, MXNet-converted
graphs that normalise pixels themselves) and MXNet checkpoints (insightface's fresnet / fmobilefacenet node
layouts, facebench's own .params reader) become plain state dicts whose backbone gives the embedding of the
model the file was made from; the MobileFaceNet backbone has arcface_torch's state-dict layout.

No insightface file can be fetched here: the files are made by ``tests/zoo_files.py`` from facebench
backbones with random weights, in the layouts insightface distributes (benchmarks/parity/onnx_import.py
compares the same import with onnxruntime on the original file)."""

from __future__ import annotations

import hashlib
import json
import shlex
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import zoo_files as zf
from click.testing import CliRunner
from conftest import one_thread  # noqa: F401 (fixture)

import facebench
from facebench.cli import create_cli
from facebench.safe_load import load_state_dict

pytest.importorskip("onnx")
pytestmark = pytest.mark.usefixtures("one_thread")

COMPAT = Path(__file__).resolve().parent / "data" / "compat"


def run_cli(*args) -> tuple[int, str]:
    result = CliRunner().invoke(create_cli(), [str(a) for a in args])
    return result.exit_code, result.output


def imported(out: Path, arch: str, **options) -> torch.nn.Module:
    """The written file loaded strictly, as a user would load it."""
    model = facebench.create_backbone(arch, **options).eval()
    model.load_state_dict(load_state_dict(out), strict=True)
    return model


def assert_same_embeddings(model: torch.nn.Module, reference, *, pixels=False, bgr=False, tol=1e-5) -> float:
    """The imported backbone on facebench input vs the source on what the file is fed, 4 random faces."""
    size = int(model.input_size)
    x = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        ours = model(x)
        theirs = reference(zf.source_input(x, pixels=pixels, bgr=bgr))
    relative = float((ours - theirs).abs().max() / theirs.abs().max())
    assert relative < tol, relative
    return relative


def source_model(arch: str, *, pixels=False):
    """A randomised backbone and the function its exported file computes on what the file is fed."""
    model = zf.randomised(arch)
    return model, (zf._Pixels(model) if pixels else model).eval()


# ------------------------------------------------------------------------------------------------------- ONNX

@pytest.mark.parametrize("arch", ["iresnet_tiny", "mbf_tiny"])
def test_arcface_torch_export_imports_by_topology(arch, tmp_path):
    """torch2onnx's export folds every conv-BN pair (initializers renamed onnx::Conv_*); the import maps
    them by their place in the graph and gives the source model's embeddings to 1e-5."""
    import onnx

    model, reference = source_model(arch)
    src = zf.export_onnx(model, tmp_path / f"{arch}.onnx")
    names = [t.name for t in onnx.load(str(src)).graph.initializer]
    assert any(n.startswith("onnx::Conv_") for n in names)  # BN folded, names gone
    out = tmp_path / "w" / f"{arch}.pth"
    code, output = run_cli("weights", "import", src, "--arch", arch, "--out", out)
    assert code == 0, output
    assert "checked: the imported backbone reproduces the source graph" in output
    assert_same_embeddings(imported(out, arch), reference)
    record = json.loads(Path(f"{out}.json").read_text())
    assert record["arch"] == arch and record["format"] == "ONNX" and record["input_is_pixels"] is False
    assert record["sources"] == [{"file": src.name, "bytes": src.stat().st_size,
                                  "sha256": hashlib.sha256(src.read_bytes()).hexdigest()}]
    assert record["check"]["max_relative_difference"] < 1e-5


def test_mxnet_converted_onnx_takes_pixels_and_keeps_batchnorms(tmp_path):
    """A graph starting with Sub 127.5 and Mul 0.0078125 (insightface's rule: it takes pixels 0..255) with
    BatchNorms kept: the normalisation is folded into conv1 and the embeddings are the source's."""
    import onnx

    model, reference = source_model("iresnet_tiny", pixels=True)
    src = zf.export_onnx(model, tmp_path / "converted.onnx", pixels=True)
    ops = [n.op_type for n in onnx.load(str(src)).graph.node]
    assert {"Sub", "Mul"} <= set(ops) and ops.count("BatchNormalization") == 19
    out = tmp_path / "converted.pth"
    code, output = run_cli("weights", "import", src, "--arch", "iresnet_tiny", "--out", out)
    assert code == 0, output
    assert "pixels 0..255" in output and "0.9960938" in output  # 127.5 * 0.0078125
    assert_same_embeddings(imported(out, "iresnet_tiny"), reference, pixels=True)
    # told that the graph is fed (pixels - 127.5) / 127.5, the Sub leaves a shift that cannot be folded
    code, output = run_cli("weights", "import", src, "--arch", "iresnet_tiny", "--out", tmp_path / "x.pth",
                           "--input", "unit")
    assert code == 2 and "cannot be folded" in output and not (tmp_path / "x.pth").exists()


def test_bgr_source(tmp_path):
    """A model fed BGR: --bgr swaps conv1's input channels so the backbone takes RGB; without it the
    embeddings are another model's."""
    model, _ = source_model("mbf_tiny")
    src = zf.export_onnx(model, tmp_path / "bgr.onnx", bgr=True)

    def reference(x):  # the file's model on BGR input is the source model on RGB
        return model(x.flip(1))

    for flag, out in (["--bgr"], tmp_path / "bgr.pth"), ([], tmp_path / "rgb.pth"):
        code, output = run_cli("weights", "import", src, "--arch", "mbf_tiny", "--out", out, *flag)
        assert code == 0, output
    assert_same_embeddings(imported(tmp_path / "bgr.pth", "mbf_tiny"), reference, bgr=True)
    with pytest.raises(AssertionError):
        assert_same_embeddings(imported(tmp_path / "rgb.pth", "mbf_tiny"), reference, bgr=True, tol=1e-3)


def test_external_data_inside_the_folder(tmp_path):
    """Initializers in model.onnx.data beside the model (the torch.onnx default for large models) are read."""
    model, reference = source_model("iresnet_tiny")
    src = zf.export_onnx(model, tmp_path / "ext.onnx", external=True)
    assert (tmp_path / "ext.onnx.data").stat().st_size > src.stat().st_size
    code, output = run_cli("weights", "import", src, "--arch", "iresnet_tiny", "--out", tmp_path / "ext.pth")
    assert code == 0, output
    assert_same_embeddings(imported(tmp_path / "ext.pth", "iresnet_tiny"), reference)


def test_imported_weights_load_as_a_feature_extractor(tmp_path):
    """What ``evaluate --model W.pth --backbone NAME`` builds: the registered extractor loads it strictly."""
    from facebench.pluginmanager import registry

    model, reference = source_model("mbf_tiny")
    out = tmp_path / "mbf.pth"
    assert run_cli("weights", "import", zf.export_onnx(model, tmp_path / "m.onnx"), "--arch", "mbf_tiny",
                   "--out", out)[0] == 0
    extractor = registry("feature_extractor").create("mbf_tiny", weights=str(out))
    faces = np.random.default_rng(0).integers(0, 256, (3, 56, 56, 3), dtype=np.uint8)
    raw = extractor.embed(faces, raw=True)
    with torch.no_grad():
        expected = reference(torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 127.5 - 1).numpy()
    assert np.abs(raw - expected).max() / np.abs(expected).max() < 1e-5


def test_wrong_architecture_is_one_line(tmp_path):
    """An IResNet file imported as a deeper IResNet or as a MobileFaceNet says what differs."""
    src = zf.export_onnx(zf.randomised("iresnet_tiny"), tmp_path / "t.onnx")
    code, output = run_cli("weights", "import", src, "--arch", "iresnet_tiny", "--out", tmp_path / "a.pth",
                           "--no-check")
    assert code == 0, output
    deeper = zf.export_onnx(zf.randomised("iresnet_tiny", layers=(1, 2, 1, 1)), tmp_path / "deeper.onnx")
    code, output = run_cli("weights", "import", deeper, "--arch", "iresnet_tiny", "--out", tmp_path / "b.pth")
    assert code == 2 and "residual blocks per stage are (1, 2, 1, 1); iresnet_tiny has (1, 1, 1, 1)" in output
    code, output = run_cli("weights", "import", src, "--arch", "mbf_tiny", "--out", tmp_path / "c.pth")
    assert code == 2 and output.startswith(f"error: {src}:") and len(output.strip().splitlines()) == 1
    code, output = run_cli("weights", "import", src, "--arch", "vit_tiny", "--out", tmp_path / "d.pth")
    assert code == 2 and "backbone 'vit_tiny' has no importer" in output and "mbf_tiny" in output
    code, output = run_cli("weights", "import", tmp_path / "missing.onnx", "--arch", "iresnet50", "--out",
                           tmp_path / "e.pth")
    assert code == 2 and output.strip() == f"error: {tmp_path / 'missing.onnx'}: model file not found (an ONNX " \
                                           "model or an MXNet PREFIX-NNNN.params)"
    assert sorted(p.name for p in tmp_path.glob("*.pth*")) == ["a.pth", "a.pth.json"]


# ------------------------------------------------------------------------------------------------------ MXNet

def test_fresnet_checkpoint(tmp_path):
    """An LResNet*E-IR checkpoint (eps 2e-5, fc1 with fix_gamma and a stored gamma of 5 that MXNet ignores,
    an fc7 softmax weight left over from training): imported from the .params or the -symbol.json."""
    model = zf.fixed_gamma(zf.randomised("iresnet_tiny"))
    params = zf.write_fresnet(model, tmp_path / "model-r-tiny")
    for i, src in enumerate((params, params.with_name("model-symbol.json"))):
        out = tmp_path / f"r{i}.pth"
        code, output = run_cli("weights", "import", src, "--arch", "iresnet_tiny", "--out", out)
        assert code == 0, output
        assert "note: 1 parameters of the file are outside the embedding graph and were left out (fc7_weight)" in output
        assert_same_embeddings(imported(out, "iresnet_tiny"), model)
    record = json.loads((tmp_path / "r0.pth.json").read_text())
    assert [s["file"] for s in record["sources"]] == ["model-symbol.json", "model-0000.params"]
    assert record["format"] == "MXNet" and record["input_is_pixels"] is True and record["unused"] == ["fc7_weight"]


def test_fmobilefacenet_checkpoint(tmp_path):
    """A MobileFaceNet as model-y1-test2 is saved: BatchNorms at MXNet's default eps (1e-3, left out of
    the symbol), the embedding FullyConnected with a bias that facebench's Linear lacks (moved into the
    BatchNorm). (The grouped-conv first stage of model-y1-test2 itself: test_help_examples_run_as_printed.)"""
    model = zf.fixed_gamma(zf.randomised("mbf_tiny"))
    params = zf.write_fmobilefacenet(model, tmp_path / "y")
    symbol = json.loads(params.with_name("model-symbol.json").read_text())
    assert all("eps" not in n.get("attrs", {}) for n in symbol["nodes"] if n["name"].endswith("_batchnorm"))
    assert any(n["name"] == "pre_fc1_bias" for n in symbol["nodes"])
    out = tmp_path / "y.pth"
    code, output = run_cli("weights", "import", params, "--arch", "mbf_tiny", "--out", out)
    assert code == 0, output
    assert_same_embeddings(imported(out, "mbf_tiny"), model)
    # a first stage of one grouped conv does not fit mbf_tiny's residual first stage
    other = zf.write_fmobilefacenet(zf.randomised("mbf_tiny", blocks=(1, 1, 1, 1)), tmp_path / "other")
    code, output = run_cli("weights", "import", other, "--arch", "mbf_tiny", "--out", tmp_path / "o.pth")
    assert code == 2 and "expected a residual depthwise block (layers.1.layers.0), found Convolution node" in output


def test_params_reader_reads_every_generation(tmp_path):
    """V2 (MXNet 1.x), V3 (NumPy shapes), V1 and the legacy layout (uint32 ndim and dims, no magic), in
    float32, float64 and float16: the same arrays come back, as float32."""
    from facebench_plugins.fr.importers.mxnet_params import V1_MAGIC, V3_MAGIC, read_params, save_params

    rng = np.random.default_rng(0)
    arrays = {"arg:w": rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "aux:m": rng.normal(size=5),
              "arg:h": rng.normal(size=(2, 3)).astype(np.float16)}
    save_params(tmp_path / "v2.params", arrays)
    expected = {k.split(":")[1]: v.astype(np.float32) for k, v in arrays.items()}
    got = read_params(tmp_path / "v2.params")
    assert list(got) == ["w", "m", "h"] and all(np.array_equal(got[k], expected[k]) for k in expected)

    def record(array: np.ndarray, generation: str) -> bytes:
        flag = {np.float32: 0, np.float64: 1, np.float16: 2}[array.dtype.type]
        head = {"v3": struct.pack(f"<Iii{array.ndim}q", V3_MAGIC, 0, array.ndim, *array.shape),
                "v1": struct.pack(f"<Ii{array.ndim}q", V1_MAGIC, array.ndim, *array.shape),
                "legacy": struct.pack(f"<I{array.ndim}I", array.ndim, *array.shape)}[generation]
        return head + struct.pack("<iii", 1, 0, flag) + array.tobytes()

    for generation in ("v3", "v1", "legacy"):
        body = b"".join(record(a, generation) for a in arrays.values())
        names = b"".join(struct.pack("<Q", len(n)) + n.encode() for n in arrays)
        path = tmp_path / f"{generation}.params"
        path.write_bytes(struct.pack("<QQQ", 0x112, 0, len(arrays)) + body + struct.pack("<Q", len(arrays)) + names)
        got = read_params(path)
        assert all(np.array_equal(got[k], expected[k]) for k in expected), generation


# ------------------------------------------------------------------------------------------- MobileFaceNet

@pytest.mark.parametrize("name", ["mbf", "mbf_large"])
def test_mobilefacenet_has_arcface_torch_layout(name):
    """Names, shapes and counts of arcface_torch's get_mbf / get_mbf_large state dicts (the manifest was
    read from insightface's module): strict loading both ways, each tensor landing under its own name."""
    facts = json.loads((COMPAT / f"arcface_torch_{name}.json").read_text())
    model = facebench.create_backbone(name)
    state = model.state_dict()
    assert list(state) == list(facts["tensors"]) and len(state) == facts["num_tensors"]
    assert {k: [list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()} == facts["tensors"]
    trainable = sum(v.numel() for k, v in state.items()
                    if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert trainable == facts["num_parameters"]
    marked = {k: torch.full(v.shape, (i + 1) * 1e-3).to(v.dtype) for i, (k, v) in enumerate(state.items())}
    model.load_state_dict(marked, strict=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in marked.items())


def test_mobilefacenet_forward_and_registration():
    out = CliRunner().invoke(create_cli(), ["plugins", "--kind", "backbone"]).output
    assert all(name in out for name in ("mbf ", "mbf_large", "mbf_y1", "mbf_tiny"))
    for name, size, dim in (("mbf_tiny", 56, 512), ("mbf_y1", 112, 128)):
        model = facebench.create_backbone(name).eval()
        with torch.no_grad():
            assert tuple(model(torch.zeros(2, 3, size, size)).shape) == (2, dim)
    y1 = facebench.create_backbone("mbf_y1").state_dict()
    assert tuple(y1["layers.0.layers.0.weight"].shape) == (64, 3, 3, 3)  # model-y1-test2: 64 channels
    assert tuple(y1["features.layers.2.weight"].shape) == (128, 512)


# ---------------------------------------------------------------------------------------- --help examples

def test_help_examples_run_as_printed(tmp_path, monkeypatch):
    """The MobileFaceNet example of ``weights import --help`` runs as printed on a full-size model-y1-test2
    layout made here (the zoo files themselves cannot be fetched; the others are parsed by test_examples)."""
    import click

    cli = create_cli()
    command = cli.get_command(click.Context(cli), "weights").get_command(click.Context(cli), "import")
    line = next(line.strip() for line in command.epilog.splitlines() if "mbf_y1" in line)
    argv = shlex.split(line)[1:]
    monkeypatch.chdir(tmp_path)
    model = zf.fixed_gamma(zf.randomised("mbf_y1"))
    zf.write_fmobilefacenet(model, tmp_path / "model-y1-test2")
    result = CliRunner().invoke(create_cli(), argv)
    assert result.exit_code == 0, result.output
    assert_same_embeddings(imported(tmp_path / "mbf_y1.pth", "mbf_y1"), model)
