"""Evaluation at paper scale, checked at small sizes on CPU: pair lists embed each distinct image once,
embedding and feature extraction split over 2 gloo ranks give the single-process result, the folder
reader holds no Python string per image, and ``analyze``'s analyses on a memory-mapped 2M x 512 feature
file stay under 2 GB resident."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import torchrun, write_train_folder

from facebench.data import encode_image, open_dataset, open_pairs
from facebench.evaluation.embed import TensorModel, embed_images, embed_pairs, shard_slice
from facebench.evaluation.features import dataset_features

HERE = Path(__file__).parent


def _pool(x):
    return torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)


def _pair_list(root: Path, images: int = 12, pairs: int = 200, seed: int = 0) -> tuple[Path, np.ndarray]:
    """A CSV pair list over ``images`` files, each used by many pairs; returns the pixels too."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (images, 24, 24, 3), dtype=np.uint8)
    (root / "img").mkdir(parents=True)
    for j, image in enumerate(pixels):
        (root / "img" / f"{j:03d}.png").write_bytes(encode_image(image, "png"))
    with open(root / "pairs.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["path_a", "path_b", "same"])
        for _ in range(pairs):
            a, b = rng.choice(images, 2, replace=False)
            out.writerow([f"img/{a:03d}.png", f"img/{b:03d}.png", int(rng.integers(0, 2))])
    return root, pixels


def test_a_pair_list_embeds_each_distinct_image_once_and_stats_no_file_while_parsing(tmp_path, monkeypatch):
    root, pixels = _pair_list(tmp_path / "list")
    stats = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **k: stats.append(str(p)) or real_stat(p, *a, **k))
    reader = open_pairs(root, "pairlist")
    parse_stats = [s for s in stats if "/img/" in s]
    monkeypatch.setattr(os, "stat", real_stat)
    assert len(parse_stats) <= 1  # one check that the root is right, not one per listed path
    rows = []

    def forward(x):
        rows.append(x.shape[0])
        return _pool(x)

    emb_a, emb_b = embed_pairs(TensorModel(forward=forward, input_size=24), reader, batch_size=5, flip_test=False)
    assert sum(rows) == 12  # 200 pairs = 400 image occurrences, 12 distinct files: 12 forward rows
    paths = [row for row in csv.reader(open(root / "pairs.csv"))][1:]
    expected = _pool(torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1).numpy()
    for k in (0, 57, 199):
        a, b = (int(Path(p).stem) for p in paths[k][:2])
        np.testing.assert_allclose(emb_a[k], expected[a], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(emb_b[k], expected[b], rtol=1e-6, atol=1e-6)
    rows.clear()
    embed_pairs(TensorModel(forward=forward, input_size=24), reader, batch_size=5, flip_test=True, workers=2)
    assert sum(rows) == 24  # with the flip test: each image and its mirror, decoded in 2 workers


def test_a_missing_image_is_named_when_read(tmp_path):
    root, _ = _pair_list(tmp_path / "list", images=4, pairs=10)
    (root / "img" / "003.png").unlink()
    reader = open_pairs(root, "pairlist")  # parsing does not look for every file
    with pytest.raises(Exception, match="003.png"):
        embed_pairs(TensorModel(forward=_pool, input_size=24), reader, flip_test=False)


def test_shard_slices_cover_everything_once():
    for n in (0, 1, 7, 8, 103):
        parts = [shard_slice(n, r, 3) for r in range(3)]
        assert [i for p in parts for i in range(n)[p]] == list(range(n))


_TWO_RANKS = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np, torch
    from facebench.data import open_dataset, open_pairs
    from facebench.evaluation.embed import TensorModel, embed_pairs
    from facebench.evaluation.features import dataset_features
    from facebench.runtime import init_distributed, shutdown
    torch.set_num_threads(1)
    pool = lambda x: torch.nn.functional.adaptive_avg_pool2d(x, 2).flatten(1)
    ctx = init_distributed("cpu")
    tmp = Path(sys.argv[1])
    a, b = embed_pairs(TensorModel(forward=pool, input_size=24), open_pairs(tmp / "list", "pairlist"),
                       batch_size=4, ctx=ctx)
    feats = dataset_features(TensorModel(forward=pool, input_size=32), open_dataset(tmp / "train"),
                             tmp / "feats.npy", params={"m": 1}, batch_size=8, shard_size=10, ctx=ctx)
    if ctx.rank == 0:
        np.save(tmp / "a.npy", a)
    np.save(tmp / f"rows{ctx.rank}.npy", np.asarray(feats))
    shutdown(ctx)
""")


def test_two_gloo_ranks_share_embedding_and_feature_extraction(tmp_path):
    """Each rank embeds a share and both get every row; the feature file is written by both ranks into
    one memory map and equals the single-process one."""
    _pair_list(tmp_path / "list")
    write_train_folder(tmp_path / "train", identities=5, per_identity=9, size=32)
    script = tmp_path / "ranks.py"
    script.write_text(_TWO_RANKS)
    done = subprocess.run(torchrun(str(script), str(tmp_path)), env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    model = TensorModel(forward=_pool, input_size=24)
    one_a, _ = embed_pairs(model, open_pairs(tmp_path / "list", "pairlist"), batch_size=4)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), one_a)
    single = dataset_features(TensorModel(forward=_pool, input_size=32), open_dataset(tmp_path / "train"),
                              tmp_path / "single.npy", params={"m": 1}, batch_size=8, shard_size=10)
    for rank in (0, 1):
        np.testing.assert_array_equal(np.load(tmp_path / f"rows{rank}.npy"), np.asarray(single))
    manifests = sorted(p.name for p in tmp_path.glob("feats.manifest*.json"))
    assert manifests == ["feats.manifest-rank0.json", "feats.manifest-rank1.json"]
    done_by = [sorted(json.loads((tmp_path / m).read_text())["done"], key=int) for m in manifests]
    assert done_by == [["0", "2", "4"], ["1", "3"]]  # 45 images in shards of 10, round robin


def test_embed_images_in_workers_equals_in_process(tmp_path):
    write_train_folder(tmp_path / "train", identities=3, per_identity=5, size=32)
    reader = open_dataset(tmp_path / "train")
    from facebench.evaluation.embed import TrainImages

    model = TensorModel(forward=_pool, input_size=28)  # resized on the device after uint8 transfer
    serial = embed_images(model, TrainImages(reader), batch_size=4, workers=0, flip_test=False)
    parallel = embed_images(model, TrainImages(reader), batch_size=4, workers=2, flip_test=False)
    np.testing.assert_array_equal(serial, parallel)
    from facebench.data.tensors import to_model_input

    direct = _pool(to_model_input(np.stack([reader.image(i) for i in range(len(reader))]), 28)).numpy()
    np.testing.assert_allclose(serial, direct, rtol=1e-6, atol=1e-6)


def test_the_folder_reader_keeps_no_string_per_image(tmp_path):
    root = tmp_path / "folder"
    for identity in range(20):
        (root / f"id{identity:03d}").mkdir(parents=True)
        for k in range(400):
            (root / f"id{identity:03d}" / f"{k:08d}.jpg").touch()
    (tmp_path / "warm" / "a").mkdir(parents=True)
    (tmp_path / "warm" / "a" / "0.jpg").touch()
    open_dataset(tmp_path / "warm", "folder")  # plugins load once per process: not the reader's per-image cost
    tracemalloc.start()
    reader = open_dataset(root, "folder")
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(reader) == 8000 and reader.num_classes == 20
    assert held / len(reader) < 40, held  # a str per path ("id007/00000123.jpg") alone is 67 bytes
    assert reader.where(401) == "id001/00000001.jpg" and reader.label(401) == 1
    assert reader.files[:2] == ["id000/00000000.jpg", "id000/00000001.jpg"]


_ANALYZE = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np
    from facebench.config import build_config
    from facebench.evaluation.analyze import AnalysisContext, select_analyses
    from facebench.evaluation.features import centers_of
    tmp = Path(sys.argv[1])
    features = np.load(tmp / "features.npy", mmap_mode="r")
    labels = np.load(tmp / "labels.npy")
    centers, classes = centers_of(features, labels)
    ctx = AnalysisContext(dataset=tmp, reader=None, features=features, labels=labels, centers=centers,
                          classes=classes, model=None, model_name="none")
    results = {}
    for spec in select_analyses(["pair-distributions", "class-noise", "separability"]):
        analysis = spec.create(build_config(spec.config, {})) if spec.config else spec.create()
        results[spec.name] = analysis.run(ctx).summary
    # VmHWM is this process's own peak: ru_maxrss after exec also counts the parent's (pytest's) peak
    peak_mb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")) / 1024
    print(peak_mb, results["pair-distributions"]["genuine_pairs"], results["class-noise"]["images"])
""")


@pytest.mark.slow
def test_analyses_of_a_memory_mapped_2m_x_512_feature_file_stay_under_2gb(tmp_path):
    rows, dim, per_identity = 2_000_000, 512, 100
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(rows // per_identity, dim)).astype(np.float32)
    labels = np.repeat(np.arange(rows // per_identity), per_identity)
    np.save(tmp_path / "labels.npy", labels)
    block = 50_000
    with open(tmp_path / "features.npy", "wb") as fh:  # written with plain writes: nothing mapped here
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)})
        noise = rng.normal(scale=0.8, size=(block, dim)).astype(np.float32)
        for start in range(0, rows, block):
            fh.write((centres[labels[start:start + block]] + np.roll(noise, start // block, axis=0)).tobytes())
    assert (tmp_path / "features.npy").stat().st_size > 4e9
    done = subprocess.run([sys.executable, "-c", _ANALYZE, str(tmp_path)], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, OMP_NUM_THREADS="2"))
    assert done.returncode == 0, done.stderr[-3000:]
    peak_mb, genuine, images = done.stdout.split()
    assert int(genuine) == 100_000 and int(images) == rows
    assert float(peak_mb) < 2048, f"peak resident memory {float(peak_mb):.0f} MB"
