"""The dataset's figures for a paper (Fig. 3b / 3c analogues and the exposure per condition),
drawn with matplotlib from `dataset.stats.DatasetStats`.

Conventions shared with `model.figures`: matplotlib is imported inside the functions (command
start-up stays fast), figures are `matplotlib.figure.Figure` objects on the Agg canvas (no
display, no pyplot global state), colours are Okabe-Ito (colour-blind safe), and every PNG is
published atomically at `DPI` with a tight bounding box (nothing cut off).

- `class_pixels.png`: labelled pixels per class as a fraction of each condition's labelled
  pixels (all / day / night), log scale: the paper's Fig. 3b compares all-day with daytime. No
  Cityscapes bars: the project holds no measured Cityscapes class counts to compare with.
- `scene_time.png`: pairs per scene and per split, stacked by time of day (Fig. 3c).
- `exposure.png`: per condition (all / day / night / over-exposed / under-exposed pairs) the
  distribution of the pixels' HSV V, the distribution of the frames' mean V, and the mean share
  of under- and over-exposed pixels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from common.atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from dataset.stats import DatasetStats

DPI = 160
#: Okabe-Ito colours (Okabe & Ito 2008), safe for the common colour-vision deficiencies.
OKABE_ITO = {"black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9",
             "bluish green": "#009E73", "yellow": "#F0E442", "blue": "#0072B2",
             "vermillion": "#D55E00", "reddish purple": "#CC79A7", "grey": "#999999"}
CONDITION_COLORS = {"all": OKABE_ITO["black"], "day": OKABE_ITO["orange"],
                    "night": OKABE_ITO["blue"], "over-exposed": OKABE_ITO["vermillion"],
                    "under-exposed": OKABE_ITO["bluish green"]}
#: Line styles beside the colours, so the curves stay apart in greyscale print too.
CONDITION_STYLES = {"all": "-", "day": "-", "night": "--", "over-exposed": "-.",
                    "under-exposed": ":"}
TIME_COLORS = {"day": OKABE_ITO["orange"], "dusk": OKABE_ITO["reddish purple"],
               "night": OKABE_ITO["blue"], "tunnel": OKABE_ITO["bluish green"]}
FONT = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
        "xtick.labelsize": 9, "ytick.labelsize": 9}


def new_figure(width_in: float, height_in: float) -> Figure:
    """A figure on the Agg canvas (explicitly: never a display backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def font_context() -> Any:
    """The figures' font sizes, for a `with` block around drawing."""
    import matplotlib

    return matplotlib.rc_context(cast(Any, FONT))


def render_png(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Write `fig` as a PNG into `path` as it is (a temporary path that someone publishes)."""
    fig.savefig(path, format="png", dpi=DPI, bbox_inches="tight", facecolor="white")


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Publish `fig` as a PNG at `path`, atomically (a temporary file beside it, then a rename)."""
    with atomic_path(path, suffix=".png") as tmp:
        render_png(fig, tmp)
    return Path(path)


def _log_floor(values: np.ndarray) -> float:
    """The decade below the smallest positive value (the log axis' bottom)."""
    pos = values[values > 0]
    return 10.0 ** np.floor(np.log10(pos.min())) if pos.size else 1e-4


def class_pixels_figure(st: DatasetStats) -> Figure:
    """Fig. 3b: labelled pixels per class, a fraction of each condition's labelled pixels, log
    scale; classes with no labelled pixel at all have grey tick labels."""
    from dataset.labels import TRAIN_ID_NAMES
    from dataset.stats import CLASS_CONDITIONS

    conds = [c for c in CLASS_CONDITIONS if st.labelled_of(c) > 0]
    fig = new_figure(10.0, 4.0)
    ax = fig.add_subplot()
    k = len(TRAIN_ID_NAMES)
    x = np.arange(k)
    fracs = {c: st.class_pixels_of(c) / max(int(st.class_pixels_of(c).sum()), 1) for c in conds}
    width = 0.8 / max(len(conds), 1)
    for j, c in enumerate(conds):
        ax.bar(x - 0.4 + width * (j + 0.5), np.where(fracs[c] > 0, fracs[c], np.nan), width,
               color=CONDITION_COLORS[c], edgecolor="white", linewidth=0.3,
               label=f"{c} ({st.labelled_of(c)} labelled pairs)")
    ax.set_yscale("log")
    every = np.concatenate([f for f in fracs.values()]) if fracs else np.zeros(1)
    ax.set_ylim(_log_floor(every), 1.0)
    ax.set_xticks(x, TRAIN_ID_NAMES, rotation=45, ha="right", rotation_mode="anchor")
    for tick, px in zip(ax.get_xticklabels(), st.class_pixels, strict=True):
        if px == 0:
            tick.set_color(OKABE_ITO["grey"])
    ax.set_xlim(-0.6, k - 0.4)
    ax.set_ylabel("share of labelled pixels (log)")
    if (st.class_pixels == 0).any():
        ax.set_xlabel("class (grey: no labelled pixel)", color="#555555")
    ax.set_title("Labelled pixels per class")
    ax.grid(axis="y", which="major", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)
    if not conds:
        ax.text(0.5, 0.5, "no labelled pairs", transform=ax.transAxes, ha="center", va="center")
    else:
        ax.legend(loc="upper right", frameon=False)
    return fig


def scene_time_figure(st: DatasetStats) -> Figure:
    """Fig. 3c: pairs per scene (left) and per split (right), stacked by time of day."""
    from matplotlib.ticker import MaxNLocator

    from dataset.rpea_format import TIMES_OF_DAY
    from dataset.splits import SPLITS

    tods = [t for t in TIMES_OF_DAY if any(k[2] == t for k in st.pairs)]
    tods += sorted({k[2] for k in st.pairs} - set(tods))  # "?" or unknown tags, last
    per_scene: dict[str, int] = {}
    for (_, scene, _), n in st.pairs.items():
        per_scene[scene] = per_scene.get(scene, 0) + n
    order = {s: i for i, s in enumerate(SPLITS)}  # train, val, test; others after them
    groups = {"scene": sorted(per_scene, key=lambda s: (-per_scene[s], s)),  # largest first
              "split": sorted({k[0] for k in st.pairs}, key=lambda s: (order.get(s, 99), s))}
    rows = max(len(groups["scene"]), len(groups["split"]), 1)
    fig = new_figure(10.0, 1.2 + 0.45 * rows)
    axes = fig.subplots(1, 2)
    for ax, (what, names) in zip(axes, groups.items(), strict=True):
        counts = np.zeros((len(names), len(tods)), np.int64)
        for (split, scene, tod), n in st.pairs.items():
            counts[names.index(scene if what == "scene" else split), tods.index(tod)] += n
        left = np.zeros(len(names))
        y = np.arange(len(names))
        total = max(int(counts.sum()), 1)
        for j, tod in enumerate(tods):
            bars = ax.barh(y, counts[:, j], left=left, height=0.6, label=tod,
                           color=TIME_COLORS.get(tod, OKABE_ITO["grey"]), edgecolor="white")
            # the count inside a segment wide enough to hold it
            ax.bar_label(bars, labels=[str(v) if v >= 0.08 * counts.sum(1).max() else ""
                                       for v in counts[:, j]], label_type="center", fontsize=8,
                         color="white" if tod == "night" else "black")
            left += counts[:, j]
        for yi, tot in zip(y, counts.sum(1), strict=True):
            ax.text(tot, yi, f" {tot} ({tot / total:.0%})", va="center", fontsize=9)
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_xlim(0, max(float(counts.sum(1).max(initial=0)), 1.0) * 1.25)
        ax.set_xlabel("pairs")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10], integer=True))
        ax.set_title(f"Pairs per {what} and time of day")
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    if tods:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center",
                   ncols=len(tods), frameon=False, title="time of day")
    return fig


def exposure_figure(st: DatasetStats) -> Figure:
    """Exposure per condition: (a) HSV V of all pixels, (b) the frames' mean V, (c) the mean
    share of under- and over-exposed pixels, for all / day / night / over- / under-exposed
    pairs (the conditions overlap; empty ones are left out)."""
    from dataset.stats import EXPOSURE_CONDITIONS, MEAN_V_BINS, V_BINS

    doc = st.to_dict()["exposure"]
    conds = [c for c in EXPOSURE_CONDITIONS if st.exposure[c].pairs > 0]
    fig = new_figure(13.0, 3.9)
    ax_v, ax_m, ax_s = fig.subplots(1, 3, width_ratios=[1.2, 1.0, 0.8])
    alpha, beta = doc["alpha"], doc["beta"]
    # (a) pixel V distribution, share of pixels per bin (log)
    edges = np.asarray(doc["pixel_v_bin_edges"], np.float64) / 255.0
    for c in conds:
        h = np.asarray(doc["conditions"][c]["pixel_v_hist"], np.float64)
        ax_v.stairs(np.where(h > 0, h, np.nan), edges, color=CONDITION_COLORS[c],
                    linestyle=CONDITION_STYLES[c], linewidth=1.6, label=c)
    ax_v.set_yscale("log")
    all_h = np.concatenate([np.asarray(doc["conditions"][c]["pixel_v_hist"]) for c in conds]) \
        if conds else np.zeros(1)
    ax_v.set_ylim(_log_floor(all_h), 1.0)
    for thr, name, end in ((alpha, "under", 0.0), (beta, "over", 1.0)):
        if thr is not None:
            ax_v.axvspan(min(thr, end), max(thr, end), color="#eeeeee", zorder=0)
            ax_v.axvline(thr, color=OKABE_ITO["grey"], linestyle=":", linewidth=1)
            ax_v.text((thr + end) / 2, 0.97, name, transform=ax_v.get_xaxis_transform(),
                      ha="center", va="top", fontsize=8, color="#555555")
    ax_v.set_xlim(0, 1)
    ax_v.set_xlabel(f"pixel brightness V = max(R,G,B)/255 ({V_BINS} bins)")
    ax_v.set_ylabel("share of pixels (log)")
    ax_v.set_title("(a) Pixel brightness")
    # (b) frame mean V distribution, share of the condition's pairs per bin
    m_edges = np.asarray(doc["frame_mean_v_bin_edges"], np.float64)
    for c in conds:
        h = np.asarray(doc["conditions"][c]["frame_mean_v_hist"], np.float64)
        ax_m.stairs(h / max(h.sum(), 1.0), m_edges, color=CONDITION_COLORS[c],
                    linestyle=CONDITION_STYLES[c], linewidth=1.6)
    ax_m.set_xlim(0, 1)
    ax_m.set_ylim(bottom=0)
    ax_m.set_xlabel(f"frame mean V ({MEAN_V_BINS} bins)")
    ax_m.set_ylabel("share of the condition's pairs")
    ax_m.set_title("(b) Frame mean brightness")
    # (c) mean share of under- / over-exposed pixels per condition
    width = 0.8 / max(len(conds), 1)
    for j, c in enumerate(conds):
        e = doc["conditions"][c]
        vals = [e["mean_underexposed_frac"] or 0.0, e["mean_overexposed_frac"] or 0.0]
        bars = ax_s.bar(np.arange(2) - 0.4 + width * (j + 0.5), np.asarray(vals) * 100.0, width,
                        color=CONDITION_COLORS[c], edgecolor="white", linewidth=0.3)
        ax_s.bar_label(bars, labels=[f"{v:.0%}" for v in vals], fontsize=7, padding=1)
    ax_s.set_xticks([0, 1], [f"under-exposed\n(V < {_thr(alpha)})",
                             f"over-exposed\n(V > {_thr(beta)})"])
    ax_s.set_ylim(0, 105)
    ax_s.set_ylabel("mean share of a frame's pixels (%)")
    ax_s.set_title("(c) Badly exposed pixels")
    for ax in (ax_v, ax_m, ax_s):
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    if conds:
        handles = ax_v.get_legend_handles_labels()[0]
        fig.legend(handles, [f"{c} ({st.exposure[c].pairs} pairs)" for c in conds],
                   loc="outside lower center", ncols=len(conds), frameon=False)
    return fig


def _thr(x: float | None) -> str:
    return "per file" if x is None else f"{x:g}"


#: The figures `rpea stats` writes: file stem -> drawing function.
FIGURES = {"class_pixels": class_pixels_figure, "scene_time": scene_time_figure,
           "exposure": exposure_figure}


def write_figures(st: DatasetStats, out: str | os.PathLike[str]) -> list[Path]:
    """Draw every figure of `FIGURES` and publish it as `<out>/<name>.png`."""
    paths = []
    with font_context():
        for name, draw in FIGURES.items():
            paths.append(save_figure(draw(st), Path(out) / f"{name}.png"))
    return paths
