"""Semantic labels: the Cityscapes id tables, label validation, and annotation PNG import.

Labels in RPEA files are Cityscapes' 19 train ids with 255 = ignore. Annotations arrive as PNGs of
Cityscapes label ids (0..33, as the official tools write) or train ids, optionally through a
mapping file (YAML `{source id: train id}`) for other tool chains.

Annotation files are found by frame id, which is stable across rebuilds:
`<labels dir>/<sequence>/frame_<frame id>[any suffix].png`, e.g. `frame_00000042_labelIds.png`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from dataset.rpea_format import IGNORE, NUM_CLASSES

TRAIN_ID_NAMES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
                  "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car", "truck",
                  "bus", "train", "motorcycle", "bicycle")
#: The Cityscapes colour of each train id (for figures and overlays).
PALETTE = np.array([
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32)], np.uint8)
#: Cityscapes label id -> train id (ids 0..33; everything not evaluated maps to 255).
LABEL_TO_TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                  24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
NUM_LABEL_IDS = 34
FRAME_FILE = re.compile(r"frame_(\d+)")


class LabelError(ValueError):
    """A label file is unusable; the message names the file and the problem."""


def colorize(label: np.ndarray) -> np.ndarray:
    """Train ids (H, W) -> RGB (H, W, 3) uint8; ignore is black."""
    lut = np.zeros((256, 3), np.uint8)
    lut[:NUM_CLASSES] = PALETTE
    return lut[label]


def lookup_table(ids: str, mapping: dict[int, int] | None = None) -> np.ndarray:
    """(256,) int16 source value -> train id; -1 marks values that must not occur."""
    lut = np.full(256, -1, np.int16)
    if mapping is not None:
        for src, dst in mapping.items():
            src, dst = int(src), int(dst)
            if not (0 <= src < 256) or not (0 <= dst < NUM_CLASSES or dst == IGNORE):
                raise LabelError(f"mapping {src} -> {dst}: source must be 0..255 and target a "
                                 f"train id 0..{NUM_CLASSES - 1} or 255")
            lut[src] = dst
        return lut
    if ids == "train":
        lut[:NUM_CLASSES] = np.arange(NUM_CLASSES)
        lut[IGNORE] = IGNORE
    elif ids == "label":
        lut[:NUM_LABEL_IDS] = IGNORE
        for src, dst in LABEL_TO_TRAIN.items():
            lut[src] = dst
        lut[IGNORE] = IGNORE  # some tools write 255 for "unlabelled" (license plate id -1)
    else:
        raise LabelError(f"unknown id kind {ids!r} (use 'label' or 'train')")
    return lut


def load_mapping(path: str | Path) -> dict[int, int]:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise LabelError(f"{path}: cannot read the mapping ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict) or not data:
        raise LabelError(f"{path}: expected a YAML mapping 'source id: train id'")
    try:
        return {int(k): int(v) for k, v in data.items()}
    except (TypeError, ValueError):
        raise LabelError(f"{path}: keys and values must be integers") from None


def convert(label: np.ndarray, lut: np.ndarray, where: str) -> np.ndarray:
    """Apply the table; any value the table does not allow is an error naming `where`."""
    out = lut[label.astype(np.uint8)]
    if np.any(out < 0):
        bad = np.unique(label[out < 0])[:8].tolist()
        raise LabelError(f"{where}: values {bad} are not valid ids for this mapping")
    return out.astype(np.uint8)


def read_label_png(path: str | Path, shape_hw: tuple[int, int], lut: np.ndarray) -> np.ndarray:
    """Read and validate one annotation PNG: single channel, the grid's size, known ids."""
    import cv2

    path = Path(path)
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise LabelError(f"{path}: not a readable image")
    if img.ndim == 3:
        if img.shape[2] >= 3 and np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(
                img[..., 1], img[..., 2]):
            img = img[..., 0]
        else:
            raise LabelError(f"{path}: a colour image; export label/train ids as a one-channel "
                             "PNG, not colours")
    if img.dtype != np.uint8:
        if img.max() > 255:
            raise LabelError(f"{path}: {img.dtype} values up to {int(img.max())}, expected ids <= 255")
        img = img.astype(np.uint8)
    if img.shape != tuple(shape_hw):
        raise LabelError(f"{path}: size {img.shape[1]}x{img.shape[0]}, expected the aligned grid "
                         f"{shape_hw[1]}x{shape_hw[0]}")
    return convert(img, lut, str(path))


def find_label_files(folder: str | Path) -> dict[int, Path]:
    """frame id -> annotation file in one sequence's folder (duplicates are an error)."""
    folder = Path(folder)
    out: dict[int, Path] = {}
    if not folder.is_dir():
        return out
    for p in sorted(folder.glob("*.png")):
        m = FRAME_FILE.search(p.name)
        if not m:
            continue
        fid = int(m.group(1))
        if fid in out:
            raise LabelError(f"{folder}: two annotations for frame {fid}: {out[fid].name}, {p.name}")
        out[fid] = p
    return out


def validate_train_ids(label: np.ndarray, where: str) -> np.ndarray:
    """Ground-truth train ids must be 0..18 or 255."""
    bad = (label >= NUM_CLASSES) & (label != IGNORE)
    if bad.any():
        raise LabelError(f"{where}: values {np.unique(label[bad])[:8].tolist()} are not train ids")
    return label.astype(np.uint8, copy=False)
