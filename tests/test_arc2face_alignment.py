"""The FFHQ -> ArcFace similarity of the Arc2Face plugin (numpy and torch only: runs without the extra)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from facebench_plugins.arc2face import alignment as al


def test_canonical_ffhq_geometry_of_the_arcface_mean_face():
    n = 512
    q = al.canonical_ffhq_points(n)
    eye_mid, mouth_mid = (q[0] + q[1]) / 2, (q[3] + q[4]) / 2
    # the FFHQ crop of a face with eye-to-mouth > 10/9 eye distance: eyes at (N/2, 17N/36), mouth at (N/2, 3N/4)
    np.testing.assert_allclose(eye_mid, [n / 2, 17 * n / 36], atol=0.01)
    np.testing.assert_allclose(mouth_mid, [n / 2, 3 * n / 4], atol=0.01)
    t = al.template()
    ratio = np.hypot(*((t[3] + t[4]) / 2 - (t[0] + t[1]) / 2)) / np.hypot(*(t[1] - t[0]))
    assert ratio == pytest.approx(1.1546, abs=1e-4) and ratio > 10 / 9


def test_fixed_transform_is_the_least_squares_fit_with_zero_residual():
    m = al.ffhq_to_arcface(512)
    q = al.canonical_ffhq_points(512)
    np.testing.assert_allclose(al.apply(m, q), al.template(), atol=1e-9)
    np.testing.assert_allclose(al.fit_similarity(q, al.template()), m, atol=1e-9)
    scale = np.sqrt(np.linalg.det(m[:, :2]))
    assert scale == pytest.approx(0.28608, abs=1e-5)
    assert np.degrees(np.arctan2(m[1, 0], m[0, 0])) == pytest.approx(-0.318, abs=1e-3)
    # the pixel-centre landmarks of an exactly FFHQ-aligned mean face have no error
    assert al.landmark_error(q - 0.5, 512).max() < 1e-9
    # the tiny configuration: a 56 px FFHQ image to a 56 px crop is the same map at half the template scale
    np.testing.assert_allclose(al.apply(al.ffhq_to_arcface(56, 56), al.canonical_ffhq_points(56)),
                               al.template(56), atol=1e-9)


def test_fit_similarity_recovers_a_known_similarity():
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.4, 1.7, np.array([3.0, -8.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ (scale * rot).T + shift
    m = al.fit_similarity(src, dst)
    np.testing.assert_allclose(m[:, :2], scale * rot, atol=1e-12)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-10)


def _blobs(points: np.ndarray, size: int, sigma: float) -> torch.Tensor:
    """An image with a Gaussian spot centred on each point (continuous coordinates)."""
    centres = np.arange(size) + 0.5
    gx, gy = np.meshgrid(centres, centres)
    img = sum(np.exp(-((gx - x) ** 2 + (gy - y) ** 2) / (2 * sigma**2)) for x, y in points)
    return torch.from_numpy(img.astype(np.float32))[None, None].repeat(1, 3, 1, 1)


def _centroids(image: torch.Tensor, near: np.ndarray, radius: float) -> np.ndarray:
    arr = image[0, 0].numpy().astype(np.float64)
    centres = np.arange(arr.shape[0]) + 0.5
    gx, gy = np.meshgrid(centres, centres)
    out = []
    for x, y in near:
        w = arr * (((gx - x) ** 2 + (gy - y) ** 2) < radius**2)
        out.append([(w * gx).sum() / w.sum(), (w * gy).sum() / w.sum()])
    return np.array(out)


def test_warp_puts_the_canonical_ffhq_points_on_the_arcface_template():
    # spots where an FFHQ-aligned 512 px face has its eyes, nose and mouth corners land on the template
    image = _blobs(al.canonical_ffhq_points(512), 512, sigma=8.0)
    crop = al.warp(image, al.ffhq_to_arcface(512), 112)
    assert crop.shape == (1, 3, 112, 112)
    found = _centroids(crop, al.template(), radius=5)
    assert np.abs(found - al.template()).max() < 0.1


def test_per_image_matrices_warp_each_image_by_its_own_transform():
    image = _blobs(al.canonical_ffhq_points(56), 56, sigma=1.5).repeat(2, 1, 1, 1)
    shift = np.array([[1, 0, 2.0], [0, 1, -3.0]])
    m = al.ffhq_to_arcface(56, 56)
    out = al.warp(image, np.stack([m, al.compose(shift, m)]), 56)
    a, b = (_centroids(out[i:i + 1], al.template(56) + d, radius=3) for i, d in enumerate(([0, 0], [2, -3])))
    np.testing.assert_allclose(a, al.template(56), atol=0.1)
    np.testing.assert_allclose(b, al.template(56) + [2, -3], atol=0.1)
