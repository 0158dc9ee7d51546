"""``facebench train-fr``: train an FR model with a registered recipe on any training format."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import MissingFileError
from .options import device_option


def _search_dirs(data: str) -> list[Path]:
    data_path = Path(data)
    places = [data_path if data_path.is_dir() else data_path.parent, data_path.parent, Path.cwd()]
    return list(dict.fromkeys(places))


def resolve_pack(name_or_path: str, data: str) -> Path:
    """A verification pack given as a path, or as a name (``toy_lfw``) looked up as ``<name>.bin`` (or a
    pair-list folder of that name) beside the training set (its folder, its parent) and in the current
    directory."""
    path = Path(name_or_path)
    if path.exists():
        return path
    filename = name_or_path if name_or_path.endswith(".bin") else f"{name_or_path}.bin"
    for place in _search_dirs(data):
        for candidate in (place / filename, place / name_or_path):
            if candidate.exists():
                return candidate
    looked = ", ".join(str(p) for p in _search_dirs(data))
    raise MissingFileError(path, "verification pack", f"also looked for {filename} in {looked}")


def resolve_validation(items: tuple[str, ...] | list[str], data: str) -> dict[str, Path]:
    """``--val`` values -> {benchmark name: pack path}. Each value is a pack (path or name) or the name of
    a verification suite from the evaluator registry (e.g. ``toy-five``), whose packs are looked up beside
    the training set the way ``facebench evaluate`` finds them under ``--data-root``."""
    from ..evaluation.suites import SUITE
    from ..pluginmanager import registry

    evaluators = registry("evaluator")
    packs: dict[str, Path] = {}
    for item in items:
        if item in evaluators and evaluators.get(item).extras.get("kind") == SUITE:
            from ..evaluation.suites import get_suite

            suite = get_suite(item)
            found: dict[str, Path] = {}
            for place in _search_dirs(data):
                located, _ = suite.locate(place)
                for name, path in located.items():
                    found.setdefault(name, path)
            absent = [b.name for b in suite.benchmarks if b.name not in found]
            if absent:
                looked = ", ".join(str(p) for p in _search_dirs(data))
                raise MissingFileError(item, f"packs {', '.join(absent)} of suite", f"looked in {looked}")
            packs.update(found)
            continue
        path = resolve_pack(item, data)
        name = path.name[:-4] if path.name.endswith(".bin") else path.name
        packs[name] = path
    return packs


@click.command(
    "train-fr",
    epilog="Example: facebench train-fr --recipe tiny-arcface --data toy/train --val toy_lfw --out runs/tiny",
)
@click.option("--recipe", "recipe_name", required=True,
              help="Registered recipe name (facebench plugins --kind recipe) or a recipe .toml file.")
@click.option("--data", required=True, type=click.Path(), help="Training set in any registered train format.")
@click.option("--format", "data_format", default=None, help="Training-set format (detected when omitted).")
@click.option("--val", "val", multiple=True,
              help="Verification pack (path, or name such as toy_lfw found beside --data) or suite "
                   "(e.g. toy-five); repeatable.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Run directory [default: runs/fr-<recipe>-<dataset>].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@device_option()
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a recipe value, e.g. --set optim.epochs=2 --set optim.lr=0.05.")
def train_fr_command(recipe_name: str, data: str, data_format: str | None, val: tuple[str, ...], out: str | None,
                     resume: bool, device: str, overrides: tuple[str, ...]) -> None:
    """Train a face-recognition model; under torchrun it trains data-parallel (gloo on CPU, NCCL on GPU).

    Writes checkpoint.pt (every epoch and every train.checkpoint_every steps), metrics.jsonl,
    backbone.pt (state dict, insightface key names) and model.json (the model card) to the run directory.
    """
    from ..config import config_to_dict
    from ..data import open_dataset, open_pairs
    from ..errors import ConfigError
    from ..fr.recipe import resolve_recipe
    from ..fr.trainer import train_fr
    from ..runs import Run, run_path
    from ..runtime import env_context, shutdown
    from ..training import CHECKPOINT

    recipe = resolve_recipe(recipe_name, overrides)
    reader = open_dataset(data, data_format)
    pack_paths = resolve_validation(val, data)
    for path in pack_paths.values():
        open_pairs(path).close()  # a broken pack fails now, not after the first epoch
    out_dir = run_path(out, f"fr-{recipe.name}-{Path(data).name}")
    ctx = env_context()
    dataset_info = {"path": str(Path(data).resolve()), "format": getattr(reader, "format_name", "") or data_format,
                    "images": len(reader), "identities": int(reader.num_classes)}
    if ctx.is_main:
        if (out_dir / CHECKPOINT).exists() and not resume:
            raise ConfigError(f"{out_dir}: holds a checkpoint of an earlier run; pass --resume to continue it "
                              "or choose another --out")
        inputs = {"dataset": data, **{f"val:{k}": p for k, p in pack_paths.items()}}
        run = Run.start(out_dir, config=config_to_dict(recipe), seed=recipe.train.seed, device=device, inputs=inputs,
                  extra={"world_size": ctx.world_size})
        dataset_info["sha256"] = run.provenance()["inputs"]["dataset"]["sha256"]
    try:
        result = train_fr(recipe, reader, out_dir, val_packs=pack_paths, device=device, resume=resume,
                          dataset_info=dataset_info)
    finally:
        shutdown(ctx)
    if ctx.is_main:
        accs = "  ".join(f"{k} {v * 100:.2f}%" for k, v in result.accuracies.items())
        click.echo(f"trained {recipe.name}: {result.global_step} steps -> {out_dir / 'backbone.pt'}"
                   + (f"  ({accs})" if accs else ""))


__all__ = ["train_fr_command"]
