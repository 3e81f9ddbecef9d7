"""The annotation round trip: export what annotators see, import what they drew.

`export_annotation` writes, per pair, RGB | event frame | overlay side by side (paper section 3:
annotators saw both modalities and their overlay) plus the bare RGB image, named by frame id.
`import_labels` reads annotation PNGs (`<labels>/<sequence>/frame_<id>*.png`, Cityscapes label
ids or train ids, or any ids through a mapping file), validates them and writes them into the
sequence files (copy + modify + rename, so a failure leaves the original untouched), then updates
`has_label` and the index (label counts, checksums).

`PreAnnotationWriter` writes the other direction's starting point: a model's predictions as label
PNGs in exactly the layout and ids `import_labels` reads (`cacd predict --pre-annotations`), so
annotators correct a prediction instead of drawing every pixel.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import hdf5plugin  # noqa: F401
import numpy as np

from dataset.labels import (
    LABEL_TO_TRAIN,
    LabelError,
    find_label_files,
    lookup_table,
    read_label_png,
)
from dataset.reader import open_sequence_file
from dataset.rpea_format import (
    IGNORE,
    NUM_CLASSES,
    edit_sequence,
    grid_positions,
    nearest_grid_pixels,
    rectify_map_of,
    sha256_file,
    update_index,
)
from dataset.stats import split_dirs
from dataset.visual import event_image, label_overlay, overlay, panel, save_rgb


def frame_stem(frame_id: int) -> str:
    """`frame_<id>`, the start of every annotation file name of a pair: the export names its
    pictures so, and the import finds label files by it (`dataset.labels.FRAME_FILE`)."""
    return f"frame_{int(frame_id):08d}"


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
                stem = frame_stem(int(fids[i]))
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


#: Per id kind of `import_labels`: the pre-annotation file's suffix, and the value it writes where
#: a pixel is left to the annotator (Cityscapes label id 0 "unlabeled", train id 255): both are
#: read back as ignore.
PRE_ANNOTATION_IDS: dict[str, tuple[str, int]] = {"label": ("_labelIds", 0), "train": ("_trainIds", IGNORE)}
PRE_ANNOTATION_MANIFEST = "pre_annotations.json"


def train_to_ids(train: np.ndarray, ids: str) -> np.ndarray:
    """Train ids (255 = ignore) as the values `import_labels(root, dir, ids=ids)` turns back into
    exactly these train ids: the inverse of `dataset.labels.lookup_table(ids)`."""
    if ids not in PRE_ANNOTATION_IDS:
        raise ValueError(f"unknown id kind {ids!r} (use {' or '.join(PRE_ANNOTATION_IDS)})")
    train = np.asarray(train)
    bad = (train >= NUM_CLASSES) & (train != IGNORE)
    if bad.any():
        raise ValueError(f"values {np.unique(train[bad])[:8].tolist()} are not train ids")
    if ids == "train":
        return train.astype(np.uint8)
    lut = np.full(256, PRE_ANNOTATION_IDS["label"][1], np.uint8)
    for label_id, train_id in LABEL_TO_TRAIN.items():
        lut[train_id] = label_id
    return lut[train.astype(np.uint8)]


class PreAnnotationWriter:
    """A model's predictions as label PNGs that `import_labels` takes back unchanged:
    `<out>/<sequence>/frame_<id><suffix>.png` (one channel, the aligned grid's size, ids of
    `ids`), the same sequence folders and frame names as `export_annotation`, plus
    `<out>/pre_annotations.json` saying they are predictions, which model made them from what,
    and the import command.

        with PreAnnotationWriter("pre/", ids="label", about={...}) as w:
            w.add("night_01", frame_id, train_ids, confidence)

    Everything is written into a hidden folder beside `out`, renamed to `out` when the block ends
    without an error (removed otherwise): annotators never open half a set, and an existing
    non-empty `out` (labels being corrected) is refused, never overwritten. Pixels whose
    confidence is below `min_confidence` are left to the annotator (ignore).
    """

    def __init__(self, out: str | os.PathLike[str], *, ids: str = "label",
                 min_confidence: float = 0.0, about: dict[str, Any] | None = None,
                 import_into: str = "DATA") -> None:
        if ids not in PRE_ANNOTATION_IDS:
            raise ValueError(f"unknown id kind {ids!r} (use {' or '.join(PRE_ANNOTATION_IDS)})")
        if not 0.0 <= float(min_confidence) <= 1.0:
            raise ValueError(f"min_confidence {min_confidence} is not within 0..1")
        self.out = Path(out)
        self.ids, self.min_confidence = ids, float(min_confidence)
        self.suffix, self.unlabelled_value = PRE_ANNOTATION_IDS[ids]
        self.about = dict(about or {})
        self.import_into = import_into
        self.sequences: dict[str, dict[str, Any]] = {}
        self._stage: Path | None = None

    @staticmethod
    def check_target(out: str | os.PathLike[str]) -> None:
        """Refuse an `out` that is a file or a folder with anything in it (FileExistsError)."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise FileExistsError(f"{out}: a file, not a folder; give the pre-annotations a new "
                                  "folder")
        if out.is_dir() and any(out.iterdir()):
            raise FileExistsError(f"{out}: not empty; give the pre-annotations a new (or empty) "
                                  "folder, so no label being corrected is overwritten")

    def __enter__(self) -> PreAnnotationWriter:
        self.check_target(self.out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._stage = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".partial",
                                            dir=self.out.parent))
        return self

    def add(self, sequence: str, frame_id: int, train_ids: np.ndarray,
            confidence: np.ndarray | None = None) -> Path:
        """Write one pair's prediction (train ids (H, W) on the aligned grid; `confidence` (H, W)
        the predicted class's probability); returns the path it will have once published."""
        import cv2

        from common.atomic import fsync_file

        if self._stage is None:
            raise RuntimeError("PreAnnotationWriter: use it in a `with` block")
        label = np.asarray(train_ids, np.uint8)
        unsure = 0
        if confidence is not None and self.min_confidence > 0:
            low = np.asarray(confidence) < self.min_confidence
            label = np.where(low, np.uint8(IGNORE), label)
            unsure = int(low.sum())
        name = f"{frame_stem(frame_id)}{self.suffix}.png"
        folder = self._stage / sequence
        folder.mkdir(exist_ok=True)
        if (folder / name).exists():
            raise ValueError(f"{sequence}: two pairs with frame id {int(frame_id)}")
        if not cv2.imwrite(str(folder / name), train_to_ids(label, self.ids)):
            raise OSError(f"{self.out / sequence / name}: could not write the PNG")
        fsync_file(folder / name)
        entry = self.sequences.setdefault(sequence, {"grid_wh": [int(label.shape[1]),
                                                                 int(label.shape[0])],
                                                     "frame_ids": [], "pixels": 0,
                                                     "unsure_pixels": 0})
        entry["frame_ids"].append(int(frame_id))
        entry["pixels"] += int(label.size)
        entry["unsure_pixels"] += unsure
        return self.out / sequence / name

    def manifest(self) -> dict[str, Any]:
        """What `pre_annotations.json` says."""
        return {
            "what": "pre-annotations: a model's predictions, not ground truth; correct them, then "
                    "import them with rpea import-labels",
            "ids": self.ids,
            "file_name": f"<sequence>/frame_<frame id>{self.suffix}.png",
            "not_annotated_value": self.unlabelled_value,
            "min_confidence": self.min_confidence,
            "import": f"rpea import-labels {self.import_into} --labels {self.out} --ids {self.ids}",
            "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            **self.about,
            "files": sum(len(s["frame_ids"]) for s in self.sequences.values()),
            "sequences": {name: {**s, "unsure_fraction": round(s["unsure_pixels"] / max(1, s["pixels"]), 6)}
                          for name, s in sorted(self.sequences.items())},
        }

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        from common.atomic import current_umask, fsync_dir, write_json_atomic

        stage, self._stage = self._stage, None
        if stage is None:
            return
        if exc_type is not None:
            shutil.rmtree(stage, ignore_errors=True)
            return
        try:
            write_json_atomic(stage / PRE_ANNOTATION_MANIFEST, self.manifest())
            os.chmod(stage, 0o777 & ~current_umask())  # mkdtemp's 0o700 hides it from colleagues
            os.replace(stage, self.out)  # replaces an empty folder, never a non-empty one
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        fsync_dir(self.out.parent)
