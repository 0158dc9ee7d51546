"""`facebench toyfaces pose-model`: a tiny SixDRepNet trained on toy faces of known pose."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from facebench_plugins.toyfaces.pose_model import PoseModelConfig, render_pose_set

from facebench.cli import create_cli
from facebench.pluginmanager import registry


def test_pose_faces_are_keyed_and_cover_the_yaw_range():
    cfg = PoseModelConfig(size=24, images=64, batch_size=8, max_yaw=80, seed=3)
    images, angles = render_pose_set(cfg, 0, 300)
    assert images.shape == (300, 24, 24, 3) and images.dtype == np.uint8 and angles.shape == (300, 3)
    later, later_angles = render_pose_set(cfg, 290, 10)  # any range renders the same faces
    np.testing.assert_array_equal(later, images[290:])
    np.testing.assert_array_equal(later_angles, angles[290:])
    yaw = angles[:, 1]
    assert np.abs(yaw).max() <= 80 and np.abs(yaw).max() > 70 and (yaw > 0).mean() == pytest.approx(0.5, abs=0.1)
    other, _ = render_pose_set(PoseModelConfig(size=24, images=64, batch_size=8, seed=4), 0, 5)
    assert not np.array_equal(other, images[:5])


def test_pose_model_learns_yaw_and_its_file_loads_as_sixdrepnet_tiny(tmp_path):
    out = tmp_path / "pose"
    args = ["toyfaces", "pose-model", str(out), "--size", "32", "--images", "1536", "--epochs", "6",
            "--set", "val_images=200", "--set", "batch_size=32"]
    result = CliRunner().invoke(create_cli(), args)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "pose.json").read_text())
    assert {"config.toml", "provenance.json", "pose.pth"} <= {p.name for p in out.iterdir()}

    # recompute the validation errors from the saved file on freshly rendered validation faces
    pose = registry("feature_extractor").create("sixdrepnet-tiny", weights=str(out / "pose.pth"))
    cfg = PoseModelConfig(size=32, images=1536, val_images=200, batch_size=32)
    images, angles = render_pose_set(cfg, cfg.images, cfg.val_images)
    predicted = pose.embed(images)
    yaw_mae = float(np.abs(predicted[:, 1] - angles[:, 1]).mean())
    assert yaw_mae == pytest.approx(record["validation"]["yaw_mae"], rel=1e-4)
    constant = float(np.abs(angles[:, 1] - np.median(angles[:, 1])).mean())  # the best constant guess
    assert constant > 35 and yaw_mae < 0.7 * constant
    assert f"yaw {record['validation']['yaw_mae']:.1f}" in result.output

    again = CliRunner().invoke(create_cli(), args)  # the rerun contract: the same model is not trained again
    assert again.exit_code == 0 and f"{out}: already complete (pose.pth, validation MAE yaw " in again.output
    other = CliRunner().invoke(create_cli(), [*args, "--seed", "1"])
    assert other.exit_code == 2 and "(config.seed); pass --overwrite" in " ".join(other.output.split())


def test_pose_model_settings_are_checked():
    result = CliRunner().invoke(create_cli(), ["toyfaces", "pose-model", "unused", "--set", "max_yaw=95"])
    assert result.exit_code == 2 and "max_yaw must be in (0, 90)" in result.output
