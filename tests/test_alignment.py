"""Five-point alignment (``facebench.align``): the similarity insightface estimates, OpenCV's bilinear warp.

Checked against independent computations written here: scikit-image's ``SimilarityTransform`` on the
template as insightface builds it (the estimate ``norm_crop`` uses, bit for bit), a float64 bilinear
sampler, and a per-pixel loop of OpenCV 4's fixed-point rule; on synthetic images whose landmarks are known.
The comparison with insightface's own ``norm_crop`` on real photos is ``benchmarks/parity/alignment.py``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import facebench
from facebench.data.alignment import (
    ARCFACE_TEMPLATE,
    AlignmentError,
    align_face,
    similarity_matrix,
    template,
    warp_affine,
)
from facebench.errors import FacebenchError

#: insightface's template as face_align.py writes it (float32), for the independent estimate below.
INSIGHTFACE_DST = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                            [70.7299, 92.2041]], dtype=np.float32)


def similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(angle_deg)
    return np.array([[scale * math.cos(a), -scale * math.sin(a), tx], [scale * math.sin(a), scale * math.cos(a), ty]])


def apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, np.float64) @ m[:, :2].T + m[:, 2]


def inverse(m: np.ndarray) -> np.ndarray:
    linear = np.linalg.inv(m[:, :2])
    return np.concatenate([linear, (-linear @ m[:, 2])[:, None]], axis=1)


def smooth_image(h: int, w: int, seed: int) -> np.ndarray:
    """Low-frequency colour waves in [30, 225]: a bilinear sample moved by 1/64 px changes by < 0.5."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    channels = []
    for _ in range(3):
        fx, fy, phase = rng.uniform(0.01, 0.05), rng.uniform(0.01, 0.05), rng.uniform(0, 6.28)
        channels.append(127.5 + 95 * np.sin(fx * x + fy * y + phase))
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def float_reference(image: np.ndarray, matrix: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear sampling in float64 of ``image`` at ``inverse(matrix) p`` for every output pixel ``p``,
    neighbours outside the image 0; also the mask of pixels whose four neighbours all lie inside."""
    h, w = image.shape[:2]
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    src = apply(inverse(matrix), np.stack([xs.ravel(), ys.ravel()], axis=1))
    out = np.zeros((size * size, image.shape[2]))
    inside = np.zeros(size * size, bool)
    for k, (sx, sy) in enumerate(src):
        x0, y0 = math.floor(sx), math.floor(sy)
        ax, ay = sx - x0, sy - y0
        total = np.zeros(image.shape[2])
        for dy, wy in ((0, 1 - ay), (1, ay)):
            for dx, wx in ((0, 1 - ax), (1, ax)):
                if 0 <= x0 + dx < w and 0 <= y0 + dy < h:
                    total += wx * wy * image[y0 + dy, x0 + dx]
        out[k] = total
        inside[k] = 0 <= x0 and x0 + 1 < w and 0 <= y0 and y0 + 1 < h
    return out.reshape(size, size, -1), inside.reshape(size, size)


def opencv4_loop(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """OpenCV 4's 8-bit bilinear warpAffine, one pixel at a time, from its documented fixed-point rule:
    source coordinates in 1/1024 px rounded to 1/32 px, weights (32 - fx)(32 - fy) ... summing to 1024,
    result rounded half up; neighbours outside the image are the border value 0."""
    h, w = image.shape[:2]
    (a, b, c), (d, e, f) = matrix
    det = 1.0 / (a * e - b * d)
    m = [e * det, b * -det, 0.0, d * -det, a * det, 0.0]
    m[2], m[5] = -m[0] * c - m[1] * f, -m[3] * c - m[4] * f
    out = np.zeros((size, size, image.shape[2]), np.uint8)
    for y in range(size):
        row_x = round((m[1] * y + m[2]) * 1024) + 16  # round() rounds half to even, as cvRound does
        row_y = round((m[4] * y + m[5]) * 1024) + 16
        for x in range(size):
            sx = (row_x + round(m[0] * x * 1024)) >> 5
            sy = (row_y + round(m[3] * x * 1024)) >> 5
            ix, iy, fx, fy = sx >> 5, sy >> 5, sx & 31, sy & 31
            for ch in range(image.shape[2]):
                total = 0
                for dy, wy in ((0, 32 - fy), (1, fy)):
                    for dx, wx in ((0, 32 - fx), (1, fx)):
                        if 0 <= ix + dx < w and 0 <= iy + dy < h:
                            total += int(image[iy + dy, ix + dx, ch]) * wx * wy
                out[y, x, ch] = min(255, (total + 512) >> 10)
    return out


def face_landmarks(m: np.ndarray, size: int = 112) -> np.ndarray:
    """Where a face whose crop is ``m`` (image -> crop) has its five landmarks in the image."""
    return apply(inverse(m), template(size))


# ------------------------------------------------------------------------------------------ the estimate

def test_template_sizes_follow_estimate_norm():
    assert template(112).dtype == np.float32
    np.testing.assert_array_equal(template(112), INSIGHTFACE_DST)
    np.testing.assert_array_equal(template(224), INSIGHTFACE_DST * 2)
    expected_128 = INSIGHTFACE_DST.copy()
    expected_128[:, 0] += 8  # the 112 face centred in a 128 crop
    np.testing.assert_array_equal(template(128), expected_128)
    np.testing.assert_array_equal(template(256)[:, 0], INSIGHTFACE_DST[:, 0] * 2 + 16)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [112, 224, 128])
def test_matrix_is_scikit_image_estimate_bit_for_bit(dtype, size):
    """The matrix is the one ``estimate_norm`` computes (skimage's Umeyama on insightface's float32
    template), to the last bit, in both precisions a caller may hand landmarks in."""
    skimage = pytest.importorskip("skimage.transform")
    rng = np.random.default_rng(size)
    if size % 112 == 0:
        dst = INSIGHTFACE_DST * (size / 112)
    else:
        dst = INSIGHTFACE_DST * (size / 128)
        dst[:, 0] += 8 * size / 128
    for _ in range(20):
        m = similarity(rng.uniform(-40, 40), rng.uniform(0.3, 3), rng.uniform(-200, 100), rng.uniform(-200, 100))
        landmarks = (face_landmarks(m) + rng.normal(0, 2, (5, 2))).astype(dtype)
        with warnings.catch_warnings():  # scikit-image 0.26 deprecates estimate(), which insightface calls
            warnings.simplefilter("ignore")
            tform = skimage.SimilarityTransform()
            assert tform.estimate(landmarks, dst)
        assert np.array_equal(similarity_matrix(landmarks, size), tform.params[:2])


def test_known_similarity_is_recovered_and_the_template_maps_to_itself():
    m = similarity(17, 1.8, -40, 25)
    np.testing.assert_allclose(similarity_matrix(face_landmarks(m)), m, atol=1e-5)
    np.testing.assert_allclose(similarity_matrix(ARCFACE_TEMPLATE), similarity(0, 1, 0, 0), atol=1e-5)
    moved = apply(similarity_matrix(face_landmarks(m, 224), 224), face_landmarks(m, 224))
    np.testing.assert_allclose(moved, template(224), atol=1e-4)


def test_a_reflected_face_is_fitted_with_a_rotation_not_a_mirror():
    mirrored = ARCFACE_TEMPLATE * [-1, 1] + [200, 0]
    m = similarity_matrix(mirrored)
    assert np.linalg.det(m[:, :2]) > 0


# -------------------------------------------------------------------------------------------- the warp

@pytest.mark.parametrize("arithmetic", ["fixed", "float"])
def test_the_template_crop_of_an_aligned_face_is_the_face(arithmetic):
    image = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    assert np.array_equal(align_face(image, ARCFACE_TEMPLATE, arithmetic=arithmetic), image)
    assert np.array_equal(align_face(image, ARCFACE_TEMPLATE.astype(np.float32)), image)


@pytest.mark.parametrize("arithmetic", ["fixed", "float"])
@pytest.mark.parametrize("size", [112, 224])
def test_warp_equals_a_float64_bilinear_reference_on_smooth_images(arithmetic, size):
    image = smooth_image(180, 150, size)
    m = similarity(-23, 0.9 * size / 112, -20 * size / 112, 10)
    landmarks = face_landmarks(m, size)
    out = align_face(image, landmarks, size, arithmetic=arithmetic).astype(np.float64)
    expected, inside = float_reference(image, similarity_matrix(landmarks, size), size)
    assert inside.mean() > 0.5 and (~inside).any()  # the crop runs off the image: the border is exercised
    assert np.abs(out - expected)[inside].max() <= 1.0
    assert np.abs(out - expected).max() <= 8  # at the edge 1/32 px decides how much black mixes in
    src = apply(inverse(similarity_matrix(landmarks, size)), np.stack(np.mgrid[0:size, 0:size][::-1], -1)
                .reshape(-1, 2)).reshape(size, size, 2)
    far = (src[..., 0] < -1) | (src[..., 1] < -1) | (src[..., 0] >= 150) | (src[..., 1] >= 180)
    assert far.any() and (out[far] == 0).all()  # wholly outside the image: black


def test_fixed_arithmetic_is_opencv4_pixel_for_pixel():
    """On noise every 1/32 px step shows; the vectorised warp equals the per-pixel rule exactly."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)
    for _ in range(3):
        m = similarity(rng.uniform(-30, 30), rng.uniform(0.6, 1.6), rng.uniform(-15, 5), rng.uniform(-15, 5))
        assert np.array_equal(warp_affine(image, m, 24), opencv4_loop(image, m, 24))
    differs = warp_affine(image, m, 24, arithmetic="float") != opencv4_loop(image, m, 24)
    assert differs.any()  # OpenCV 5's single precision is a different arithmetic


def test_bright_dots_at_the_landmarks_land_on_the_template():
    m = similarity(20, 1.7, 30, -10)
    for size in (112, 224, 128):
        landmarks = face_landmarks(m, size)
        image = np.zeros((300, 300, 3), np.uint8)
        for x, y in np.rint(landmarks).astype(int):
            image[y - 2:y + 3, x - 2:x + 3] = 255
        out = align_face(image, landmarks, size)
        assert out.shape == (size, size, 3)
        for x, y in np.rint(template(size)).astype(int):
            assert out[y, x].mean() > 100
        assert out[1, 1].sum() == 0


def test_grey_images_and_the_public_name():
    image = smooth_image(120, 130, 1)
    landmarks = face_landmarks(similarity(8, 1.1, -5, 3))
    rgb = align_face(image, landmarks)
    for c in range(3):
        assert np.array_equal(align_face(np.ascontiguousarray(image[:, :, c]), landmarks), rgb[:, :, c])
    assert np.array_equal(facebench.align(image, landmarks), rgb)
    assert np.array_equal(facebench.align(image, landmarks, size=224), align_face(image, landmarks, 224))


# ------------------------------------------------------------------------------------------ refusals

@pytest.mark.parametrize("landmarks,message", [
    (np.full((5, 2), 40.0), "the landmarks all lie on one point"),
    (np.zeros((5, 2)), "the landmarks all lie on one point"),
    (np.array([[1, 2], [3, np.nan], [5, 6], [7, 8], [9, 9]]), "not all finite"),
    (np.array([[1, 2], [3, np.inf], [5, 6], [7, 8], [9, 9]]), "not all finite"),
    (np.zeros((4, 2)), "shape (5, 2), got shape (4, 2)"),
    (np.zeros(10), "shape (5, 2), got shape (10,)"),
    ([["a", "b"]] * 5, "five (x, y) numbers"),
])
def test_degenerate_landmarks_raise(landmarks, message):
    image = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(AlignmentError) as info:
        align_face(image, landmarks)
    assert message in str(info.value)
    assert isinstance(info.value, FacebenchError)


@pytest.mark.parametrize("image,size,message", [
    (np.zeros((50, 50, 3), np.float32), 112, "uint8"),
    (np.zeros((50, 50, 3, 1), np.uint8), 112, "uint8 array H x W x C"),
    (np.zeros((0, 50, 3), np.uint8), 112, "uint8 array H x W x C"),
    ([[0]], 112, "got list"),
    (np.zeros((50, 50, 3), np.uint8), 0, "crop size"),
    (np.zeros((50, 50, 3), np.uint8), 112.0, "crop size"),
    (np.zeros((50, 50, 3), np.uint8), 10**6, "crop size"),
])
def test_bad_images_and_sizes_raise(image, size, message):
    with pytest.raises(AlignmentError, match=message.replace("(", r"\(")):
        align_face(image, ARCFACE_TEMPLATE, size)


def test_unknown_arithmetic_is_a_programming_error():
    with pytest.raises(ValueError, match="fixed, float"):
        align_face(np.zeros((9, 9, 3), np.uint8), ARCFACE_TEMPLATE, arithmetic="cubic")
