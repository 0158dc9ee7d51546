"""The embedding space of identity vectors, and the check that a generator gets vectors of its own space.

A generator conditioned on one FR model's embeddings (IDiff-Face and UIFace: ElasticFace-Arc) makes
faces of other people, or no faces, from another model's vectors, however well their scale matches. It
declares its space as ``space`` in its spec extra ``reference_extractor``; a feature extractor may say
which space it embeds into with its own spec extra ``space`` (else its name is the space). ``generate``
then reads where the vectors came from:

* ``--ref-images``: the extractor that embeds the photos (the generator's own unless
  ``--generator-option reference_extractor=NAME`` chose another);
* ``--ids FILE``, ``--features FILE``: the record beside the file (``FILE.json``) that ``facebench embed``
  writes (its extractor) or ``facebench sample-ids`` writes (followed to the features its statistics
  were fitted on), trusted only while the file still has the sha256 the record gives it;
* else the user's word: ``--generator-option ids_space=NAME`` (required for files made elsewhere and for
  ``--stats``; a statement that contradicts a record is refused).

Vectors of another space, or of no known space, are refused in one line before anything loads, unless
the conversion is asked for: ``--generator-option space_map=FILE.npz``, a linear map ``matrix`` (D_in,
D_out) from ``from_space`` to ``to_space`` (``fit_space_map``: orthogonal Procrustes on features of the
same images from both extractors). The decision is recorded in ``dataset.json`` (``embedding_space``).
Generators that declare no space (Vec2Face, Arc2Face, the tiny pipeline checks) are not checked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError, FacebenchError

#: ``--generator-option`` keys read here (taken out of the options before the generator is built).
SPACE_OPTIONS = ("ids_space", "space_map")
#: How many records deep ``sample-ids`` -> ``embed`` is followed.
MAX_DEPTH = 3


def extractor_space(name: str) -> str:
    """The space a registered feature extractor embeds into: its spec extra ``space``, else its name."""
    from ..pluginmanager import registry

    try:
        return str(registry("feature_extractor").get(name).extras.get("space") or name)
    except FacebenchError:
        return name


def recorded_space(path: str | os.PathLike, *, depth: int = 0) -> tuple[str | None, str]:
    """(space, how it is known) of a vector file from the record beside it; (None, why not) without one."""
    from ..provenance import sha256_path
    from ..rerun import KEY, sidecar
    from ..safe_load import read_json

    path = Path(path)
    side = sidecar(path)
    if not side.is_file():
        return None, f"no record beside {path.name} ({side.name})"
    try:
        record = read_json(side, what="run record")
    except FacebenchError as exc:
        return None, f"its record is unreadable ({exc})"
    entry = record.get(KEY) if isinstance(record.get(KEY), dict) else {}
    done = entry.get("finished") if isinstance(entry.get("finished"), dict) else {}
    if done.get(path.name) != sha256_path(path):
        return None, f"{side.name} records other bytes than {path.name} holds now"
    params = entry.get("params") if isinstance(entry.get("params"), dict) else {}
    config = params.get("config") if isinstance(params.get("config"), dict) else {}
    command = entry.get("command")
    if command == "embed" and isinstance(config.get("extractor"), str):
        name = config["extractor"]
        return extractor_space(name), f"embedded by '{name}' ({side.name})"
    inputs = record.get("inputs") if isinstance(record.get("inputs"), dict) else {}
    source = inputs.get("features") if isinstance(inputs.get("features"), dict) else None
    if command == "sample-ids" and source and isinstance(source.get("path"), str) and depth < MAX_DEPTH:
        space, how = recorded_space(source["path"], depth=depth + 1)
        return space, f"sampled from {Path(source['path']).name}, {how}" if space else how
    return None, f"{side.name} does not say which extractor made them"


@dataclass
class SpaceMap:
    """A linear map between embedding spaces (``x @ matrix``), read from an ``.npz``."""

    matrix: np.ndarray
    from_space: str
    to_space: str
    path: Path

    @classmethod
    def load(cls, path: str | os.PathLike) -> SpaceMap:
        from ..safe_load import load_npz

        path = Path(path)
        arrays = load_npz(path, ("matrix", "from_space", "to_space"),
                          what="space map")
        matrix, names = arrays["matrix"], [arrays["from_space"], arrays["to_space"]]
        if matrix.ndim != 2 or matrix.dtype.kind != "f" or not np.isfinite(matrix).all():
            raise DataError(path, f"matrix must be a finite 2-d float array, got {matrix.dtype} {matrix.shape}")
        if any(n.dtype.kind != "U" or n.ndim != 0 or not str(n) for n in names):
            raise DataError(path, "from_space and to_space must be non-empty strings")
        return cls(matrix.astype(np.float64), str(names[0]), str(names[1]), path)

    def save(self) -> None:
        """Written whole or not at all (:mod:`facebench.atomic`)."""
        from .. import atomic

        with atomic.atomic_path(self.path, "space map") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, matrix=self.matrix, from_space=np.str_(self.from_space), to_space=np.str_(self.to_space))

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        if vectors.shape[1] != self.matrix.shape[0]:
            raise DataError(self.path, f"maps {self.matrix.shape[0]}-d vectors, the identities are "
                                       f"{vectors.shape[1]}-d")
        out = np.asarray(vectors, dtype=np.float64) @ self.matrix
        if (np.linalg.norm(out, axis=1) == 0).any():
            raise DataError(self.path, "maps an identity vector to zero")
        return out.astype(np.float32)


def fit_space_map(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The orthogonal map W minimising ||normalise(source) W - normalise(target)|| (Procrustes): rows are
    the same images embedded by two extractors. Orthogonal, so it keeps angles (identities) between
    vectors while it turns one space into the other."""
    if source.shape != target.shape or source.ndim != 2 or len(source) < 2:
        raise FacebenchError(f"space map: paired features must have one shape (N >= 2, D), got {source.shape} and "
                             f"{target.shape}")
    a = source / np.linalg.norm(source, axis=1, keepdims=True)
    b = target / np.linalg.norm(target, axis=1, keepdims=True)
    u, _, vt = np.linalg.svd(a.T @ b)
    return u @ vt


@dataclass
class SpaceDecision:
    """What the check decided: the record for ``dataset.json`` and the map to apply, if any."""

    record: dict[str, Any] = field(default_factory=dict)
    space_map: SpaceMap | None = None

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        return vectors if self.space_map is None else self.space_map.apply(vectors)


def check_space(spec: Any, request: Any, options: dict[str, Any], reference_extractor: str | None
                ) -> SpaceDecision | None:
    """Refuse vectors of another (or no known) space for a generator that declares one; None when it
    declares none. ``options``: the popped :data:`SPACE_OPTIONS`; ``reference_extractor``: the extractor
    ``--ref-images`` embeds with, when given."""
    from ..provenance import sha256_file

    declared = spec.extras.get("reference_extractor")
    wanted = declared.get("space") if isinstance(declared, dict) else None
    if not wanted:
        if options:
            raise ConfigError(f"generator '{spec.name}' declares no embedding space: "
                              f"{', '.join(f'--generator-option {k}' for k in options)} does not apply")
        return None
    stated = options.get("ids_space")
    if request.ref_images is not None:
        name = reference_extractor or declared.get("extractor") or ""
        found, how, source = extractor_space(name), f"embedded by '{name}' (--ref-images)", "--ref-images"
    else:
        source = request.ids or request.features or request.stats
        found, how = recorded_space(source) if (request.ids or request.features) else \
            (None, "PCA statistics keep no record of their extractor")
    if found is not None and stated is not None and stated != found:
        raise FacebenchError(f"{source}: --generator-option ids_space={stated} contradicts the record: {how}, "
                             f"space '{found}'")
    space = found or stated
    record: dict[str, Any] = {"generator": wanted, "vectors": space,
                              "known_from": how if found else ("stated by the user (ids_space)" if stated else how)}
    mapping = None
    if options.get("space_map"):
        if request.ids is None:
            raise ConfigError("--generator-option space_map applies to --ids FILE: write the vectors first "
                              "(facebench sample-ids, facebench embed), then generate from them with the map")
        mapping = SpaceMap.load(options["space_map"])
        if mapping.to_space != wanted or (space is not None and mapping.from_space != space):
            raise DataError(mapping.path, f"maps '{mapping.from_space}' to '{mapping.to_space}'; these vectors "
                                          f"need '{space or 'unknown'}' to '{wanted}'")
        if space is None:
            space, record["known_from"] = mapping.from_space, f"the space map's from_space ({how})"
        record.update(vectors=space, converted={"space_map": mapping.path.name,
                                                "sha256": sha256_file(mapping.path),
                                                "from": mapping.from_space, "to": mapping.to_space})
    elif space != wanted:
        what = f"are in space '{space}' ({how})" if space else f"are of no known space ({how})"
        raise FacebenchError(
            f"{source}: identity vectors {what}, but generator '{spec.name}' is conditioned on '{wanted}' "
            f"vectors: embed with its extractor ('{declared.get('extractor')}'), state the space of vectors made "
            f"elsewhere with --generator-option ids_space=NAME, or convert them with --generator-option "
            "space_map=FILE.npz")
    return SpaceDecision(record, mapping)


__all__ = ["SPACE_OPTIONS", "SpaceDecision", "SpaceMap", "check_space", "extractor_space", "fit_space_map",
           "recorded_space"]
