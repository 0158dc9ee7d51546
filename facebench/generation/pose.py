"""Pose-conditioned generation (``--pose-landmarks``): which landmark image each generated image gets.

A generator that conditions on landmark images (Vec2Face+'s pose model) offers ``pose_landmarks(value)``,
returning the set it read or drew (``images``: uint8 (P, S, S, 3); ``model_input()``: what its
``generate(..., landmarks=)`` takes; ``record()``: what ``dataset.json`` keeps), and says through
``needs_pose_landmarks`` that it cannot generate without one. The release's ``pose_control.py`` repeats
its P landmark images over each batch of consecutive images (and asserts that the batch size divides by
P): image i of the run is conditioned on landmark image ``i mod P``. Here i is the image's index in the
dataset (identity-major: ``label * images_per_id + k``), whatever the batch, shard or rank that makes it,
so a resumed or sharded run conditions every image exactly as an uninterrupted one does.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import FacebenchError

#: The assignment rule, as ``dataset.json`` states it beside the landmark images.
ASSIGNMENT = ("image i of the dataset (i = label * images_per_id + k, the order the set is written in) is "
              "conditioned on pose i mod P, P = the number of poses (the release's pose_control.py cycles its "
              "landmark images over each batch of consecutive images)")


def pose_indices(first_image: int, count: int, poses: int) -> np.ndarray:
    """The pose of each of ``count`` images from dataset index ``first_image`` on."""
    return (np.arange(first_image, first_image + count, dtype=np.int64) % int(poses)).astype(np.int64)


def pose_landmarks(generator: Any, generator_name: str, value: str | None, *, attrop: Any = None) -> Any:
    """The pose set ``--pose-landmarks VALUE`` names for ``generator`` (None without the option), or a
    one-line refusal: a generator that takes no landmark images, one that needs them and got none, and
    AttrOP asked for in the same run (two ways of steering the pose; AttrOP runs on generators without a
    pose model, e.g. ``vec2face`` or ``vec2face_plus`` with ``main_model.pth``)."""
    needs = bool(getattr(generator, "needs_pose_landmarks", False))
    if value is None:
        if needs:
            raise FacebenchError(f"generator '{generator_name}' conditions every image on a landmark image (its "
                                 "weights hold a pose model): pass --pose-landmarks with named poses (e.g. "
                                 "frontal,yaw-30,yaw+30), a list of landmark images or a file of 5-point "
                                 "coordinates; for generation without pose control use --weights main_model.pth")
        return None
    reader = getattr(generator, "pose_landmarks", None)
    if not callable(reader):
        raise FacebenchError(f"--pose-landmarks: generator '{generator_name}' takes no landmark images "
                             "(vec2face_plus with its pose_model.pth does)")
    if attrop is not None and (attrop.spec or attrop.identity_prepass):
        raise FacebenchError("--pose-landmarks steers the pose with the pose model, --attrop and "
                             "--identity-prepass by optimising the vectors: choose one (AttrOP runs on "
                             "vec2face, or vec2face_plus with main_model.pth)")
    pose = reader(value)
    if len(pose) < 1:
        raise FacebenchError(f"--pose-landmarks {value}: no landmark images")
    return pose
