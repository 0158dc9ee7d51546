"""``facebench data``: inspect, convert, check and preview face datasets of any registered format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from ..errors import FacebenchError

_stdout = Console(highlight=False)

#: Images whose header is read to report image sizes (evenly spaced through the set).
SIZE_SAMPLE = 256


def _open(path: str, fmt: str | None, mask: str | None):
    import inspect

    from ..data import detect_format, get_format

    fmt_obj = detect_format(path) if fmt is None else get_format(fmt)
    options: dict[str, Any] = {}
    if mask is not None:
        if "mask" not in inspect.signature(fmt_obj.open).parameters:
            raise FacebenchError(f"{path}: --mask applies to formats with index masks (lmdb), not {fmt_obj.name}")
        options["mask"] = mask
    if not Path(path).exists():
        from ..errors import MissingFileError

        raise MissingFileError(path, "dataset")
    return fmt_obj.open(path, **options)


def _is_pairs(reader: Any) -> bool:
    return hasattr(reader, "issame")


def _sizes(reader: Any, pairs: bool) -> list[dict[str, int]]:
    from ..data import image_size

    n = 2 * len(reader) if pairs else len(reader)
    counts: dict[tuple[int, int], int] = {}
    for j in np.unique(np.linspace(0, n - 1, min(n, SIZE_SAMPLE)).astype(int)) if n else []:
        if pairs:
            data = reader.pair_bytes(int(j) // 2)[int(j) % 2]
            where = reader.where(int(j) // 2, int(j) % 2)
        else:
            data, where = reader.image_bytes(int(j)), reader.where(int(j))
        size = image_size(data, path=reader.path, where=where)
        counts[size] = counts.get(size, 0) + 1
    return [{"width": w, "height": h, "count": c} for (w, h), c in sorted(counts.items())]


def dataset_summary(reader: Any) -> dict[str, Any]:
    """The facts ``data info`` prints (also used by reports): counts, per-identity spread, image sizes."""
    pairs = _is_pairs(reader)
    info: dict[str, Any] = {"path": str(reader.path), "format": reader.format_name, "role": "pairs" if pairs else "train"}
    if pairs:
        same = int(np.count_nonzero(reader.issame))
        info.update({"pairs": len(reader), "same": same, "different": len(reader) - same, "images": 2 * len(reader)})
    else:
        counts = np.bincount(reader.labels, minlength=reader.num_classes) if len(reader) else np.zeros(0, int)
        present = counts[counts > 0]
        info.update({
            "identities": int(reader.num_classes),
            "images": len(reader),
            "images_per_identity": {
                "min": int(present.min()) if len(present) else 0,
                "median": float(np.median(present)) if len(present) else 0.0,
                "max": int(present.max()) if len(present) else 0,
            },
            "empty_identities": int(np.count_nonzero(counts == 0)),
        })
    info["image_sizes"] = _sizes(reader, pairs)
    info["image_sizes_sampled"] = sum(s["count"] for s in info["image_sizes"])
    return info


@click.group(epilog="Example: facebench data info toy/train")
def data() -> None:
    """Inspect, convert, check and preview face datasets (folder, rec, lmdb, bin, pairlist, ...)."""


_format_option = click.option("--format", "fmt", default=None, help="Source format (detected when omitted).")
_mask_option = click.option("--mask", type=click.Path(dir_okay=False), default=None,
                            help="LMDB only: .npy index mask selecting a subset (HSFace100k/200k).")


@data.command(epilog="Example: facebench data info faces_webface_112x112 --json")
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


@data.command(epilog="Example: facebench data convert faces_webface_112x112 casia.lmdb --to lmdb")
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


@data.command(epilog="Example: facebench data check toy/train")
@click.argument("path", type=click.Path())
@_format_option
@_mask_option
@click.option("--max-problems", type=click.IntRange(min=1), default=100, show_default=True,
              help="Stop listing after this many problems.")
def check(path: str, fmt: str | None, mask: str | None, max_problems: int) -> None:
    """Decode every record (and stored feature) and list the problems; exits with code 2 if there is any."""
    from ..data.inspect import check_dataset, is_pairs

    problems, reader = check_dataset(path, fmt=fmt, mask=mask, max_problems=max_problems)
    for line in problems:
        click.echo(line)
    if problems:
        more = "at least " if len(problems) >= max_problems else ""
        raise FacebenchError(f"{path}: {more}{len(problems)} problem(s) found")
    click.echo(f"ok: {path} ({reader.format_name}), {len(reader)} {'pairs' if is_pairs(reader) else 'images'} "
               "read without a problem")


@data.command(epilog="Example: facebench data grid toy/train --out grid.png --identities 8 --per-identity 6")
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
