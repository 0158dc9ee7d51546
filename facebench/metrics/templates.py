"""IJB template features and template-pair scores: insightface's ``eval_ijbc.py`` protocol, vectorised.

An IJB template is a set of images of one person from several media (photos, video frames). insightface
first fuses each image's two raw features (the image and its mirror), optionally drops the norm and
weights by the detector's faceness score; then averages the images of one media, sums the media of one
template and L2-normalises. Pair scores are inner products of the normalised template features.

Here the grouping is two sparse averaging matrices instead of Python loops over 23k templates, and pair
scores are matrix products over blocks of first templates (IJB-C's 15.6M pairs reuse each template
hundreds of times), so scoring takes seconds instead of minutes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .inputs import MetricInputError, as_matrix, as_vector, same_length

#: How the two halves of an image's feature (the image, then its mirror) are combined.
FLIP_FUSIONS = ("add", "concat", "none")
#: Images per chunk of the template pooling.
IMAGE_CHUNK = 1 << 15
#: Pairs per block when pair scores are gathered row by row (bounded memory).
PAIR_BLOCK = 1 << 18
#: Gather pair rows instead of multiplying template blocks when (firsts x seconds) exceeds this x pairs.
GATHER_RATIO = 256
#: First templates per block when pair scores come from a matrix product.
TEMPLATE_BLOCK = 1024


def fuse_image_features(features: Any, faceness: Any = None, *, flip_fusion: str = "add", keep_norm: bool = True,
                        detector_score: bool = True) -> np.ndarray:
    """Image features for template pooling from ``features`` (N, 2D): the image's raw feature, then its
    mirror's. ``flip_fusion``: ``add`` (insightface F2, its default), ``concat`` (F1) or ``none`` (the image
    only); ``keep_norm=False`` L2-normalises each image (N0); ``detector_score`` multiplies by ``faceness``
    (D1). The order of the steps is insightface's."""
    feats = as_matrix(features, "image features", dtype=np.float32)
    if feats.shape[1] % 2:
        raise MetricInputError(f"image features: expected image and mirror halves, got {feats.shape[1]} columns")
    half = feats.shape[1] // 2
    if flip_fusion == "add":
        fused = feats[:, :half] + feats[:, half:]
    elif flip_fusion == "concat":
        fused = feats
    elif flip_fusion == "none":
        fused = feats[:, :half]
    else:
        raise MetricInputError(f"flip_fusion must be one of {', '.join(FLIP_FUSIONS)}, got {flip_fusion!r}")
    if not keep_norm:
        norms = np.sqrt(np.sum(fused**2, -1, keepdims=True))
        if (norms == 0).any():
            raise MetricInputError(f"image features: {int((norms == 0).sum())} rows are all zeros")
        fused = fused / norms
    if detector_score:
        if faceness is None:
            raise MetricInputError("detector_score needs the faceness scores")
        score = as_vector(faceness, "faceness scores").astype(np.float32)
        same_length(features=fused, faceness=score)
        fused = fused * score[:, None]
    return np.ascontiguousarray(fused)


def template_features(image_feats: Any, templates: Any, medias: Any, *,
                      chunk: int = IMAGE_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """``(unique_templates, template_feats)``: the sorted template ids and one L2-normalised float64 row each.

    A template's feature is the sum over its media of the mean image feature of that media (a media
    with one image keeps that image's feature), then L2-normalised; an all-zero sum stays zero (as
    sklearn's ``normalize`` leaves it). That is each image weighted by one over its media's size and summed
    per template: one sparse product per chunk of images, in float64, so IJB-C's 469k x 512 features (a
    memory map, perhaps) are never copied whole.
    """
    from scipy import sparse

    feats = image_feats if isinstance(image_feats, np.ndarray) else np.asarray(image_feats)
    if feats.ndim != 2 or feats.shape[0] == 0 or feats.shape[1] == 0:
        raise MetricInputError(f"image features: expected a non-empty 2-D array, got shape {tuple(feats.shape)}")
    templates = np.asarray(templates)
    medias = np.asarray(medias)
    if templates.ndim != 1 or medias.ndim != 1:
        raise MetricInputError("templates and medias must be 1-D arrays of ids")
    same_length(image_feats=feats, templates=templates, medias=medias)
    unique_templates, template_of = np.unique(templates, return_inverse=True)
    # One group per (template, media): the same media id in two templates is two groups, as insightface.
    media_ids, media_of = np.unique(medias, return_inverse=True)
    _, group_of = np.unique(template_of.astype(np.int64) * media_ids.size + media_of, return_inverse=True)
    group_of = group_of.ravel()
    weights = 1.0 / np.bincount(group_of)[group_of]
    sums = np.zeros((unique_templates.size, feats.shape[1]))
    for start in range(0, feats.shape[0], chunk):
        stop = min(start + chunk, feats.shape[0])
        rows = as_matrix(feats[start:stop], f"image features {start}-{stop - 1}")
        spread = sparse.csr_matrix((weights[start:stop], (template_of[start:stop], np.arange(stop - start))),
                                   shape=(unique_templates.size, stop - start))
        sums += spread @ rows
    norms = np.sqrt(np.einsum("ij,ij->i", sums, sums))
    out = np.divide(sums, norms[:, None], out=np.zeros_like(sums), where=norms[:, None] > 0)
    return unique_templates, out


#: Template ids up to this value are mapped to rows through a lookup table (else by binary search).
LOOKUP_LIMIT = 1 << 26


def template_rows(unique_templates: np.ndarray, ids: Any, name: str) -> np.ndarray:
    """Row of each template id in ``unique_templates`` (sorted); an unknown id is an error naming it."""
    ids = np.asarray(ids)
    if unique_templates.size == 0:
        raise MetricInputError(f"{name}: there are no template features")
    small = np.issubdtype(ids.dtype, np.integer) and np.issubdtype(unique_templates.dtype, np.integer) and \
        ids.size and 0 <= min(ids.min(), unique_templates[0]) and max(ids.max(), unique_templates[-1]) < LOOKUP_LIMIT
    if small:
        table = np.full(int(max(ids.max(), unique_templates[-1])) + 1, -1, dtype=np.int64)
        table[unique_templates] = np.arange(unique_templates.size)
        rows = table[ids]
        bad = rows < 0
    else:
        rows = np.minimum(np.searchsorted(unique_templates, ids), unique_templates.size - 1)
        bad = unique_templates[rows] != ids
    if bad.any():
        k = int(np.argmax(bad))
        raise MetricInputError(f"{name}: template {ids[k]} (pair {k + 1}) has no template feature")
    return rows


def _compact(rows: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows that occur (sorted) and each entry's position among them, without sorting the entries."""
    used = np.flatnonzero(np.bincount(rows, minlength=size))
    position = np.zeros(size, dtype=np.int64)
    position[used] = np.arange(used.size)
    return used, position[rows]


def template_pair_scores(template_feats: Any, unique_templates: Any, t1: Any, t2: Any, *,
                         block: int | None = None) -> np.ndarray:
    """Inner product of the template features of each pair ``(t1[k], t2[k])`` (float64).

    Pairs are scored in blocks: when each first template recurs in many pairs (IJB), a block of first
    templates is multiplied with every second template at once; otherwise the pairs' rows are gathered
    ``block`` pairs at a time.
    """
    feats = as_matrix(template_feats, "template features", dtype=np.float64)
    unique_templates = np.asarray(unique_templates)
    same_length(template_feats=feats, unique_templates=unique_templates)
    t1, t2 = np.asarray(t1), np.asarray(t2)
    same_length(t1=t1, t2=t2)
    r1 = template_rows(unique_templates, t1, "t1")
    r2 = template_rows(unique_templates, t2, "t2")
    scores = np.empty(r1.size, dtype=np.float64)
    firsts, first_of = _compact(r1, feats.shape[0])
    seconds, second_of = _compact(r2, feats.shape[0])
    # A matrix-product entry costs about 1/500 of a gathered pair (measured on 2 cores): gather only when
    # the pairs are very sparse among (first, second) template combinations.
    if firsts.size * seconds.size > GATHER_RATIO * r1.size:
        step = block or PAIR_BLOCK
        for start in range(0, r1.size, step):
            stop = min(start + step, r1.size)
            scores[start:stop] = np.einsum("ij,ij->i", feats[r1[start:stop]], feats[r2[start:stop]])
        return scores
    right = np.ascontiguousarray(feats[seconds].T)
    step = block or TEMPLATE_BLOCK
    # Pairs grouped by block of first templates with one counting pass (no sort of all pairs).
    block_of = first_of // step
    if block_of.size and block_of.max() < np.iinfo(np.int16).max:
        block_of = block_of.astype(np.int16)  # numpy sorts 16-bit integers by radix: one linear pass
    order = np.argsort(block_of, kind="stable")
    bounds = np.searchsorted(block_of[order], np.arange(0, firsts.size // step + 2))
    for b, lo in enumerate(range(0, firsts.size, step)):
        hi = min(lo + step, firsts.size)
        sims = feats[firsts[lo:hi]] @ right
        idx = order[bounds[b]:bounds[b + 1]]
        scores[idx] = sims[first_of[idx] - lo, second_of[idx]]
    return scores
