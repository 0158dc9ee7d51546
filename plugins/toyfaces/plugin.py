"""The ``facebench toyfaces`` commands (imports the renderer only when a command runs)."""

from __future__ import annotations

import json
import os

import click

from facebench import hookimpl
from facebench.cli.options import examples, overwrite_option, rerun_help

PACK_NAMES = ["toy_lfw", "toy_cfp_fp", "toy_cplfw", "toy_agedb_30", "toy_calfw", "toy_hadrian", "toy_eclipse"]


@click.group(epilog=examples("facebench toyfaces build toy --identities 50 --images-per-identity 10 --size 56 --pairs 200"))
def toyfaces() -> None:
    """The embedded toy world: procedurally drawn faces in the real dataset formats."""


@toyfaces.command(
    epilog=examples("facebench toyfaces build toy --identities 50 --images-per-identity 10 --size 56 --pairs 200",
                    "facebench toyfaces build toy-lmdb --identities 50 --format lmdb --size 56 --pairs 200 --packs toy_lfw,toy_cfp_fp")
)
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--identities", type=click.IntRange(min=2), default=None, help="Training identities [500].")
@click.option("--images-per-identity", type=click.IntRange(min=1), default=None, help="Images per identity [20].")
@click.option("--seed", type=int, default=None, help="World seed: same seed, byte-identical files [0].")
@click.option("--format", "fmt", default=None, help="Training-set format (folder, rec, lmdb) [folder].")
@click.option("--size", type=click.IntRange(16, 512), default=None, help="Image side in pixels [112].")
@click.option("--pairs", type=int, default=None,
              help="Pairs per verification pack, a multiple of 20 (10 folds, half same) [6000].")
@click.option("--packs", default=None, help=f"Comma list of packs to write [all: {','.join(PACK_NAMES)}].")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="TOML file with any of the settings (and a [difficulty] table).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a setting, e.g. --set difficulty.yaw_sigma=25 (repeatable).")
@click.option("--workers", type=click.IntRange(min=1), default=min(2, os.cpu_count() or 1), show_default=True,
              help="Rendering processes (does not change the files).")
@overwrite_option()
@rerun_help(note="The settings are the parameters; --workers is not one. Rendered shards wait in .OUT.partial/ "
                 "until OUT appears, complete.")
def build(out, identities, images_per_identity, seed, fmt, size, pairs, packs, config_path, overrides, workers,
          overwrite) -> None:
    """Render a toy training set plus verification packs (toy_lfw, toy_cfp_fp, ...) into OUT."""
    from facebench.config import load_config

    from .build import ToyConfig, build_world

    sets = list(overrides)
    for key, value in (("identities", identities), ("images_per_identity", images_per_identity), ("seed", seed),
                       ("size", size), ("pairs", pairs)):
        if value is not None:
            sets.append(f"{key}={value}")
    if fmt is not None:
        sets.append(f"format={json.dumps(fmt)}")
    if packs is not None:
        sets.append(f"packs={json.dumps([p.strip() for p in packs.split(',') if p.strip()])}")
    cfg = load_config(ToyConfig, config_path, sets)
    built = build_world(out, cfg, workers=workers, overwrite=overwrite)
    record = built.record
    if built.already_complete:
        from facebench.rerun import already_complete

        click.echo(already_complete(out, f"{record['identities']} identities, {record['images']} training images, "
                                         f"packs {', '.join(record['packs'])}"))
        return
    click.echo(f"wrote {out}: {record['identities']} identities, {record['images']} training images "
               f"({record['format']} at {out}/{record['train']}), packs: "
               + ", ".join(f"{k} ({v['pairs']} pairs)" for k, v in record["packs"].items()))


@toyfaces.command(epilog=examples("facebench toyfaces protocols toy-protocols --size 56 --seed 0"))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--size", type=click.IntRange(16, 512), default=None, help="Face crop side; match the world's [112].")
@click.option("--seed", type=int, default=None, help="Seed: same seed, byte-identical files [0].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a setting, e.g. --set ijb_identities=60, --set rfw_pairs=1200 or "
                   "--set twins_difference=0.15 (repeatable).")
@overwrite_option()
@rerun_help(note="The settings are the parameters. OUT appears only when complete: an interrupted run is made "
                 "again.")
def protocols(out, size, seed, overrides, overwrite) -> None:
    """Render the toy mirrors of IJB-C (1:1 and 1:N), RFW (four groups), TinyFace and ND-Twins into OUT.

    OUT/toy_ijb holds loose crops and insightface's meta files, OUT/toy_rfw_tone1..4.bin the group packs,
    OUT/toy_tinyface the Probe / Gallery_Match / Gallery_Distractor folders, OUT/toy_twins look-alike twin
    pairs in SOTA-FR's layout (toy_twins.npy + issame.txt); `facebench evaluate --suite toy-protocols
    --data-root OUT` scores them all.
    """
    from facebench.config import load_config

    from .protocols import ProtocolsConfig, build_protocols

    sets = list(overrides)
    for key, value in (("size", size), ("seed", seed)):
        if value is not None:
            sets.append(f"{key}={value}")
    record, done = build_protocols(out, load_config(ProtocolsConfig, None, sets), overwrite=overwrite)
    ijb, tiny = record["toy_ijb"], record["toy_tinyface"]
    if done:
        from facebench.rerun import already_complete

        click.echo(already_complete(out, f"toy_ijb, toy_rfw_tone1..4, toy_tinyface, toy_twins at size {record['size']}, seed "
                                         f"{record['seed']}"))
        return
    click.echo(f"wrote {out}: toy_ijb ({ijb['images']} images, {ijb['templates']} templates, {ijb['pairs']} pairs), "
               f"toy_rfw_tone1..4 ({len(record['toy_rfw'])} packs), toy_tinyface ({tiny['probes']} probes, "
               f"{tiny['gallery_matches']} matches, {tiny['distractors']} distractors), "
               f"toy_twins ({record['toy_twins']['pairs']} pairs)")


@toyfaces.command(
    "pose-model", epilog=examples("facebench toyfaces pose-model runs/toy-pose --size 56 --images 400 --epochs 2",
                                  "facebench toyfaces pose-model runs/toy-pose --size 56 --epochs 10")
)
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--size", type=click.IntRange(16, 512), default=None, help="Image side; match the world's [56].")
@click.option("--images", type=click.IntRange(min=1), default=None, help="Training faces to render [4000].")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs [10].")
@click.option("--seed", type=int, default=None, help="Seed of the faces and of the training [0].")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a setting, e.g. --set max_yaw=80 (repeatable).")
@overwrite_option()
@rerun_help(note="The settings are the parameters. Training takes a minute, so an interrupted run trains again "
                 "from the start (seeded: the same weights).")
def pose_model(out, size, images, epochs, seed, overrides, overwrite) -> None:
    """Train a tiny SixDRepNet on toy faces of known pose: the pose model of toy AttrOP runs.

    Writes OUT/pose.pth (a sixdrepnet-tiny weights file) and OUT/pose.json (validation errors in degrees).
    """
    from facebench.config import load_config

    from .pose_model import PoseModelConfig, train_pose_model

    sets = list(overrides)
    for key, value in (("size", size), ("images", images), ("epochs", epochs), ("seed", seed)):
        if value is not None:
            sets.append(f"{key}={value}")
    record, done = train_pose_model(load_config(PoseModelConfig, None, sets), out, overwrite=overwrite)
    v = record["validation"]
    if done:
        from facebench.rerun import already_complete

        click.echo(already_complete(out, f"pose.pth, validation MAE yaw {v['yaw_mae']:.1f} deg"))
        return
    click.echo(f"wrote {out}/pose.pth: validation MAE pitch {v['pitch_mae']:.1f}, yaw {v['yaw_mae']:.1f}, "
               f"roll {v['roll_mae']:.1f} deg; |yaw| beyond 45 deg {v['abs_yaw_mae_beyond_45']:.1f} deg")


@hookimpl
def register_commands(cli) -> None:
    cli.add_command(toyfaces)
