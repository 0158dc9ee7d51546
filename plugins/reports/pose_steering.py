"""Report section: the two ways of steering head pose side by side, AttrOP and landmark pose control.

Vec2Face steers pose with AttrOP (gradient steps on the identity vector until SixDRepNet reads the target
yaw); Vec2Face+ adds a pose model that conditions the generator on a landmark image. A dataset card
(``dataset.json``) says which a set used:

- landmark pose control: a non-empty ``pose_landmarks`` entry (``generate --pose-landmarks`` records the
  landmark images' source, each pose and the rule assigning them to images);
- AttrOP: an ``attrop`` entry with a pose term (its ``terms`` or ``spec`` list ``pose=TARGET:SHARE``);
- neither: perturbation alone (shown as the baseline when present).

The section appears when the report holds the yaw angles (``analyze``'s ``analysis/yaw.npy``) of at least
one dataset of each kind: one histogram panel per kind on one scale, and a table of what each set aimed
at and what the pose model read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from facebench.report.html import esc, image, table
from facebench.report.loading import RunData

from . import figures

LANDMARKS = "landmark pose control"
ATTROP = "AttrOP"
NONE = "no pose steering"
#: Panels in this order; each kind a dataset can be.
KINDS = (ATTROP, LANDMARKS, NONE)
#: |yaw| at or above which a face counts as turned well away (the share the table gives).
PROFILE_YAW = 45.0


def _pose_terms(attrop: Any) -> list[str]:
    """The pose terms (``pose=60:0.4``) of a card's ``attrop`` entry: its ``terms`` list or its ``spec``
    (a string, or the entry itself when it is one)."""
    if isinstance(attrop, str):
        terms: list[Any] = attrop.split(",")
    elif isinstance(attrop, dict) and isinstance(attrop.get("terms"), list):
        terms = attrop["terms"]
    elif isinstance(attrop, dict) and isinstance(attrop.get("spec"), str):
        terms = attrop["spec"].split(",")
    else:
        return []
    return [t.strip() for t in terms if isinstance(t, str) and t.strip().startswith("pose")]


def _brief(value: Any) -> str:
    """A card entry in a few words: scalars as they are, lists and tables by their size (a per-image
    record of landmarks may be long)."""
    if isinstance(value, dict):
        parts = [f"{k}={_brief(v) if not isinstance(v, dict | list) else f'[{len(v)} entries]'}"
                 for k, v in value.items()]
        return ", ".join(parts)
    if isinstance(value, list):
        return f"[{len(value)} entries]"
    return str(value)


#: Pose names listed in the targets column before the rest are counted.
SHOWN_POSES = 6


def _landmark_targets(record: Any) -> str:
    """``generate``'s ``pose_landmarks`` record in words: where the landmark images came from (named poses,
    a coordinates file, a list of images) and the poses by name; any other shape briefly."""
    if not isinstance(record, dict):
        return _brief(record)
    parts = []
    source = record.get("source")
    if isinstance(source, dict):
        what = str(source.get("kind") or "landmarks")
        if isinstance(source.get("names"), list):
            what += " " + ", ".join(map(str, source["names"]))
        elif isinstance(source.get("file"), str):
            what += " " + source["file"]
        parts.append(what)
    poses = record.get("poses")
    if isinstance(poses, list):
        names = [p["name"] for p in poses if isinstance(p, dict) and isinstance(p.get("name"), str)]
        shown = ", ".join(names[:SHOWN_POSES]) + (f", +{len(names) - SHOWN_POSES} more"
                                                   if len(names) > SHOWN_POSES else "")
        parts.append(f"{len(poses)} pose{'s' if len(poses) != 1 else ''}" + (f" ({shown})" if names else ""))
    return "; ".join(parts) or _brief(record)


def steering(card: dict[str, Any] | None) -> tuple[str, str]:
    """(kind, the targets in words) of a dataset card."""
    card = card if isinstance(card, dict) else {}
    landmarks = card.get("pose_landmarks")
    terms = _pose_terms(card.get("attrop"))
    if landmarks not in (None, "", [], {}):
        kind = LANDMARKS + (f" + {ATTROP}" if terms else "")
        return kind, "; ".join([_landmark_targets(landmarks), *terms])
    if terms:
        return ATTROP, ", ".join(terms)
    return NONE, "\u2013"


def _pose_model(run: RunData) -> str:
    """The pose model ``analyze`` read the angles with (its summary names it)."""
    summary = run.summary or {}
    block = ((summary.get("analyses") or {}).get("pose-quality") or {}).get("yaw") or summary.get("yaw")
    name = block.get("extractor") if isinstance(block, dict) else None
    return str(name) if name is not None else "\u2013"


def _card(run: RunData, runs: Sequence[RunData]) -> dict[str, Any] | None:
    """The run's dataset card, or that of another run about the same dataset."""
    if run.card is not None:
        return run.card
    return next((r.card for r in runs if r.label == run.label and r.card is not None), None)


def steered_sets(runs: Sequence[RunData]) -> list[dict[str, Any]]:
    """One entry per run holding yaw angles: its dataset, steering, generator, targets and the angles."""
    found = []
    for run in runs:
        yaw = run.array("yaw")
        if yaw is None or not len(yaw):
            yaw = run.array("pose")
        if yaw is None or not len(yaw):
            continue
        card = _card(run, runs)
        kind, targets = steering(card)
        generator = (card or {}).get("generator")
        found.append({"label": run.label, "run": run.name, "kind": kind, "targets": targets, "yaw": yaw,
                      "generator": _brief(generator) if generator not in (None, "") else "\u2013",
                      "pose_model": _pose_model(run)})
    labels = [f["label"] for f in found]
    for entry in found:
        if labels.count(entry["label"]) > 1:  # one dataset read by two pose models, say
            entry["label"] = f"{entry['label']} ({entry['run']})"
    return found


def _panel(kind: str) -> str:
    return LANDMARKS if kind.startswith(LANDMARKS) else kind


def pose_steering_section(runs: Sequence[RunData]) -> list[str]:
    """AttrOP and landmark pose control side by side, when the report has yaw angles of both."""
    found = steered_sets(runs)
    kinds = {_panel(f["kind"]) for f in found}
    if not {ATTROP, LANDMARKS} <= kinds:
        return []
    panels = [(kind, [(f["label"], f["yaw"]) for f in found if _panel(f["kind"]) == kind])
              for kind in KINDS if kind in kinds]
    rows = []
    for f in sorted(found, key=lambda f: KINDS.index(_panel(f["kind"]))):
        yaw = np.abs(f["yaw"])
        rows.append([f["label"], f["kind"], f["generator"], f["targets"], f["pose_model"], len(yaw),
                     f"{float(yaw.mean()):.1f}", f"{float(np.median(yaw)):.1f}",
                     f"{100 * float((yaw >= PROFILE_YAW).mean()):.1f}"])
    models = {f["pose_model"] for f in found}
    caveat = ("" if len(models) == 1 else
              " The datasets were read by different pose models, so their angles are not strictly comparable.")
    intro = ("<p>Head pose of datasets steered two ways: AttrOP optimises each identity vector until the pose "
             "model reads the target yaw; landmark pose control (Vec2Face+) conditions the generator on a landmark "
             "image of the target pose. Yaw as <code>facebench analyze</code> read it, one panel per way, on one "
             f"scale.{esc(caveat)}</p>")
    header = ["dataset", "pose steering", "generator", "targets", "pose model", "images read", "mean |yaw| (deg)",
              "median |yaw| (deg)", f"|yaw| \u2265 {PROFILE_YAW:g} deg (%)"]
    return [intro + image(figures.pose_panels_plot(panels, "yaw (degrees)"), "yaw histograms by pose steering",
                          "yaw of each dataset, one panel per way of steering pose")
            + table(header, rows, row_classes=["measured"] * len(rows))]
