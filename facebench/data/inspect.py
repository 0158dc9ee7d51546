"""Looking at a dataset as a whole: its summary, a full read check, a format conversion, a contact sheet.

``facebench data info|check|convert|grid`` and the report's dataset cards call these; they work on any
registered format through the reader API.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..console import track
from ..errors import DataError, FacebenchError, MissingFileError

#: Images whose header is read to report image sizes (evenly spaced through the set).
SIZE_SAMPLE = 256


def open_for_inspection(path: str, fmt: str | None = None, mask: str | None = None) -> Any:
    """A reader of any role (training set or pairs), the format detected unless given; ``mask`` (LMDB
    index masks) only where the format takes one."""
    from .formats import detect_format, get_format
    from .identity import resolve_dataset_path

    fmt_obj = detect_format(path) if fmt is None else get_format(fmt)
    options: dict[str, Any] = {}
    if mask is not None:
        if "mask" not in inspect.signature(fmt_obj.open).parameters:
            raise FacebenchError(f"{path}: --mask applies to formats with index masks (lmdb), not {fmt_obj.name}")
        options["mask"] = mask
    if not Path(path).exists():
        raise MissingFileError(path, "dataset")
    return fmt_obj.open(str(resolve_dataset_path(path)), **options)


def is_pairs(reader: Any) -> bool:
    return hasattr(reader, "issame")


def _sizes(reader: Any, pairs: bool) -> list[dict[str, int]]:
    from .images import image_size

    n = 2 * len(reader) if pairs else len(reader)
    counts: dict[tuple[int, int], int] = {}
    for j in np.unique(np.linspace(0, n - 1, min(n, SIZE_SAMPLE)).astype(int)) if n else []:
        if pairs:
            data = reader.pair_bytes(int(j) // 2)[int(j) % 2]
            where = reader.where(int(j) // 2, int(j) % 2)
        else:
            data, where = reader.image_bytes(int(j)), reader.where(int(j))
        size = image_size(data, path=getattr(reader, "image_file", None) or reader.path, where=where)
        counts[size] = counts.get(size, 0) + 1
    return [{"width": w, "height": h, "count": c} for (w, h), c in sorted(counts.items())]


def dataset_summary(reader: Any) -> dict[str, Any]:
    """The facts ``data info`` prints (also used by reports): counts, per-identity spread, image sizes."""
    pairs = is_pairs(reader)
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
        if getattr(reader, "layout", None):  # formats with several record layouts (LMDB) say which
            info["layout"] = reader.layout
    info["image_sizes"] = _sizes(reader, pairs)
    info["image_sizes_sampled"] = sum(s["count"] for s in info["image_sizes"])
    return info


def _refuse_overlap(dst: str, reader: Any, src: str, mask: str | None) -> None:
    """Refuse a ``dst`` that is one of the files being read (the source as given or as its ``dataset.json``
    resolves it, a RecordIO ``.rec``/``.idx``, the mask), lies inside the source, or holds it: writing there
    would replace or grow the dataset while it is read, or ``--overwrite`` would delete it."""
    target = os.path.realpath(dst)
    sources = [src, reader.path, getattr(reader, "rec", None), getattr(reader, "idx", None), mask]
    sources = [os.path.realpath(s) for s in sources if s is not None]
    if target in sources:
        raise FacebenchError(f"{dst}: is the dataset being converted ({src}); choose another output")
    for source in sources:
        for inner, outer, how in ((target, source, "lies inside"), (source, target, "holds")):
            if inner.startswith(outer.rstrip(os.sep) + os.sep):
                raise FacebenchError(f"{dst}: {how} the dataset being converted ({src}); choose an output "
                                     "outside it")


def convert_dataset(src: str, dst: str, to_format: str, *, fmt: str | None = None, mask: str | None = None,
                    overwrite: bool = False) -> tuple[int, bool, bool]:
    """Stream ``src`` into ``dst`` in ``to_format`` (features and landmark images kept for LMDB); returns
    (records, is pairs, already complete). ``dst`` appears only when complete; a failure leaves neither it
    nor a temporary. ``dst``'s record (``DST.json``, :mod:`facebench.rerun`) makes the same conversion
    again a no-op and refuses another into the same ``dst`` unless ``overwrite``."""
    from ..provenance import provenance
    from ..rerun import FINISHED, Rerun, parameters
    from ..safe_load import read_json
    from .formats import get_format, open_writer

    out_fmt = get_format(to_format)
    with open_for_inspection(src, fmt, mask) as reader:
        _refuse_overlap(dst, reader, src, mask)
        pairs = is_pairs(reader)
        if (out_fmt.role == "pairs") != pairs:
            kind = "verification pairs" if pairs else "a training set"
            raise FacebenchError(f"{src} holds {kind} ({reader.format_name}); format '{to_format}' holds "
                                 f"{out_fmt.role} data")
        target = Path(dst)
        outputs = [target.name]
        if to_format == "rec" and target.suffix.lower() == ".rec":  # x.rec writes x.idx beside it
            outputs.append(target.with_suffix(".idx").name)
        source = getattr(reader, "path", None) or src
        rerun = Rerun(dst, command="data convert", folder=False, what="converted dataset", outputs=outputs,
                      params=parameters({"to": to_format, "format": fmt}, inputs={"src": source, "mask": mask}),
                      overwrite=overwrite, resumable=False)
        if rerun.check() == FINISHED:
            done = read_json(rerun.record_path, what="run record").get("converted") or {}
            return int(done.get("records", len(reader))), pairs, True
        with rerun.writing():
            options: dict[str, Any] = {"overwrite": True}  # what is at dst may be replaced: Rerun.check said so
            features = to_format == "lmdb" and getattr(reader, "has_features", lambda: False)()
            landmarks = features and getattr(reader, "has_landmarks", lambda: False)()
            if features:
                options["features"] = True
            if landmarks:
                options["landmarks"] = True
            with open_writer(dst, to_format, **options) as writer:
                if pairs:
                    for k in track(range(len(reader)), f"convert {Path(src).name}"):
                        a, b = reader.pair_bytes(k)
                        writer.add(a, b, bool(reader.issame[k]))
                else:
                    for i in track(range(len(reader)), f"convert {Path(src).name}"):
                        if landmarks:
                            writer.add(reader.image_bytes(i), reader.label(i), feature=reader.feature(i),
                                       landmark=reader.landmark_bytes(i))
                        elif features:
                            writer.add(reader.image_bytes(i), reader.label(i), feature=reader.feature(i))
                        else:
                            writer.add(reader.image_bytes(i), reader.label(i))
        record = provenance(inputs={"src": source, **({"mask": mask} if mask else {})},
                            hashes=rerun.params["inputs"])
        rerun.finish(record={**record, "converted": {"records": len(reader), "pairs": pairs, "format": to_format}})
        return len(reader), pairs, False


def check_dataset(path: str, *, fmt: str | None = None, mask: str | None = None,
                  max_problems: int = 100) -> tuple[list[str], Any]:
    """Decode every record (and stored feature); returns the problems found (at most ``max_problems``)
    and the closed reader (for its format name and size)."""
    problems: list[str] = []
    with open_for_inspection(path, fmt, mask) as reader:
        pairs = is_pairs(reader)
        if not pairs:
            try:  # labels are read up front by most formats, lazily (record by record) by LMDB
                counts = np.bincount(reader.labels, minlength=reader.num_classes)
                problems += [f"{path}: empty identity (no images) at label {c}" for c in np.flatnonzero(counts == 0)]
            except DataError as exc:
                problems.append(str(exc))
        try:
            features = not pairs and getattr(reader, "has_features", lambda: False)()
            landmarks = features and getattr(reader, "has_landmarks", lambda: False)()
        except DataError:
            features = landmarks = False  # record 0 itself is broken; the loop below reports it
        for i in track(range(len(reader)), f"check {Path(path).name}"):
            if len(problems) >= max_problems:
                break
            try:
                if pairs:
                    reader.pair_images(i)
                else:
                    reader.image(i)
                    if features:
                        reader.feature(i)
                    if landmarks:
                        reader.landmark_image(i)
            except DataError as exc:
                problems.append(str(exc))
    return problems[:max_problems], reader


def _tile(images: list[list[np.ndarray | None]], size: int, borders: list[list[tuple[int, int, int]]] | None = None):
    from PIL import Image

    pad = 2
    rows, cols = len(images), max((len(r) for r in images), default=0)
    sheet = Image.new("RGB", (cols * (size + pad) + pad, rows * (size + pad) + pad), (255, 255, 255))
    for r, row in enumerate(images):
        for c, img in enumerate(row):
            if img is None:
                continue
            x, y = pad + c * (size + pad), pad + r * (size + pad)
            if borders is not None:
                sheet.paste(Image.new("RGB", (size + 2 * pad, size + 2 * pad), borders[r][c]), (x - pad, y - pad))
            sheet.paste(Image.fromarray(img).resize((size, size)), (x, y))
    return sheet


def contact_sheet(reader: Any, *, identities: int = 8, per_identity: int = 8, size: int = 112) -> Any:
    """A PIL image: one row per identity, spread evenly over the labels (packs: pairs side by side,
    framed green = same, red = different)."""
    if is_pairs(reader):
        per_row = max(1, per_identity // 2)
        rows, borders = [], []
        for r in range(identities):
            row, frame = [], []
            for k in range(r * per_row, min((r + 1) * per_row, len(reader))):
                a, b = reader.pair_images(k)
                colour = (40, 160, 60) if reader.issame[k] else (200, 40, 40)
                row += [a, b]
                frame += [colour, colour]
            if row:
                rows.append(row)
                borders.append(frame)
        return _tile(rows, size, borders)
    labels = reader.labels
    chosen = np.unique(labels)
    chosen = chosen[np.unique(np.linspace(0, len(chosen) - 1, min(identities, len(chosen))).astype(int))]
    rows = [[reader.image(int(i)) for i in np.flatnonzero(labels == c)[:per_identity]] for c in chosen]
    return _tile(rows, size)
