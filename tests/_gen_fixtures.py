"""Small components for the generation tests: a tiny generator, a folder format and toy attribute models.

They go through the same registries as the real ones (registered by :data:`plugin`), so the commands'
code path is the one a Vec2Face run takes; only the models are tiny.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from facebench import atomic, hookimpl

DIM = 32
SIZE = 16


class TinyGenerator(torch.nn.Module):
    """Vectors -> (N,3,16,16) images in [-1,1]; it draws noise from its own RNG like Vec2Face's masks."""

    feature_dim = DIM
    image_size = SIZE

    def __init__(self, weights=None, device="cpu", delay=None):
        super().__init__()
        gen = torch.Generator().manual_seed(1234)
        self.proj = torch.nn.Linear(DIM, 3 * SIZE * SIZE)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(3 * SIZE * SIZE, DIM, generator=gen) * 0.4)
            self.proj.bias.zero_()
        self.rng = torch.Generator().manual_seed(0)
        self.delay = float(os.environ.get("TINYGEN_DELAY", "0")) if delay is None else delay

    def manual_seed(self, seed: int) -> None:
        self.rng.manual_seed(seed)

    def generate(self, vectors, *, masks=None):
        if self.delay:
            time.sleep(self.delay)
        unit = vectors / vectors.norm(dim=1, keepdim=True)
        jitter = torch.rand(vectors.shape[0], 1, generator=self.rng).to(vectors.device) * 0.05
        return torch.tanh(self.proj(unit * 3) + jitter).view(-1, 3, SIZE, SIZE)


class GlobalRNGGenerator(TinyGenerator):
    """A third-party-style generator: no ``reseed``, no RNG of its own; its jitter comes from Python's,
    numpy's and torch's global RNGs."""

    manual_seed = None  # not inherited: nothing of its own to seed

    def __init__(self, weights=None, device="cpu"):
        super().__init__(weights, device)
        del self.rng

    def generate(self, vectors, *, masks=None):
        import random

        if self.delay:
            time.sleep(self.delay)
        unit = vectors / vectors.norm(dim=1, keepdim=True)
        jitter = torch.rand(vectors.shape[0], 1) * 0.05 + random.random() * 0.05 + float(np.random.rand()) * 0.05
        return torch.tanh(self.proj(unit * 3) + jitter).view(-1, 3, SIZE, SIZE)


class ToyIdentity:
    """Least-squares inverse of the tiny generator's projection: recovers the vector's direction."""

    input_size = (SIZE, SIZE)
    mean = (0.5, 0.5, 0.5)
    std = (0.5, 0.5, 0.5)
    flip_test = False

    def __init__(self, weights=None, device="cpu"):
        self.pinv = torch.linalg.pinv(TinyGenerator().proj.weight.detach())

    def forward_tensor(self, x):
        return torch.atanh(x.reshape(len(x), -1).clamp(-0.999, 0.999)) @ self.pinv.T

    def embed(self, images):
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
        feats = self.forward_tensor(x)
        return torch.nn.functional.normalize(feats, dim=1).numpy()


class ToyPose(ToyIdentity):
    """'Yaw' = 80 * tanh(10 x (left-half minus right-half brightness)): never reaches 80 degrees."""

    outputs = ("pitch", "yaw", "roll")

    def forward_tensor(self, x):
        half = x.shape[-1] // 2
        yaw = 80 * torch.tanh(10 * (x[..., :half].mean(dim=(1, 2, 3)) - x[..., half:].mean(dim=(1, 2, 3))))
        zero = torch.zeros_like(yaw)
        return torch.stack([zero, yaw, zero], dim=1)


class ToyQuality(ToyIdentity):
    """Quality = norm of 100 x the image's mean colour (AttrOP's quality loss reads the norm)."""

    def forward_tensor(self, x):
        return x.mean(dim=(2, 3)) * 100


class FolderWriter:
    def __init__(self, path):
        self.path = Path(path)
        self.count: dict[int, int] = {}

    def __enter__(self):
        self._ctx = atomic.atomic_dir(self.path)
        self.tmp = self._ctx.__enter__()
        return self

    def add(self, data: bytes, label: int) -> None:
        k = self.count.get(label, 0)
        self.count[label] = k + 1
        ext = "png" if data[:4] == b"\x89PNG" else "jpg"
        folder = self.tmp / f"{label:06d}"
        folder.mkdir(exist_ok=True)
        (folder / f"{k:03d}.{ext}").write_bytes(data)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


class FolderReader:
    def __init__(self, path):
        self.path = Path(path)
        self.files = sorted(p for p in self.path.rglob("*") if p.is_file())
        self.labels = np.array([int(p.parent.name) for p in self.files], dtype=np.int64)
        self.num_classes = len(set(self.labels.tolist()))

    def __len__(self):
        return len(self.files)

    def label(self, i):
        return int(self.labels[i])

    def image_bytes(self, i):
        return self.files[i].read_bytes()

    def image(self, i):
        from PIL import Image

        with Image.open(self.files[i]) as im:
            return np.asarray(im.convert("RGB"))

    def close(self):
        pass


class TestFolderFormat:
    name = "testfolder"
    role = "train"

    def detect(self, path):
        return Path(path).is_dir()

    def open(self, path):
        return FolderReader(path)

    def writer(self, path, **options):
        return FolderWriter(path)


class _Plugin:
    @hookimpl
    def register_generators(self, register):
        register("tinygen", TinyGenerator, "tiny test generator")
        register("globalgen", GlobalRNGGenerator, "draws from the global RNGs only")
        register("nondetgen", GlobalRNGGenerator, "marked non-deterministic", deterministic=False)

    @hookimpl
    def register_formats(self, register):
        register("testfolder", TestFolderFormat, "test image folder")

    @hookimpl
    def register_feature_extractors(self, register):
        register("toy-identity", ToyIdentity, "inverse of tinygen")
        register("toy-pose", ToyPose, "toy yaw")
        register("toy-quality", ToyQuality, "toy quality")


plugin = _Plugin()


def install(monkeypatch=None):
    """Make the process-wide registries include the test plugin (through monkeypatch in tests)."""
    import functools

    from facebench import pluginmanager

    @functools.lru_cache(maxsize=1)
    def plugin_set():
        return pluginmanager.build_plugin_set(extra_plugins={"gentest": plugin})

    if monkeypatch is not None:
        monkeypatch.setattr(pluginmanager, "get_plugin_set", plugin_set)
    else:
        pluginmanager.get_plugin_set = plugin_set
    return plugin_set()


def cli(monkeypatch=None):
    from facebench.cli import create_cli

    return create_cli(install(monkeypatch))


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


if __name__ == "__main__":  # used by the kill -9 test: the real CLI with the test plugin added
    cli().main()
