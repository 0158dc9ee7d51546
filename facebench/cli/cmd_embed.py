"""``facebench embed``: features of every image of a dataset, and per-identity centres."""

from __future__ import annotations

import click

from .options import device_option


@click.command(
    "embed",
    epilog="Example: facebench embed --extractor fr-run --weights runs/tiny toy/train --out feats.npy",
)
@click.argument("data", type=click.Path())
@click.option("--extractor", "extractor_name", required=True,
              help="Feature extractor: a backbone name (iresnet100, se_iresnet50, ...), a released model "
                   "(arcface-r100, hsface10k-se-ir50, ...) or fr-run (facebench plugins --kind feature_extractor).")
@click.option("--weights", default=None,
              help="Weights file (looked up in the weights directory too), or a train-fr run directory for fr-run.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .npy of (N, D) features.")
@click.option("--format", "data_format", default=None, help="Dataset format (detected when omitted).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@device_option()
@click.option("--no-flip", is_flag=True, help="Embed the image alone instead of image + mirror image.")
@click.option("--raw", is_flag=True,
              help="Unnormalised features of the image alone, and centres = plain mean of them: the scale the "
                   "Vec2Face release trains and generates on (for train-generator, sample-ids, generate).")
def embed_command(data: str, extractor_name: str, weights: str | None, out: str, data_format: str | None,
                  batch_size: int, device: str, no_flip: bool, raw: bool) -> None:
    """Write features of every image of DATA, its labels and per-identity centres.

    Outputs: OUT (N x D float32), OUT with .labels.npy (N int64) and .centers.npy (C x D). By default the
    features are L2-normalised (flip test: image + mirror image) and each centre is the mean feature
    renormalised to unit length, as the analyses use them. With --raw they are the model's raw output for
    the image alone and each centre is the plain mean of its identity's raw features, as the release's
    center_features script computes them. OUT appears only when complete; a killed run rerun with the same
    arguments resumes at the first unfinished chunk. Under torchrun every rank embeds its share of the
    chunks into the same OUT.
    """
    from ..evaluation.features import write_features
    from ..runtime import choose_device, env_context

    ctx = env_context()
    info = write_features(extractor_name, weights, data, out, raw=raw, flip=not no_flip, batch_size=batch_size,
                          device=str(choose_device(device, ctx.local_rank)), data_format=data_format)
    if not ctx.is_main:
        return
    kind = f"raw features (median norm {info['median_norm']:.4g})" if raw else "unit-length features"
    click.echo(f"{info['images']} {kind} ({info['dim']}-d) of {info['identities']} identities -> {out}")


__all__ = ["embed_command"]
