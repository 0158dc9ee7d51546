"""Image features of a folder benchmark (IJB, TinyFace), computed once per model and kept in the run.

The features go through :func:`facebench.evaluation.features.dataset_features` (resumable, memory-mapped)
under ``<run>/features/``, keyed by the benchmark's files and the model's weights: a rerun with other
scoring options (IJB's flip fusion, norm, detector weighting) reads them back and only rescores.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from facebench.atomic import refuse_link
from facebench.data.images import encode_image
from facebench.errors import MissingFileError
from facebench.evaluation.embed import TensorModel
from facebench.evaluation.features import dataset_features
from facebench.evaluation.protocols import ProtocolContext


class FileImages:
    """A list of image files read as a dataset reader (``image_bytes``, ``where``); ``transform`` may turn
    a decoded image into another (alignment), which is then stored losslessly (PNG) for the embedder."""

    def __init__(self, path: Path, files: list[Path], transform: Callable[[int, bytes], np.ndarray] | None = None):
        self.path = str(path)
        self.files = files
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def image_bytes(self, i: int) -> bytes:
        file = self.files[i]
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            raise MissingFileError(file, "image") from None
        if self.transform is None:
            return data
        return encode_image(self.transform(i, data), "png")

    def where(self, i: int) -> str:
        return str(self.files[i])


def with_mirror(model: TensorModel) -> TensorModel:
    """A model whose output is the raw feature of the image, then of its horizontal mirror (N, 2D)."""
    import torch

    def forward(x):
        return torch.cat([model.forward(x), model.forward(x.flip(-1))], dim=1)

    return TensorModel(forward=forward, input_size=model.input_size, device=model.device, name=model.name)


def cached_features(ctx: ProtocolContext, reader: Any, key: str, root: Path, params: dict[str, Any], *,
                    model: TensorModel | None = None, flip_test: bool = False) -> np.ndarray:
    """Features of every image of ``reader`` from ``<run>/features/<key>-<hash of root>.npy`` (computed if
    absent); benchmarks on one root (IJB-C 1:1 and 1:N) share them. A cached file is checked against the
    sha256 its shards recorded when written and computed again (with a warning) when it no longer matches
    (:func:`~facebench.evaluation.features.dataset_features`)."""
    tag = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:10]
    folder = Path(ctx.workdir) / "features" if ctx.workdir is not None else Path(tempfile.mkdtemp(prefix="fb-"))
    refuse_link(folder, "feature cache").mkdir(parents=True, exist_ok=True)  # the run's own folder, not a link
    params = {**params, "model": ctx.model_name, "weights_sha256": ctx.weights_sha256}
    return dataset_features(model or ctx.model, reader, folder / f"{key}-{tag}.npy", params=params,
                            batch_size=ctx.batch_size, flip_test=flip_test)
