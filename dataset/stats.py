"""Dataset statistics as in the paper's Fig. 3: labelled pixels per class (log scale, 3b), pairs
per scene and time of day (3c), and the condition fractions (over/under-exposure, night).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import hdf5plugin  # noqa: F401
import numpy as np

from dataset.labels import PALETTE, TRAIN_ID_NAMES
from dataset.rpea_format import NUM_CLASSES, TIMES_OF_DAY
from dataset.splits import SPLITS


@dataclass
class DatasetStats:
    class_pixels: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, np.int64))
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

    def to_dict(self) -> dict:
        n = max(self.total, 1)
        labelled_px = int(self.class_pixels.sum())
        return {
            "sequences": self.sequences, "pairs": self.total, "labelled_pairs": self.labelled,
            "class_pixels": {TRAIN_ID_NAMES[i]: int(v) for i, v in enumerate(self.class_pixels)},
            "class_fraction": {TRAIN_ID_NAMES[i]: float(v) / max(labelled_px, 1)
                               for i, v in enumerate(self.class_pixels)},
            "ignore_pixels": self.ignore_pixels,
            "pairs_by_split_scene_time": {"/".join(k): v for k, v in sorted(self.pairs.items())},
            "mean_overexposed_frac": self.over_sum / n, "mean_underexposed_frac": self.under_sum / n,
            "pairs_overexposed_gt5pct": self.over_pairs / n,
            "pairs_underexposed_gt5pct": self.under_pairs / n, "night_fraction": self.night_pairs / n,
        }


def split_dirs(root: Path) -> list[Path]:
    root = Path(root)
    if (root / "index.json").is_file():
        return [root]
    out = [root / s for s in SPLITS if (root / s / "index.json").is_file()]
    if not out:
        raise FileNotFoundError(f"{root}: no index.json here nor in train/val/test (is this an "
                                "`rpea build` output?)")
    return out


def collect(root: Path) -> DatasetStats:
    from dataset.reader import open_sequence_file

    st = DatasetStats()
    for d in split_dirs(root):
        index = json.loads((d / "index.json").read_text())
        for s in index["sequences"]:
            st.sequences += 1
            with open_sequence_file(d / s["file"]) as f:
                n = f["images"].shape[0]
                scene = str(f.attrs.get("scene", s.get("scene", "?")))
                tod = str(f.attrs.get("time_of_day", s.get("time_of_day", "?")))
                key = (d.name, scene, tod)
                st.pairs[key] = st.pairs.get(key, 0) + n
                st.total += n
                p = f["pairs"]
                has = p["has_label"][()]
                over, under = p["overexposed_frac"][()], p["underexposed_frac"][()]
                st.over_sum += float(over.sum())
                st.under_sum += float(under.sum())
                st.over_pairs += int((over > 0.05).sum())
                st.under_pairs += int((under > 0.05).sum())
                st.night_pairs += int(p["is_night"][()].sum())
                for i in np.flatnonzero(has):
                    c = np.bincount(f["labels"][int(i)].ravel(), minlength=256)
                    st.class_pixels += c[:NUM_CLASSES]
                    st.ignore_pixels += int(c[255])
                    st.labelled += 1
    return st


def table(st: DatasetStats) -> str:
    """Markdown tables of the statistics."""
    d = st.to_dict()
    lines = [f"sequences: {st.sequences}, pairs: {st.total}, labelled: {st.labelled}", "",
             "| class | pixels | fraction |", "|---|---:|---:|"]
    for name in TRAIN_ID_NAMES:
        lines.append(f"| {name} | {d['class_pixels'][name]} | {d['class_fraction'][name]:.4%} |")
    lines += ["", "| split | scene | time of day | pairs |", "|---|---|---|---:|"]
    for (split, scene, tod), n in sorted(st.pairs.items()):
        lines.append(f"| {split} | {scene} | {tod} | {n} |")
    lines += ["", "| condition | value |", "|---|---:|",
              f"| mean over-exposed pixel fraction | {d['mean_overexposed_frac']:.4f} |",
              f"| mean under-exposed pixel fraction | {d['mean_underexposed_frac']:.4f} |",
              f"| pairs > 5 % over-exposed | {d['pairs_overexposed_gt5pct']:.2%} |",
              f"| pairs > 5 % under-exposed | {d['pairs_underexposed_gt5pct']:.2%} |",
              f"| night pairs | {d['night_fraction']:.2%} |"]
    return "\n".join(lines) + "\n"


def figures(st: DatasetStats) -> dict[str, np.ndarray]:
    """RGB images: `class_pixels` (Fig. 3b, log scale) and `scene_time` (Fig. 3c)."""
    from dataset.visual import bar_chart

    total = max(int(st.class_pixels.sum()), 1)
    frac = st.class_pixels / total
    fig_b = bar_chart(frac, list(TRAIN_ID_NAMES), "Labelled pixels per class (fraction, log scale)",
                      log=True, colors=PALETTE)
    scenes = sorted({k[1] for k in st.pairs})
    tods = [t for t in TIMES_OF_DAY if any(k[2] == t for k in st.pairs)] or ["day"]
    grid = np.zeros((len(scenes), len(tods)))
    for (_, scene, tod), n in st.pairs.items():
        if tod in tods:
            grid[scenes.index(scene), tods.index(tod)] += n
    fig_c = bar_chart(grid, scenes or ["-"], "Pairs per scene and time of day", series=tods,
                      size=(max(420, 120 * max(len(scenes), 1) + 200), 380))
    return {"class_pixels": fig_b, "scene_time": fig_c}
