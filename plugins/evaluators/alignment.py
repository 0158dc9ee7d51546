"""Five-point face alignment to the standard 112 x 112 ArcFace crop (IJB loose crops, as insightface does).

A similarity transform (rotation, uniform scale, translation) is fitted from the five landmarks (eyes, nose
tip, mouth corners) to insightface's template with scikit-image's ``SimilarityTransform`` and the image
is warped with bilinear sampling, black outside the source (cv2's ``borderValue=0``). Coordinates are pixel
centres, the convention of both the template and the IJB landmark files.
"""

from __future__ import annotations

import numpy as np
from facebench_plugins.arc2face.alignment import ARCFACE_SIZE, ARCFACE_TEMPLATE


def similarity(landmarks: np.ndarray, size: int = ARCFACE_SIZE):
    """The ``SimilarityTransform`` taking five ``landmarks`` (x, y) to the template of a ``size`` crop,
    or None when they do not determine one (all points equal)."""
    from skimage.transform import SimilarityTransform

    src = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    dst = ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)
    if hasattr(SimilarityTransform, "from_estimate"):  # scikit-image >= 0.26
        tform = SimilarityTransform.from_estimate(src, dst)
        return tform if tform else None
    tform = SimilarityTransform()
    return tform if tform.estimate(src, dst) else None


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray | None:
    """``image`` (H, W, 3 uint8) warped so its landmarks land on the template; None if they are degenerate."""
    from skimage.transform import warp

    tform = similarity(landmarks, size)
    if tform is None or not np.isfinite(tform.params).all():
        return None
    out = warp(image, tform.inverse, output_shape=(size, size), order=1, mode="constant", cval=0.0,
               preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
