"""What a report accepts from the files of a run folder: every number it prints, plots or averages lies in
its range, and every field it uses has its type.

Run folders come from other people. A report must never render or average an accuracy of 140, a NaN EER
or a count of "40", nor crash on a ``generator_info`` that is a list: each such value is one
:class:`~facebench.errors.DataError` naming the file, the key and (for result rows) the row. The rule for
types is the same in every file: a field the report shows as a name, uses to group runs, or computes with
must have its type; a field it only prints as text (``generator``, ``settings``, ``command`` ...) may hold
any JSON value; a field it does not read is not looked at. ``null`` (or an absent key) is always "not
stated": rows of other protocols have ``accuracy: null``.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

from ..errors import DataError
from ..safe_load import type_word

#: Counts beyond int64 would overflow in pandas and numpy.
MAX_COUNT = 2**63 - 1
#: Largest result file (results.json / .csv, analysis/summary.json) and card (dataset.json, model.json,
#: provenance.json, config.toml) read: a run's own are a few MB at most.
RESULTS_LIMIT = 64 << 20
CARD_LIMIT = 16 << 20


@dataclass(frozen=True)
class Kind:
    """A kind of number: its words in an error and its closed range (None: unbounded)."""

    words: str
    low: float | None = None
    high: float | None = None
    integer: bool = False
    slack: float = 0.0  # rounding admitted beyond the range (cosines of float32 features)


FRACTION = Kind("a fraction in [0, 1]", 0.0, 1.0)
COSINE = Kind("a cosine in [-1, 1]", -1.0, 1.0, slack=1e-4)
NONNEGATIVE = Kind("a finite number >= 0", 0.0)
FINITE = Kind("a finite number")
COUNT = Kind("a non-negative integer", 0, MAX_COUNT, integer=True)
#: Accuracies may be fractions (0.953) or percent (95.3); see ``loading._results_frame``.
ACCURACY = Kind("a number in [0, 100] (a fraction up to 1, else percent)", 0.0, 100.0)


def _shown(value: Any) -> str:
    """A value as an error line shows it: numbers as written, anything else by its JSON type."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return type_word(value)
    text = repr(float(value)) if isinstance(value, float) else str(value)
    return text if len(text) <= 24 else text[:21] + "..."


def number(path: str | os.PathLike, value: Any, kind: Kind, key: str, where: str | None = None) -> Any:
    """``value`` when it is None or a number of ``kind`` (never true/false, NaN or infinite), else a
    DataError: ``accuracy must be an accuracy in [0, 100] ..., found 140.0 at row 3``."""
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok and kind.integer:
        ok = isinstance(value, int)
    if ok:
        try:
            as_float = float(value)
        except OverflowError:  # an integer of hundreds of digits
            as_float = math.inf
        ok = (math.isfinite(as_float)
              and (kind.low is None or as_float >= kind.low - kind.slack)
              and (kind.high is None or as_float <= kind.high + kind.slack))
    if not ok:
        raise DataError(path, f"{key} must be {kind.words}, found {_shown(value)}", where)
    return value


def typed(path: str | os.PathLike, value: Any, types: type | tuple[type, ...], key: str,
          where: str | None = None) -> Any:
    """``value`` when it is None or one of ``types`` (JSON's words in the error), else a DataError."""
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, str) and "\x00" in value:
        raise DataError(path, f"{key} holds a NUL byte", where)
    if value is None or (isinstance(value, types) and not (isinstance(value, bool) and bool not in types)):
        return value
    wanted = " or ".join(type_word(t) for t in types)
    raise DataError(path, f"{key} must be {wanted}, found {type_word(value)}", where)


def _keys(path, mapping: dict, kinds: dict[str, Kind | type], prefix: str = "", where: str | None = None) -> None:
    for key, kind in kinds.items():
        if key in mapping:
            if isinstance(kind, Kind):
                number(path, mapping[key], kind, prefix + key, where)
            else:
                typed(path, mapping[key], kind, prefix + key, where)


# ------------------------------------------------------------------------------------------ result rows

#: Fields of a result row the report reads, by name; ``std`` is checked against its accuracy.
ROW_FIELDS: dict[str, Kind | type] = {
    "dataset": str, "benchmark": str, "protocol": str, "group": str, "suite": str,
    "accuracy": ACCURACY, "threshold": FINITE, "eer": FRACTION,
    "pairs": COUNT, "same_pairs": COUNT, "probes": COUNT, "gallery_matches": COUNT, "distractors": COUNT,
    "ci95": dict, "roc": dict, "galleries": dict, "ijb_options": dict,
}
#: Fields named by a pattern: TAR at a FAR, TPIR at an FPIR and rank-k rates are fractions.
ROW_PATTERNS = ((re.compile(r"tar_at_far_"), FRACTION), (re.compile(r"tpir_at_fpir_"), FRACTION),
                (re.compile(r"rank_\d+$"), FRACTION))
#: Fields CSV cannot hold (a nested object): a ``results.csv`` column of that name is not read.
NESTED_FIELDS = ("ci95", "roc", "galleries", "ijb_options")


def row_kind(key: str) -> Kind | type | None:
    """How a result row's ``key`` is checked; None: the report does not read it."""
    if key in ROW_FIELDS:
        return ROW_FIELDS[key]
    if key == "std":
        return NONNEGATIVE
    return next((kind for pattern, kind in ROW_PATTERNS if pattern.match(key)), None)


def _rates(path, mapping: dict, prefix: str, where: str) -> None:
    for key, value in mapping.items():
        kind = next((k for p, k in ROW_PATTERNS if p.match(str(key))), None)
        if kind is not None:
            number(path, value, kind, f"{prefix}{key}", where)


def result_row(path: str | os.PathLike, row: Any, where: str) -> None:
    """One row of ``results.json`` (``where``: ``row N``) or ``results.csv`` (``line N``)."""
    typed(path, row, dict, "a result row", where)
    if row is None:
        raise DataError(path, "a result row must be an object, found null", where)
    benchmark = row.get("benchmark")
    if not isinstance(benchmark, str) or not benchmark.strip():
        raise DataError(path, f"benchmark must be a non-empty string, found {_shown(benchmark)}", where)
    for key, value in row.items():
        kind = row_kind(str(key))
        if kind is None or key == "std":
            continue
        if isinstance(kind, Kind):
            number(path, value, kind, key, where)
        else:
            typed(path, value, kind, key, where)
    accuracy = row.get("accuracy")
    std = number(path, row.get("std"), NONNEGATIVE, "std", where)
    if std is not None and accuracy is not None:
        high, unit = (1.0, "a fraction") if accuracy <= 1.0 else (100.0, "percent")
        if std > high:
            raise DataError(path, f"std must be in [0, {high:g}] like its accuracy ({unit}), found {_shown(std)}",
                            where)
    _intervals(path, row.get("ci95") or {}, where)
    _roc(path, row.get("roc"), where)
    for name, gallery in (row.get("galleries") or {}).items():
        typed(path, gallery, dict, f"galleries.{name}", where)
        _rates(path, gallery or {}, f"galleries.{name}.", where)
        number(path, (gallery or {}).get("mated_probes"), COUNT, f"galleries.{name}.mated_probes", where)


def _intervals(path, ci95: dict, where: str) -> None:
    """``ci95``: each figure's [low, high] as fractions (the report prints them as percent)."""
    for key, bounds in ci95.items():
        if bounds is None:
            continue
        pair = isinstance(bounds, list) and len(bounds) == 2
        if pair:
            for bound in bounds:
                number(path, bound, FRACTION, f"ci95.{key} bound", where)
        if not pair or None in bounds or bounds[0] > bounds[1]:
            raise DataError(path, f"ci95.{key} must be [low, high] with low <= high, found "
                                  f"{type_word(bounds) if not pair else bounds}", where)


def _roc(path, roc: dict | None, where: str) -> None:
    """``roc``: FPR and TPR lists of one length, fractions."""
    if roc is None:
        return
    curve = []
    for axis in ("fpr", "tpr"):
        values = roc.get(axis)
        if not isinstance(values, list):
            raise DataError(path, f"roc.{axis} must be a list, found {type_word(values)}", where)
        for value in values:
            if value is None:
                raise DataError(path, f"roc.{axis} must hold fractions in [0, 1], found null", where)
            number(path, value, FRACTION, f"roc.{axis}", where)
        curve.append(values)
    if len(curve[0]) != len(curve[1]):
        raise DataError(path, f"roc.fpr and roc.tpr differ in length ({len(curve[0])} and {len(curve[1])})", where)


def csv_row(path: str | os.PathLike, cells: dict[str, str], line: int) -> dict[str, Any]:
    """A ``results.csv`` line as a typed row: an empty cell is not stated, numbers are parsed by the column's
    kind, nested fields (which CSV cannot hold) are left out; then :func:`result_row` checks it."""
    row: dict[str, Any] = {}
    for key, text in cells.items():
        if key in NESTED_FIELDS:
            continue
        text = text.strip()
        if text == "":
            row[key] = None
            continue
        kind = row_kind(key)
        if not isinstance(kind, Kind):
            row[key] = text
            continue
        try:
            row[key] = int(text) if kind.integer else float(text)
        except ValueError:
            shown = text if len(text) <= 24 else text[:21] + "..."
            raise DataError(path, f"{key} must be {kind.words}, found '{shown}'", f"line {line}") from None
    return row


# --------------------------------------------------------------------------------- analysis/summary.json

#: Headline values at the top level of ``analysis/summary.json`` the report reads.
SUMMARY_TOP: dict[str, Kind | type] = {
    "dataset": str, "dataset_name": str, "identities": COUNT, "images": COUNT,
    "eer": FRACTION, "genuine_mean": COSINE, "impostor_mean": COSINE, "intra_noise": FRACTION,
    "inter_noise": FRACTION, "separable": COUNT, "separable_share": FRACTION, "threshold": COSINE,
    "separability_threshold": COSINE, "fid": NONNEGATIVE, "kid": FINITE, "precision": FRACTION,
    "recall": FRACTION, "density": NONNEGATIVE, "coverage": FRACTION, "leaked": COUNT, "leaked_share": FRACTION,
    "leaked_at_fmr_share": FRACTION, "certainty_ratio_mean": FINITE, "analyses": dict,
    "fdr": NONNEGATIVE, "fmr100": FRACTION, "fmr1000": FRACTION, "intra_vendi": NONNEGATIVE, "inter_vendi": NONNEGATIVE,
}
#: The entries of the built-in analyses the report reads, under ``analyses.<name>``.
SUMMARY_ANALYSES: dict[str, dict[str, Kind | type]] = {
    "pair-distributions": {"eer": FRACTION, "genuine_mean": COSINE, "impostor_mean": COSINE,
                           "genuine_pairs": COUNT, "impostor_pairs": COUNT, "genuine_std": NONNEGATIVE,
                           "impostor_std": NONNEGATIVE, "fdr": NONNEGATIVE, "fmr100": FRACTION, "fmr1000": FRACTION,
                           "ddof": COUNT, "bootstrap": COUNT, "ci95": dict},
    "vendi": {"identities": COUNT, "identities_scored": COUNT, "intra_vendi_mean": NONNEGATIVE,
              "intra_vendi_median": NONNEGATIVE, "inter_vendi": NONNEGATIVE, "inter_vendi_share": NONNEGATIVE,
              "images_per_identity_mean": NONNEGATIVE, "bootstrap": COUNT, "ci95": dict},
    "class-noise": {"intra_noise": FRACTION, "inter_noise": FRACTION, "nearest_mean": COSINE,
                    "intra_mean": COSINE, "images": COUNT},
    "separability": {"threshold": COSINE, "identities": COUNT, "separable": COUNT, "separable_share": FRACTION},
    "fidelity": {"fr": dict, "inception": dict},
    "fid": {"fid": NONNEGATIVE},
    "leakage": {"threshold": COSINE, "fmr_threshold": COSINE, "leaked_share": FRACTION,
                "leaked_at_fmr_share": FRACTION, "fmr": FRACTION, "impostor_pairs": COUNT, "identities": COUNT,
                "leaked": COUNT, "closest": list},
    "certainty-ratio": {"mean": FINITE, "std": NONNEGATIVE, "images": COUNT},
}
#: Bootstrap interval bounds an analysis may state under ``analyses.<name>.ci95.<figure>`` (null: unbounded).
SUMMARY_INTERVALS: dict[str, dict[str, Kind]] = {
    "pair-distributions": {"fdr": NONNEGATIVE, "eer": FRACTION, "fmr100": FRACTION, "fmr1000": FRACTION,
                           "genuine_mean": COSINE, "impostor_mean": COSINE, "genuine_std": NONNEGATIVE,
                           "impostor_std": NONNEGATIVE},
    "vendi": {"intra_vendi_mean": NONNEGATIVE},
}
#: A feature space's block under ``analyses.fidelity``.
FIDELITY_BLOCK: dict[str, Kind | type] = {"kid": FINITE, "kid_std": NONNEGATIVE, "precision": FRACTION,
                                          "recall": FRACTION, "density": NONNEGATIVE, "coverage": FRACTION}


def _counts_pair(path, value: Any, key: str) -> None:
    """``images`` of a fidelity block: [fake, real] counts."""
    if value is None:
        return
    if not isinstance(value, list) or len(value) != 2:
        raise DataError(path, f"{key} must be [fake, real] image counts, found {type_word(value)}")
    for count in value:
        if count is None:
            raise DataError(path, f"{key} must hold two non-negative integers, found null")
        number(path, count, COUNT, key)


def _summary_interval(path, bounds: Any, kind: Kind, key: str) -> None:
    """A stated interval: [low, high] of ``kind`` (a bound may be null: unbounded), low <= high."""
    if bounds is None:
        return
    if not isinstance(bounds, list) or len(bounds) != 2:
        raise DataError(path, f"{key} must be [low, high], found {type_word(bounds)}")
    for bound in bounds:
        number(path, bound, kind, f"{key} bound")
    if None not in bounds and bounds[0] > bounds[1]:
        raise DataError(path, f"{key} must be [low, high] with low <= high, found [{_shown(bounds[0])}, "
                              f"{_shown(bounds[1])}]")


def summary(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """``analysis/summary.json``: headline numbers in range, the read analyses' entries objects."""
    _keys(path, data, SUMMARY_TOP)
    analyses = data.get("analyses") or {}
    for name, kinds in SUMMARY_ANALYSES.items():
        entry = typed(path, analyses.get(name), dict, f"analyses.{name}")
        if not entry:
            continue
        _keys(path, entry, kinds, f"analyses.{name}.")
        if name == "fidelity":
            for space in ("fr", "inception"):
                block = entry.get(space) or {}
                _keys(path, block, FIDELITY_BLOCK, f"analyses.fidelity.{space}.")
                _counts_pair(path, block.get("images"), f"analyses.fidelity.{space}.images")
        if name == "fid":
            _counts_pair(path, entry.get("images"), "analyses.fid.images")
        for key, kind in SUMMARY_INTERVALS.get(name, {}).items():
            _summary_interval(path, (entry.get("ci95") or {}).get(key), kind, f"analyses.{name}.ci95.{key}")
        for k, item in enumerate(entry.get("closest") or [] if name == "leakage" else []):
            typed(path, item, dict, f"analyses.leakage.closest[{k}]")
            number(path, (item or {}).get("cosine"), COSINE, f"analyses.leakage.closest[{k}].cosine")


# ------------------------------------------------------------------------------- dataset.json, model.json

#: Fields of a dataset card the report uses: names and hashes group runs, sizes are printed and plotted.
CARD_FIELDS: dict[str, Kind | type] = {"name": str, "dataset": str, "train": str, "path": str, "sha256": str,
                                       "identities": COUNT, "images": COUNT, "generator_info": dict}
#: The training set a model card names (``model.json``'s ``dataset`` object).
MODEL_DATASET: dict[str, Kind | type] = {"name": str, "path": str, "sha256": str, "identities": COUNT,
                                         "images": COUNT}
MODEL_FIELDS: dict[str, Kind | type] = {"dataset": (dict, str), "identities": COUNT, "images": COUNT,
                                        "num_classes": COUNT, "num_images": COUNT}


def dataset_card(path: str | os.PathLike, card: dict[str, Any]) -> None:
    _keys(path, card, CARD_FIELDS)


def model_card(path: str | os.PathLike, model: dict[str, Any]) -> None:
    _keys(path, model, MODEL_FIELDS)
    if isinstance(model.get("dataset"), dict):
        _keys(path, model["dataset"], MODEL_DATASET, "dataset.")


def provenance(path: str | os.PathLike, prov: dict[str, Any]) -> None:
    """``provenance.json``: ``inputs`` an object of objects (their hashes strings), ``trained_on`` a name."""
    _keys(path, prov, {"inputs": dict, "trained_on": str})
    for label, info in (prov.get("inputs") or {}).items():
        typed(path, info, dict, f"inputs.{label}")
        typed(path, (info or {}).get("sha256"), str, f"inputs.{label}.sha256")

