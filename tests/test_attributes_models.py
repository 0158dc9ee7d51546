"""Attribute models for AttrOP: SixDRepNet layout and angle maths, MagFace quality as a feature norm."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from facebench import registry
from facebench.errors import DataError, FacebenchError


def _expected_b1g2_layout():
    """RepVGG-B1g2 in deploy form, from its published description: blocks (4, 6, 16, 1), widths
    64x(2, 2, 2, 4) with a 64-wide stem, groups of 2 on every even-numbered block (2..26)."""
    shapes = {"layer0.rbr_reparam.weight": (64, 3, 3, 3), "layer0.rbr_reparam.bias": (64,)}
    cin, number = 64, 1
    for stage, (count, width) in enumerate(zip((4, 6, 16, 1), (128, 256, 512, 2048)), start=1):
        for i in range(count):
            groups = 2 if number % 2 == 0 else 1
            shapes[f"layer{stage}.{i}.rbr_reparam.weight"] = (width, cin // groups, 3, 3)
            shapes[f"layer{stage}.{i}.rbr_reparam.bias"] = (width,)
            cin, number = width, number + 1
    shapes["linear_reg.weight"] = (6, 2048)
    shapes["linear_reg.bias"] = (6,)
    return shapes


def test_sixdrepnet_matches_the_released_layout_and_loads_strictly_both_ways(tmp_path):
    from facebench_plugins.attributes.sixdrepnet import SixDRepNet

    expected = _expected_b1g2_layout()
    model = SixDRepNet()
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert own == expected
    assert sum(math.prod(s) for s in expected.values()) == 39_323_398  # RepVGG-B1g2 41.36M minus the 1000-way head
    # a file built from the layout facts alone (as the release stores it, a plain state dict) loads strictly
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=gen) * 0.01 for k, s in expected.items()}
    torch.save(state, tmp_path / "6DRepNet_300W_LP_AFLW2000.pth")
    pose = registry("feature_extractor").create("sixdrepnet", weights=tmp_path / "6DRepNet_300W_LP_AFLW2000.pth")
    for k, v in pose.model.state_dict().items():
        assert torch.equal(v, state[k])
    # ... and the model's own state dict saved back loads into a fresh model (DataParallel prefix tolerated)
    torch.save({f"module.{k}": v for k, v in pose.model.state_dict().items()}, tmp_path / "again.pth")
    again = registry("feature_extractor").create("sixdrepnet", weights=tmp_path / "again.pth")
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(again.forward_tensor(x), pose.forward_tensor(x))


def test_sixdrepnet_refuses_mismatched_or_missing_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEBENCH_WEIGHTS", str(tmp_path / "empty-weights-dir"))
    expected = _expected_b1g2_layout()
    state = {k: torch.zeros(s) for k, s in expected.items()}
    state["linear_reg.weight"] = torch.zeros(3, 2048)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(DataError, match=r"1 shape mismatch \(linear_reg.weight \(3, 2048\) != \(6, 2048\)\)"):
        registry("feature_extractor").create("sixdrepnet", weights=tmp_path / "bad.pth")
    with pytest.raises(FacebenchError, match="6DRepNet_300W_LP_AFLW2000.pth: weights file not found .SixDRepNet"):
        registry("feature_extractor").create("sixdrepnet")
    with pytest.raises(FacebenchError, match="nothere.pth: weights file not found"):
        registry("feature_extractor").create("sixdrepnet", weights=tmp_path / "nothere.pth")


def _rotation(pitch, yaw, roll):
    """R = Rz(roll) Ry(yaw) Rx(pitch), angles in degrees (the convention of the 300W-LP labels)."""
    x, y, z = np.radians([pitch, yaw, roll])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return rz @ ry @ rx


def test_6d_to_rotation_to_euler_recovers_the_angles():
    from facebench_plugins.attributes.sixdrepnet import euler_from_rotation, rotation_from_6d

    rng = np.random.default_rng(0)
    angles = rng.uniform(-80, 80, size=(64, 3))
    mats = np.stack([_rotation(*a) for a in angles])
    # the network's 6 outputs are the first two columns, in any scale and not exactly orthogonal
    six = np.concatenate([mats[:, :, 0] * 3.0, mats[:, :, 1] + 0.2 * mats[:, :, 0]], axis=1)
    rot = rotation_from_6d(torch.tensor(six, dtype=torch.float64))
    np.testing.assert_allclose(rot.numpy(), mats, atol=1e-9)
    np.testing.assert_allclose(euler_from_rotation(rot).numpy(), angles, atol=1e-6)


def test_tiny_pose_model_is_differentiable_with_both_preprocessings():
    for preprocess in ("vec2face", "imagenet"):
        pose = registry("feature_extractor").create("sixdrepnet-tiny", preprocess=preprocess)
        x = (torch.rand(3, 3, 32, 32) * 2 - 1).requires_grad_(True)
        angles = pose.forward_tensor(x)
        assert angles.shape == (3, 3) and torch.isfinite(angles).all()
        assert (angles.abs() <= 180).all() and (angles[:, 1].abs() <= 90).all()
        angles[:, 1].sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        emb = pose.embed(np.zeros((2, 32, 32, 3), dtype=np.uint8))
        assert emb.shape == (2, 3)
    with pytest.raises(FacebenchError, match="preprocess must be"):
        registry("feature_extractor").create("sixdrepnet-tiny", preprocess="bgr")


def test_euler_to_rotation_inverts_the_extractor_convention_and_geodesic_measures_the_angle():
    from facebench_plugins.attributes.sixdrepnet import (
        euler_from_rotation,
        geodesic_distance,
        rotation_from_euler,
    )

    rng = np.random.default_rng(1)
    angles = rng.uniform(-85, 85, size=(32, 3))
    mats = rotation_from_euler(torch.tensor(angles, dtype=torch.float64))
    np.testing.assert_allclose(mats.numpy(), np.stack([_rotation(*a) for a in angles]), atol=1e-12)
    np.testing.assert_allclose(euler_from_rotation(mats).numpy(), angles, atol=1e-6)
    # a further turn of t degrees about any axis is a geodesic distance of t
    turn = rotation_from_euler(torch.tensor([[0.0, 0.0, 30.0], [0.0, 50.0, 0.0]], dtype=torch.float64))
    base = mats[:2]
    dist = geodesic_distance(base, base @ turn)
    np.testing.assert_allclose(np.degrees(dist.numpy()), [30.0, 50.0], atol=1e-3)
    assert float(geodesic_distance(base, base).max()) < 1e-2


def test_tiny_pose_model_resizes_to_its_input_size():
    pose = registry("feature_extractor").create("sixdrepnet-tiny")
    assert pose.input_size == (56, 56)
    x = torch.rand(2, 3, 56, 56) * 2 - 1
    big = torch.nn.functional.interpolate(x, size=(112, 112), mode="bilinear", align_corners=False)
    back = torch.nn.functional.interpolate(big, size=(56, 56), mode="bilinear", align_corners=False)
    torch.testing.assert_close(pose.forward_tensor(big), pose.forward_tensor(back))
