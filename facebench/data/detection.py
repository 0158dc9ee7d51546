"""Face detections: what every detector returns, which face a photo of one person means, and the
non-maximum suppression the detectors share.

A detector (``register_detectors``; ``facebench.load_detector``) turns an RGB ``uint8`` H x W x 3 image into
:class:`Detections`: boxes x1, y1, x2, y2, scores and five landmarks per face (left eye, right eye, nose,
left mouth corner, right mouth corner, as insightface orders them), in the image's pixel coordinates,
highest score first. :func:`detect_and_align` is the route from a raw photo to the ArcFace crop.
Importing this module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import FacebenchError

#: A face "near the centre" has its box centre within this fraction of the image's width (height) of the
#: image's centre, horizontally (vertically): the middle half of the image in both directions.
CENTRE_FRACTION = 0.25


class NoFaceError(FacebenchError):
    """The detector found no face in an image that should show one."""


@dataclass(frozen=True, eq=False)
class Detections:
    """K faces of one image, highest score first (construction sorts them, stably).

    ``boxes`` float32 (K, 4) x1, y1, x2, y2; ``scores`` float32 (K,); ``landmarks`` float32 (K, 5, 2) x, y:
    left eye, right eye, nose, left and right mouth corners. Image pixel coordinates throughout.
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __post_init__(self):
        boxes = np.asarray(self.boxes, dtype=np.float32)
        scores = np.asarray(self.scores, dtype=np.float32)
        landmarks = np.asarray(self.landmarks, dtype=np.float32)
        if scores.size == boxes.size == landmarks.size == 0:  # no faces: any empty shapes will do
            boxes, scores, landmarks = boxes.reshape(0, 4), scores.reshape(0), landmarks.reshape(0, 5, 2)
        k = len(scores)
        if scores.shape != (k,) or boxes.shape != (k, 4) or landmarks.shape != (k, 5, 2):
            raise ValueError(f"detections need boxes (K, 4), scores (K,) and landmarks (K, 5, 2); got "
                             f"{boxes.shape}, {scores.shape}, {landmarks.shape}")
        if not (np.isfinite(boxes).all() and np.isfinite(scores).all() and np.isfinite(landmarks).all()):
            raise ValueError("detections must be finite (a detector drops candidates that are not)")
        order = np.argsort(-scores, kind="stable")
        for name, value in (("boxes", boxes), ("scores", scores), ("landmarks", landmarks)):
            value = np.ascontiguousarray(value[order])
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, indices: Any) -> Detections:
        """The detections at ``indices`` (a slice, an index array or a boolean mask), still sorted."""
        return Detections(self.boxes[indices], self.scores[indices], self.landmarks[indices])

    @property
    def areas(self) -> np.ndarray:
        """Box areas in square pixels (zero for an inverted box)."""
        wh = np.clip(self.boxes[:, 2:] - self.boxes[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    @property
    def centres(self) -> np.ndarray:
        return (self.boxes[:, :2] + self.boxes[:, 2:]) / 2


def check_image(image: Any, what: str = "image") -> np.ndarray:
    """``image`` as a detector takes it: a numpy ``uint8`` array H x W x 3 (RGB), at least 1 x 1.
    Anything else is a one-line error saying what was given."""
    if not isinstance(image, np.ndarray):
        raise FacebenchError(f"{what} must be a numpy uint8 array of shape (H, W, 3) (RGB), got "
                             f"{type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise FacebenchError(f"{what} must be a numpy uint8 array of shape (H, W, 3) (RGB), got {image.dtype} "
                             f"of shape {tuple(image.shape)}")
    return image


def pick_face(detections: Detections, image_shape: tuple[int, ...]) -> int | None:
    """The index of the face a photo of one person means, or None when there is none.

    The rule: among the faces whose box centre lies near the image centre (within ``CENTRE_FRACTION``
    of the width and of the height, i.e. in the middle half of the image both ways), the largest box;
    when no face is near the centre, the largest box of all. Equal areas go to the higher score.
    Photos of one identity (LFW, CFP, a user's reference photos) are framed on their subject: a larger
    face at the edge is a bystander, while the subject may be smaller than a face in the background
    only rarely; a photo whose only face is off-centre still gives that face.
    """
    if len(detections) == 0:
        return None
    height, width = float(image_shape[0]), float(image_shape[1])
    offset = np.abs(detections.centres - np.array([width / 2, height / 2], np.float32))
    near = (offset[:, 0] <= CENTRE_FRACTION * width) & (offset[:, 1] <= CENTRE_FRACTION * height)
    candidates = np.flatnonzero(near) if near.any() else np.arange(len(detections))
    areas = detections.areas[candidates]
    return int(candidates[int(np.argmax(areas))])  # argmax takes the first of equals: the higher score


def detect_and_align(detector: Any, image: np.ndarray, size: int = 112) -> tuple[np.ndarray, Detections, int]:
    """Detect the faces of ``image``, pick the one it means (:func:`pick_face`) and align it to the
    ArcFace template: ``(crop size x size x 3 uint8, detections, index of the face used)``.
    No face is a :class:`NoFaceError`; landmarks that cannot be aligned an ``AlignmentError``."""
    from .alignment import align_face

    image = check_image(image)
    detections = detector.detect(image)
    index = pick_face(detections, image.shape)
    if index is None:
        raise NoFaceError("no face detected")
    return align_face(image, detections.landmarks[index], size=size), detections, index


# ----------------------------------------------------------------------------- non-maximum suppression


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, *, offset: float = 0.0,
        mode: str = "union") -> np.ndarray:
    """Greedy non-maximum suppression: the indices kept, highest score first (ties: the lower index).

    A box is dropped when its overlap with a kept, higher-scoring box is above ``threshold``. The overlap
    is intersection over union (``mode="union"``) or over the smaller box (``"min"``, MTCNN's last stage).
    ``offset=1`` counts the edge pixels (width ``x2 - x1 + 1``), the convention of Girshick's
    ``py_cpu_nms`` that RetinaFace and MTCNN use; 0 is torchvision's. Computed in the boxes' dtype
    (float32 as the references do), so a result on the threshold goes the way theirs goes. An overlap
    that is not a number (a zero-area box) suppresses nothing, as in torchvision.
    """
    if mode not in ("union", "min"):
        raise ValueError(f"nms mode must be 'union' or 'min', got {mode!r}")
    boxes = np.asarray(boxes)
    scores = np.asarray(scores)
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    dtype = boxes.dtype if boxes.dtype.kind == "f" else np.dtype(np.float32)
    boxes = boxes.astype(dtype, copy=False)
    x1, y1, x2, y2 = boxes.T
    one = dtype.type(offset)
    areas = (x2 - x1 + one) * (y2 - y1 + one)
    order = np.argsort(-scores, kind="stable")
    keep = []
    with np.errstate(divide="ignore", invalid="ignore"):
        while order.size:
            i = order[0]
            keep.append(i)
            rest = order[1:]
            w = np.maximum(dtype.type(0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + one)
            h = np.maximum(dtype.type(0), np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + one)
            inter = w * h
            denominator = np.minimum(areas[i], areas[rest]) if mode == "min" else areas[i] + areas[rest] - inter
            order = rest[~(inter / denominator > threshold)]
    return np.asarray(keep, dtype=np.int64)


def nms_torch(boxes: Any, scores: Any, threshold: float) -> Any:
    """torchvision's IoU suppression (``offset=0``, ``mode="union"``) on tensors, on their device: the
    fast path for the many candidate boxes of a detector's first stage. Indices, highest score first."""
    from torchvision.ops import nms as tv_nms

    return tv_nms(boxes, scores, float(threshold))


__all__ = ["CENTRE_FRACTION", "Detections", "NoFaceError", "check_image", "detect_and_align", "nms", "nms_torch",
           "pick_face"]
