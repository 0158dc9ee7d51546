"""A toy set for Vec2Face+'s pose training, in the layout of ``WebFace4M_with_landmarks.lmdb``.

Each record is a toyfaces photo, its identity feature, its label and the landmark image of its five
points. Toyfaces knows where it drew the eyes, the nose tip and the mouth corners
(:func:`facebench_plugins.toyfaces.render.face_landmarks`), so the landmark image needs no detector; it is
drawn by :func:`.landmarks.render_landmarks`, the drawing generation uses for its target poses, so the
pose model sees the same kind of image in training and in generation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facebench.data import encode_image, open_writer
from facebench.errors import ConfigError

#: The per-coordinate spread of the release's raw ArcFace-R100 features of WebFace4M (norm about 22).
RAW_STD = 0.97


def toy_identity_features(identities: int, per_identity: int, seed: int, dim: int = 512,
                          jitter: float = 0.1) -> np.ndarray:
    """Stand-in teacher features: a seeded Gaussian vector per identity at the raw ArcFace scale, each image's
    a little off its identity's (``jitter`` of the spread), in record order."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((identities, dim)) * RAW_STD
    noise = rng.standard_normal((identities * per_identity, dim)) * RAW_STD * jitter
    return (np.repeat(centres, per_identity, axis=0) + noise).astype(np.float32)


def write_toy_landmarks_lmdb(path: str | os.PathLike, *, identities: int = 4, per_identity: int = 4, size: int = 112,
                             seed: int = 0, teacher: Callable[[np.ndarray], np.ndarray] | None = None) -> Path:
    """Write ``identities x per_identity`` records ``[image, feature, label, landmark image]`` to ``path``.

    ``teacher`` maps the uint8 (N, S, S, 3) photos to their raw features (e.g. an extractor's
    ``lambda x: embed(x, raw=True)``); without one, :func:`toy_identity_features` stands in. Photos are PNG,
    landmark images JPEG as the release stores them, both ``size`` pixels square.
    """
    from facebench_plugins.toyfaces.params import Difficulty, rng_for, sample_identity, sample_nuisance
    from facebench_plugins.toyfaces.render import face_landmarks, render_face

    from .landmarks import render_landmarks

    if identities < 1 or per_identity < 1:
        raise ConfigError(f"a toy pose set needs at least one identity and image, got {identities} x {per_identity}")
    difficulty = Difficulty()
    photos, marks, labels = [], [], []
    for i in range(identities):
        ident = sample_identity(rng_for(seed, 7001, i))
        for j in range(per_identity):
            nuisance = sample_nuisance(rng_for(seed, 7002, i, j), ident, difficulty)
            photos.append(render_face(ident, nuisance, size))
            marks.append(render_landmarks(face_landmarks(ident, nuisance, size), size)[0])
            labels.append(i)
    images = np.stack(photos)
    if teacher is not None:
        features = np.asarray(teacher(images), dtype=np.float32)
    else:
        features = toy_identity_features(identities, per_identity, seed)
    with open_writer(path, "lmdb", features=True, landmarks=True) as writer:
        for image, feature, label, mark in zip(images, features, labels, marks):
            writer.add(encode_image(image, "png"), label, feature=feature, landmark=mark)
    return Path(path)
