"""``facebench dcface make-tiny``: the tiny random-weight DCFace model directory for offline checks."""

from __future__ import annotations

from pathlib import Path

import click

from facebench.cli.options import examples, overwrite_option, rerun_help

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
    from facebench.provenance import provenance
    from facebench.rerun import FINISHED, Rerun, already_complete, parameters

    from .tiny import make_tiny

    path = Path(out)
    rerun = Rerun(path, command="dcface make-tiny", what="tiny model directory", folder=False, outputs=[path.name],
                  params=parameters({"seed": seed, "spatial_dim": int(spatial_dim)}), overwrite=overwrite,
                  resumable=False)
    if rerun.check() == FINISHED:
        click.echo(already_complete(path, f"a tiny random-weight DCFace, {spatial_dim}x{spatial_dim} style patches, "
                                          f"seed {seed}"))
        return
    with rerun.writing():  # what is at OUT may be replaced: Rerun.check said so
        make_tiny(path, seed=seed, spatial_dim=int(spatial_dim), overwrite=True)
    rerun.finish(record=provenance(seed=seed))
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    click.echo(f"wrote a tiny random-weight DCFace (56 px, {spatial_dim}x{spatial_dim} style patches, seed {seed}, "
               f"{total / 1e6:.1f} MB) to {path}")
    click.echo("its weights are untrained: generated sets are pipeline checks, not results")
