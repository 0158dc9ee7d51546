"""Five-point face alignment to the ArcFace crop: insightface's ``face_align.norm_crop``, without OpenCV.

Every FR model of the insightface family was trained and is evaluated on 112 x 112 crops made one way: a
similarity transform (rotation, uniform scale, translation) fitted by least squares from the face's five
landmarks (left eye, right eye, nose tip, left and right mouth corners; pixel coordinates of the image,
integer = pixel centre) to a fixed template, then ``cv2.warpAffine`` with bilinear sampling and black
outside the image. A crop made any other way is a slightly different input, so this module reproduces that
one: :func:`similarity_matrix` fits the transform as insightface's ``estimate_norm`` does (its template,
scaled for other crop sizes), and :func:`warp_affine` samples as OpenCV does, down to its arithmetic.

OpenCV has two arithmetics for an 8-bit bilinear warp, and they differ by up to 3 grey levels on real
photos. OpenCV 3 and 4 (every release up to 4.14; the crops of every released insightface pack and model)
map each output pixel to the source in fixed point, 1/32 of a pixel, and mix the four neighbours with
15-bit integer weights (``arithmetic="fixed"``, the default); OpenCV 5 computes coordinates and weights in
single precision (``arithmetic="float"``). Each mode equals its OpenCV exactly on the photos of
``benchmarks/parity/alignment.py`` (OpenCV 5's optional Intel IPP path rounds a few pixels differently:
at most 1 grey level). Importing this module does not import torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import FacebenchError

#: insightface's ArcFace template (``face_align.arcface_dst``): left eye, right eye, nose tip, left and
#: right mouth corners of a 112 x 112 crop, at pixel centres.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
ARCFACE_SIZE = 112
ARITHMETICS = ("fixed", "float")
#: The largest crop side accepted (a typo like 11200 would otherwise allocate gigabytes).
MAX_SIZE = 4096


class AlignmentError(FacebenchError):
    """Landmarks that determine no alignment (not five finite points, or all at one place)."""


def template(size: int = ARCFACE_SIZE) -> np.ndarray:
    """The five template points (float32, as insightface keeps them) for a ``size`` x ``size`` crop,
    placed as ``estimate_norm`` places them.

    A multiple of 112 scales the 112 px template; otherwise a multiple of 128 scales it by ``size / 128``
    and moves it ``8 * size / 128`` px right (the face of a 112 crop centred in a 128 one); any other size
    scales by ``size / 112`` (insightface refuses those).
    """
    size = _size(size)
    points = ARCFACE_TEMPLATE.astype(np.float32)
    if size % ARCFACE_SIZE != 0 and size % 128 == 0:
        points = points * np.float32(size / 128.0)
        points[:, 0] += np.float32(8.0 * size / 128.0)
    else:
        points = points * np.float32(size / ARCFACE_SIZE)
    return points


def fit_similarity(src: Any, dst: Any) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, translation; no reflection) taking the
    points ``src`` to ``dst``, as a 2 x 3 float64 matrix: Umeyama's (1991) SVD solution, the estimate
    scikit-image's ``SimilarityTransform`` makes for insightface.

    Each point set is used in its own precision (float32 stays float32, anything else is float64), as
    numpy computes the estimate for insightface: its template is float32 and detectors give float32
    landmarks, and the single-precision rounding of that estimate moves the crop by up to ~1e-4 px,
    which decides how some pixels round.
    """
    src, dst = _points(src), _points(dst)
    if src.shape != dst.shape:
        raise ValueError(f"src and dst need the same number of points, got {len(src)} and {len(dst)}")
    n = len(src)
    mean_s, mean_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mean_s, dst - mean_d
    cov = d.T @ s / n
    u, sigma, vt = np.linalg.svd(cov)
    tol = sigma.max() * 2 * np.finfo(np.float64).eps
    if not np.isfinite(sigma).all() or not (sigma > tol).any():
        raise AlignmentError("the landmarks all lie on one point: no scale or rotation can be estimated")
    signs = np.ones(2)
    if (sigma > tol).all():
        signs[1] = -1.0 if np.linalg.det(cov) < 0 else 1.0  # the nearest rotation, not a reflection
    elif np.linalg.det(u) * np.linalg.det(vt) <= 0:  # rank 1: points on a line
        signs[1] = -1.0
    rotation = u @ np.diag(signs) @ vt
    scale = 1.0 / s.var(axis=0).sum() * (sigma @ signs)
    shift = mean_d - scale * (rotation @ mean_s)
    return np.concatenate([scale * rotation, shift[:, None]], axis=1).astype(np.float64)


def similarity_matrix(landmarks: Any, size: int = ARCFACE_SIZE) -> np.ndarray:
    """The 2 x 3 matrix taking the image to its ``size`` px ArcFace crop: ``estimate_norm``'s ``M``."""
    points = _landmarks(landmarks)
    matrix = fit_similarity(points, template(size))
    if not np.isfinite(matrix).all() or abs(matrix[0, 0] * matrix[1, 1] - matrix[0, 1] * matrix[1, 0]) == 0:
        raise AlignmentError("the landmarks determine no invertible similarity (they lie too close together)")
    return matrix


def align_face(image: Any, landmarks: Any, size: int = ARCFACE_SIZE, *, arithmetic: str = "fixed") -> np.ndarray:
    """The ``size`` x ``size`` ArcFace crop of ``image`` (uint8 H x W x C, RGB; or H x W) whose five
    ``landmarks`` ((5, 2): x, y) land on the template: ``norm_crop(image, landmarks, size)``."""
    return warp_affine(image, similarity_matrix(landmarks, size), size, arithmetic=arithmetic)


def warp_affine(image: Any, matrix: Any, size: int, *, arithmetic: str = "fixed") -> np.ndarray:
    """``cv2.warpAffine(image, matrix, (size, size))`` with bilinear sampling and a black border: each
    output pixel ``p`` takes the source at ``inverse(matrix) p``, neighbours outside the image counting
    as 0. ``arithmetic`` is OpenCV 4's ``"fixed"`` or OpenCV 5's ``"float"`` (module docstring)."""
    if arithmetic not in ARITHMETICS:
        raise ValueError(f"arithmetic must be one of {', '.join(ARITHMETICS)}, got {arithmetic!r}")
    size = _size(size)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3) \
            or 0 in image.shape:
        shown = f"{image.dtype} of shape {tuple(image.shape)}" if isinstance(image, np.ndarray) else \
            type(image).__name__
        raise AlignmentError(f"the image must be a numpy uint8 array H x W x C (or H x W), got {shown}")
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (2, 3) or not np.isfinite(matrix).all():
        raise AlignmentError(f"the warp needs a finite 2 x 3 matrix, got shape {matrix.shape}")
    inverse = _invert(matrix)
    pixels = image if image.ndim == 3 else image[:, :, None]
    if arithmetic == "fixed":
        out = _warp_fixed(pixels, inverse, size)
    else:
        out = _warp_float(pixels, inverse, size)
    return out if image.ndim == 3 else out[:, :, 0]


# ----------------------------------------------------------------------------------------------- helpers


def _size(size: Any) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= MAX_SIZE:
        raise AlignmentError(f"the crop size must be a whole number of pixels in [1, {MAX_SIZE}], got {size!r}")
    return int(size)


def _points(values: Any) -> np.ndarray:
    """Points as an (N, 2) array, float32 kept, anything else float64."""
    values = np.asarray(values)
    return values.astype(np.float32 if values.dtype == np.float32 else np.float64).reshape(-1, 2)


def _landmarks(landmarks: Any) -> np.ndarray:
    try:
        points = np.asarray(landmarks)
        if points.dtype != np.float32:
            points = points.astype(np.float64)
    except (TypeError, ValueError):
        raise AlignmentError("the landmarks must be five (x, y) numbers") from None
    if points.shape != (5, 2):
        raise AlignmentError(f"the landmarks must be five (x, y) points, shape (5, 2), got shape {points.shape}")
    if not np.isfinite(points).all():
        raise AlignmentError("the landmarks are not all finite numbers (NaN or infinity)")
    return points


def _invert(m: np.ndarray) -> np.ndarray:
    """The output -> source matrix, computed as ``cv::invertAffineTransform`` computes it (the same
    operations in the same order, so the fixed-point coordinates round as OpenCV's do)."""
    (a, b, c), (d, e, f) = m.tolist()
    det = a * e - b * d
    det = 1.0 / det if det != 0 else 0.0
    a11, a22, a12, a21 = e * det, a * det, b * -det, d * -det
    return np.array([[a11, a12, -a11 * c - a12 * f], [a21, a22, -a21 * c - a22 * f]])


def _gather(pixels: np.ndarray, ix: np.ndarray, iy: np.ndarray, dtype: Any) -> list[np.ndarray]:
    """The four neighbours ``(ix + dx, iy + dy)`` of every output pixel; those outside the image are 0."""
    h, w = pixels.shape[:2]
    out = []
    for dy in (0, 1):
        for dx in (0, 1):
            x, y = ix + dx, iy + dy
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            values = pixels[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)].astype(dtype)
            values[~inside] = 0
            out.append(values)
    return out  # p00, p01, p10, p11


def _round_int(values: np.ndarray) -> np.ndarray:
    """``saturate_cast<int>(double)``: round half to even, clamped to the int32 range."""
    return np.clip(np.rint(values), -(2**31), 2**31 - 1).astype(np.int64)


def _warp_fixed(pixels: np.ndarray, inv: np.ndarray, size: int) -> np.ndarray:
    """OpenCV 3/4: source coordinates in 1/1024 px per row and column step, rounded to 1/32 px; the four
    neighbours weighted by ``(32 - fx)(32 - fy) * 32`` and so on (15 bits), rounded half up."""
    bits, scale = 5, 1024  # INTER_BITS, AB_SCALE
    step = np.arange(size, dtype=np.float64)
    col_x, col_y = _round_int(inv[0, 0] * step * scale), _round_int(inv[1, 0] * step * scale)
    half = scale >> bits >> 1  # rounds the 1/1024 coordinate to the nearest 1/32
    row_x = _round_int((inv[0, 1] * step + inv[0, 2]) * scale) + half
    row_y = _round_int((inv[1, 1] * step + inv[1, 2]) * scale) + half
    x = (row_x[:, None] + col_x[None, :]) >> (10 - bits)
    y = (row_y[:, None] + col_y[None, :]) >> (10 - bits)
    ix, iy = np.clip(x >> bits, -32768, 32767), np.clip(y >> bits, -32768, 32767)  # saturate_cast<short>
    fx, fy = (x & 31)[..., None], (y & 31)[..., None]
    p00, p01, p10, p11 = _gather(pixels, ix, iy, np.int32)
    total = (p00 * ((32 - fx) * (32 - fy)) + p01 * (fx * (32 - fy)) + p10 * ((32 - fx) * fy) + p11 * (fx * fy)) * 32
    return np.clip((total + (1 << 14)) >> 15, 0, 255).astype(np.uint8)


def _fma32(a: Any, b: Any, c: Any) -> np.ndarray:
    """``a * b + c`` rounded once to float32 (a product of two float32 values is exact in float64)."""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(np.float32)


def _warp_float(pixels: np.ndarray, inv: np.ndarray, size: int) -> np.ndarray:
    """OpenCV 5: the matrix in float32, per row ``y * m01 + m02`` in float32, per pixel a fused
    ``m00 * x + row``; floor and fraction; two fused lerps along x, one along y; rounded half to even."""
    m = inv.astype(np.float32)
    step = np.arange(size, dtype=np.float32)
    row_x, row_y = step * m[0, 1] + m[0, 2], step * m[1, 1] + m[1, 2]
    x = _fma32(m[0, 0], step[None, :], row_x[:, None])
    y = _fma32(m[1, 0], step[None, :], row_y[:, None])
    fx, fy = np.floor(x), np.floor(y)
    ix, iy = fx.astype(np.int64), fy.astype(np.int64)
    ax, ay = (x - fx)[..., None], (y - fy)[..., None]
    p00, p01, p10, p11 = _gather(pixels, ix, iy, np.float32)
    top = _fma32(ax, p01 - p00, p00)
    bottom = _fma32(ax, p11 - p10, p10)
    value = _fma32(ay, bottom - top, top)
    return np.clip(np.rint(value), 0, 255).astype(np.uint8)


__all__ = ["ARCFACE_SIZE", "ARCFACE_TEMPLATE", "ARITHMETICS", "AlignmentError", "align_face", "fit_similarity",
           "similarity_matrix", "template", "warp_affine"]
