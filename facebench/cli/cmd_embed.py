"""``facebench embed``: features of every image of a dataset, and per-identity centres."""

from __future__ import annotations

from pathlib import Path

import click

from .options import device_option, examples, overwrite_option, rerun_help


@click.command(
    "embed",
    epilog=examples("facebench embed --extractor fr-run --weights runs/tiny toy/train --out feats.npy",
                    "facebench embed --extractor fr-run --weights runs/tiny toy/train --out feats.npy --raw",
                    "facebench embed --align --detector retinaface_r50 --detector-weights Resnet50_Final.pth \\",
                    "    --extractor arcface-r100 photos/ --out refs.npy --raw"),
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
@click.option("--align", is_flag=True,
              help="DATA is a folder of raw photos (a sub-folder per identity, or one photo per identity): "
                   "detect each face with --detector and align it to the ArcFace crop first.")
@click.option("--detector", "detector_name", default=None,
              help="Face detector for --align (facebench plugins --kind detector), e.g. retinaface_r50.")
@click.option("--detector-weights", type=click.Path(), default=None,
              help="Weights file of the detector [default: its released file in the weights directory].")
@overwrite_option("--out")
@rerun_help("--out", note="The parameters are the extractor with its weights' sha256, DATA's sha256 (with --align "
                          "the photos' and the detector's), --format, --raw, --no-flip and --batch-size (it can move "
                          "the last bits of a feature), recorded in OUT.json beside OUT; --device is not one.")
def embed_command(data: str, extractor_name: str, weights: str | None, out: str, data_format: str | None,
                  batch_size: int, device: str, no_flip: bool, raw: bool, align: bool, detector_name: str | None,
                  detector_weights: str | None, overwrite: bool) -> None:
    """Write features of every image of DATA, its labels and per-identity centres.

    Outputs: OUT (N x D float32), OUT with .labels.npy (N int64) and .centers.npy (C x D). By default the
    features are L2-normalised (flip test: image + mirror image) and each centre is the mean feature
    renormalised to unit length, as the analyses use them. With --raw they are the model's raw output for
    the image alone and each centre is the plain mean of its identity's raw features, as the release's
    center_features script computes them. OUT appears only when complete; a killed run rerun with the same
    arguments resumes at the first unfinished chunk. Under torchrun every rank embeds its share of the
    chunks into the same OUT.

    With --align, DATA is a folder of raw photos: either one sub-folder per identity (named by the
    folder; its photos make one centre) or photos directly inside it (one identity per photo, named by
    the file name). Each photo's face is found by --detector (several faces: the largest near the
    centre), aligned to the ArcFace template at the extractor's input size and embedded. A photo with no
    face, a file that is not a photo or an empty identity folder is an error naming it: nothing is
    skipped, since a skipped photo would change its identity's vector. OUT with .photos.json records the
    identities' names (row i of the centres is identity i) and per photo its sha256 and the face used.
    """
    from ..errors import FacebenchError
    from ..evaluation.features import write_features, write_photo_features
    from ..runtime import choose_device, env_context

    if align and not detector_name:
        raise FacebenchError("--align needs --detector NAME (facebench plugins --kind detector lists them)")
    if not align and (detector_name or detector_weights):
        raise FacebenchError("--detector and --detector-weights apply to --align (DATA as a folder of raw photos)")
    if align and data_format:
        raise FacebenchError("--format does not apply to --align: DATA is a folder of photos")
    ctx = env_context()
    chosen = str(choose_device(device, ctx.local_rank))
    if align:
        info = write_photo_features(extractor_name, weights, data, out, detector=detector_name,
                                    detector_weights=detector_weights, raw=raw, flip=not no_flip,
                                    batch_size=batch_size, device=chosen, overwrite=overwrite)
    else:
        info = write_features(extractor_name, weights, data, out, raw=raw, flip=not no_flip, batch_size=batch_size,
                              device=chosen, data_format=data_format, overwrite=overwrite)
    if not ctx.is_main:
        return
    if info.get("already_complete"):
        from ..rerun import already_complete

        click.echo(already_complete(out, f"{info['images']} features ({info['dim']}-d) of {info['identities']} "
                                         "identities"))
        return
    kind = f"raw features (median norm {info['median_norm']:.4g})" if raw else "unit-length features"
    click.echo(f"{info['images']} {kind} ({info['dim']}-d) of {info['identities']} identities -> {out}")
    if align:
        several = info["several_faces"]
        click.echo(f"photos: {info['layout']}; {several} showed several faces (the largest near the centre was "
                   f"used; see {Path(out).with_name(Path(out).stem + '.photos.json')})" if several else
                   f"photos: {info['layout']}; one face found in each")


__all__ = ["embed_command"]
