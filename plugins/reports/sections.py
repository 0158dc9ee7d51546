"""The built-in report sections (registered by the ``reports`` plugin through ``register_report_sections``).

A section is ``factory(runs) -> list of HTML fragments`` (``runs``: the loaded :class:`RunData`
list); an empty list leaves the section out. Fragments are built with :mod:`facebench.report.html`,
which escapes every user-provided string.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facebench.errors import FacebenchError
from facebench.report.html import definition_list, esc, image, table
from facebench.report.loading import RunData

from . import figures
from .published import (
    FIVE,
    OTHER_TASKS,
    benchmark_titles,
    canonical_benchmark,
    is_toy_benchmark,
    published_tables,
)

BEST_MARK = "\u25b2"  # shown after the best value of a column within its group


# --------------------------------------------------------------------------------------------- accuracy


def measured_rows(runs: Sequence[RunData]) -> list[dict[str, Any]]:
    """One row per (run, training dataset): canonical benchmark -> accuracy %, and which packs fed it."""
    rows: list[dict[str, Any]] = []
    labels = []
    for run in runs:
        if run.results is None or run.results.empty:
            continue
        frame = run.results
        if "dataset" in frame.columns and run.label_override is None:
            groups = frame.groupby("dataset", sort=False)
        else:
            groups = [(run.label, frame)]
        for dataset, part in groups:
            label = str(dataset) if str(dataset).strip() and str(dataset) != "nan" else run.label
            row: dict[str, Any] = {"dataset": label, "run": run.name, "values": {}, "packs": {}, "rows": part}
            for _, rec in part.iterrows():
                key = canonical_benchmark(rec["benchmark"])
                row["values"][key] = float(rec["accuracy"])
                row["packs"][key] = str(rec["benchmark"])
            toy = [is_toy_benchmark(p) for p in row["packs"].values()]
            row["test_data"] = "toyfaces packs" if all(toy) else ("real packs" if not any(toy) else "mixed")
            rows.append(row)
            labels.append(label)
    for row in rows:  # the same dataset measured by two runs: say which run each row is
        if labels.count(row["dataset"]) > 1:
            row["dataset"] = f"{row['dataset']} ({row['run']})"
    return rows


def five_average(values: dict[str, float]) -> float | None:
    if all(k in values and not math.isnan(values[k]) for k in FIVE):
        return float(np.mean([values[k] for k in FIVE]))
    return None


def _fmt(value: float | None) -> str:
    return "\u2013" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def _best_flags(matrix: list[list[float | None]]) -> list[list[bool]]:
    """True where a value is the highest of its column (ties all marked); None never is."""
    flags = [[False] * len(r) for r in matrix]
    for j in range(len(matrix[0]) if matrix else 0):
        col = [r[j] for r in matrix if r[j] is not None]
        if not col:
            continue
        top = max(col)
        for i, r in enumerate(matrix):
            flags[i][j] = r[j] is not None and abs(r[j] - top) < 1e-9
    return flags


def _group_rows(title: str, kind: str, labels: list[tuple[str, str]], matrix: list[list[float | None]],
                n_cols: int) -> list[str]:
    """``<tr>`` rows of one group: a heading row, then each row with its best cells marked."""
    out = [f'<tr class="group"><th colspan="{n_cols}">{esc(title)}</th></tr>']
    flags = _best_flags(matrix)
    badge = f'<span class="badge {kind}">{"published" if kind == "published" else "measured here"}</span>'
    for (label, extra), values, best in zip(labels, matrix, flags):
        cells = [f'<td class="text">{esc(label)}{badge}</td>', f'<td class="text">{esc(extra)}</td>']
        for v, b in zip(values, best):
            text = _fmt(v) + (f" {BEST_MARK}" if b else "")
            cells.append(f'<td class="best">{esc(text)}</td>' if b else f"<td>{esc(text)}</td>")
        out.append(f'<tr class="{kind}">' + "".join(cells) + "</tr>")
    return out


def _comparison_table(runs: Sequence[RunData], columns: Sequence[str], tables: Sequence[str],
                      with_average: bool) -> str | None:
    titles = benchmark_titles()
    header = ["training set", "test data / images"] + [titles.get(c, c) for c in columns]
    if with_average:
        header.append("Avg.")
    body: list[str] = []
    measured = [r for r in measured_rows(runs) if any(c in r["values"] for c in columns)]
    if measured:
        matrix = []
        for r in measured:
            vals = [r["values"].get(c) for c in columns]
            if with_average:
                vals.append(five_average(r["values"]))
            matrix.append(vals)
        labels = [(r["dataset"], r["test_data"]) for r in measured]
        body += _group_rows("Measured here (this report's runs)", "measured", labels, matrix, len(header))
    for ptable in published_tables():
        if ptable.id not in tables:
            continue
        rows = [r for r in ptable.rows if any(c in r for c in columns)]
        if not rows:
            continue
        matrix = [[r.get(c) for c in columns] + ([r.get("avg")] if with_average else []) for r in rows]
        labels = [(r["dataset"] + (f" [{r['tag']}]" if r.get("tag") not in (None, "V") else ""),
                   _images_text(r.get("images"))) for r in rows]
        title = f"Published: {ptable.source} ({ptable.recipe})" if ptable.recipe else f"Published: {ptable.source}"
        body += _group_rows(title, "published", labels, matrix, len(header))
    if not body:
        return None
    head = "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>"
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>"


def _images_text(n: Any) -> str:
    if n is None:
        return ""
    n = float(n)
    return f"{n / 1e6:g}M images" if n >= 1e5 else f"{int(n)} images"


def summary_section(runs: Sequence[RunData]) -> list[str]:
    """Datasets x benchmarks with the average, measured rows first, then the published reference rows."""
    out = [
        "<p>Verification accuracy (%) of an FR model trained on each training set. Rows marked "
        '<span class="badge measured">measured here</span> come from this report\'s run directories; rows marked '
        '<span class="badge published">published</span> are copied from the papers named in their group heading '
        f"and were not re-run. {BEST_MARK} marks the best value of a column within its group. Measured rows on "
        "toyfaces packs sit under the column of the real benchmark each pack mirrors (toy_lfw under LFW); their "
        "absolute values are not comparable with the published ones. Avg. is the mean of the five columns.</p>"
    ]
    five = _comparison_table(runs, FIVE, ("vec2face-table1", "vec2face-table2", "newer-methods"), True)
    if five:
        out.append("<h3>Five standard benchmarks (paper Tables 1 and 2, newer methods)</h3>" + five)
    other = _comparison_table(runs, OTHER_TASKS, ("vec2face-table6",), False)
    if other:
        out.append("<h3>Other tasks: facial hair, exposure, similar-looking, doppelgangers (paper Table 6)</h3>"
                   + other)
    detail = _measured_detail(runs)
    if detail:
        out.append("<h3>Every measured benchmark</h3>" + detail)
    return out


def _ratio_text(value: Any) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "\u2013"
    if math.isnan(v):
        return "\u2013"
    return f"{v * 100:.2f}" if v <= 1.0 else f"{v:.2f}"


def _measured_detail(runs: Sequence[RunData]) -> str | None:
    rows, classes = [], []
    for r in measured_rows(runs):
        for _, rec in r["rows"].iterrows():
            acc, std = float(rec["accuracy"]), rec.get("std", float("nan"))
            rows.append([r["dataset"], rec["benchmark"], f"{acc:.2f} \u00b1 {_fmt(float(std)) if std == std else '–'}",
                         _ratio_text(rec.get("tar_at_far_1e-3")), _ratio_text(rec.get("tar_at_far_1e-4")),
                         _ratio_text(rec.get("eer")), _fmt(float(rec["threshold"])) if "threshold" in rec else "\u2013"])
            classes.append("measured")
    if not rows:
        return None
    header = ["training set", "benchmark", "accuracy % (mean \u00b1 std, 10 folds)", "TAR@FAR 1e-3 %",
              "TAR@FAR 1e-4 %", "EER %", "threshold"]
    return table(header, rows, row_classes=classes)


# --------------------------------------------------------------------------------------------- datasets


def _settings_text(settings: Any) -> str:
    if isinstance(settings, dict):
        return ", ".join(f"{k}={_settings_text(v)}" for k, v in settings.items())
    if isinstance(settings, list | tuple):
        return "[" + ", ".join(_settings_text(v) for v in settings) + "]"
    return str(settings)


def scores_eer(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """The EER of genuine/impostor score arrays by the tie-safe ROC that ``analyze`` uses (for runs whose
    summary does not state its own)."""
    from facebench.metrics.roc import eer, roc_curve

    scores = np.concatenate([genuine, impostor])
    same = np.concatenate([np.ones(len(genuine), bool), np.zeros(len(impostor), bool)])
    return eer(roc_curve(scores, same))[0]


def dataset_grid(path: Path, identities: int = 6, per_identity: int = 6, cell: int = 56) -> bytes | None:
    """``facebench data grid``'s contact sheet of a dataset as PNG bytes, or None if it cannot be read."""
    from facebench.data.inspect import contact_sheet, open_for_inspection

    try:
        with open_for_inspection(str(path)) as reader:
            sheet = contact_sheet(reader, identities=identities, per_identity=per_identity, size=cell)
    except (FacebenchError, OSError):
        return None
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def _dataset_path(run: RunData) -> Path | None:
    """Where the images described by ``dataset.json`` are: its ``path``, the folder named by its
    ``dataset`` key beside it (as ``facebench generate`` writes it), or the run directory itself; for
    an FR training run, the training set its ``model.json`` names."""
    if run.dataset is None:
        trained_on = (run.model or {}).get("dataset")
        path = trained_on.get("path") if isinstance(trained_on, dict) else None
        return Path(path) if isinstance(path, str) and Path(path).exists() else None
    for key in ("path", "dataset"):
        raw = run.dataset.get(key)
        if isinstance(raw, str) and raw:
            p = Path(raw) if Path(raw).is_absolute() else run.path / raw
            if p.exists():
                return p
    return run.path


def datasets_section(runs: Sequence[RunData]) -> list[str]:
    """A card per dataset: size, images per identity, generator and settings, a sample grid."""
    cards = []
    for run in runs:
        if run.dataset is None and run.model is None:
            continue
        ds = run.dataset or {}
        ids, imgs = run.size()
        items: list[tuple[str, Any]] = [("run", run.name), ("identities", ids if ids is not None else "\u2013"),
                                        ("images", imgs if imgs is not None else "\u2013")]
        if ids and imgs:
            items.append(("images per identity", f"{imgs / ids:.1f}"))
        for key in ("generator", "weights", "format", "seed", "attrop"):
            if ds.get(key) not in (None, "", {}):
                items.append((key, _settings_text(ds[key])))
        if "settings" in ds:
            items.append(("settings", _settings_text(ds["settings"])))
        if run.model:
            for key in ("backbone", "recipe"):
                if key in run.model:
                    items.append((f"FR {key}", run.model[key]))
        body = f"<h3>{esc(run.label)}</h3>" + definition_list(items)
        grid = run.sample_image.read_bytes() if run.sample_image else None
        if grid is None and (path := _dataset_path(run)) is not None:
            grid = dataset_grid(path)
        if grid is not None:
            try:
                body += image(grid, f"sample images of {run.label}", "one row per identity")
            except ValueError:
                body += f'<p class="muted">{esc(run.sample_image)}: not a PNG or JPEG image</p>'
        cards.append(f'<div class="card">{body}</div>')
    return [f'<div class="cards">{"".join(cards)}</div>'] if cards else []


# --------------------------------------------------------------------------------------------- analyses


def stated(summary: dict[str, Any] | None, analysis: str, key: str) -> Any:
    """A value of ``analysis/summary.json``: under ``analyses.<analysis>`` (as ``facebench analyze``
    writes it) or at the top level."""
    summary = summary or {}
    nested = (summary.get("analyses") or {}).get(analysis) or {}
    return nested.get(key, summary.get(key))


#: Summary values shown in the analysis table: (analysis, key, column title, as percent).
SUMMARY_COLUMNS = (
    ("", "identities", "identities", False), ("", "images", "images", False),
    ("pair-distributions", "eer", "EER %", True), ("pair-distributions", "genuine_mean", "genuine mean cos", False),
    ("pair-distributions", "impostor_mean", "impostor mean cos", False),
    ("class-noise", "intra_noise", "intra-class noise %", True),
    ("class-noise", "inter_noise", "inter-class noise %", True),
    ("separability", "separable_share", "separable identities %", True),
)


def analysis_section(runs: Sequence[RunData]) -> list[str]:
    """Separability curves, genuine/impostor distributions with EER, intra/inter noise, pose/quality."""
    out: list[str] = []
    curves = [(r.label, a) for r in runs if (a := r.array("separability")) is not None and len(a)]
    if curves:
        threshold = next((float(t) for r in runs if (t := stated(r.summary, "separability", "threshold")
                                                      or stated(r.summary, "", "separability_threshold"))), 0.4)
        out.append("<h3>Identity separability (paper Fig. 5)</h3>" + image(
            figures.separability_plot(curves, threshold),
            "separability curves",
            f"for every prefix of n identities, how many have no earlier identity above cosine {threshold:g}",
        ))
    pairs, noise = [], []
    for run in runs:
        gen, imp = run.array("genuine"), run.array("impostor")
        if gen is None or imp is None or not len(gen) or not len(imp):
            continue
        given = stated(run.summary, "pair-distributions", "eer")
        eer = float(given) if given is not None else scores_eer(gen, imp)
        if eer > 1.0:  # stated in percent
            eer /= 100.0
        estimator = stated(run.summary, "pair-distributions", "eer_estimator")
        source = (f"as stated in analysis/summary.json{', ' + str(estimator) if estimator else ''}"
                  if given is not None else "computed from the arrays as analyze computes it")
        pairs.append(image(
            figures.similarity_plot(gen, imp, eer, run.label), f"similarity distributions of {run.label}",
            f"{run.label}: EER {eer * 100:.2f}% ({source})"))
    if pairs:
        out.append("<h3>Genuine and impostor similarities (paper Fig. 11)</h3>"
                   f'<div class="figs">{"".join(pairs)}</div>')
    for run in runs:
        intra, inter = run.array("intra"), run.array("inter")
        if (intra is None or not len(intra)) and (inter is None or not len(inter)):
            continue
        nearest = stated(run.summary, "class-noise", "nearest_mean") is not None
        noise.append(image(
            figures.noise_plot(intra if intra is not None and len(intra) else None,
                               inter if inter is not None and len(inter) else None, run.label,
                               intra_share=stated(run.summary, "class-noise", "intra_noise"),
                               inter_share=stated(run.summary, "class-noise", "inter_noise"),
                               inter_is_nearest=nearest),
            f"class noise of {run.label}",
            f"{run.label}: images below 0.3 to their identity centre; centre pairs above 0.7"))
    if noise:
        out.append("<h3>Intra- and inter-class noise (paper Fig. 12)</h3>" + "".join(noise))
    for name, xlabel in (("yaw", "yaw (degrees)"), ("pose", "yaw (degrees)"), ("quality", "quality (feature norm)")):
        series = [(r.label, a) for r in runs if (a := r.array(name)) is not None and len(a)]
        if series:
            out.append(f"<h3>{esc(xlabel.split(' ')[0].capitalize())} histogram</h3>"
                       + image(figures.histogram_plot(series, xlabel), f"{name} histogram"))
    summaries = [(r, r.summary) for r in runs if r.summary]
    if summaries:
        columns = [c for c in SUMMARY_COLUMNS if any(stated(sm, c[0], c[1]) is not None for _, sm in summaries)]
        rows = []
        for run, sm in summaries:
            row = [run.label]
            for analysis, key, _, percent in columns:
                value = stated(sm, analysis, key)
                if isinstance(value, int | float) and percent:
                    row.append(f"{value * 100:.2f}" if value <= 1 else f"{value:.2f}")
                elif isinstance(value, float):
                    row.append(f"{value:.3f}")
                else:
                    row.append("\u2013" if value is None else value)
            rows.append(row)
        out.append("<h3>Analysis summaries</h3>" + table(["dataset", *(c[2] for c in columns)], rows))
    return out


def scaling_section(runs: Sequence[RunData]) -> list[str]:
    """Average accuracy against dataset size: HSFace scaling (paper Table 2) and the measured runs."""
    published = [(r["dataset"], float(r["images"]), float(r["avg"])) for t in published_tables()
                 if t.id == "vec2face-table2" for r in t.rows if r["kind"] == "Vec2Face"]
    by_label = {r.label: r for r in runs}
    measured = []
    for row in measured_rows(runs):
        avg = five_average(row["values"])
        run = by_label.get(row["dataset"]) or next((r for r in runs if r.name == row["run"]), None)
        size = next((s for r in runs if r.label == row["dataset"] and (s := r.size()[1])), None)
        if size is None and run is not None:
            size = run.size()[1]
        if avg is not None and size:
            measured.append((row["dataset"], float(size), avg))
    if not measured and not published:
        return []
    caption = "published: HSFace10K to 300K (paper Table 2)"
    if measured:
        caption += "; measured: runs of this report with a known dataset size"
    return [image(figures.scaling_plot(published, measured), "accuracy against dataset size", caption)]


# --------------------------------------------------------------------------------------------- provenance


def provenance_section(runs: Sequence[RunData]) -> list[str]:
    """Where each run came from: versions, device, seed, command line, input hashes and its config."""
    out = []
    for run in runs:
        prov = run.provenance or {}
        items = [("directory", run.path.resolve())]
        for key in ("created", "facebench", "git_commit", "python", "torch", "device", "seed", "platform"):
            if prov.get(key) is not None:
                items.append((key, prov[key]))
        if prov.get("command"):
            cmd = prov["command"]
            items.append(("command", " ".join(map(str, cmd)) if isinstance(cmd, list) else cmd))
        if not prov:
            items.append(("provenance.json", "absent"))
        body = f"<h3>{esc(run.name)}</h3>" + definition_list(items)
        inputs = prov.get("inputs") or {}
        if isinstance(inputs, dict) and inputs:
            body += table(["input", "path", "sha256"], [
                [label, (info or {}).get("path", ""), (info or {}).get("sha256", "")]
                for label, info in inputs.items()
            ])
        if run.config_text:
            body += f"<details><summary>config.toml</summary><pre>{esc(run.config_text)}</pre></details>"
        out.append(f'<div class="card">{body}</div>')
    return out
