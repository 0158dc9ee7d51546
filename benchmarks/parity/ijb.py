"""IJB 1:1 scoring side by side with insightface's ``recognition/arcface_torch/eval_ijbc.py``.

    python benchmarks/parity/ijb.py --insightface PATH/TO/insightface [--images 6000] [--templates 600]
                                    [--pairs 200000] [--seed 0]

``eval_ijbc.py`` is a script (argument parsing, model loading and scoring run at import), so its code is
taken from the file as it is: the functions ``image2template_feature`` and ``verification``, the
module-level fusion block (flip / norm / detector score) and the TAR-selection loop are cut out of its
syntax tree and executed on the same inputs, with sklearn's ``roc_curve``; the plotting and table helpers
they call (matplotlib, menpo, prettytable) are replaced by small recorders, nothing else. Both sides get the
same raw image features (image and mirror halves), faceness scores, template ids, media ids and pair list
(random identities: several templates per identity, several media per template, some media with several
images). Printed: the largest differences of the fused image features, template features, pair scores and
the TAR@FAR table (raw fractions, target 1e-6; insightface's own table rounds to 2 decimals in %), for the
flip/norm/detector settings insightface's code supports. Without ``--insightface`` it prints why it skipped.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import sys
from pathlib import Path

import numpy as np

TOLERANCE = 1e-6
SCRIPT = "recognition/arcface_torch/eval_ijbc.py"


class Recorder:
    """Stands in for the plotting/table objects the reference calls; remembers table rows."""

    def __init__(self, *args, **kwargs):
        self.rows = []

    def add_row(self, row):
        self.rows.append(list(row))

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def reference_code(path: Path) -> dict[str, list[ast.stmt]]:
    """The reference's functions, its fusion block and its TAR loop, as syntax-tree statements."""
    tree = ast.parse(path.read_text(), filename=str(path))
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    fusion = [n for n in tree.body if isinstance(n, ast.If) and isinstance(n.test, ast.Name)
              and n.test.id in ("use_flip_test", "use_norm_score", "use_detector_score")]
    loop = [n for n in tree.body if isinstance(n, ast.For) and isinstance(n.target, ast.Name)
            and n.target.id == "method"]
    missing = [name for name in ("image2template_feature", "verification") if name not in functions]
    if missing or len(fusion) != 3 or len(loop) != 1:
        raise SystemExit(f"{path}: could not find {missing or 'the fusion block or the TAR loop'}; "
                         "is this insightface's eval_ijbc.py?")
    return {"functions": [functions["image2template_feature"], functions["verification"]], "fusion": fusion,
            "loop": loop}


def run_statements(statements: list[ast.stmt], namespace: dict, filename: str) -> None:
    module = ast.Module(body=statements, type_ignores=[])
    exec(compile(module, filename, "exec"), namespace)


def synthetic_ijb(images: int, templates: int, pairs: int, dim: int, seed: int):
    """Raw image features (image, mirror), faceness, template and media ids, pairs and labels."""
    rng = np.random.default_rng(seed)
    identities = max(2, templates // 4)
    subject = rng.integers(0, identities, templates)
    template_ids = np.sort(rng.choice(np.arange(1, 50 * templates), templates, replace=False))
    template_of = np.r_[np.arange(templates), rng.integers(0, templates, images - templates)]
    media = rng.integers(0, 3 * templates, images)  # media ids shared across templates, as real ids are
    centres = rng.standard_normal((identities, dim)) * 0.9
    base = centres[subject[template_of]] + rng.standard_normal((images, dim)) * 2.5
    feats = np.concatenate([base, base + rng.standard_normal((images, dim)) * 0.5], axis=1).astype(np.float32)
    faceness = rng.uniform(0.5, 1.0, images).astype(np.float32)
    t1 = rng.integers(0, templates, pairs)
    same = rng.uniform(size=pairs) < 0.1
    t2 = np.where(same, -1, rng.integers(0, templates, pairs))
    for k in np.flatnonzero(same):  # a same-identity partner where one exists
        options = np.flatnonzero(subject == subject[t1[k]])
        t2[k] = rng.choice(options)
    label = (subject[t1] == subject[t2]).astype(int)
    return feats, faceness, template_ids[template_of], media, template_ids[t1], template_ids[t2], label


def reference_side(code, feats, faceness, templates, medias, p1, p2, label, flags):
    """insightface's code on the inputs: fused features, template features, scores, raw TAR picks, table."""
    import sklearn
    import sklearn.preprocessing
    from sklearn.metrics import auc, roc_curve

    seen = {}

    def recording_roc(y, s, **kw):
        seen["roc"] = roc_curve(y, s, **kw)
        return seen["roc"]

    picks = []

    def recording_min(*args, **kwargs):
        out = builtins.min(*args, **kwargs)
        picks.append(out[1])
        return out

    ns = {"np": np, "sklearn": sklearn, "roc_curve": recording_roc, "auc": auc, "plt": Recorder(),
          "img_feats": feats, "faceness_scores": faceness, "print": lambda *a, **k: None, **flags}
    run_statements(code["functions"], ns, SCRIPT)
    run_statements(code["fusion"], ns, SCRIPT)
    fused = ns["img_input_feats"]
    template_feats, unique = ns["image2template_feature"](fused, templates, medias)
    scores = ns["verification"](template_feats, unique, p1, p2)
    x_labels = [10 ** -6, 10 ** -5, 10 ** -4, 10 ** -3, 10 ** -2, 10 ** -1]
    table = Recorder()
    ns.update({"methods": np.array(["facebench-parity"]), "scores": {"facebench-parity": scores}, "label": label,
               "x_labels": x_labels, "tpr_fpr_table": table, "colours": {"facebench-parity": None},
               "target": "IJBC", "min": recording_min})
    run_statements(code["loop"], ns, SCRIPT)
    tpr = np.flipud(seen["roc"][1])
    return fused, unique, template_feats, scores, {x: float(tpr[i]) for x, i in zip(x_labels, picks)}, table.rows[0]


def facebench_side(feats, faceness, templates, medias, p1, p2, label, flip, norm, detector):
    from facebench.metrics import fuse_image_features, tar_at_far, template_features, template_pair_scores

    fused = fuse_image_features(feats, faceness, flip_fusion="add" if flip else "none", keep_norm=norm,
                                detector_score=detector)
    unique, template_feats = template_features(fused, templates, medias)
    scores = template_pair_scores(template_feats, unique, p1, p2)
    return fused, unique, template_feats, scores, tar_at_far(label, scores)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--insightface", type=Path, default=None, help="a checkout of deepinsight/insightface")
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--templates", type=int, default=600)
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.insightface is None or not (args.insightface / SCRIPT).is_file():
        where = "no --insightface given" if args.insightface is None else f"{args.insightface / SCRIPT} not found"
        print(f"skipped: {where}; pass a checkout of github.com/deepinsight/insightface to compare with its "
              "eval_ijbc.py")
        return 0
    code = reference_code(args.insightface / SCRIPT)
    data = synthetic_ijb(args.images, args.templates, args.pairs, args.dim, args.seed)
    feats, faceness, templates, medias, p1, p2, label = data
    print(f"inputs: {args.images} images, {len(np.unique(templates))} templates, {args.pairs} pairs "
          f"({int(label.sum())} same), {2 * args.dim}-d raw features (image + mirror)")
    worst = 0.0
    for flip, norm, detector in ((True, True, True), (True, False, True), (True, True, False), (False, True, True),
                                 (False, False, False)):
        flags = {"use_flip_test": flip, "use_norm_score": norm, "use_detector_score": detector}
        ref = reference_side(code, feats, faceness, templates, medias, p1, p2, label, flags)
        ours = facebench_side(feats, faceness, templates, medias, p1, p2, label, flip, norm, detector)
        assert np.array_equal(ref[1], ours[1]), "template ids differ"
        diffs = {
            "fused image features": float(np.abs(ref[0] - ours[0]).max()),
            "template features": float(np.abs(ref[2] - ours[2]).max()),
            "pair scores": float(np.abs(ref[3] - ours[3]).max()),
            "TAR@FAR table": max(abs(ref[4][x] - ours[4][x]) for x in ref[4]),
        }
        ours_table = [f"{100 * ours[4][x]:.2f}" for x in ref[4]]
        name = f"flip={'F2' if flip else 'none'} norm={'N1' if norm else 'N0'} detector={'D1' if detector else 'D0'}"
        print(f"{name}: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
              + f"; printed table equal: {ours_table == ref[5][1:]}")
        print(f"    insightface TAR@FAR (%): {' '.join(ref[5][1:])}")
        worst = max(worst, *diffs.values())
        if ours_table != ref[5][1:]:
            worst = max(worst, 1.0)
    verdict = "PASS" if worst <= TOLERANCE else "FAIL"
    print(f"largest difference over all settings: {worst:.2e} (target {TOLERANCE:g}): {verdict}")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
