"""Plots of the newer protocols' sections: IJB ROC curves, per-group accuracy bars, leakage pairs.

Plain arrays in, PNG bytes out (matplotlib Agg through :mod:`.figures`), like the other report plots.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .figures import _pyplot, plain, to_png


def roc_plot(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str) -> bytes:
    """TAR against FAR on a log FAR axis (1e-6 to 1), one line per training set, as insightface plots IJB."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.2, 4.0))
    for label, fpr, tpr in curves:
        keep = fpr > 0
        ax.plot(fpr[keep], tpr[keep], linewidth=1.6, label=plain(label))
    ax.set_xscale("log")
    ax.set_xlim(1e-6, 1.0)
    ax.set_ylim(0.0, 1.0)
    for far in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1):
        ax.axvline(far, color="grey", linewidth=0.5, linestyle=":")
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.set_title(plain(title), fontsize=11)
    ax.legend(fontsize=8, loc="lower right")
    return to_png(fig)


def group_bars_plot(groups: Sequence[str], series: Sequence[tuple[str, Sequence[float], float]]) -> bytes:
    """Accuracy (%) per demographic group, one bar colour per training set; the legend gives mean +- STD."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(groups) * max(1, len(series)) / 2), 3.6))
    width = 0.8 / max(1, len(series))
    x = np.arange(len(groups))
    low = 100.0
    for k, (label, values, std) in enumerate(series):
        values = np.asarray(values, float)
        low = min(low, float(values.min()))
        ax.bar(x + (k - (len(series) - 1) / 2) * width, values, width,
               label=f"{plain(label)} (mean {values.mean():.2f} \u00b1 {std:.2f})")
    ax.set_xticks(x)
    ax.set_xticklabels([plain(g) for g in groups])
    ax.set_ylim(max(0.0, low - 5.0), 100.0)
    ax.set_ylabel("accuracy (%)")
    # above the axes: inside, it would hide the bars of the lower-scoring sets
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.01), ncol=min(2, len(series)), frameon=False)
    return to_png(fig)


def pairs_grid(images: np.ndarray, scores: Sequence[float | None], title: str) -> bytes:
    """(pairs, 2, H, W, 3) uint8 images as columns of [synthetic over reference], each headed by its cosine
    (``cos ?`` where ``scores`` has none)."""
    plt = _pyplot()
    n = images.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(max(3.0, 1.25 * n), 3.0), squeeze=False)
    for k in range(n):
        for row in range(2):
            ax = axes[row][k]
            ax.imshow(images[k, row])
            ax.set_xticks([])
            ax.set_yticks([])
        score = scores[k] if k < len(scores) else None
        axes[0][k].set_title(f"cos {score:.3f}" if score is not None else "cos ?", fontsize=8)
    axes[0][0].set_ylabel("synthetic", fontsize=9)
    axes[1][0].set_ylabel("training set", fontsize=9)
    fig.suptitle(plain(title), fontsize=10)
    fig.tight_layout()
    return to_png(fig)
