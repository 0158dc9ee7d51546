"""From Arc2Face's FFHQ-aligned output to the ArcFace 112 x 112 crop FR models are trained on.

Arc2Face was trained on faces aligned with the FFHQ procedure, so a generated face sits where that
procedure puts a face. Its geometry (from four landmarks: eye centres and outer mouth corners):
``c = eye_mid + 0.1 * eye_to_mouth``; the crop's x axis is ``eye_to_eye - rot90(eye_to_mouth)``;
its half side is ``s = max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)``; the square ``c +- x +- y`` becomes
the output. Applied to the mean face of insightface's ArcFace template (eye distance 35.24 px,
eye-to-mouth 40.69 px: ratio 1.155 > 10/9, so ``s = 1.8 |eye_to_mouth|``) it puts the eye midpoint at
``(N/2, 17N/36)`` and the mouth midpoint at ``(N/2, 3N/4)`` of an N-pixel output, whatever the face's
size. The FFHQ -> ArcFace transform is the inverse of that crop: a similarity (scale 0.2861, rotation
-0.318 degrees for N = 512, O = 112), exact on the template by construction. All coordinates here are
continuous (pixel ``i`` spans ``[i, i + 1)``): insightface's template is given at pixel centres and is
shifted by half a pixel; FFHQ's crop is already continuous (PIL transforms ``quad + 0.5``).

The error on real outputs comes from faces whose proportions differ from the template's mean face (a
face whose eye-to-mouth distance equals its eye distance, ratio 1.0 instead of 1.155, has its mouth
corners 3.7 px and its eyes 0.8 px from the template at 112 px; above 10/9 the eye and mouth midpoints
land exactly and only the widths differ); it can
only be measured with a landmark model (:func:`landmark_error`), which facebench does not ship. With one
registered (a feature extractor with ``attribute="landmarks"``), :func:`fit_similarity` aligns each
image to the template instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from facebench.data.alignment import ARCFACE_SIZE, ARCFACE_TEMPLATE, fit_similarity  # noqa: F401 (re-exported)


def template(size: int = ARCFACE_SIZE) -> np.ndarray:
    """The five template points in continuous coordinates of a ``size`` x ``size`` crop."""
    return (ARCFACE_TEMPLATE + 0.5) * (size / ARCFACE_SIZE)


def ffhq_crop(points: np.ndarray, size: int) -> np.ndarray:
    """The 2 x 3 matrix mapping an image to its FFHQ-aligned crop of side ``size``, computed from five
    points (eyes, nose, mouth corners; continuous coordinates) by the FFHQ procedure's geometry."""
    p = np.asarray(points, dtype=np.float64)
    eye_mid, mouth_mid = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
    eye_to_eye, eye_to_mouth = p[1] - p[0], mouth_mid - eye_mid
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    half = max(2.0 * np.hypot(*eye_to_eye), 1.8 * np.hypot(*eye_to_mouth))
    x = x / np.hypot(*x) * half
    y = np.array([-x[1], x[0]])
    centre = eye_mid + 0.1 * eye_to_mouth
    linear = np.stack([x, y]) * (size / 2) / half**2
    return np.concatenate([linear, (size / 2 - linear @ centre)[:, None]], axis=1)


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` after ``b`` for 2 x 3 affine matrices."""
    return np.concatenate([a[:, :2] @ b[:, :2], (a[:, :2] @ b[:, 2] + a[:, 2])[:, None]], axis=1)


def invert(m: np.ndarray) -> np.ndarray:
    linear = np.linalg.inv(m[:, :2])
    return np.concatenate([linear, (-linear @ m[:, 2])[:, None]], axis=1)


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) @ m[:, :2].T + m[:, 2]


def ffhq_to_arcface(native: int, out: int = ARCFACE_SIZE) -> np.ndarray:
    """The fixed similarity from an FFHQ-aligned ``native`` px image to the ArcFace crop of ``out`` px."""
    crop = ffhq_crop(template(ARCFACE_SIZE), native)  # ArcFace 112 frame -> FFHQ frame
    scale = np.array([[out / ARCFACE_SIZE, 0, 0], [0, out / ARCFACE_SIZE, 0]])
    return compose(scale, invert(crop))


def canonical_ffhq_points(native: int) -> np.ndarray:
    """Where the template's five points lie in an FFHQ-aligned ``native`` px image (continuous)."""
    return apply(ffhq_crop(template(ARCFACE_SIZE), native), template(ARCFACE_SIZE))


def landmark_error(landmarks: np.ndarray, native: int) -> np.ndarray:
    """Per image, the mean distance (ArcFace 112 px units) between the template and five landmarks
    (``(N, 5, 2)`` pixel centres of FFHQ-aligned ``native`` px images) moved by the fixed transform."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2) + 0.5
    moved = apply(ffhq_to_arcface(native), pts.reshape(-1, 2)).reshape(pts.shape)
    return np.linalg.norm(moved - template(), axis=2).mean(axis=1)


def warp(images: Any, matrices: np.ndarray, out: int) -> Any:
    """``images`` (N, C, H, W float tensor) warped by ``matrices`` (2 x 3, or N x 2 x 3: source ->
    output, continuous coordinates) into ``out`` x ``out`` crops. A large reduction is first done by an
    antialiased resize (plain bilinear sampling at 1/4 scale aliases); the sampling grid is in
    normalised coordinates, which that resize leaves unchanged."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = images.shape
    mats = np.broadcast_to(np.asarray(matrices, dtype=np.float64), (n, 2, 3))
    inv = np.stack([invert(m) for m in mats])  # output -> source
    centres = np.arange(out, dtype=np.float64) + 0.5
    gx, gy = np.meshgrid(centres, centres)
    grid_out = np.stack([gx, gy, np.ones_like(gx)], axis=-1)  # (out, out, 3)
    src = np.einsum("nij,hwj->nhwi", inv, grid_out)
    grid = np.stack([2 * src[..., 0] / w - 1, 2 * src[..., 1] / h - 1], axis=-1)
    scale = float(np.sqrt(np.abs(np.linalg.det(mats[:, :, :2]))).mean())
    x = images.float()
    if scale < 0.75:
        x = F.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="bilinear",
                          antialias=True, align_corners=False)
    g = torch.as_tensor(grid, dtype=x.dtype, device=x.device)
    return F.grid_sample(x, g, mode="bilinear", padding_mode="border", align_corners=False)
