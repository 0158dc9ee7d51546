"""``facebench train-generator``: train Vec2Face on (image, identity feature) pairs, or Vec2Face+'s pose
model on (image, identity feature, landmark image) records."""

from __future__ import annotations

from pathlib import Path

import click

from facebench.cli.options import device_option, examples, overwrite_option, rerun_help

EXAMPLE = examples(
    "facebench train-generator --config tiny --data toy/train --extractor fr-run --weights runs/tiny \\",
    "    --out runs/v2f-tiny --set epochs=1",
    "facebench train-generator --config base --data WebFace4M.lmdb \\",
    "    --extractor arcface-r100 --weights arcface-r100-glint360k.pth --out runs/v2f",
    "facebench train-generator --config vec2face_plus_pose --data WebFace4M_with_landmarks.lmdb \\",
    "    --extractor arcface-r100 --weights arcface-r100-glint360k.pth --init main_model.pth --out runs/v2fp-pose",
)


@click.command("train-generator", epilog=EXAMPLE)
@click.option("--config", "config_path", required=True,
              help="TOML config file, or a shipped one: 'base' (as released) or 'tiny' (CPU); Vec2Face+'s pose "
                   "model: 'vec2face_plus_pose' (as released) or 'vec2face_plus_pose_tiny' (CPU).")
@click.option("--data", required=True, type=click.Path(exists=True),
              help="Training set (any registered train format; the official LMDB carries features; the pose "
                   "model needs landmark images: the layout of WebFace4M_with_landmarks.lmdb).")
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
                   "continues at its next epoch), also where parameters changed (a capped run continued without "
                   "its cap). Not needed to continue the same command: it does so by itself.")
@click.option("--init", "init", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Start this new run from a training checkpoint: the release's checkpoint-*.pth (model_vec2face, "
                   "model_disc, optimizers, epoch, scaler) or a facebench checkpoint.pt; it continues at the next epoch. "
                   "Vec2Face+'s pose model instead starts from the weights of such a file or of released ones (main_model.pth, "
                   "pose_model.pth) at epoch 0, as the release's --model_weights does.")
@device_option(default=None, help="auto, cpu, cuda, cuda:N (overrides the config).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set epochs=2 --set losses.gan=0.")
@overwrite_option("--out")
@rerun_help("--out", note="The parameters are the config after --set (device and num_workers are not ones), "
                          "--extractor, --format and the sha256 of --data, --features, --weights and --init. An "
                          "unfinished run continues from its last checkpoint.")
def train_generator(config_path, data, data_format, features, extractor, weights, out, resume, init, device,
                    overrides, overwrite):
    """Train a Vec2Face generator (feature masked autoencoder) with the release's objective, on raw identity
    features, and save it in the official layout; or train Vec2Face+'s pose model (LoRA adapters on the
    frozen generator and the landmark-image encoder) as its release does."""
    from facebench.atomic import refuse_link
    from facebench.config import build_config
    from facebench.console import console
    from facebench.data import resolve_dataset_path
    from facebench.errors import ConfigError
    from facebench.rerun import FINISHED, RESUME, Rerun, already_complete, parameters
    from facebench.runs import Run, discard_on_failure, run_path
    from facebench.runtime import env_context
    from facebench.safe_load import read_toml
    from facebench.training import CHECKPOINT

    from .train_config import PoseTrainConfig, config_class, shipped_config
    from .trainer import train_from_paths

    path = Path(config_path)
    if not path.is_file() and not path.suffix:
        path = shipped_config(config_path)
    overrides = list(overrides) + ([f'device="{device}"'] if device else [])
    table = read_toml(path)
    cfg = build_config(config_class(table, overrides), table, overrides)
    run_dir = run_path(out, "train-generator")
    refuse_link(run_dir / CHECKPOINT, "training checkpoint")  # a name it reopens: never a planted link
    if resume and init:
        raise ConfigError("--resume continues this run's own checkpoint and --init starts from another one; "
                          "pass one of them")
    inputs = {"data": resolve_dataset_path(data)}  # a generate run or toyfaces world: the set inside
    if init:
        inputs["init"] = init
    if features:
        inputs["features"] = features
    if weights:
        inputs["extractor_weights"] = weights
    main = env_context().is_main
    rerun = Rerun(run_dir, command="train-generator", what="generator", overwrite=overwrite, resume=resume,
                  params=parameters(cfg, ignore=("device", "num_workers"), inputs=inputs, extractor=extractor,
                                    format=data_format),
                  outputs=["generator.pth"])
    state = rerun.check(discard=main)
    if state == FINISHED:
        if main:
            click.echo(already_complete(run_dir, f"{cfg.model}, generator.pth"))
        return
    resume = resume or (state == RESUME and (run_dir / CHECKPOINT).is_file())
    run = None
    with discard_on_failure(run_dir):  # a failure before the first checkpoint leaves no run folder
        if main:
            run = Run.start(run_dir, config=cfg, seed=cfg.seed, device=cfg.device, inputs=inputs,
                            extra={"generator": cfg.model, "extractor": extractor,
                                   "world_size": env_context().world_size}, rerun=rerun)
        result = train_from_paths(cfg, data, run_dir, data_format=data_format, features=features,
                                  extractor_name=extractor, extractor_weights=weights, resume=resume, init=init)
        if run is not None:
            made = [name for name in ("grids", "reconstruction.json") if (run_dir / name).exists()]
            rerun.finish(run, outputs=["generator.pth", *made])  # metrics.jsonl holds timings: not compared
    if main:
        losses = ", ".join(f"{k} {v:.4f}" for k, v in result.last_losses.items())
        what = f"{cfg.model} pose model" if isinstance(cfg, PoseTrainConfig) else cfg.model
        click.echo(f"trained {what}: {result.steps} steps, {result.epochs_done} epochs; last losses: {losses}")
        click.echo(f"generator weights: {run_dir / 'generator.pth'}")
        rec = result.reconstruction
        if rec:
            click.echo(f"identity check ({extractor}, {rec['samples']} images): cosine input vs generated "
                       f"{rec['genuine_mean']:.3f}, unrelated pairs {rec['unrelated_mean']:.3f}")
        console.print(f"reconstruction grids in {run_dir / 'grids'}")


__all__ = ["train_generator"]
