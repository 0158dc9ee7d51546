"""``facebench arc2face make-tiny``: the tiny random-weight model directory for offline checks."""

from __future__ import annotations

import click

from facebench.cli.options import examples, make_tiny_model, overwrite_option, rerun_help

EXAMPLE = examples(
    "facebench arc2face make-tiny runs/arc2face-tiny",
    "facebench generate --generator arc2face_tiny --weights runs/arc2face-tiny --ids ids.npy \\",
    "    --images-per-id 4 --out runs/a2f-gen",
)


@click.group("arc2face")
def arc2face_group() -> None:
    """Arc2Face generator tools (needs the optional extra: pip install -e ".[arc2face]")."""


@arc2face_group.command("make-tiny", epilog=EXAMPLE)
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random weights.")
@click.option("--size", type=click.IntRange(min=8), default=56, show_default=True,
              help="Native image side (a multiple of 8); the latent is a quarter of it.")
@click.option("--encoder-format", type=click.Choice(["bin", "safetensors"]), default="bin", show_default=True,
              help="bin: pytorch_model.bin as the release ships it; safetensors: model.safetensors.")
@overwrite_option()
@rerun_help(note="The parameters are --seed, --size and --encoder-format, recorded in OUT.json beside OUT; OUT "
                 "appears only when complete, so an interrupted run is made again.")
def make_tiny_command(out: str, seed: int, size: int, encoder_format: str, overwrite: bool) -> None:
    """Write a tiny random-weight Arc2Face directory in the release layout (arc2face/, encoder/, vae/,
    tokenizer/, scheduler/). Its images are a pipeline check, not faces."""
    from facebench.errors import ConfigError
    from facebench.pluginmanager import registry

    registry("generator").get("arc2face_tiny").ensure_available()
    from .tiny import make_tiny

    if size % 8:
        raise ConfigError(f"--size must be a multiple of 8, got {size}")
    make_tiny_model(out, command="arc2face make-tiny", what="tiny model directory", overwrite=overwrite,
                    params={"seed": seed, "size": size, "encoder_format": encoder_format},
                    make=lambda path: make_tiny(path, seed=seed, size=size, encoder_format=encoder_format,
                                                overwrite=True),
                    finished=f"a tiny random-weight Arc2Face, {size} px, seed {seed}",
                    wrote=f"wrote a tiny random-weight Arc2Face ({size} px, seed {seed}, {{mb}} MB)")
