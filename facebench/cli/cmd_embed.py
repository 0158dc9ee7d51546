"""``facebench embed``: features of every image of a dataset, and per-identity centres."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from ..errors import ConfigError
from .options import device_option


def centers_path(out: Path) -> Path:
    return out.with_name(out.name[:-4] + ".centers.npy" if out.name.endswith(".npy") else out.name + ".centers.npy")


def labels_path(out: Path) -> Path:
    return out.with_name(out.name[:-4] + ".labels.npy" if out.name.endswith(".npy") else out.name + ".labels.npy")


@click.command(
    "embed",
    epilog="Example: facebench embed --extractor fr-run --weights runs/tiny toy/train --out feats.npy",
)
@click.argument("data", type=click.Path())
@click.option("--extractor", "extractor_name", required=True,
              help="Feature extractor: a backbone name (iresnet100, se_iresnet50, ...), a released model "
                   "(arcface-r100, hsface10k-se-ir50, ...) or fr-run (facebench plugins --kind feature_extractor).")
@click.option("--weights", default=None,
              help="Weights file (looked up in the weights directory too), or a train-fr run directory for fr-run.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .npy of (N, D) features.")
@click.option("--format", "data_format", default=None, help="Dataset format (detected when omitted).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@device_option()
@click.option("--no-flip", is_flag=True, help="Embed the image alone instead of image + mirror image.")
@click.option("--raw", is_flag=True,
              help="Unnormalised features of the image alone, and centres = plain mean of them: the scale the "
                   "Vec2Face release trains and generates on (for train-generator, sample-ids, generate).")
def embed_command(data: str, extractor_name: str, weights: str | None, out: str, data_format: str | None,
                  batch_size: int, device: str, no_flip: bool, raw: bool) -> None:
    """Write features of every image of DATA, its labels and per-identity centres.

    Outputs: OUT (N x D float32), OUT with .labels.npy (N int64) and .centers.npy (C x D). By default the
    features are L2-normalised (flip test: image + mirror image) and each centre is the mean feature
    renormalised to unit length, as the analyses use them. With --raw they are the model's raw output for
    the image alone and each centre is the plain mean of its identity's raw features, as the release's
    center_features script computes them. OUT appears only when complete; a killed run rerun with the same
    arguments resumes at the first unfinished chunk.
    """
    import os

    from .. import atomic
    from ..console import make_progress
    from ..data import open_dataset
    from ..pluginmanager import registry
    from ..provenance import sha256_path
    from ..runtime import select_device
    from ..shards import ShardManifest

    out_path = Path(out)
    dev = select_device(device)
    reader = open_dataset(data, data_format)
    kwargs = {"batch_size": batch_size}
    if no_flip:
        kwargs["flip_test"] = False
    extractor = registry("feature_extractor").create(extractor_name, weights=weights, device=str(dev), **kwargs)
    n = len(reader)
    if n == 0:
        raise ConfigError(f"{data}: the dataset has no images")
    labels = np.asarray(reader.labels, dtype=np.int64)
    chunk = batch_size * 16
    dim = getattr(extractor, "feature_dim", None) or extractor.embed(reader.image(0)[None]).shape[1]
    # Chunks are written into a memory-mapped partial file and recorded in a manifest, so a killed run
    # resumes at the first unfinished chunk; OUT appears (renamed) only when every chunk is done.
    partial = out_path.with_name(f".{out_path.name}.partial")
    weights_file = getattr(extractor, "weights", None)
    params = {"data": str(Path(data).resolve()), "images": n, "extractor": extractor_name, "dim": dim,
              "weights_sha256": sha256_path(weights_file) if weights_file else None,
              "flip_test": bool(getattr(extractor, "flip_test", False)) and not raw, "raw": raw, "chunk": chunk}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    manifest = ShardManifest(out_path.with_name(f".{out_path.name}.manifest.json"), params)
    if partial.exists() and manifest.done:
        feats = np.load(partial, mmap_mode="r+")
    else:
        feats = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(n, dim))
    with make_progress() as progress:
        task = progress.add_task(f"embedding {Path(data).name}", total=n)
        for shard, lo in enumerate(range(0, n, chunk)):
            hi = min(n, lo + chunk)
            if manifest.is_done(shard):
                progress.advance(task, hi - lo)
                continue
            emb = extractor.embed(np.stack([reader.image(i) for i in range(lo, hi)]), raw=raw,
                                  on_batch=lambda k: progress.advance(task, k))
            feats[lo:hi] = emb
            feats.flush()
            manifest.mark_done(shard)
    sums = np.zeros((int(reader.num_classes), dim), dtype=np.float64)
    for lo in range(0, n, chunk):
        np.add.at(sums, labels[lo:lo + chunk], np.asarray(feats[lo:lo + chunk], dtype=np.float64))
    counts = np.bincount(labels, minlength=len(sums))[:, None]
    median_norm = float(np.median(np.linalg.norm(np.asarray(feats[: min(n, 65536)]), axis=1)))
    del feats
    if raw:
        centers = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0).astype(np.float32)
    else:
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centers = np.divide(sums, norms, out=np.zeros_like(sums), where=norms > 0).astype(np.float32)
    for path, array in ((centers_path(out_path), centers), (labels_path(out_path), labels)):
        with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, array)
    os.replace(partial, out_path)
    manifest.path.unlink()
    kind = f"raw features (median norm {median_norm:.4g})" if raw else "unit-length features"
    click.echo(f"{n} {kind} ({dim}-d) of {len(centers)} identities -> {out_path}")


__all__ = ["embed_command"]
