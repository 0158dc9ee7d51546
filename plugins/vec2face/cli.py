"""``facebench train-generator``: train Vec2Face on (image, identity feature) pairs."""

from __future__ import annotations

from pathlib import Path

import click

from facebench.cli.options import device_option

EXAMPLE = """Example:

\b
  facebench train-generator --config tiny --data toy/train \\
      --extractor fr-run --weights runs/teacher --out runs/v2f-tiny
  facebench train-generator --config base --data WebFace4M.lmdb \\
      --extractor arcface-r100 --weights arcface-r100-glint360k.pth --out runs/v2f
"""


@click.command("train-generator", epilog=EXAMPLE)
@click.option("--config", "config_path", required=True,
              help="TOML config file, or a shipped one: 'base' (as released) or 'tiny' (CPU).")
@click.option("--data", required=True, type=click.Path(exists=True),
              help="Training set (any registered train format; the official LMDB carries features).")
@click.option("--format", "data_format", default=None, help="Dataset format name (detected when omitted).")
@click.option("--features", type=click.Path(exists=True, dir_okay=False), default=None,
              help="(N, 512) .npy of identity features, one row per image in dataset order, used as given "
                   "(raw, as the release trains).")
@click.option("--extractor", default=None,
              help="Frozen FR feature extractor for the identity loss (and for raw features when not given).")
@click.option("--weights", default=None, help="Weights file of --extractor.")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Run directory [runs/train-generator].")
@click.option("--resume", is_flag=True,
              help="Continue from the run directory's checkpoint.pt (exactly; a release checkpoint copied there "
                   "continues at its next epoch).")
@click.option("--init", "init", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start this new run from a training checkpoint: the release's checkpoint-*.pth (model_vec2face, "
                   "model_disc, optimizers, epoch, scaler) or a facebench checkpoint.pt; it continues at the next epoch.")
@device_option(default=None, help="auto, cpu, cuda, cuda:N (overrides the config).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set epochs=2 --set losses.gan=0.")
def train_generator(config_path, data, data_format, features, extractor, weights, out, resume, init, device,
                    overrides):
    """Train a Vec2Face generator (feature masked autoencoder) with the release's objective, on raw identity
    features, and save it in the official layout."""
    from facebench.config import load_config
    from facebench.console import console
    from facebench.errors import ConfigError
    from facebench.runs import Run, run_path
    from facebench.runtime import env_context
    from facebench.training import check_resume

    from .train_config import TrainGeneratorConfig, shipped_config
    from .trainer import train_from_paths

    path = Path(config_path)
    if not path.is_file() and not path.suffix:
        path = shipped_config(config_path)
    overrides = list(overrides) + ([f'device="{device}"'] if device else [])
    cfg = load_config(TrainGeneratorConfig, path, overrides)
    run_dir = run_path(out, "train-generator")
    check_resume(run_dir, resume)
    if resume and init:
        raise ConfigError("--resume continues this run's own checkpoint and --init starts from another one; "
                          "pass one of them")
    inputs = {"data": data}
    if init:
        inputs["init"] = init
    if features:
        inputs["features"] = features
    if weights:
        inputs["extractor_weights"] = weights
    if env_context().is_main:
        Run.start(run_dir, config=cfg, seed=cfg.seed, device=cfg.device, inputs=inputs,
            extra={"generator": cfg.model, "extractor": extractor, "world_size": env_context().world_size})
    result = train_from_paths(cfg, data, run_dir, data_format=data_format, features=features,
                              extractor_name=extractor, extractor_weights=weights, resume=resume, init=init)
    if env_context().is_main:
        losses = ", ".join(f"{k} {v:.4f}" for k, v in result.last_losses.items())
        click.echo(f"trained {cfg.model}: {result.steps} steps, {result.epochs_done} epochs; last losses: {losses}")
        click.echo(f"generator weights: {run_dir / 'generator.pth'}")
        rec = result.reconstruction
        if rec:
            click.echo(f"identity check ({extractor}, {rec['samples']} images): cosine input vs generated "
                       f"{rec['genuine_mean']:.3f}, unrelated pairs {rec['unrelated_mean']:.3f}")
        console.print(f"reconstruction grids in {run_dir / 'grids'}")


__all__ = ["train_generator"]
