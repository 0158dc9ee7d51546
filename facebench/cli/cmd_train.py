"""``facebench train-fr``: train an FR model with a registered recipe on any training format."""

from __future__ import annotations

import click

from .options import device_option, examples, overwrite_option, rerun_help


@click.command(
    "train-fr",
    epilog=examples(
        "facebench train-fr --recipe tiny-arcface --data toy/train --val toy_lfw --out runs/tiny",
        "facebench train-fr --recipe tiny-arcface --data runs/noise-set --val toy-five --data-root toy \\",
        "    --out runs/noise --set optim.epochs=2",
        "facebench train-fr --recipe se-ir50-arcface --data hsface10k.lmdb --val lfw --val cfp_fp \\",
        "    --data-root ~/data/eval --out runs/hs10k"),
)
@click.option("--recipe", "recipe_name", required=True,
              help="Registered recipe name (facebench plugins --kind recipe) or a recipe .toml file.")
@click.option("--data", required=True, type=click.Path(), help="Training set in any registered train format.")
@click.option("--format", "data_format", default=None, help="Training-set format (detected when omitted).")
@click.option("--val", "val", multiple=True,
              help="Verification pack (a path, or a name such as toy_lfw looked for beside --data, in the current "
                   "directory and under --data-root) or suite (e.g. toy-five); repeatable.")
@click.option("--data-root", type=click.Path(file_okay=False), default=None, envvar="FACEBENCH_DATA",
              help="Another folder where --val packs are looked for [env FACEBENCH_DATA].")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory [default: runs/fr-<recipe>-<dataset>].")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its last checkpoint, also where parameters changed (as far as "
                   "the checkpoint allows). Not needed to continue the same command: it does so by itself.")
@device_option()
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe value, e.g. --set optim.epochs=2 --set optim.lr=0.05.")
@overwrite_option("--out")
@rerun_help("--out", note="The parameters are the recipe after --set (data.workers is not one) and the sha256 of "
                          "the training set and the --val packs; --device is not one. An unfinished run continues "
                          "from its last checkpoint, to the weights of an uninterrupted run.")
def train_fr_command(recipe_name: str, data: str, data_format: str | None, val: tuple[str, ...],
                     data_root: str | None, out: str | None, resume: bool, device: str,
                     overrides: tuple[str, ...], overwrite: bool) -> None:
    """Train a face-recognition model; under torchrun it trains data-parallel (gloo on CPU, NCCL on GPU).

    Writes checkpoint.pt (every epoch and every train.checkpoint_every steps), metrics.jsonl,
    backbone.pt (state dict, insightface key names) and model.json (the model card) to the run directory.
    """
    from ..fr.trainer import train_from_paths
    from ..runtime import env_context

    result = train_from_paths(recipe_name, data, data_format=data_format, val=val, out=out, resume=resume,
                              device=device, overrides=overrides, data_root=data_root, overwrite=overwrite)
    if result.already_complete and env_context().is_main:
        from ..rerun import already_complete

        accs = ", ".join(f"{k} {v * 100:.2f}%" for k, v in result.accuracies.items())
        click.echo(already_complete(result.out_dir, f"{result.recipe}, {result.global_step} steps"
                                                    + (f"; {accs}" if accs else "")))
        return
    if env_context().is_main:
        accs = "  ".join(f"{k} {v * 100:.2f}%" for k, v in result.accuracies.items())
        click.echo(f"trained {result.recipe}: {result.global_step} steps -> {result.out_dir / 'backbone.pt'}"
                   + (f"  ({accs})" if accs else ""))


__all__ = ["train_fr_command"]
