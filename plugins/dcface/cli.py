"""``facebench dcface make-tiny``: the tiny random-weight DCFace model directory for offline checks."""

from __future__ import annotations

import click

from facebench.cli.options import examples, make_tiny_model, overwrite_option, rerun_help

EXAMPLE = examples(
    "facebench dcface make-tiny runs/dcface-tiny",
    "facebench toyfaces build runs/toy --identities 8 --images-per-identity 2 --size 56 --pairs 20 --packs toy_lfw",
    "facebench generate --generator dcface_tiny --weights runs/dcface-tiny --n-ids 4 --images-per-id 2 \\",
    "    --generator-option style_bank=runs/toy/train --out runs/dcface-gen",
)


@click.group("dcface")
def dcface_group() -> None:
    """DCFace generator tools."""


@dcface_group.command("make-tiny", epilog=EXAMPLE)
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights.")
@click.option("--spatial-dim", type=click.Choice(["3", "5"]), default="3", show_default=True,
              help="Style patches per side (the release's dcface_3x3 / dcface_5x5).")
@overwrite_option()
@rerun_help(note="The parameters are --seed and --spatial-dim, recorded in OUT.json beside OUT; OUT appears only "
                 "when complete, so an interrupted run is made again.")
def make_tiny_command(out: str, seed: int, spatial_dim: str, overwrite: bool) -> None:
    """Write a tiny random-weight DCFace directory in the release's layout (dcface_3x3.ckpt: a Lightning
    checkpoint with every state_dict prefix the release saves; ffhq_10m.pt: the first stage), 56 px.
    Its images are a pipeline check, not faces."""
    from .tiny import make_tiny

    make_tiny_model(out, command="dcface make-tiny", what="tiny model directory", overwrite=overwrite,
                    params={"seed": seed, "spatial_dim": int(spatial_dim)},
                    make=lambda path: make_tiny(path, seed=seed, spatial_dim=int(spatial_dim), overwrite=True),
                    finished=f"a tiny random-weight DCFace, {spatial_dim}x{spatial_dim} style patches, seed {seed}",
                    wrote=f"wrote a tiny random-weight DCFace (56 px, {spatial_dim}x{spatial_dim} style patches, "
                          f"seed {seed}, {{mb}} MB)")
