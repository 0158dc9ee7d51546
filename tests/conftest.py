"""The test suite's shared helpers, in one place: the plugin isolation every test gets, the generation
components (a tiny generator, a folder format, toy attribute models), synthetic FR datasets and the run
directories the report tests read. Test modules import what they need with ``import conftest``; the
kill -9 tests run this file as a script (the real CLI with the test plugin added).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from facebench import atomic, hookimpl
from facebench.cli import create_cli
from facebench.data import encode_image, open_writer
from facebench.pluginmanager import build_plugin_set
from facebench.runs import Run

# --------------------------------------------------------------------------------- plugin isolation
# Shared test fixtures: a fresh plugin set per test and quiet progress bars.


@pytest.fixture(autouse=True)
def _isolated_plugins(monkeypatch, tmp_path_factory):
    """Each test sees the plugin environment it sets up, not one cached by an earlier test (and the hash
    cache of this test session, not the user's)."""
    from facebench.pluginmanager import reset_plugins

    monkeypatch.setenv("FACEBENCH_QUIET", "1")
    monkeypatch.setenv("FACEBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "facebench-cache"))
    monkeypatch.delenv("FACEBENCH_PLUGINS", raising=False)
    monkeypatch.delenv("FACEBENCH_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("FACEBENCH_DEBUG", raising=False)
    reset_plugins()
    yield
    reset_plugins()


# ---------------------------------------------------------------------------- generation components
# Small components for the generation tests: a tiny generator, a folder format and toy attribute models.
#
# They go through the same registries as the real ones (registered by :data:`plugin`), so the commands'
# code path is the one a Vec2Face run takes; only the models are tiny.




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
        rank_delay = os.environ.get(f"TINYGEN_DELAY_RANK{os.environ.get('RANK', '0')}")  # uneven torchrun ranks
        self.delay = float(rank_delay or os.environ.get("TINYGEN_DELAY", "0")) if delay is None else delay

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


def gen_cli(monkeypatch=None):
    from facebench.cli import create_cli

    return create_cli(install(monkeypatch))


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def images_of(out: Path) -> list[bytes]:
    """The encoded images of a generate run's ``dataset.folder``, in reader order."""
    from facebench.data import open_dataset

    reader = open_dataset(out / "dataset.folder")
    try:
        return [reader.image_bytes(i) for i in range(len(reader))]
    finally:
        reader.close()


# ---------------------------------------------------------------------------- synthetic FR datasets
# Small synthetic face-like datasets for the FR tests, written through the real format writers.
#
# Each identity is a smooth random colour pattern; each image of it is shifted, brightened and noised, so
# identity survives nuisance changes and a model must learn it. Verification packs use identities that
# never appear in the training set.




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


# --------------------------------------------------------------------------- report run directories
# Run directories with synthetic result files, shaped as ARCHITECTURE.md "Result files" describes.



TOY_PACKS = ("toy_lfw", "toy_cfp_fp", "toy_cplfw", "toy_agedb_30", "toy_calfw")


def eval_run(root: Path, name: str, dataset: str, accuracies: dict[str, float], *, fraction: bool = True,
             images: int | None = None, identities: int | None = None) -> Path:
    """An evaluation run: results.json rows (accuracy as a fraction unless ``fraction`` is False)."""
    path = root / name
    run = Run.start(path, config={"suite": "toy-five", "model": f"runs/{name}"}, seed=1, device="cpu",
              command=["facebench", "evaluate", "--suite", "toy-five"])
    rows = []
    for bench, acc in accuracies.items():
        rows.append({"dataset": dataset, "benchmark": bench, "accuracy": acc if fraction else acc * 100,
                     "std": 0.01 if fraction else 1.0, "threshold": 1.42, "tar_at_far_1e-3": 0.5,
                     "tar_at_far_1e-4": 0.25, "eer": 0.08})
    run.write_json("results.json", rows)
    if images is not None:
        run.write_json("model.json", {"backbone": "tiny", "recipe": "tiny-arcface",
                                      "dataset": {"name": dataset, "images": images, "identities": identities}})
    return path


def analysis_run(root: Path, name: str, dataset: str, seed: int = 0, *, n_ids: int = 200, nested: bool = False) -> Path:
    """Analysis arrays plus a summary, flat or nested under ``analyses`` as ``facebench analyze`` writes it."""
    rng = np.random.default_rng(seed)
    path = root / name
    run = Run.start(path, seed=seed, device="cpu", command=["facebench", "analyze", dataset])
    (path / "analysis").mkdir(parents=True, exist_ok=True)
    np.save(path / "analysis" / "genuine.npy", rng.normal(0.6, 0.1, 500))
    np.save(path / "analysis" / "impostor.npy", rng.normal(0.05, 0.1, 2000))
    np.save(path / "analysis" / "intra.npy", rng.normal(0.6, 0.15, 800))
    np.save(path / "analysis" / "inter.npy", rng.normal(0.1, 0.2, 1500))
    np.save(path / "analysis" / "separability.npy", np.minimum(np.arange(1, n_ids + 1), 0.9 * np.arange(1, n_ids + 1) + 3).astype(np.int64))
    if nested:
        run.write_json("analysis/summary.json", {
            "dataset": f"/data/{dataset}", "identities": n_ids, "images": 800, "analyses": {
                "pair-distributions": {"eer": 0.042, "eer_estimator": "tie-safe ROC", "genuine_mean": 0.6},
                "class-noise": {"intra_noise": 0.125, "inter_noise": 0.0005, "nearest_mean": 0.3},
                "separability": {"threshold": 0.35, "separable_share": 0.9}}})
    else:
        run.write_json("analysis/summary.json", {"dataset": dataset, "eer": 0.031, "intra_noise": 0.02,
                                                 "inter_noise": 0.001, "separability_threshold": 0.4})
    return path


def dataset_run(root: Path, name: str, dataset: str, generator: str, png: bytes | None = None) -> Path:
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "dataset.json").write_text(json.dumps({
        "name": dataset, "identities": 40, "images": 800, "generator": generator,
        "settings": {"sigma": [0.3, 0.5, 0.7], "share": [0.4, 0.4, 0.2], "attrop": "pose=60:0.4"}}))
    if png is not None:
        (path / "samples.png").write_bytes(png)
    return path


# ----------------------------------------------------------------------------- evaluation extractors
# Deterministic toy models for `evaluate`/`analyze`: "pixels" average-pools the image to 4x4 and projects it
# with a weights file, so expected embeddings can be recomputed with plain numpy; "angles" is a toy pose
# model. The fixtures `cli` (the CLI with them registered) and `weights` (a pixels weights file) serve the
# evaluation tests.

PIXEL_SIZE = 32


class PixelExtractor:
    """Deterministic toy FR model: 4x4 average pooling, then a projection loaded from a weights file."""

    def __init__(self, weights=None, device="cpu", nan_on_black=False, **_):
        from facebench.safe_load import load_state_dict

        self.proj = load_state_dict(weights, what="pixels weights")["proj"].to(device)
        self.input_size = PIXEL_SIZE
        self.mean = self.std = (0.5, 0.5, 0.5)
        self.flip_test = True
        self.nan_on_black = nan_on_black

    def forward_tensor(self, x):
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        out = pooled @ self.proj
        if self.nan_on_black:
            black = (x <= -0.99).flatten(1).all(dim=1)
            out[black] = float("nan")
        return out

    def embed(self, images):
        raise AssertionError("evaluate must use forward_tensor (raw embeddings for the flip test)")


class AnglesExtractor:
    """Toy pose model: 'yaw' = 90 x (mean of the red channel in [-1, 1]), pitch = 0, roll = 5."""

    input_size = PIXEL_SIZE
    outputs = ("pitch", "yaw", "roll")

    def __init__(self, weights=None, device="cpu", **_):
        self.device = device

    def forward_tensor(self, x):
        yaw = 90.0 * x[:, 0].mean(dim=(1, 2))
        return torch.stack([torch.zeros_like(yaw), yaw, torch.full_like(yaw, 5.0)], dim=1)


def _plugin():
    @hookimpl
    def register_feature_extractors(register):
        register("pixels", PixelExtractor, "test extractor")
        register("angles", AnglesExtractor, "test pose extractor")
        register("pixels-nan", lambda weights=None, device="cpu", **kw: PixelExtractor(weights, device, True),
                 "test extractor that outputs NaN for black images")

    return types.SimpleNamespace(register_feature_extractors=register_feature_extractors)


def cli_with_test_extractors(monkeypatch):
    """The CLI with the test extractors visible to every registry lookup, as an installed plugin's would be."""
    import facebench.pluginmanager as pm

    plugins = build_plugin_set(extra_plugins={"test-extractors": _plugin()})
    def current():
        return plugins

    current.cache_clear = lambda: None  # conftest resets the cache before monkeypatch restores the original
    monkeypatch.setattr(pm, "get_plugin_set", current)
    return create_cli(plugins)


def write_weights(path):
    gen = torch.Generator().manual_seed(0)
    torch.save({"proj": torch.randn(48, 24, generator=gen)}, path)
    return path


@pytest.fixture
def cli(monkeypatch):
    return cli_with_test_extractors(monkeypatch)


@pytest.fixture
def weights(tmp_path):
    return write_weights(tmp_path / "pixels.pt")


def identity_image(identity: int, rng: np.random.Generator, noise: float) -> np.ndarray:
    pattern = np.random.default_rng(1000 + identity).integers(40, 216, size=(4, 4, 3))
    image = np.kron(pattern, np.ones((PIXEL_SIZE // 4, PIXEL_SIZE // 4, 1)))
    image = image + rng.normal(0, noise, image.shape) + rng.normal(0, noise / 2)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_pack(path, pairs: int, seed: int, noise: float = 40.0):
    """A balanced pack in the LFW layout (per fold: same pairs then different pairs); returns its images."""
    rng = np.random.default_rng(seed)
    images, flags = [], []
    per_fold = pairs // 10
    for k in range(pairs):
        same = (k % per_fold) < per_fold // 2
        a = int(rng.integers(0, 200))
        b = a if same else int((a + 1 + rng.integers(0, 199)) % 200)
        images += [identity_image(a, rng, noise), identity_image(b, rng, noise)]
        flags.append(same)
    with open_writer(path, "bin") as writer:
        for k, same in enumerate(flags):
            writer.add(encode_image(images[2 * k], "png"), encode_image(images[2 * k + 1], "png"), same)
    return np.stack(images), np.array(flags)


def plain_features(images: np.ndarray, weights) -> np.ndarray:
    """The extractor recomputed with numpy: 4x4 average pooling of (x/127.5 - 1), then the projection."""
    proj = torch.load(weights, weights_only=True)["proj"].numpy().astype(np.float64)
    x = images.astype(np.float64) / 127.5 - 1.0
    n = x.shape[0]
    pooled = x.reshape(n, 4, PIXEL_SIZE // 4, 4, PIXEL_SIZE // 4, 3).mean(axis=(2, 4)).transpose(0, 3, 1, 2).reshape(n, 48)
    return pooled @ proj


def plain_embeddings(images: np.ndarray, weights) -> np.ndarray:
    """What the flip test must give: features of the image plus features of its mirror image."""
    return plain_features(images, weights) + plain_features(images[:, :, ::-1], weights)


if __name__ == "__main__":  # used by the kill -9 test: the real CLI with the test plugin added
    gen_cli().main()


def metrics_rows(run_dir: Path, event: str = "train") -> list[dict]:
    """The rows of a run's ``metrics.jsonl`` with the given ``event`` (``train`` lines, ``epoch`` means)."""
    import json

    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("event") == event]


def kill_after_shards(cmd: list[str], manifest: Path, *, shards: int = 3, env: dict | None = None,
                      timeout: float = 120) -> int:
    """Start ``cmd``, SIGKILL it once ``manifest`` records ``shards`` finished shards (a kill -9 in the middle
    of a sharded job), and return how many were recorded; fails if the command ended by itself first."""
    import signal
    import subprocess

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done, deadline = 0, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                done = len(json.loads(manifest.read_text())["done"])
            except (OSError, json.JSONDecodeError, KeyError, TypeError):
                done = 0
            if done >= shards:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return done


def free_port() -> int:
    """A TCP port nobody listens on now (for a rendezvous of test ranks)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*target: str, ranks: int = 2) -> list[str]:
    """The ``torchrun`` command line for ``ranks`` local processes on a free port; ``target`` is a script
    path with its arguments, or ``"-m", "facebench", ...``."""
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_addr",
            "127.0.0.1", "--master_port", str(free_port()), *target]


# ------------------------------------------------------------------------------ the user's workflow
# A researcher's own route through the toolkit on a tiny toy world, typed as the docs show it (relative
# paths, default options where the docs show none), run once per session: the scenario test checks it
# and the examples test runs the documented commands against the folders it leaves.

WORKFLOW_SIZE = {"identities": 16, "images": 8, "size": 32, "pairs": 100}


def invoke(cli, args, cwd: Path | None = None):
    """``facebench ARGS`` through ``cli`` in this process (in ``cwd`` when given), as a user types it."""
    from click.testing import CliRunner

    before = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, [str(a) for a in args])
    finally:
        os.chdir(before)


def cli_in(folder: Path, *args: str):
    """Run ``facebench ARGS`` in ``folder`` (as a user in that directory), in this process."""
    from click.testing import CliRunner

    before = Path.cwd()
    os.chdir(folder)
    try:
        return CliRunner().invoke(create_cli(), [str(a) for a in args])
    finally:
        os.chdir(before)


def _ok(result, step: str):
    assert result.exit_code == 0, f"{step}: {result.output}"
    return result


@pytest.fixture(scope="session")
def workflow(tmp_path_factory):
    """build -> train -> evaluate -> embed -> sample-ids -> generate another set -> train -> evaluate, in a
    fresh folder; returns the folder and each step's result (the report is left to the tests)."""
    import re

    from facebench.pluginmanager import reset_plugins

    quiet = os.environ.get("FACEBENCH_QUIET")
    os.environ["FACEBENCH_QUIET"] = "1"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads per process thrash on a shared 2-core machine
    reset_plugins()
    home = tmp_path_factory.mktemp("workflow")
    s = WORKFLOW_SIZE
    steps = {}
    try:
        steps["build"] = _ok(cli_in(home, "toyfaces", "build", "toy", "--identities", s["identities"],
                                    "--images-per-identity", s["images"], "--size", s["size"], "--pairs", s["pairs"]),
                             "build")
        steps["train"] = _ok(cli_in(home, "train-fr", "--recipe", "tiny-arcface", "--data", "toy/train", "--val",
                                    "toy_lfw", "--out", "runs/tiny"), "train")
        steps["evaluate"] = _ok(cli_in(home, "evaluate", "--suite", "toy-five", "--model", "runs/tiny",
                                       "--data-root", "toy"), "evaluate")
        steps["embed"] = _ok(cli_in(home, "embed", "--extractor", "fr-run", "--weights", "runs/tiny", "toy/train",
                                    "--out", "feats.npy", "--raw"), "embed")
        # sample-ids with the documented default tau: refused, with the value that works
        steps["sample-default"] = cli_in(home, "sample-ids", "--features", "feats.centers.npy", "--n",
                                         s["identities"], "--out", "ids.npy")
        tau = re.search(r"--tau ([0-9.]+) keeps", steps["sample-default"].output)
        assert steps["sample-default"].exit_code == 2 and tau, steps["sample-default"].output
        steps["sample"] = _ok(cli_in(home, "sample-ids", "--features", "feats.centers.npy", "--n", s["identities"],
                                     "--tau", tau.group(1), "--out", "ids.npy"), "sample-ids")
        steps["generate"] = _ok(cli_in(home, "generate", "--generator", "noise_projection", "--ids", "ids.npy",
                                       "--images-per-id", s["images"], "--out", "runs/noise-set"), "generate")
        steps["train-2"] = _ok(cli_in(home, "train-fr", "--recipe", "tiny-arcface", "--data", "runs/noise-set",
                                      "--val", "toy_lfw", "--data-root", "toy", "--out", "runs/noise"), "train-2")
        steps["evaluate-2"] = _ok(cli_in(home, "evaluate", "--suite", "toy-five", "--model", "runs/noise",
                                         "--data-root", "toy"), "evaluate-2")
    finally:
        if quiet is None:
            os.environ.pop("FACEBENCH_QUIET", None)
        torch.set_num_threads(threads)
        reset_plugins()
    return types.SimpleNamespace(home=home, steps=steps, tau=float(tau.group(1)))
