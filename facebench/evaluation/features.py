"""Embeddings of a whole training set, written shard by shard to a memory-mapped ``.npy`` and resumable.

At paper scale (300k identities x 50 images) the features do not fit in memory comfortably and take hours
to compute, so they go to disk as they are made; a killed run redoes only the unfinished shard. The file
is named ``*.partial.npy`` until every shard is done, then renamed, so a finished-looking file is complete.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic
from ..console import warn
from ..errors import DataError, FacebenchError, OutputError
from ..shards import ShardManifest
from .embed import TensorModel, TrainImages, embed_images

DEFAULT_SHARD = 8192


def dataset_features(model: TensorModel, reader: Any, out: str | os.PathLike, *, params: dict[str, Any],
                     batch_size: int = 64, flip_test: bool = False, normalize: bool = False,
                     shard_size: int = DEFAULT_SHARD, workers: int | None = None, ctx: Any = None) -> np.ndarray:
    """Embeddings of every image of ``reader``, one row per image, in reader order: raw, or L2-normalised
    row by row when ``normalize``.

    Under ``torchrun`` (``ctx`` distributed; every rank calls this) shard ``i`` is embedded by rank
    ``i % world``, which writes its rows straight into the shared memory-mapped file and records the
    shard in its own manifest; every rank returns the finished file. A resume may use another number of
    ranks: any manifest with the same parameters counts.

    Reused work is checked first: each manifest records the sha256 of every shard's rows as they were
    written (hashed from memory, at no extra read), and a finished file (or a partial one on resume) is
    reused only where its rows still hash to that; a shard that does not is computed again, with a warning
    naming the file. Checking costs one sequential read of the file at every reuse (a few seconds for
    IJB-C's 2 GB, about half a minute for 15M x 512 float32 features; a finished file is read without
    mapping it, :mod:`facebench.metrics.rows`), never a forward pass."""
    from ..runtime import DistContext, broadcast_object, wait_for_all

    ctx = ctx or DistContext()
    out = Path(out)
    n = len(reader)
    if n == 0:
        raise DataError(reader.path, "the dataset holds no images")
    # The manifest outlives the run: reusing finished features also requires the same model and dataset.
    manifest_params = {**params, "images": n, "flip_test": flip_test, "normalize": normalize,
                       "shard_size": shard_size}
    manifest = ShardManifest(_manifest_path(out, ctx), manifest_params)  # refuses other parameters
    partial = atomic.refuse_link(out.with_name(out.stem + ".partial.npy"), "features")
    shards = range(0, n, shard_size)
    finished = out.is_file()
    wait_for_all(ctx)  # every rank has looked before the main rank may move a file that fails its check
    if finished:
        intact = broadcast_object(ctx, _intact(out, n, shard_size, _recorded(out, manifest_params))
                                  if ctx.is_main else None)
        if intact:
            return _finished(out, n)
        if ctx.is_main:
            warn(f"{out}: the cached features do not match the sha256 recorded when they were written; "
                 "computing them again")
            _reopen(out, partial)
        wait_for_all(ctx)
    source = TrainImages(reader)
    if ctx.distributed:  # every rank writes into one file: rank 0 makes it, sized by one probe image
        if ctx.is_main:
            dim = embed_images(model, source, [0], batch_size=1, flip_test=flip_test, workers=0).shape[1]
            if not _usable(partial, n, dim):
                _reserved_memmap(partial, (n, dim), out)
        wait_for_all(ctx)
    elif partial.exists() and not _usable(partial, n):
        _remove(partial, out)  # not an array of this dataset's rows (cut short, or not ours): nothing to resume
    features = np.lib.format.open_memmap(partial, mode="r+") if partial.is_file() else None
    mine = [i for i in range(len(shards)) if i % ctx.world_size == ctx.rank]
    done = _verified(partial, features, shard_size, _recorded(out, manifest_params), mine, warned=finished)
    if features is not None and not done and not ctx.distributed:
        del features  # no shard of it is ours (perhaps not even its width): made afresh by the first shard
        features = None
        _remove(partial, out)
    for index, start in enumerate(shards):
        if index % ctx.world_size != ctx.rank or index in done:
            continue
        stop = min(start + shard_size, n)
        emb = embed_images(model, source, np.arange(start, stop), batch_size=batch_size, flip_test=flip_test,
                           workers=workers, description=f"features {index + 1}/{len(shards)}")
        if normalize:
            emb /= np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12)
        if features is None:
            features = _reserved_memmap(partial, (n, emb.shape[1]), out)
        features[start:stop] = emb
        features.flush()
        manifest.mark_done(index, _digest(features[start:stop]))
    del features
    wait_for_all(ctx)
    if ctx.is_main:
        missing = [i for i in range(len(shards)) if i not in _recorded(out, manifest_params)]
        if missing:
            raise DataError(partial, f"feature shards {missing[:5]} were not written; rerun to finish them")
        try:
            os.replace(partial, out)
        except OSError as exc:
            raise OutputError(out, "features", exc) from exc
    wait_for_all(ctx)
    return _finished(out, n)


def _finished(out: Path, n: int) -> np.ndarray:
    features = np.load(out, mmap_mode="r")
    if features.shape[0] != n:
        raise DataError(out, f"holds {features.shape[0]} rows but the dataset has {n} images; delete it")
    return features


def _manifest_path(out: Path, ctx: Any) -> Path:
    suffix = ".manifest.json" if not ctx.distributed else f".manifest-rank{ctx.rank}.json"
    return out.with_name(out.stem + suffix)


def _digest(rows: np.ndarray) -> str:
    """The sha256 of a shard's rows as float32 bytes (what the ``.npy`` holds for them)."""
    return hashlib.sha256(np.ascontiguousarray(rows, dtype=np.float32).data).hexdigest()


def _recorded(out: Path, params: dict[str, Any]) -> dict[int, set[str]]:
    """The rows' sha256 of each shard that any manifest of ``out`` (one per rank of any earlier run)
    records with these parameters. A shard recorded without a hash (an older facebench) has an empty set:
    it cannot be checked, so it is computed again."""
    import json

    from ..shards import read_manifest

    normalised = json.loads(json.dumps(params, default=str))
    recorded: dict[int, set[str]] = {}
    for path in out.parent.glob(out.stem + ".manifest*.json"):
        try:
            saved = read_manifest(path)
        except (OSError, FacebenchError):
            continue  # the owning rank's ShardManifest reports it
        if saved.get("params") != normalised:
            continue
        for key, info in saved["done"].items():
            if key.isascii() and key.isdigit():  # any other key names no shard: ignored
                recorded.setdefault(int(key), set()).update([info] if isinstance(info, str) else [])
    return recorded


def _open_rows(path: Path, n: int, dim: int | None = None) -> np.ndarray | None:
    """``path`` as a read-only memory map when it is an (n, D) float32 ``.npy`` (D = ``dim`` when given),
    else None."""
    from ..safe_load import HEADER_ERRORS

    try:
        features = np.load(path, mmap_mode="r", allow_pickle=False)
    except HEADER_ERRORS:  # a garbled or cut file is not resumed from: it is made again
        return None
    if features.ndim != 2 or features.shape[0] != n or features.dtype != np.float32:
        return None
    return features if dim is None or features.shape[1] == dim else None


def _usable(partial: Path, n: int, dim: int | None = None) -> bool:
    return partial.is_file() and _open_rows(partial, n, dim) is not None


def _intact(out: Path, n: int, shard_size: int, recorded: dict[int, set[str]]) -> bool:
    """Whether the finished file ``out`` holds exactly the rows whose hashes the manifests recorded."""
    from ..metrics.rows import row_blocks

    features = _open_rows(out, n)
    if features is None:
        return False
    return all(_digest(rows) in recorded.get(start // shard_size, ())
               for start, rows in row_blocks(features, shard_size, dtype=np.float32))


def _verified(partial: Path, features: np.ndarray | None, shard_size: int, recorded: dict[int, set[str]],
              mine: list[int], *, warned: bool) -> set[int]:
    """The shards among ``mine`` whose rows in the partial file still hash to what was recorded; the
    others are computed again (a warning names the file unless the caller ``warned`` already)."""
    wanted = [i for i in mine if i in recorded]
    if features is None or not wanted:
        return set()
    good = {i for i in wanted if _digest(features[i * shard_size:(i + 1) * shard_size]) in recorded[i]}
    if len(good) < len(wanted) and not warned:
        warn(f"{partial}: {len(wanted) - len(good)} finished feature shard(s) do not match the sha256 recorded "
             "when they were written; computing them again")
    return good


def _reopen(out: Path, partial: Path) -> None:
    """Turn a finished feature file that failed its check back into the partial file of a resume (a link
    planted at the finished name is removed, never written through)."""
    if out.is_symlink():
        _remove(out, out)
        return
    try:
        os.replace(out, partial)
    except OSError as exc:
        raise OutputError(out, "features", exc) from exc


def _remove(path: Path, out: Path) -> None:
    try:
        path.unlink()
    except OSError as exc:
        raise OutputError(out, "features", exc) from exc


def _reserved_memmap(path: Path, shape: tuple[int, int], out: Path) -> np.ndarray:
    """A new float32 memory-mapped ``.npy`` whose disk blocks are reserved up front: on a full disk this
    fails now, as one error naming ``out``, instead of killing the process later with SIGBUS when a page
    of the map cannot be written back."""
    atomic.refuse_link(path, "features")
    try:
        array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
        if hasattr(os, "posix_fallocate"):
            with open(path, "r+b") as fh:
                os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
        return array
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise OutputError(out, "features", exc) from exc


def extractor_features(extractor: Any, name: str, reader: Any, out: str | os.PathLike, *, raw: bool,
                       flip: bool = True, batch_size: int = 64, device: Any = "cpu", ctx: Any = None,
                       shard_size: int | None = None, weights: str | os.PathLike | None = None,
                       params: dict[str, Any] | None = None) -> np.ndarray:
    """:func:`dataset_features` of a feature extractor (``embed`` and ``train-generator`` share it): raw
    features of the image alone, or unit-length flip-test ones (flip only where the extractor allows it).
    The resume manifest records the extractor's name, ``raw`` and the hash of its weights file (the
    extractor's own ``weights``, else ``weights``), plus ``params``."""
    from ..provenance import sha256_path
    from .embed import as_tensor_model

    weights_file = getattr(extractor, "weights", None) or weights
    manifest = {**(params or {}), "extractor": name, "raw": raw,
                "weights_sha256": sha256_path(weights_file) if weights_file else None}
    flip = flip and bool(getattr(extractor, "flip_test", True)) and not raw
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return dataset_features(as_tensor_model(extractor, str(device), name), reader, out, params=manifest,
                            batch_size=batch_size, flip_test=flip, normalize=not raw,
                            shard_size=shard_size or batch_size * 16, ctx=ctx)


def _embed_rerun(out: Path, params: dict[str, Any], *, photos: bool, overwrite: bool) -> Any:
    """The rerun contract of ``embed`` (:mod:`facebench.rerun`): the features, labels and centres (and the
    photo record) are the outputs, their record ``OUT.json`` beside them; the partial array and the shard
    manifests are the state an ``--overwrite`` removes with them."""
    from ..rerun import Rerun

    outputs = [out.name, out.stem + ".labels.npy", out.stem + ".centers.npy"]
    if photos:
        outputs.append(out.stem + ".photos.json")
    return Rerun(out, command="embed", params=params, what="set of features", folder=False, outputs=outputs,
                 state=[out.stem + ".partial.npy", out.stem + ".manifest*.json*"], overwrite=overwrite)


def _settle(rerun: Any, ctx: Any) -> dict[str, Any] | None:
    """Every rank reads the record; the main rank replaces (``--overwrite``) or starts it after a barrier.
    Returns what a finished output records of itself (nothing is written then), else None."""
    from ..rerun import FINISHED
    from ..runtime import wait_for_all
    from ..safe_load import read_json

    state = rerun.check(discard=False)
    wait_for_all(ctx)
    if state == FINISHED:
        return dict(read_json(rerun.record_path, what="run record").get("embedded") or {})
    if ctx.is_main:
        rerun.prepare()
        rerun.begin()
    wait_for_all(ctx)
    return None


def _finish(rerun: Any, info: dict[str, Any], inputs: dict[str, Any]) -> None:
    from ..provenance import provenance

    rerun.finish(record={**provenance(inputs=inputs, hashes=rerun.params["inputs"]),
                         "embedded": {k: (str(v) if isinstance(v, Path) else v) for k, v in info.items()}})


def write_features(extractor_name: str, weights: str | None, data: str | os.PathLike, out: str | os.PathLike, *,
                   raw: bool = False, flip: bool = True, batch_size: int = 64, device: str = "cpu",
                   data_format: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """What ``facebench embed`` does: features of every image of ``data`` into ``out`` (resumable), with
    ``out`` stem + ``.labels.npy`` and ``.centers.npy``. Unit-length flip-test features and renormalised
    mean centres by default (as the analyses use them); with ``raw`` the model's output for the image
    alone and plain-mean centres (the scale the Vec2Face release trains and generates on). The record
    ``out.json`` (:mod:`facebench.rerun`) makes the same command again a no-op (the returned info then has
    ``already_complete``) and refuses other parameters unless ``overwrite``."""
    from ..data import open_dataset
    from ..pluginmanager import registry
    from ..rerun import parameters
    from ..runtime import process_group

    out = Path(out)
    reader = open_dataset(data, data_format)
    extractor = registry("feature_extractor").create(extractor_name, weights=weights, device=device)
    weights_file = getattr(extractor, "weights", None) or weights
    inputs = {"data": reader.path, "weights": weights_file}
    params = parameters({"extractor": extractor_name, "raw": raw, "flip": flip, "batch_size": batch_size,
                         "format": data_format}, inputs=inputs)
    rerun = _embed_rerun(out, params, photos=False, overwrite=overwrite)
    with process_group(device) as ctx:  # under torchrun every rank embeds its share of the shards
        done = _settle(rerun, ctx)
        if done is not None:
            return {**done, "out": out, "already_complete": True}
        try:
            feats = extractor_features(extractor, extractor_name, reader, out, raw=raw, flip=flip,
                                       batch_size=batch_size, device=device, ctx=ctx,
                                       params={"data": str(Path(reader.path).resolve())})
        except BaseException:
            if ctx.is_main:
                rerun.abandon()  # failed before anything a rerun could continue: no record is left
            raise
    labels = np.asarray(reader.labels, dtype=np.int64)
    info = {"images": len(labels), "dim": int(feats.shape[1]), "identities": int(reader.num_classes), "raw": raw,
            "out": out}
    if not ctx.is_main:
        return info
    info = {**info, "median_norm": _write_centres(out, feats, labels, int(reader.num_classes), raw=raw)}
    _finish(rerun, info, inputs)
    return info


def identity_centres(features: np.ndarray, labels: np.ndarray, num_classes: int, *, raw: bool) -> np.ndarray:
    """(num_classes, D) float32 centres as ``embed`` writes them: the plain mean of each identity's raw
    features (the release's center_features), or with ``raw`` False the mean renormalised to unit length.
    Row i is identity i; an identity without images keeps a zero row."""
    means, classes = centers_of(features, labels)
    centers = np.zeros((num_classes, features.shape[1]))
    centers[classes] = means
    if not raw:
        norms = np.linalg.norm(centers, axis=1, keepdims=True)
        centers = np.divide(centers, norms, out=np.zeros_like(centers), where=norms > 0)
    return centers.astype(np.float32)


def _write_centres(out: Path, feats: np.ndarray, labels: np.ndarray, num_classes: int, *, raw: bool) -> float:
    """Write ``out`` stem + ``.centers.npy`` and ``.labels.npy``; the features' median norm."""
    centers = identity_centres(feats, labels, num_classes, raw=raw)
    for suffix, array in ((".centers.npy", centers), (".labels.npy", labels)):
        with atomic.atomic_path(out.with_name(out.stem + suffix), "features") as tmp, open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
    sample = np.asarray(feats[: min(len(labels), 65536)])
    return float(np.median(np.linalg.norm(sample, axis=1)))


# ------------------------------------------------------------------------ raw photos: detected and aligned


def crop_size(extractor: Any) -> int:
    """The side of the aligned crop an extractor is given: its own input size (112 for ArcFace models), so
    the crop is never resampled a second time."""
    size = getattr(extractor, "input_size", 112)
    return int(size[-1] if isinstance(size, tuple | list) else size)


def write_photo_features(extractor_name: str, weights: str | None, photos: str | os.PathLike,
                         out: str | os.PathLike, *, detector: str, detector_weights: str | None = None,
                         raw: bool = False, flip: bool = True, batch_size: int = 64,
                         device: str = "cpu", overwrite: bool = False) -> dict[str, Any]:
    """``facebench embed --align``: the photos of a folder (:class:`facebench.data.photos.PhotoFolder`)
    detected, aligned to the ArcFace crop at the extractor's input size, and embedded as
    :func:`write_features` embeds a dataset (same outputs, same resume, same rerun contract), plus ``out``
    stem + ``.photos.json``: the folder's layout, the identities' names (row i of the centres is identity
    i) and per photo its file, identity, sha256 and the face used."""
    from ..data.photos import AlignedPhotos, PhotoFolder, align_folder, build_detector
    from ..pluginmanager import registry
    from ..rerun import parameters
    from ..runtime import process_group

    out = Path(out)
    folder = PhotoFolder.scan(photos)  # a folder that cannot be read fails before any model is loaded
    extractor = registry("feature_extractor").create(extractor_name, weights=weights, device=device)
    found, detector_record = build_detector(detector, detector_weights, device)
    size = crop_size(extractor)
    weights_file = getattr(extractor, "weights", None) or weights
    hashes = folder.hashes()
    record = folder.record(hashes)
    params = parameters({"extractor": extractor_name, "raw": raw, "flip": flip, "batch_size": batch_size,
                         "align": True, "detector": detector_record, "align_size": size},
                        inputs={"weights": weights_file},
                        photos={k: record[k] for k in ("folder", "layout", "photos", "sha256")})
    rerun = _embed_rerun(out, params, photos=True, overwrite=overwrite)
    with process_group(device) as ctx:  # every rank aligns the photos; the embedding is shared as usual
        done = _settle(rerun, ctx)
        if done is not None:
            return {**done, "out": out, "already_complete": True}
        try:
            crops, faces = align_folder(folder, found, size, detector_name=detector)
            del found
            params = {"data": str(folder.root.resolve()), "photos_sha256": record["sha256"],
                      "detector": detector_record, "align_size": size}
            reader = AlignedPhotos(folder, crops)
            feats = extractor_features(extractor, extractor_name, reader, out, raw=raw, flip=flip,
                                       batch_size=batch_size, device=device, ctx=ctx, params=params)
        except BaseException:
            if ctx.is_main:
                rerun.abandon()  # failed before anything a rerun could continue: no record is left
            raise
    labels = folder.labels
    info = {"images": len(labels), "dim": int(feats.shape[1]), "identities": len(folder.identities), "raw": raw,
            "out": out, "layout": folder.layout, "several_faces": sum(f.faces > 1 for f in faces)}
    if not ctx.is_main:
        return info
    median = _write_centres(out, feats, labels, len(folder.identities), raw=raw)
    card = {"photos": str(photos), "layout": folder.layout, "detector": detector_record, "align_size": size,
            "extractor": extractor_name, "raw": raw, "identities": list(folder.identities),
            "images": [{"file": p.name, "identity": p.label, "sha256": sha, **face.record()}
                       for p, sha, face in zip(folder.photos, hashes, faces)]}
    atomic.write_json(out.with_name(out.stem + ".photos.json"), card, "photo record")
    info = {**info, "median_norm": median}
    _finish(rerun, info, {"weights": weights_file} if weights_file else {})
    return info


def reference_vectors(folder: Any, *, extractor: Any, extractor_name: str, detector: Any, detector_name: str,
                      raw: bool, batch_size: int = 64, device: Any = "cpu") -> tuple[np.ndarray, list[Any]]:
    """One identity vector per identity of a photo folder, as a generator takes them (``generate
    --ref-images``): the photos detected and aligned, embedded by the same path as ``embed --align`` (the
    image alone, as both generators' releases embed a reference), then raw features and plain-mean centres
    (``raw``: the scale Vec2Face is trained on) or unit features and renormalised centres. Equal to the
    centres ``embed --align --raw`` (``--no-flip`` for unit ones) writes. Returns (centres, faces)."""
    from ..data.photos import AlignedPhotos, align_folder
    from .embed import TrainImages, as_tensor_model

    crops, faces = align_folder(folder, detector, crop_size(extractor), detector_name=detector_name)
    model = as_tensor_model(extractor, str(device), extractor_name)
    feats = embed_images(model, TrainImages(AlignedPhotos(folder, crops)), np.arange(len(folder)),
                         batch_size=batch_size, flip_test=False, workers=0, description="embedding photos")
    if not raw:
        feats /= np.linalg.norm(feats, axis=1, keepdims=True).clip(1e-12)
    return identity_centres(feats, folder.labels, len(folder.identities), raw=raw), faces


def centers_of(features: np.ndarray, labels: np.ndarray, *, block: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean raw feature per identity, streamed over row blocks (features may be a memory map; what was
    read leaves the resident set, see :mod:`facebench.metrics.rows`)."""
    from ..metrics.rows import BLOCK_ROWS, row_blocks

    block = block or BLOCK_ROWS

    classes, index = np.unique(labels, return_inverse=True)
    sums = np.zeros((classes.size, features.shape[1]))
    for start, rows in row_blocks(features, block):
        part = index[start:start + rows.shape[0]]
        order = np.argsort(part, kind="stable")
        ids, first = np.unique(part[order], return_index=True)
        sums[ids] += np.add.reduceat(rows[order], first, axis=0)
    counts = np.bincount(index, minlength=classes.size)
    return sums / counts[:, None], classes
