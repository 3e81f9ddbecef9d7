"""The evaluation's figure: the confusion matrix `cacd eval` writes beside its metrics JSON.

Row-normalised (each row: where the pixels of one true class went, summing to 1), on a log
colour scale from 1e-4 to 1 so that the small confusions of the small classes (poles, signs,
riders) stay visible next to the large diagonal of road and sky; rows of classes with no labelled
pixel are grey. Drawn with the dataset figures' conventions (`dataset.figures`: Agg canvas,
fonts, atomic PNG); matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dataset.figures import font_context, new_figure, render_png, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The colour scale's floor: shares below it are drawn in the floor's colour.
LOG_FLOOR = 1e-4


def row_normalised(pixels: np.ndarray) -> np.ndarray:
    """Confusion counts (rows: truth) -> shares per row; NaN rows for classes with no pixel."""
    m = np.asarray(pixels, np.float64)
    total = m.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, m / np.maximum(total, 1.0), np.nan)


def confusion_figure(pixels: np.ndarray, classes: Sequence[str], title: str = "") -> Figure:
    """The row-normalised confusion matrix with the share (%) written in every cell of 1 % or
    more, class names on both axes."""
    from matplotlib.colors import LogNorm

    share = row_normalised(pixels)
    k = len(classes)
    side = max(4.0, 0.36 * k + 1.8)
    fig = new_figure(side + 1.2, side)
    ax = fig.add_subplot()
    # no pixel at all: white (below the scale: a log scale takes 0 for a missing value, which
    # is grey here); a share under the floor: the floor's colour
    shown = np.ma.masked_invalid(np.where(share > 0, np.clip(share, LOG_FLOOR, 1.0),
                                          np.where(share == 0, LOG_FLOOR / 10.0, np.nan)))
    import matplotlib
    from matplotlib.patches import Rectangle

    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d9d9d9", under="white")
    im = ax.imshow(shown, cmap=cmap, norm=LogNorm(vmin=LOG_FLOOR, vmax=1.0),
                   interpolation="nearest")
    for i in range(k):  # the diagonal (correct pixels) outlined
        ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black",
                               linewidth=0.8))
    for i in range(k):
        for j in range(k):
            v = share[i, j]
            if np.isfinite(v) and v >= 0.01:
                ax.text(j, i, f"{v * 100:.0f}", ha="center", va="center", fontsize=6.5,
                        color="black" if v >= 0.03 else "white")  # viridis: light above
    ax.set_xticks(np.arange(k), classes, rotation=60, ha="right", rotation_mode="anchor")
    ax.set_yticks(np.arange(k), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(np.arange(k + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(k + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="#bbbbbb", linewidth=0.4)
    ax.tick_params(which="minor", length=0)
    empty = ~np.isfinite(share).all(axis=1)
    for tick, none in zip(ax.get_yticklabels(), empty, strict=True):
        if none:
            tick.set_color("#999999")
    bar = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
    bar.set_label("share of the true class's pixels (log scale)\n"
                  "numbers: % (>= 1 %); white: none; grey row: class absent")
    ax.set_title("Confusion matrix, row-normalised" + (f"\n{title}" if title else ""))
    return fig


def draw_confusion_png(pixels: np.ndarray, classes: Sequence[str],
                       path: str | os.PathLike[str], title: str = "") -> None:
    """Draw `confusion_figure` into the file `path` as it is (the caller publishes it: `cacd
    eval` publishes it only once its JSON is written too)."""
    with font_context():
        render_png(confusion_figure(pixels, classes, title), path)


def write_confusion_png(pixels: np.ndarray, classes: Sequence[str],
                        path: str | os.PathLike[str], title: str = "") -> Path:
    """Draw `confusion_figure` and publish it at `path` (atomically)."""
    with font_context():
        return save_figure(confusion_figure(pixels, classes, title), path)
