"""Identity-vector sampling: PCA statistics of real identity features, then exact rejection above tau.

Vec2Face's identities are only as distinct as its input vectors, so every kept vector must have cosine
at most ``tau`` to every other kept vector (paper section 3.2). The PCA statistics are saved as a plain
``.npz`` so that users without the real features can share and reuse them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .. import atomic
from ..errors import DataError, FacebenchError, MissingFileError
from ..safe_load import load_array, load_npz

STATS_VERSION = 1
_STATS_KEYS = ("mean", "components", "pca_mean", "pca_cov", "n_samples", "version")
#: float32 similarities this close to tau are recomputed in float64 so the threshold is exact.
_RECHECK_MARGIN = 1e-4


def load_feature_matrix(path: str | os.PathLike, *, what: str = "features") -> np.ndarray:
    """A 2-D finite float matrix from a ``.npy`` file, read without pickle."""
    data = load_array(path, what=what)
    if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] == 0:
        raise DataError(path, f"{what} must be a non-empty (N, D) matrix, got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.floating) and not np.issubdtype(data.dtype, np.integer):
        raise DataError(path, f"{what} must be numeric, got dtype {data.dtype}")
    data = np.asarray(data, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(data).all(axis=1))
    if bad.size:
        raise DataError(path, f"{what} contain NaN or infinite values", f"row {int(bad[0])}")
    return data


@dataclass(frozen=True)
class PCAStats:
    """PCA without reduction of identity features, plus the mean and covariance of the PCA coordinates."""

    mean: np.ndarray  # (D,) feature mean
    components: np.ndarray  # (D, D) rows are principal axes; z = (x - mean) @ components.T
    pca_mean: np.ndarray  # (D,) mean of the PCA coordinates (zero up to rounding)
    pca_cov: np.ndarray  # (D, D) covariance of the PCA coordinates (diagonal up to rounding)
    n_samples: int

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @classmethod
    def fit(cls, features: np.ndarray) -> PCAStats:
        """Fit on (N, D) identity features, keeping all D components even when N < D."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < 2:
            raise FacebenchError(f"PCA needs at least 2 identity features, got shape {x.shape}")
        mean = x.mean(axis=0)
        centred = x - mean
        # Eigenvectors of the covariance: a complete orthonormal basis even when it is rank deficient.
        cov = centred.T @ centred / (x.shape[0] - 1)
        _, vecs = np.linalg.eigh(cov)
        components = vecs[:, ::-1].T.copy()
        z = centred @ components.T
        return cls(mean=mean, components=components, pca_mean=z.mean(axis=0),
                   pca_cov=np.cov(z, rowvar=False).reshape(x.shape[1], x.shape[1]), n_samples=int(x.shape[0]))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.components.T

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) @ self.components + self.mean

    @cached_property
    def _sampling_map(self) -> tuple[np.ndarray, np.ndarray]:
        """(A, b) with x = eps @ A + b: the PCA-space normal and the inverse transform in one product."""
        vals, vecs = np.linalg.eigh((self.pca_cov + self.pca_cov.T) / 2)
        root = vecs * np.sqrt(np.clip(vals, 0.0, None))  # root @ root.T == pca_cov, even if singular
        return root.T @ self.components, self.inverse_transform(self.pca_mean[None])[0]

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` vectors: multivariate normal in PCA space (mean ``pca_mean``, covariance ``pca_cov``),
        mapped back to feature space by the inverse transform."""
        a, b = self._sampling_map
        return rng.standard_normal((n, self.dim)) @ a + b

    def save(self, path: str | os.PathLike) -> Path:
        """An ``.npz`` as ``np.savez`` writes it, but with a fixed date on every member, so the same
        statistics give the same bytes (``np.savez`` stamps the time of writing)."""
        import io
        import zipfile

        path = Path(path)
        arrays = {"mean": self.mean, "components": self.components, "pca_mean": self.pca_mean,
                  "pca_cov": self.pca_cov, "n_samples": np.int64(self.n_samples), "version": np.int64(STATS_VERSION)}
        with atomic.atomic_path(path, "PCA statistics") as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as archive:
                for name, array in arrays.items():
                    member = io.BytesIO()
                    np.save(member, np.asanyarray(array), allow_pickle=False)
                    archive.writestr(zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                                     member.getvalue())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> PCAStats:
        path = Path(path)
        arrays = load_npz(path, _STATS_KEYS, what="PCA statistics")
        if isinstance(arrays["version"], np.ndarray) and int(arrays["version"]) != STATS_VERSION:
            raise DataError(path, f"PCA statistics version {int(arrays['version'])}, expected {STATS_VERSION}")
        d = arrays["mean"].shape[0] if arrays["mean"].ndim == 1 else -1
        shapes = {"mean": (d,), "components": (d, d), "pca_mean": (d,), "pca_cov": (d, d)}
        for key, shape in shapes.items():
            if d <= 0 or arrays[key].shape != shape:
                raise DataError(path, f"PCA statistics '{key}' has shape {arrays[key].shape}, expected {shape}")
            if not np.isfinite(arrays[key]).all():
                raise DataError(path, f"PCA statistics '{key}' contains NaN or infinite values")
        return cls(mean=arrays["mean"].astype(np.float64), components=arrays["components"].astype(np.float64),
                   pca_mean=arrays["pca_mean"].astype(np.float64), pca_cov=arrays["pca_cov"].astype(np.float64),
                   n_samples=int(arrays["n_samples"]))


@dataclass(frozen=True)
class SamplingResult:
    """Kept vectors plus how many candidates were drawn to get them."""

    vectors: np.ndarray  # (n, D) float32, in feature space (not normalised)
    drawn: int
    tau: float

    @property
    def rejected(self) -> int:
        return self.drawn - len(self.vectors)

    @property
    def rejection_rate(self) -> float:
        return self.rejected / self.drawn if self.drawn else 0.0


def _max_cos_to_kept(cand, kept, n_kept: int, block: int):
    """Row-wise maximum cosine of ``cand`` to the first ``n_kept`` rows of ``kept``, in blocks."""
    import torch

    best = torch.full((cand.shape[0],), -2.0, dtype=cand.dtype, device=cand.device)
    for start in range(0, n_kept, block):
        stop = min(start + block, n_kept)
        best = torch.maximum(best, (cand @ kept[start:stop].T).amax(dim=1))
    return best


def _exact_clash(cand64: np.ndarray, cand32, kept_unit, kept: np.ndarray, n_kept: int, tau: float) -> bool:
    """Whether one candidate exceeds tau against a kept vector, deciding in float64.

    Only kept rows whose float32 cosine is within the recheck margin of tau (or above) can clash, so only
    those are recomputed from the stored vectors.
    """
    import torch

    sims = kept_unit[:n_kept] @ cand32
    cols = torch.nonzero(sims > tau - _RECHECK_MARGIN).flatten().cpu().numpy()
    if cols.size == 0:
        return False
    rows = kept[cols].astype(np.float64)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return bool((rows @ cand64).max() > tau)


def reject_above_tau(
    candidates: np.ndarray,
    n: int,
    tau: float,
    *,
    kept_unit=None,
    kept_vectors: np.ndarray | None = None,
    n_kept: int = 0,
    device: str = "cpu",
    block: int = 8192,
):
    """Greedily keep candidates (in order) whose cosine to every kept vector is at most ``tau``.

    ``kept_unit`` is a preallocated (capacity, D) float32 tensor of unit vectors whose first ``n_kept``
    rows are already kept (``kept_vectors`` holds the same rows as stored); accepted rows are appended to
    ``kept_unit`` only. Returns (indices of accepted candidates, new n_kept). Decisions are exact for the
    vectors as given: float32 products within 1e-4 of tau are recomputed in float64.
    """
    import torch

    cand64 = np.asarray(candidates, dtype=np.float64)
    cand64 = cand64 / np.maximum(np.linalg.norm(cand64, axis=1, keepdims=True), 1e-300)
    cand = torch.from_numpy(cand64.astype(np.float32)).to(device)
    # 1. against everything kept before this batch
    ok = torch.ones(cand.shape[0], dtype=torch.bool, device=device)
    if n_kept:
        best = _max_cos_to_kept(cand, kept_unit, n_kept, block)
        ok = best <= tau
        near = torch.nonzero((best - tau).abs() <= _RECHECK_MARGIN).flatten().cpu().numpy()
        if near.size:
            for i in near.tolist():
                ok[i] = not _exact_clash(cand64[i], cand[i], kept_unit, kept_vectors, n_kept, tau)
    # 2. greedily within the batch, in order
    gram = (cand @ cand.T).cpu().numpy()
    alive = ok.cpu().numpy().copy()
    accepted: list[int] = []
    room = n - n_kept
    for i in range(cand.shape[0]):
        if not alive[i]:
            continue
        if len(accepted) == room:
            break
        accepted.append(i)
        row = gram[i, i + 1:]
        clash = row > tau
        near = np.flatnonzero(np.abs(row - tau) <= _RECHECK_MARGIN)
        if near.size:
            clash[near] = (cand64[i + 1 + near] @ cand64[i]) > tau
        alive[i + 1:] &= ~clash
    idx = np.asarray(accepted, dtype=np.int64)
    if idx.size:
        kept_unit[n_kept:n_kept + idx.size] = cand[torch.from_numpy(idx).to(device)]
    return idx, n_kept + int(idx.size)


#: Candidates the failure message replays to find a tau that works (a prefix of the same seeded stream).
_REPLAY = 4096


def _greedy_count(unit: np.ndarray, tau: float, n: int) -> int:
    """How many of ``unit`` (in order) the greedy rejection keeps at ``tau``, stopping at ``n``."""
    kept = np.empty((n, unit.shape[1]))
    k = 0
    for row in unit:
        if k == 0 or (kept[:k] @ row).max() <= tau:
            kept[k] = row
            k += 1
            if k == n:
                break
    return k


def _what_would_work(stats: PCAStats, n: int, n_kept: int, *, tau: float, seed: int, batch: int,
                     limit: int) -> str:
    """The option values that would succeed, found by replaying the start of the same candidate stream:
    the smallest tau (in steps of 0.05) that keeps ``n``, or else how many this tau keeps."""
    rng = np.random.default_rng(seed)
    count = min(limit, _REPLAY)
    draws = [stats.sample(batch, rng).astype(np.float32) for _ in range(-(-count // batch))]
    cand = np.concatenate(draws)[:count].astype(np.float64)
    unit = cand / np.maximum(np.linalg.norm(cand, axis=1, keepdims=True), 1e-300)
    step = 0.05
    for candidate in np.arange(math.floor(tau / step + 1e-9) * step + step, 1.0, step):
        candidate = round(float(candidate), 2)
        if _greedy_count(unit, candidate, n) >= n:
            return (f"--tau {candidate:g} keeps {n} from the same draws (or keep tau and ask for at most "
                    f"{n_kept} with --n / --n-ids)")
    within = (f"the {count} candidates --max-draw-factor allows" if count == limit
              else f"the first {count} candidates")
    return (f"no tau below 1 keeps {n} within {within} (statistics fitted on {stats.n_samples} identities): "
            f"ask for at most {n_kept} with --n / --n-ids, allow more draws with --max-draw-factor, or fit the "
            "statistics on more identities")


def sample_identities(
    stats: PCAStats,
    n: int,
    *,
    tau: float = 0.3,
    seed: int = 0,
    batch: int = 4096,
    max_draw_factor: float = 20.0,
    device: str = "cpu",
    progress=None,
) -> SamplingResult:
    """``n`` identity vectors from ``stats`` with no pair above cosine ``tau``.

    Candidates are drawn in batches from one seeded stream, so the result depends only on (stats, n, tau,
    seed, batch). Stops with an error when more than ``max_draw_factor * n`` candidates were needed, which
    happens only when tau is too strict for the statistics. Products run in full fp32 (no TF32), so the
    float32 screen is within the recheck margin of the float64 value on every device.
    """
    from ..runtime import exact_fp32

    if n <= 0:
        raise FacebenchError(f"the number of identities must be positive, got {n}")
    if not -1.0 <= tau <= 1.0:
        raise FacebenchError(f"tau must be a cosine in [-1, 1], got {tau}")
    with exact_fp32():  # TF32 (about 1e-3 error) would exceed the 1e-4 recheck margin on CUDA
        return _sample(stats, n, tau, seed, batch, max_draw_factor, device, progress)


def _sample(stats: PCAStats, n: int, tau: float, seed: int, batch: int, max_draw_factor: float, device: str,
            progress: Any) -> SamplingResult:
    import torch

    rng = np.random.default_rng(seed)
    kept_unit = torch.empty((n, stats.dim), dtype=torch.float32, device=device)
    kept = np.empty((n, stats.dim), dtype=np.float32)
    n_kept = 0
    drawn = 0
    limit = max(int(math.ceil(max_draw_factor * n)), batch)
    while n_kept < n:
        if drawn >= limit:
            raise FacebenchError(
                f"only {n_kept} of {n} identity vectors kept after {drawn} candidates at tau={tau}; "
                + _what_would_work(stats, n, n_kept, tau=tau, seed=seed, batch=batch, limit=limit)
            )
        # Decide on the float32 values that are written out, so the guarantee holds for the file.
        cand = stats.sample(batch, rng).astype(np.float32)
        before = n_kept
        idx, n_kept = reject_above_tau(cand, n, tau, kept_unit=kept_unit, kept_vectors=kept, n_kept=n_kept,
                                       device=device)
        kept[before:n_kept] = cand[idx]
        # Candidates after the last one needed are not counted as drawn: they were never examined.
        drawn += int(idx[-1]) + 1 if n_kept == n and idx.size else batch
        if progress is not None:
            progress(n_kept)
    return SamplingResult(vectors=kept, drawn=drawn, tau=tau)


def sample_ids_file(out: str | os.PathLike, n: int, *, features: str | None = None, stats: str | None = None,
                    tau: float = 0.3, seed: int = 0, batch: int = 4096, max_draw_factor: float = 20.0,
                    device: str = "cpu", save_stats: str | None = None, progress: Any = None,
                    overwrite: bool = False) -> tuple[SamplingResult | None, dict[str, Any]]:
    """What ``facebench sample-ids`` does: PCA statistics from real features (or a saved ``.npz``), sample,
    write ``out`` and ``out.json`` (provenance, the sampling record and the rerun record,
    :mod:`facebench.rerun`). Returns the result and the record; the result is None when ``out`` already
    held these vectors (the same parameters: nothing was computed or written).

    The vectors keep the scale of the features the statistics came from (raw or unit length); the record
    carries their median norm, which ``generate`` checks against the generator's.
    """
    import time

    from ..console import console
    from ..provenance import provenance
    from ..rerun import FINISHED, Rerun, parameters
    from ..safe_load import read_json

    if (features is None) == (stats is None):
        raise FacebenchError("give exactly one of --features (real identity features) or --stats (saved PCA statistics)")
    inputs = {"features": features} if features else {"stats": stats}
    for path, what in ((features, "identity features file"), (stats, "PCA statistics file")):
        if path is not None and not os.path.exists(path):  # named before it is hashed for the record
            raise MissingFileError(path, what)
    base = Path(out).parent
    outputs = [Path(out).name] + ([os.path.relpath(save_stats, base)] if save_stats else [])
    config = {"n": n, "tau": tau, "seed": seed, "batch": batch, "max_draw_factor": max_draw_factor,
              "save_stats": outputs[1] if save_stats else None}  # where the statistics go is one of its outputs
    rerun = Rerun(out, command="sample-ids", params=parameters(config, inputs=inputs), what="set of identity vectors",
                  folder=False, outputs=outputs, overwrite=overwrite, resumable=False)
    if rerun.check() == FINISHED:
        return None, dict(read_json(rerun.record_path, what="run record").get("sampling") or {})
    with rerun.writing():
        if features is not None:
            pca = PCAStats.fit(load_feature_matrix(features, what="identity features"))
            console.print(f"fitted PCA on {pca.n_samples} identity features of dimension {pca.dim}")
        else:
            pca = PCAStats.load(stats)
        if save_stats:
            pca.save(save_stats)
            console.print(f"saved PCA statistics to {save_stats}")
        start = time.perf_counter()
        result = sample_identities(pca, n, tau=tau, seed=seed, batch=batch, max_draw_factor=max_draw_factor,
                                   device=device, progress=progress)
        seconds = time.perf_counter() - start
        with atomic.atomic_path(out, "identity vectors") as tmp, open(tmp, "wb") as fh:
            np.save(fh, result.vectors, allow_pickle=False)
    record = {"n": n, "tau": tau, "drawn": result.drawn, "rejected": result.rejected,
              "rejection_rate": result.rejection_rate, "batch": batch, "seconds": round(seconds, 3),
              "median_norm": float(np.median(np.linalg.norm(result.vectors, axis=1)))}
    rerun.finish(record=provenance(seed=seed, device=device, inputs=inputs, extra={"sampling": record},
                                   hashes=rerun.params["inputs"]))
    return result, record
