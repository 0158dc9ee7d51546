"""Small synthetic face-like datasets for the FR tests, written through the real format writers.

Each identity is a smooth random colour pattern; each image of it is shifted, brightened and noised, so
identity survives nuisance changes and a model must learn it. Verification packs use identities that
never appear in the training set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def one_thread():
    """One torch thread: on a shared 2-core machine two threads per process thrash (10x slower), and
    runs compared for equality must use the same thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def identity_pattern(rng: np.random.Generator, size: int) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    coarse = torch.from_numpy(rng.uniform(30, 225, (1, 3, 4, 4)).astype(np.float32))
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()


def render(pattern: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    dy, dx = rng.integers(-3, 4, 2)
    img = np.roll(pattern, (int(dy), int(dx)), axis=(0, 1)) + rng.uniform(-20, 20)
    img = img + rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_train_folder(root: Path, identities: int = 24, per_identity: int = 8, size: int = 56, seed: int = 0) -> Path:
    from facebench.data import encode_image, open_writer

    rng = np.random.default_rng(seed)
    with open_writer(root, "folder") as writer:
        for label in range(identities):
            pattern = identity_pattern(rng, size)
            for _ in range(per_identity):
                writer.add(encode_image(render(pattern, rng), "png"), label)
    return root


def write_pack(path: Path, pairs: int = 60, size: int = 56, seed: int = 1000) -> Path:
    """A balanced ``.bin`` pack (half same, half different) of identities unseen in training."""
    from facebench.data import encode_image, open_writer

    rng = np.random.default_rng(seed)
    with open_writer(path, "bin") as writer:
        for k in range(pairs):
            same = k % 2 == 0
            a = identity_pattern(rng, size)
            b = a if same else identity_pattern(rng, size)
            writer.add(encode_image(render(a, rng), "png"), encode_image(render(b, rng), "png"), same)
    return path


class ArrayReader:
    """A train reader over in-memory arrays (the ARCHITECTURE.md train-reader contract), picklable."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, path: str = "<memory>"):
        self.images = images
        self._labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = int(self._labels.max()) + 1
        self.path = path

    @property
    def labels(self) -> np.ndarray:
        return self._labels

    def __len__(self) -> int:
        return len(self.images)

    def label(self, i: int) -> int:
        return int(self._labels[i])

    def image(self, i: int) -> np.ndarray:
        return self.images[i]

    def close(self) -> None:
        pass


def array_reader(identities: int = 8, per_identity: int = 4, size: int = 56, seed: int = 0) -> ArrayReader:
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(identities):
        pattern = identity_pattern(rng, size)
        for _ in range(per_identity):
            images.append(render(pattern, rng))
            labels.append(label)
    return ArrayReader(np.stack(images), np.array(labels))
