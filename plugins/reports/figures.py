"""The report's plots, drawn with matplotlib (Agg, no display needed) and returned as PNG bytes.

Each function takes plain arrays so it can be tested on numbers whose plot is known; the sections
decide which runs feed which plot. Figures mirror the paper's: separability (Fig. 5), genuine and
impostor similarities with the EER (Fig. 11), intra/inter-class noise (Fig. 12).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

INTRA_NOISE_BELOW = 0.3
INTER_NOISE_ABOVE = 0.7


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt


def plain(text: str) -> str:
    """A user string shown literally by matplotlib (a ``$`` would otherwise start mathtext)."""
    return str(text).replace("$", r"\$")


def to_png(fig) -> bytes:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def separability_plot(curves: Sequence[tuple[str, np.ndarray]], threshold: float = 0.4) -> bytes:
    """Well-separated identities against identities seen, one line per dataset (paper Fig. 5)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    longest = 1
    for label, counts in curves:
        x = np.arange(1, len(counts) + 1)
        ax.plot(x, counts, label=plain(label), linewidth=2)
        longest = max(longest, len(counts))
    ax.plot([1, longest], [1, longest], linestyle=":", color="grey", label="all separated")
    ax.set_xlabel("identities considered (prefix size)")
    ax.set_ylabel(f"identities with no earlier one above cos {threshold:g}")
    ax.legend(fontsize=9, loc="upper left")
    return to_png(fig)


def similarity_plot(genuine: np.ndarray, impostor: np.ndarray, eer: float, title: str) -> bytes:
    """Genuine and impostor cosine-similarity histograms of one dataset with its EER (paper Fig. 11)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.4))
    bins = np.linspace(min(genuine.min(), impostor.min(), -0.2), max(genuine.max(), impostor.max(), 1.0), 60)
    ax.hist(impostor, bins=bins, density=True, alpha=0.6, label=f"impostor (n={len(impostor)})", color="#c0504d")
    ax.hist(genuine, bins=bins, density=True, alpha=0.6, label=f"genuine (n={len(genuine)})", color="#4f81bd")
    ax.set_title(f"{plain(title)}: EER {eer * 100:.2f}%", fontsize=11)
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return to_png(fig)


def noise_plot(intra: np.ndarray | None, inter: np.ndarray | None, title: str, *, intra_share: float | None = None,
               inter_share: float | None = None, inter_is_nearest: bool = False) -> bytes:
    """Image-to-centre and centre-to-centre similarities with the noise cut-offs (paper Fig. 12).

    The shares are the stated ones when given (``facebench analyze`` counts inter-class noise over all
    centre pairs but stores each centre's nearest-centre similarity for the plot), else computed here.
    """
    plt = _pyplot()
    panels = [(a, n) for a, n in ((intra, "intra"), (inter, "inter")) if a is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 3.2), squeeze=False)
    for ax, (values, kind) in zip(axes[0], panels):
        if kind == "intra":
            share = float(intra_share) if intra_share is not None else float(np.mean(values < INTRA_NOISE_BELOW))
            ax.hist(values, bins=50, color="#4f81bd", alpha=0.8)
            ax.axvline(INTRA_NOISE_BELOW, color="k", linestyle="--")
            ax.set_title(f"intra-class: {share * 100:.2f}% below {INTRA_NOISE_BELOW}", fontsize=10)
            ax.set_xlabel("cosine(image, identity centre)")
        else:
            share = float(inter_share) if inter_share is not None else float(np.mean(values > INTER_NOISE_ABOVE))
            ax.hist(values, bins=50, color="#c0504d", alpha=0.8)
            ax.axvline(INTER_NOISE_ABOVE, color="k", linestyle="--")
            ax.set_title(f"inter-class: {share * 100:.3f}% of centre pairs above {INTER_NOISE_ABOVE}", fontsize=10)
            ax.set_xlabel("cosine(centre, nearest other centre)" if inter_is_nearest else "cosine(centre, centre)")
        ax.set_ylabel("count")
    fig.suptitle(plain(title), fontsize=11)
    return to_png(fig)


def scaling_plot(
    published: Sequence[tuple[Any, ...]], measured: Sequence[tuple[str, float, float]]
) -> bytes:
    """Average accuracy against training-set size: published points beside measured ones.

    Each point is (label, images, accuracy %); a published point may name its series as a fourth item
    (HSFace and VFace are two scaling series: one line each). The two groups live on separate panels
    because toy runs and paper-scale runs differ by five orders of magnitude in size and are not
    comparable in accuracy.
    """
    plt = _pyplot()
    groups = [(g, t) for g, t in ((published, "published"), (measured, "measured here")) if g]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.4 * len(groups), 3.6), squeeze=False)
    colours = ("#8a6d1d", "#2e7d32", "#6a1b9a", "#b3261e")
    for ax, (points, kind) in zip(axes[0], groups):
        if kind == "published":
            # each published series is one line; measured points are separate datasets: no line
            names = list(dict.fromkeys(p[3] if len(p) > 3 else "" for p in points))
            for n, name in enumerate(names):
                series = sorted((p for p in points if (p[3] if len(p) > 3 else "") == name),
                                key=lambda p: p[1])
                ax.plot([p[1] for p in series], [p[2] for p in series], marker="o", linewidth=1.5,
                        color=colours[n % len(colours)], label=plain(name) if name else None)
            if any(names):
                ax.legend(fontsize=8)
        else:
            points = sorted(points, key=lambda p: p[1])
            ax.plot([p[1] for p in points], [p[2] for p in points], marker="o", linewidth=0, color="#1f5fbf")
        for point in points:
            label, x, y = point[:3]
            ax.annotate(plain(label), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("training images")
        ax.set_ylabel("average accuracy (%)")
        ax.set_title(kind, fontsize=11)
    return to_png(fig)


def pose_panels_plot(panels: Sequence[tuple[str, Sequence[tuple[str, np.ndarray]]]], xlabel: str) -> bytes:
    """Side-by-side panels of angle histograms (one panel per way of steering pose), on shared axes and
    the same 5-degree bins over [-90, 90], so the panels compare at a glance."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False, sharex=True,
                             sharey=True)
    bins = np.linspace(-90.0, 90.0, 37)
    for ax, (title, series) in zip(axes[0], panels):
        for label, values in series:
            ax.hist(np.clip(values, -90.0, 90.0), bins=bins, density=True, alpha=0.5, label=plain(label))
        ax.set_title(plain(title), fontsize=11)
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("density")
    return to_png(fig)


def histogram_plot(series: Sequence[tuple[str, np.ndarray]], xlabel: str) -> bytes:
    """Overlaid histograms of one attribute (pose yaw, quality) across datasets."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    for label, values in series:
        ax.hist(values, bins=40, density=True, alpha=0.5, label=plain(label))
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return to_png(fig)
