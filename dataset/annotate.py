"""The annotation round trip: export what annotators see, import what they drew.

`export_annotation` writes, per pair, RGB | event frame | overlay side by side (paper section 3:
annotators saw both modalities and their overlay) plus the bare RGB image, named by frame id.
`import_labels` reads annotation PNGs (`<labels>/<sequence>/frame_<id>*.png`, Cityscapes label
ids or train ids, or any ids through a mapping file), validates them and writes them into the
sequence files (copy + modify + rename, so a failure leaves the original untouched), then updates
`has_label` and the index (label counts, checksums).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np

from dataset.labels import LabelError, find_label_files, lookup_table, read_label_png
from dataset.reader import open_sequence_file
from dataset.rpea_format import (
    edit_sequence,
    grid_positions,
    nearest_grid_pixels,
    rectify_map_of,
    sha256_file,
    update_index,
)
from dataset.stats import split_dirs
from dataset.visual import event_image, label_overlay, overlay, panel, save_rgb


def iter_sequences(root: Path, split: str | None = None) -> Iterator[tuple[Path, dict]]:
    """(split folder, index entry) of every sequence under `root` (optionally one split)."""
    for d in split_dirs(root):
        if split and d.name != split:
            continue
        for s in json.loads((d / "index.json").read_text())["sequences"]:
            yield d, s


def pair_views(f: h5py.File, i: int) -> dict[str, np.ndarray]:
    """RGB, event picture, overlay (and label overlay if labelled) of pair i."""
    a, b = int(f["pairs/event_idx0"][i]), int(f["pairs/event_idx1"][i])
    rgb = f["images"][i]
    x, y, inside = nearest_grid_pixels(
        *grid_positions(rectify_map_of(f), f["events/x"][a:b], f["events/y"][a:b]), *rgb.shape[:2])
    x, y, p = x[inside], y[inside], f["events/p"][a:b][inside]
    out = {"rgb": rgb, "events": event_image(x, y, p, rgb.shape[:2]),
           "overlay": overlay(rgb, x, y, p)}
    if f["pairs/has_label"][i]:
        out["label"] = label_overlay(rgb, f["labels"][i])
    return out


def export_annotation(root: Path, out_dir: Path, *, split: str | None = None,
                      sequence: str | None = None, every: int = 1, progress: bool = True) -> int:
    """Write `<out>/<sequence>/frame_<id>_annot.png` (+ `_rgb.png`); returns the pair count."""
    from tqdm import tqdm

    jobs = [(d, s) for d, s in iter_sequences(root, split) if not sequence or s["name"] == sequence]
    if sequence and not jobs:
        raise FileNotFoundError(f"{root}: no sequence named {sequence!r}")
    total = sum((s["num_pairs"] + every - 1) // every for _, s in jobs)
    bar = tqdm(total=total, unit="pair", desc="export-annotation",
               disable=None if progress else True)  # None: no bar off a terminal
    n = 0
    for d, s in jobs:
        folder = Path(out_dir) / s["name"]
        folder.mkdir(parents=True, exist_ok=True)
        with open_sequence_file(d / s["file"]) as f:
            fids = f["pairs/frame_id"][()]
            t0, t1 = f["pairs/event_t0_us"][()], f["pairs/event_t1_us"][()]
            for i in range(0, f["images"].shape[0], every):
                v = pair_views(f, i)
                span_ms = (t1[i] - t0[i]) / 1000.0
                img = panel([v["rgb"], v["events"], v["overlay"]],
                            ["RGB", f"events ({span_ms:.0f} ms)", "overlay"])
                stem = f"frame_{int(fids[i]):08d}"
                save_rgb(folder / f"{stem}_annot.png", img)
                save_rgb(folder / f"{stem}_rgb.png", v["rgb"])
                n += 1
                bar.update()
    bar.close()
    return n


def import_labels(root: Path, labels_dir: Path, *, ids: str = "label",
                  mapping: dict[int, int] | None = None, split: str | None = None,
                  progress: bool = True) -> dict[str, int]:
    """Write annotation PNGs into the sequence files; returns labels imported per sequence.

    Every file is validated before anything is written to that sequence; a bad file raises
    `LabelError` naming it and leaves the sequence as it was.
    """
    from tqdm import tqdm

    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir():
        raise FileNotFoundError(f"{labels_dir}: labels folder not found")
    lut = lookup_table(ids, mapping)
    done: dict[str, int] = {}
    for d, s in iter_sequences(root, split):
        files = find_label_files(labels_dir / s["name"])
        if not files:
            continue
        path = d / s["file"]
        with open_sequence_file(path) as f:
            fids = f["pairs/frame_id"][()]
            shape = f["images"].shape[1:3]
        row = {int(v): i for i, v in enumerate(fids)}
        unknown = sorted(set(files) - set(row))
        if unknown:
            raise LabelError(f"{files[unknown[0]]}: frame {unknown[0]} is not a pair of "
                             f"{s['name']} ({len(unknown)} such files)")
        labels = {row[fid]: read_label_png(p, shape, lut) for fid, p in
                  tqdm(sorted(files.items()), desc=f"validate {s['name']}",
                       disable=None if progress else True)}
        with edit_sequence(path) as f:
            has = f["pairs/has_label"][()]
            for i, lab in labels.items():
                f["labels"][i] = lab
                has[i] = 1
            f["pairs/has_label"][...] = has
            labelled = int(has.sum())
        update_index(d, {**s, "num_labelled": labelled, "sha256": sha256_file(path)})
        done[s["name"]] = len(labels)
    return done
