"""``facebench idiff-face make-tiny`` (the tiny random-weight model folder for offline checks) and
``facebench idiff-face space-map`` (the conversion ``generate`` accepts for vectors of another space)."""

from __future__ import annotations

from pathlib import Path

import click

from facebench.cli.options import examples, make_tiny_model, overwrite_option, rerun_help

EXAMPLE = examples(
    "facebench idiff-face make-tiny runs/idiff-tiny",
    "facebench generate --generator idiff_face_tiny --weights runs/idiff-tiny --ids ids.npy \\",
    "    --images-per-id 4 --out runs/idiff-gen --generator-option sampler=uiface",
)
MAP_EXAMPLE = examples(
    "facebench embed --extractor arcface-r100 faces/ --out arc.npy",
    "facebench embed --extractor elasticface-arc faces/ --out elastic.npy",
    "facebench idiff-face space-map arc.npy elastic.npy --out arc-to-elastic.npz",
    "facebench generate --generator idiff_face --ids arc_ids.npy --generator-option space_map=arc-to-elastic.npz \\",
    "    --images-per-id 50 --out runs/idiff-set",
)


@click.group("idiff-face")
def idiff_face_group() -> None:
    """IDiff-Face / UIFace generator tools."""


@idiff_face_group.command("make-tiny", epilog=EXAMPLE)
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights.")
@overwrite_option()
@rerun_help(note="The parameter is --seed, recorded in OUT.json beside OUT; OUT appears only when complete, so an "
                 "interrupted run is made again.")
def make_tiny_command(out: str, seed: int, overwrite: bool) -> None:
    """Write a tiny random-weight model folder in the releases' layout (ema_averaged_model_0.ckpt with the
    DDPM module's keys and schedule tables, first_stage_decoder_state_dict.pt). Its images are a pipeline
    check, not faces."""
    from .tiny import make_tiny

    make_tiny_model(out, command="idiff-face make-tiny", overwrite=overwrite, params={"seed": seed},
                    make=lambda path: make_tiny(path, seed=seed, overwrite=True),
                    finished=f"a tiny random-weight IDiff-Face model, seed {seed}",
                    wrote=f"wrote a tiny random-weight IDiff-Face model (56 px, T = 50, seed {seed}, {{mb}} MB)")


@idiff_face_group.command("space-map", epilog=MAP_EXAMPLE)
@click.argument("source", type=click.Path(dir_okay=False))
@click.argument("target", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The map (.npz).")
@click.option("--from-space", help="Space of SOURCE [default: from its embed record].")
@click.option("--to-space", help="Space of TARGET [default: from its embed record].")
def space_map_command(source: str, target: str, out: str, from_space: str | None, to_space: str | None) -> None:
    """Fit the orthogonal map from SOURCE's embedding space to TARGET's: both (N, D) features of the same
    images in the same order (facebench embed of one dataset with two extractors). generate applies it with
    --generator-option space_map=OUT to --ids vectors of SOURCE's space."""
    import numpy as np

    from facebench.errors import FacebenchError
    from facebench.generation.sampling import load_feature_matrix
    from facebench.generation.spaces import SpaceMap, fit_space_map, recorded_space

    names = []
    for path, given in ((source, from_space), (target, to_space)):
        found, how = recorded_space(path)
        if given and found and given != found:
            raise FacebenchError(f"{path}: the space given ({given}) contradicts the record: {how}, space '{found}'")
        if not (given or found):
            raise FacebenchError(f"{path}: {how}; name its space with --from-space / --to-space")
        names.append(given or found)
    a = load_feature_matrix(source, what="source features")
    b = load_feature_matrix(target, what="target features")
    matrix = fit_space_map(a, b)
    SpaceMap(matrix, names[0], names[1], Path(out)).save()
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    cos = np.sum(unit(unit(a) @ matrix) * unit(b), axis=1)
    click.echo(f"wrote {out}: {names[0]} -> {names[1]} from {len(a)} pairs; cosine of mapped to target: median "
               f"{np.median(cos):.3f}, 5th percentile {np.percentile(cos, 5):.3f}")
