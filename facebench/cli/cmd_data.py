"""``facebench data``: inspect, convert, check and preview face datasets of any registered format."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from ..errors import FacebenchError
from .options import examples

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
@click.option("--overwrite", is_flag=True, help="Replace DST if it exists.")
def convert(src: str, dst: str, to_format: str, fmt: str | None, mask: str | None, overwrite: bool) -> None:
    """Convert SRC to DST in another format, streaming one record at a time; DST appears only when complete."""
    from ..data.inspect import convert_dataset

    n, pairs = convert_dataset(src, dst, to_format, fmt=fmt, mask=mask, overwrite=overwrite)
    click.echo(f"wrote {dst} ({to_format}): {n} {'pairs' if pairs else 'images'}")


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
def grid(path: str, out: str, identities: int, per_identity: int, size: int, fmt: str | None, mask: str | None) -> None:
    """A contact sheet: one row per identity (packs: pairs framed green = same, red = different)."""
    from .. import atomic
    from ..data.inspect import contact_sheet, open_for_inspection

    with open_for_inspection(path, fmt, mask) as reader:
        sheet = contact_sheet(reader, identities=identities, per_identity=per_identity, size=size)
    with atomic.atomic_path(out, "contact sheet") as tmp:
        sheet.save(tmp, format="PNG")
    click.echo(f"wrote {out} ({sheet.width}x{sheet.height})")


__all__ = ["data"]
