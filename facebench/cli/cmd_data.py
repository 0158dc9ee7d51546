"""``facebench data``: inspect, convert, check and preview face datasets of any registered format."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ..errors import FacebenchError
from .options import device_option, examples, overwrite_option, rerun_help

_stdout = Console(highlight=False)

@click.group(epilog=examples("facebench data info toy/train", "facebench data grid runs/noise-set --out noise.png"))
def data() -> None:
    """Inspect, convert, check and preview face datasets (folder, rec, lmdb, bin, pairlist, ...)."""


_format_option = click.option("--format", "fmt", default=None, help="Source format (detected when omitted).")
_mask_option = click.option("--mask", type=click.Path(dir_okay=False), default=None,
                            help="LMDB only: .npy index mask selecting a subset (HSFace100k/200k).")


@data.command(epilog=examples("facebench data info runs/noise-set", "facebench data info faces_webface_112x112 --json"))
@click.argument("path", type=click.Path())
@_format_option
@_mask_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead of a table.")
def info(path: str, fmt: str | None, mask: str | None, as_json: bool) -> None:
    """Format, identities, images, images per identity (min/median/max), image sizes; for packs the pairs."""
    from ..data.inspect import dataset_summary, open_for_inspection

    with open_for_inspection(path, fmt, mask) as reader:
        summary = dataset_summary(reader)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=f"{path}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    for key, value in summary.items():
        if key == "image_sizes":
            value = ", ".join(f"{s['width']}x{s['height']} ({s['count']})" for s in value)
        elif key == "images_per_identity":
            value = f"min {value['min']}, median {value['median']:g}, max {value['max']}"
        table.add_row(key.replace("_", " "), str(value))
    _stdout.print(table)


@data.command(epilog=examples("facebench data convert toy/train toy-train.lmdb --to lmdb",
                              "facebench data convert faces_webface_112x112 casia.lmdb --to lmdb"))
@click.argument("src", type=click.Path())
@click.argument("dst", type=click.Path())
@click.option("--to", "to_format", required=True, help="Output format (see: facebench plugins --kind format).")
@_format_option
@_mask_option
@overwrite_option("DST")
@rerun_help("DST", note="The parameters are --to, --format and the sha256 of SRC and --mask, recorded in DST.json "
                        "beside DST; an interrupted conversion is made again.")
def convert(src: str, dst: str, to_format: str, fmt: str | None, mask: str | None, overwrite: bool) -> None:
    """Convert SRC to DST in another format, streaming one record at a time; DST appears only when complete."""
    from ..data.inspect import convert_dataset
    from ..rerun import already_complete

    n, pairs, done = convert_dataset(src, dst, to_format, fmt=fmt, mask=mask, overwrite=overwrite)
    what = f"{n} {'pairs' if pairs else 'images'}"
    click.echo(already_complete(dst, f"{to_format}, {what}") if done else f"wrote {dst} ({to_format}): {what}")


@data.command(epilog=examples("facebench data check toy/train"))
@click.argument("path", type=click.Path())
@_format_option
@_mask_option
@click.option("--max-problems", type=click.IntRange(min=1), default=100, show_default=True,
              help="Stop listing after this many problems.")
def check(path: str, fmt: str | None, mask: str | None, max_problems: int) -> None:
    """Decode every record (and stored feature) and list the problems; exits with code 2 if there is any."""
    from ..data.inspect import check_dataset, is_pairs
    from ..safe_load import shown_name

    problems, reader = check_dataset(path, fmt=fmt, mask=mask, max_problems=max_problems)
    for line in problems:
        click.echo(shown_name(line))  # a name from the file (newline, escape codes) cannot forge a line
    if problems:
        more = "at least " if len(problems) >= max_problems else ""
        raise FacebenchError(f"{path}: {more}{len(problems)} problem(s) found")
    click.echo(f"ok: {path} ({reader.format_name}), {len(reader)} {'pairs' if is_pairs(reader) else 'images'} "
               "read without a problem")


@data.command(epilog=examples("facebench data grid toy/train --out grid.png --identities 8 --per-identity 6"))
@click.argument("path", type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--identities", type=click.IntRange(min=1), default=8, show_default=True,
              help="Rows: identities (training sets) or pair rows (packs).")
@click.option("--per-identity", type=click.IntRange(min=1), default=8, show_default=True,
              help="Columns: images per identity (packs: images per row, pairs side by side).")
@click.option("--size", type=click.IntRange(8, 512), default=112, show_default=True, help="Tile side in pixels.")
@_format_option
@_mask_option
@overwrite_option("--out")
@rerun_help("--out", note="The parameters are --identities, --per-identity, --size, --format and the sha256 of PATH "
                          "and --mask, recorded in OUT.json beside OUT; an interrupted sheet is made again.")
def grid(path: str, out: str, identities: int, per_identity: int, size: int, fmt: str | None, mask: str | None,
         overwrite: bool) -> None:
    """A contact sheet: one row per identity (packs: pairs framed green = same, red = different)."""
    from pathlib import Path

    from .. import atomic
    from ..data.inspect import contact_sheet, open_for_inspection
    from ..provenance import provenance
    from ..rerun import FINISHED, Rerun, already_complete, parameters

    with open_for_inspection(path, fmt, mask) as reader:
        source = getattr(reader, "path", None) or path
        rerun = Rerun(out, command="data grid", folder=False, what="contact sheet", outputs=[Path(out).name],
                      params=parameters({"identities": identities, "per_identity": per_identity, "size": size,
                                         "format": fmt}, inputs={"src": source, "mask": mask}),
                      overwrite=overwrite, resumable=False)
        if rerun.check() == FINISHED:
            click.echo(already_complete(out, f"the contact sheet of {path}"))
            return
        sheet = contact_sheet(reader, identities=identities, per_identity=per_identity, size=size)
    with rerun.writing(), atomic.atomic_path(out, "contact sheet") as tmp:
        sheet.save(tmp, format="PNG")
    record = provenance(inputs={"src": source, **({"mask": mask} if mask else {})}, hashes=rerun.params["inputs"])
    rerun.finish(record={**record, "sheet": {"width": sheet.width, "height": sheet.height}})
    click.echo(f"wrote {out} ({sheet.width}x{sheet.height})")


# ------------------------------------------------------------------------------ data align (raw photos in)

_ALIGN_EPILOG = examples(
    "facebench data align toy/train --detector retinaface_tiny --detector-option score_threshold=0 \\",
    "    --out runs/toy-aligned",
    "facebench data align lfw --detector retinaface_r50 --weights Resnet50_Final.pth --out runs/lfw-aligned \\",
    "    --format rec --device cuda",
    "facebench data align my_photos --flat --detector retinaface_mnet --weights mobilenet0.25_Final.pth \\",
    "    --out runs/my-aligned --encoding png",
)


@data.command("align", epilog=_ALIGN_EPILOG)
@click.argument("src", type=click.Path())
@click.option("--detector", required=True, help="Registered face detector (see: facebench plugins --kind detector).")
@click.option("--weights", type=click.Path(),
              help="Detector weights file (MTCNN: the folder of pnet.pt, rnet.pt, onet.pt) [default: its released "
                   "file in the weights directory].")
@click.option("--detector-option", "detector_options", multiple=True, metavar="KEY=VALUE",
              help="Keyword option of the detector, e.g. --detector-option score_threshold=0.8 (recorded).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Run folder: manifest, staged shards, the dataset, outcomes.csv and dataset.json.")
@click.option("--format", "fmt", default="folder", show_default=True,
              help="Registered training-set format to write (folder, rec, lmdb, ...).")
@click.option("--size", type=click.IntRange(16, 1024), default=112, show_default=True,
              help="Side of the aligned crop in pixels (the ArcFace template, scaled).")
@click.option("--flat", is_flag=True, help="SRC holds photos, not identity folders: each photo is its own identity.")
@click.option("--encoding", type=click.Choice(["jpg", "png"]), default="jpg", show_default=True,
              help="How crops are stored: JPEG quality 95 (insightface's packs) or lossless PNG.")
@click.option("--photos-per-shard", type=click.IntRange(min=1), default=256, show_default=True,
              help="Photos per resumable shard.")
@click.option("--skip-unreadable", is_flag=True,
              help="Record a photo that cannot be decoded as 'unreadable' and go on, instead of stopping.")
@click.option("--keep-shards", is_flag=True, help="Keep the staged shards after the dataset is written.")
@device_option(help="Device the detector runs on: auto, cpu, cuda, cuda:N.")
@overwrite_option("--out")
@rerun_help("--out", note="The parameters are the photos' listing (names and sizes), the detector with its weights and "
                          "options, --size, --format, --flat, --encoding and --photos-per-shard; --device, "
                          "--keep-shards and --skip-unreadable are not.")
def align(src, detector, weights, detector_options, out, fmt, size, flat, encoding, photos_per_shard,
          skip_unreadable, keep_shards, device, overwrite) -> None:
    """Detect and align the faces of a folder of raw photos (SRC/<identity>/<photo>, or --flat) into an
    aligned dataset; every photo's outcome goes to outcomes.csv."""
    from pathlib import Path

    from ..console import make_progress
    from ..data.align_job import AlignConfig, AlignRequest, run_align, summary_line

    config = AlignConfig(size=size, format=fmt, flat=flat, photos_per_shard=photos_per_shard, image_encoding=encoding,
                         keep_shards=keep_shards, skip_unreadable=skip_unreadable)
    request = AlignRequest(src=Path(src), out=Path(out), detector=detector, weights=weights,
                           detector_options=tuple(detector_options), device=device, overwrite=overwrite)
    with make_progress() as progress:
        outcome = run_align(request, config, progress=progress)
    job, summary = outcome.job, outcome.summary
    if outcome.already_complete:
        from ..rerun import already_complete

        click.echo(already_complete(job.out, f"{job.num_photos} photos"))
    else:
        click.echo(f"aligned {len(outcome.aligned)} of {job.num_shards} shards in this run; wrote {summary['images']} "
                   f"crops of {summary['identities']} identities to {job.dataset_path} ({fmt}); every photo's "
                   f"outcome in {job.out / 'outcomes.csv'}")
    click.echo(summary_line(summary["outcomes"]))


# ------------------------------------------------------------------- data pack (benchmark packs from photos)


@data.group("pack", epilog=examples("facebench data pack lfw lfw pairs.txt --landmarks lfw_landmarks.txt --out lfw.bin"))
def pack() -> None:
    """Build a standard verification pack (insightface's .bin layout and pair order) from the original photos
    and their protocol files: every photo detected (or given its landmarks) and aligned to the ArcFace crop."""


def _pack_options(command: Any) -> Any:
    options = [
        click.option("--detector", default=None,
                     help="Registered face detector (see: facebench plugins --kind detector)."),
        click.option("--weights", type=click.Path(), default=None,
                     help="Detector weights [default: its released file in the weights directory]."),
        click.option("--detector-option", "detector_options", multiple=True, metavar="KEY=VALUE",
                     help="Keyword option of the detector, e.g. --detector-option score_threshold=0.8."),
        click.option("--landmarks", type=click.Path(), default=None,
                     help="Five points per photo instead of a detector: lines 'relative/path x1 y1 ... x5 y5' "
                          "(eyes, nose, mouth corners; the path relative to the dataset folder)."),
        click.option("--out", required=True, type=click.Path(), help="The pack to write (.bin)."),
        click.option("--size", type=click.IntRange(16, 1024), default=112, show_default=True,
                     help="Side of the aligned crop in pixels (the ArcFace template, scaled)."),
        click.option("--encoding", type=click.Choice(["jpg", "png"]), default="jpg", show_default=True,
                     help="How crops are stored: JPEG quality 95 (insightface's packs) or lossless PNG."),
        overwrite_option("--out"),
        device_option(help="Device the detector runs on: auto, cpu, cuda, cuda:N."),
        rerun_help("--out", note="The parameters are the protocol file's and every photo's sha256, the detector "
                                 "with its weights' sha256 and options (or the landmarks file's sha256), --size and "
                                 "--encoding, recorded in OUT.json beside the pack; --device is not one."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _build_pack(protocol: Any, options: dict[str, Any]) -> None:
    from pathlib import Path

    from ..data.packing import PackRequest, build_pack, summary_line

    detector, landmarks = options["detector"], options["landmarks"]
    if (detector is None) == (landmarks is None):
        raise FacebenchError("give --detector NAME (with --weights FILE) or --landmarks FILE: the faces come from "
                             "one of them")
    if landmarks is not None and (options["weights"] or options["detector_options"]):
        raise FacebenchError("--weights and --detector-option go with --detector, not with --landmarks")
    request = PackRequest(protocol=protocol, out=Path(options["out"]), detector=detector, weights=options["weights"],
                          detector_options=tuple(options["detector_options"]),
                          landmarks=Path(landmarks) if landmarks else None, size=options["size"],
                          encoding=options["encoding"], overwrite=options["overwrite"], device=options["device"])
    click.echo(summary_line(build_pack(request)))


@pack.command("lfw", epilog=examples(
    "facebench data pack lfw lfw pairs.txt --landmarks lfw_landmarks.txt --out lfw.bin",
    "facebench data pack lfw lfw pairs.txt --detector retinaface_r50 --weights Resnet50_Final.pth \\",
    "    --out lfw.bin --device cuda",
))
@click.argument("lfw_dir", type=click.Path())
@click.argument("pairs_file", type=click.Path())
@_pack_options
def pack_lfw(lfw_dir: str, pairs_file: str, **options: Any) -> None:
    """LFW from LFW_DIR/<name>/<name>_<nnnn>.jpg and its PAIRS_FILE (pairs.txt): 6000 pairs in 10 folds,
    each 300 same pairs then 300 different ones, as lfw.bin holds them."""
    from ..data.packing import lfw_protocol

    _build_pack(lfw_protocol(lfw_dir, pairs_file), options)


@pack.command("cfp", epilog=examples(
    "facebench data pack cfp cfp-dataset --protocol FP --landmarks cfp_landmarks.txt --out cfp_fp.bin",
    "facebench data pack cfp cfp-dataset --protocol FF --detector retinaface_mnet \\",
    "    --weights mobilenet0.25_Final.pth --out cfp_ff.bin",
))
@click.argument("cfp_dir", type=click.Path())
@click.option("--protocol", type=click.Choice(["FP", "FF"], case_sensitive=False), default="FP", show_default=True,
              help="Frontal-profile (cfp_fp.bin) or frontal-frontal (cfp_ff.bin) pairs.")
@_pack_options
def pack_cfp(cfp_dir: str, protocol: str, **options: Any) -> None:
    """CFP from the cfp-dataset folder as distributed (Protocol/Pair_list_F.txt, Pair_list_P.txt,
    Split/FP|FF/01..10/same.txt and diff.txt; Data/Images/...): 7000 pairs in 10 folds, each its same
    pairs then its different ones, as cfp_fp.bin holds them."""
    from ..data.packing import cfp_protocol

    _build_pack(cfp_protocol(cfp_dir, protocol), options)


__all__ = ["data"]
