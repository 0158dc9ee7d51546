"""Backbones load the published state-dict layouts strictly, both ways, and compute what the layout
facts say (checked against an independent functional forward written here from those facts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import one_thread  # noqa: F401 (fixture)
from torch import nn

import facebench

COMPAT = Path(__file__).resolve().parents[1].parent / "shared" / "design" / "compat"
if not COMPAT.is_dir():
    COMPAT = Path("/work/shared/design/compat")

LAYOUTS = {
    "iresnet50": "insightface_iresnet50.json",
    "iresnet100": "insightface_iresnet100.json",
    "se_iresnet50": "se_iresnet50.json",
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _layout(name: str) -> dict:
    path = COMPAT / LAYOUTS[name]
    if not path.is_file():
        pytest.skip(f"layout facts {path} not available")
    return json.loads(path.read_text())


class ReferenceModule(nn.Module):
    """A module holding exactly the published tensors (names, shapes, dtypes) and nothing else."""

    def __init__(self, tensors: dict[str, list]):
        super().__init__()
        for i, (name, (shape, dtype)) in enumerate(tensors.items()):
            *path, leaf = name.split(".")
            owner: nn.Module = self
            for part in path:
                if part not in owner._modules:
                    owner.add_module(part, nn.Module())
                owner = owner._modules[part]
            # a distinct value per tensor, so a tensor loaded under the wrong name is noticed
            value = torch.full(shape, (i + 1) * 1e-3 if dtype.startswith("float") else i, dtype=getattr(torch, dtype))
            if leaf.startswith("running_") or leaf == "num_batches_tracked":
                owner.register_buffer(leaf, value)
            else:
                owner.register_parameter(leaf, nn.Parameter(value))


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_strict_loading_both_ways(name):
    facts = _layout(name)
    ref = ReferenceModule(facts["tensors"])
    model = facebench.create_backbone(name)
    # counts as published
    assert len(model.state_dict()) == facts["num_tensors"]
    trainable = sum(v.numel() for k, v in model.state_dict().items()
                    if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    assert trainable == facts["num_parameters"]
    # facebench -> reference (a second reference module, filled from facebench's tensors)
    with torch.device("meta"):
        target = ReferenceModule(facts["tensors"])
    target.load_state_dict(model.state_dict(), strict=True, assign=True)
    loaded = target.state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded[key], value), key
    # reference -> facebench
    model.load_state_dict(ref.state_dict(), strict=True)
    loaded = model.state_dict()
    for key, value in ref.state_dict().items():
        assert torch.equal(loaded[key], value), key


def _bn(sd, prefix, x):
    return F.batch_norm(x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"], sd[f"{prefix}.weight"],
                        sd[f"{prefix}.bias"], training=False, eps=1e-5)


def _prelu(sd, prefix, x):
    return F.prelu(x, sd[f"{prefix}.weight"])


def functional_iresnet(sd: dict[str, torch.Tensor], x: torch.Tensor, se: bool) -> torch.Tensor:
    """IResNet inference written from the layout facts only (no facebench code)."""
    x = _prelu(sd, "prelu", _bn(sd, "bn1", F.conv2d(x, sd["conv1.weight"], padding=1)))
    stage = 1
    while f"layer{stage}.0.conv1.weight" in sd:
        block = 0
        while f"layer{stage}.{block}.conv1.weight" in sd:
            p = f"layer{stage}.{block}"
            stride = 2 if block == 0 else 1
            out = _bn(sd, f"{p}.bn1", x)
            out = F.conv2d(out, sd[f"{p}.conv1.weight"], padding=1)
            out = _prelu(sd, f"{p}.prelu", _bn(sd, f"{p}.bn2", out))
            out = _bn(sd, f"{p}.bn3", F.conv2d(out, sd[f"{p}.conv2.weight"], stride=stride, padding=1))
            short = x
            if f"{p}.downsample.0.weight" in sd:
                short = _bn(sd, f"{p}.downsample.1", F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride))
            if se and f"{p}.attn.fc1.weight" in sd:
                gate = F.adaptive_avg_pool2d(short, 1)
                gate = torch.sigmoid(F.conv2d(F.relu(F.conv2d(gate, sd[f"{p}.attn.fc1.weight"])),
                                              sd[f"{p}.attn.fc2.weight"]))
                short = short * gate
            x = out + short
            block += 1
        stage += 1
    x = torch.flatten(_bn(sd, "bn2", x), 1)
    x = F.linear(x, sd["fc.weight"], sd["fc.bias"])
    return F.batch_norm(x, sd["features.running_mean"], sd["features.running_var"], sd["features.weight"],
                        sd["features.bias"], training=False, eps=1e-5)


@pytest.mark.parametrize("name,se", [("se_iresnet50", True), ("iresnet_tiny", False), ("se_iresnet_tiny", True)])
def test_forward_matches_the_layout_facts(name, se):
    torch.manual_seed(1)
    model = facebench.create_backbone(name).eval()
    # give BatchNorms non-trivial statistics so the comparison exercises them
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d | nn.BatchNorm1d):
                mod.running_mean.normal_(0, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.bias.normal_(0, 0.1)
    size = model.input_size
    x = torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        ours = model(x)
        theirs = functional_iresnet(model.state_dict(), x, se)
    assert ours.shape == (2, 512) and ours.std() > 0
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_features_scale_is_frozen_and_input_size_sets_fc():
    model = facebench.create_backbone("iresnet_tiny", input_size=56)
    assert not model.features.weight.requires_grad
    assert model.fc.in_features == 128 * 4 * 4
    assert facebench.create_backbone("iresnet18").fc.in_features == 512 * 7 * 7
    with pytest.raises(RuntimeError):
        model(torch.zeros(1, 3, 112, 112))  # 112 px does not fit a 56 px fc


def test_dropout_defaults_follow_each_trainer():
    assert facebench.create_backbone("se_iresnet50").dropout.p == pytest.approx(0.4)
    assert facebench.create_backbone("iresnet50").dropout.p == 0.0
    assert facebench.create_backbone("se_iresnet50", dropout=0.0).dropout.p == 0.0


@pytest.mark.parametrize("name,size", [("vit_tiny", 56), ("iresnet_tiny", 56), ("se_iresnet_tiny", 56)])
def test_tiny_members_train_on_cpu(name, size):
    torch.manual_seed(0)
    model = facebench.create_backbone(name)
    x = torch.rand(4, 3, size, size) * 2 - 1
    out = model(x)
    assert out.shape == (4, 512)
    out.pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_vit_sizes_and_112_input():
    from facebench_plugins.fr.backbones.vit import FaceViT

    small = FaceViT(embed_dim=32, depth=1, num_heads=2, input_size=112)
    assert small(torch.zeros(2, 3, 112, 112)).shape == (2, 512)
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        FaceViT(embed_dim=32, depth=1, num_heads=2, input_size=100)
    vit_s = facebench.create_backbone("vit_s")
    assert vit_s.trunk.embed_dim == 384 and len(vit_s.trunk.blocks) == 12
