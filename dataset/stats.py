"""Dataset statistics as in the paper's Fig. 3: labelled pixels per class (log scale, 3b) for all
pairs and per time-of-day condition, pairs per scene and time of day (3c), and the exposure of
the frames per condition (pixel brightness distribution, frame mean brightness, under- and
over-exposed pixel shares).

`collect` streams over the dataset one pair at a time (one image and one label map in memory),
so it works on datasets of any size; the figures are drawn by `dataset.figures`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hdf5plugin  # noqa: F401
import numpy as np

from dataset.conditions import ALPHA, BETA, value8
from dataset.labels import TRAIN_ID_NAMES
from dataset.rpea_format import NUM_CLASSES
from dataset.splits import SPLITS

#: A pair counts as over- (under-) exposed when more than this share of its pixels is.
EXTREME_PAIR_FRAC = 0.05
#: Exposure conditions, in the order of tables and legends. They overlap on purpose: a pair is
#: day or night, and over- and/or under-exposed on top of that.
EXPOSURE_CONDITIONS = ("all", "day", "night", "over-exposed", "under-exposed")
#: Conditions of the class-pixel distribution (the paper compares all-day with daytime).
CLASS_CONDITIONS = ("all", "day", "night")
#: HSV V histogram bins reported in stats.json and drawn (8 grey levels per bin).
V_BINS = 32
#: Frame mean brightness histogram bins over [0, 1].
MEAN_V_BINS = 20


@dataclass
class ExposureStats:
    """Exposure of the pairs of one condition: the HSV V histogram of all their pixels (256
    levels) and, per pair, the frame's mean V and its stored over/under-exposed fractions."""

    v_hist: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    mean_v: list[float] = field(default_factory=list)
    over_frac: list[float] = field(default_factory=list)
    under_frac: list[float] = field(default_factory=list)

    @property
    def pairs(self) -> int:
        return len(self.mean_v)

    def to_dict(self) -> dict[str, Any]:
        """Summary numbers (the ones the exposure figure draws)."""
        n_px = max(int(self.v_hist.sum()), 1)
        v = np.asarray(self.mean_v, np.float64)
        binned = self.v_hist.reshape(V_BINS, -1).sum(1)
        mean_hist = np.histogram(v, bins=MEAN_V_BINS, range=(0.0, 1.0))[0]
        q = (np.percentile(v, [5, 50, 95]) if v.size else np.full(3, np.nan)).tolist()
        return {
            "pairs": self.pairs,
            "frame_mean_v": {"mean": _num(v.mean() if v.size else np.nan), "p05": _num(q[0]),
                             "p50": _num(q[1]), "p95": _num(q[2])},
            "mean_overexposed_frac": _num(np.mean(self.over_frac) if self.over_frac else np.nan),
            "mean_underexposed_frac": _num(np.mean(self.under_frac) if self.under_frac
                                           else np.nan),
            "pixel_v_hist": [float(c) / n_px for c in binned],
            "frame_mean_v_hist": [int(c) for c in mean_hist],
        }


def _num(x: float | np.floating) -> float | None:
    """JSON-safe float (NaN, for an empty condition, becomes null)."""
    x = float(x)
    return None if np.isnan(x) else x


@dataclass
class DatasetStats:
    class_pixels: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, np.int64))
    #: labelled pixels per class of the day and the night pairs (by the pairs' is_night tag)
    class_pixels_by_condition: dict[str, np.ndarray] = field(default_factory=lambda: {
        c: np.zeros(NUM_CLASSES, np.int64) for c in CLASS_CONDITIONS[1:]})
    labelled_by_condition: dict[str, int] = field(default_factory=lambda: {
        c: 0 for c in CLASS_CONDITIONS[1:]})
    ignore_pixels: int = 0
    pairs: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (split, scene, tod)
    labelled: int = 0
    total: int = 0
    over_sum: float = 0.0
    under_sum: float = 0.0
    over_pairs: int = 0  # pairs with > 5 % over-exposed pixels
    under_pairs: int = 0
    night_pairs: int = 0
    sequences: int = 0
    exposure: dict[str, ExposureStats] = field(default_factory=lambda: {
        c: ExposureStats() for c in EXPOSURE_CONDITIONS})
    #: the (alpha, beta) HSV V thresholds the files' condition tags were computed with
    thresholds: set[tuple[float, float]] = field(default_factory=set)

    def class_pixels_of(self, condition: str) -> np.ndarray:
        return self.class_pixels if condition == "all" else self.class_pixels_by_condition[condition]

    def labelled_of(self, condition: str) -> int:
        return self.labelled if condition == "all" else self.labelled_by_condition[condition]

    def to_dict(self) -> dict:
        n = max(self.total, 1)
        labelled_px = int(self.class_pixels.sum())
        alpha, beta = self.threshold_values()
        return {
            "sequences": self.sequences, "pairs": self.total, "labelled_pairs": self.labelled,
            "class_pixels": {TRAIN_ID_NAMES[i]: int(v) for i, v in enumerate(self.class_pixels)},
            "class_fraction": {TRAIN_ID_NAMES[i]: float(v) / max(labelled_px, 1)
                               for i, v in enumerate(self.class_pixels)},
            "class_pixels_by_condition": {
                c: {"labelled_pairs": self.labelled_by_condition[c],
                    "class_pixels": {TRAIN_ID_NAMES[i]: int(v) for i, v in enumerate(px)}}
                for c, px in self.class_pixels_by_condition.items()},
            "ignore_pixels": self.ignore_pixels,
            "pairs_by_split_scene_time": {"/".join(k): v for k, v in sorted(self.pairs.items())},
            "mean_overexposed_frac": self.over_sum / n, "mean_underexposed_frac": self.under_sum / n,
            "pairs_overexposed_gt5pct": self.over_pairs / n,
            "pairs_underexposed_gt5pct": self.under_pairs / n, "night_fraction": self.night_pairs / n,
            "exposure": {
                "alpha": alpha, "beta": beta, "extreme_pair_frac": EXTREME_PAIR_FRAC,
                "pixel_v_bin_edges": [int(e) for e in np.linspace(0, 256, V_BINS + 1)],
                "frame_mean_v_bin_edges": [round(float(e), 4)
                                           for e in np.linspace(0, 1, MEAN_V_BINS + 1)],
                "conditions": {c: e.to_dict() for c, e in self.exposure.items()},
            },
        }

    def threshold_values(self) -> tuple[float | None, float | None]:
        """The files' alpha and beta when they all agree (None where they differ)."""
        alphas = {a for a, _ in self.thresholds}
        betas = {b for _, b in self.thresholds}
        return (alphas.pop() if len(alphas) == 1 else None if alphas else ALPHA,
                betas.pop() if len(betas) == 1 else None if betas else BETA)

    def add_pair(self, *, is_night: bool, over: float, under: float, rgb: np.ndarray,
                 label: np.ndarray | None) -> None:
        """Count one pair: its condition tags, its image's brightness and, when labelled, its
        label map."""
        self.total += 1
        self.over_sum += over
        self.under_sum += under
        self.over_pairs += int(over > EXTREME_PAIR_FRAC)
        self.under_pairs += int(under > EXTREME_PAIR_FRAC)
        self.night_pairs += int(is_night)
        tod = "night" if is_night else "day"
        conds = ["all", tod]
        if over > EXTREME_PAIR_FRAC:
            conds.append("over-exposed")
        if under > EXTREME_PAIR_FRAC:
            conds.append("under-exposed")
        v8 = value8(rgb)
        hist = np.bincount(v8.ravel(), minlength=256)
        mean_v = float(np.dot(hist, np.arange(256))) / max(v8.size, 1) / 255.0
        for c in conds:
            e = self.exposure[c]
            e.v_hist += hist
            e.mean_v.append(mean_v)
            e.over_frac.append(over)
            e.under_frac.append(under)
        if label is not None:
            counts = np.bincount(label.ravel(), minlength=256)
            self.class_pixels += counts[:NUM_CLASSES]
            self.class_pixels_by_condition[tod] += counts[:NUM_CLASSES]
            self.ignore_pixels += int(counts[255])
            self.labelled += 1
            self.labelled_by_condition[tod] += 1


def split_dirs(root: Path) -> list[Path]:
    root = Path(root)
    if (root / "index.json").is_file():
        return [root]
    out = [root / s for s in SPLITS if (root / s / "index.json").is_file()]
    if not out:
        raise FileNotFoundError(f"{root}: no index.json here nor in train/val/test (is this an "
                                "`rpea build` output?)")
    return out


def _sequences(root: Path) -> list[tuple[Path, dict]]:
    return [(d, s) for d in split_dirs(root)
            for s in json.loads((d / "index.json").read_text())["sequences"]]


def collect(root: Path, progress: bool = True) -> DatasetStats:
    """Statistics of every pair under `root` (a dataset or one split's folder), read one pair at
    a time; a progress bar on a terminal (reading every image takes a while on a full dataset)."""
    from tqdm import tqdm

    seqs = _sequences(root)
    st = DatasetStats()
    total = sum(int(s.get("num_pairs", 0)) for _, s in seqs)
    with tqdm(total=total, desc="rpea stats", unit="pair", leave=False,
              disable=None if progress else True) as bar:
        for d, s in seqs:
            for _ in _collect_sequence(st, d, s):
                bar.update(1)
    return st


def _collect_sequence(st: DatasetStats, d: Path, s: dict) -> Iterator[None]:
    """Add one sequence file's pairs to `st`, yielding after each pair (for the progress bar)."""
    from dataset.reader import open_sequence_file

    st.sequences += 1
    with open_sequence_file(d / s["file"]) as f:
        n = f["images"].shape[0]
        scene = str(f.attrs.get("scene", s.get("scene", "?")))
        tod = str(f.attrs.get("time_of_day", s.get("time_of_day", "?")))
        key = (d.name, scene, tod)
        st.pairs[key] = st.pairs.get(key, 0) + n
        st.thresholds.add((float(f.attrs.get("alpha", ALPHA)), float(f.attrs.get("beta", BETA))))
        p = f["pairs"]
        has = p["has_label"][()]
        over, under = p["overexposed_frac"][()], p["underexposed_frac"][()]
        night = p["is_night"][()]
        images, labels = f["images"], f["labels"]
        for i in range(n):
            st.add_pair(is_night=bool(night[i]), over=float(over[i]), under=float(under[i]),
                        rgb=images[i], label=labels[i] if has[i] else None)
            yield


def table(st: DatasetStats) -> str:
    """Markdown tables of the statistics."""
    d = st.to_dict()
    conds = [c for c in CLASS_CONDITIONS if st.labelled_of(c)]
    fracs = {c: st.class_pixels_of(c) / max(int(st.class_pixels_of(c).sum()), 1) for c in conds}
    lines = [f"sequences: {st.sequences}, pairs: {st.total}, labelled: {st.labelled}", "",
             "| class | pixels | fraction |" + "".join(f" {c} |" for c in conds[1:]),
             "|---|---:|---:|" + "---:|" * len(conds[1:])]
    for i, name in enumerate(TRAIN_ID_NAMES):
        lines.append(f"| {name} | {d['class_pixels'][name]} | {d['class_fraction'][name]:.4%} |"
                     + "".join(f" {fracs[c][i]:.4%} |" for c in conds[1:]))
    lines += ["", "| split | scene | time of day | pairs |", "|---|---|---|---:|"]
    for (split, scene, tod), n in sorted(st.pairs.items()):
        lines.append(f"| {split} | {scene} | {tod} | {n} |")
    lines += ["", "| condition | value |", "|---|---:|",
              f"| mean over-exposed pixel fraction | {d['mean_overexposed_frac']:.4f} |",
              f"| mean under-exposed pixel fraction | {d['mean_underexposed_frac']:.4f} |",
              f"| pairs > 5 % over-exposed | {d['pairs_overexposed_gt5pct']:.2%} |",
              f"| pairs > 5 % under-exposed | {d['pairs_underexposed_gt5pct']:.2%} |",
              f"| night pairs | {d['night_fraction']:.2%} |"]
    ex = d["exposure"]
    lines += ["", f"Exposure per condition (HSV V = max(R, G, B) / 255; under-exposed V < "
              f"{_thr(ex['alpha'])}, over-exposed V > {_thr(ex['beta'])}; a pair is over- or "
              f"under-exposed when more than {EXTREME_PAIR_FRAC:.0%} of its pixels are):", "",
              "| condition | pairs | frame mean V | its p5 / p50 / p95 | under-exposed px | "
              "over-exposed px |", "|---|---:|---:|---:|---:|---:|"]
    for c, e in ex["conditions"].items():
        m = e["frame_mean_v"]
        lines.append(f"| {c} | {e['pairs']} | {_fmt(m['mean'], '.3f')} | "
                     f"{_fmt(m['p05'], '.3f')} / {_fmt(m['p50'], '.3f')} / "
                     f"{_fmt(m['p95'], '.3f')} | {_fmt(e['mean_underexposed_frac'], '.2%')} | "
                     f"{_fmt(e['mean_overexposed_frac'], '.2%')} |")
    return "\n".join(lines) + "\n"


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _thr(x: float | None) -> str:
    return "(differs between files)" if x is None else f"{x:g}"
