"""The RPEA dataset in the folder layout mmsegmentation's `CityscapesDataset` reads.

Why: to train or evaluate any mmsegmentation model on the RGB side of the dataset (baselines,
SegFormer fine-tuning) without a reader of our own in that code base. The layout and suffixes
are those of mmsegmentation (`mmseg/datasets/cityscapes.py`: `img_suffix='_leftImg8bit.png'`,
`seg_map_suffix='_gtFine_labelTrainIds.png'`; configs point at `leftImg8bit/<split>` and
`gtFine/<split>`), and what its `tools/dataset_converters/cityscapes.py` leaves behind (train ids,
255 = ignore, one folder per city, `<split>.txt` lists of `city/name`):

    OUT/leftImg8bit/<split>/<sequence>/<sequence>_<frame id>_leftImg8bit.png         RGB
    OUT/gtFine/<split>/<sequence>/<sequence>_<frame id>_gtFine_labelTrainIds.png     uint8 train ids
    OUT/<split>.txt                                                                  <sequence>/<name>

The sequence plays the city. Only labelled pairs by default (an unlabelled pair's map is all 255).
Every PNG is published atomically, and a file already there with the right pixels is left as it
is, so an interrupted export is finished by running it again.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from common.atomic import write_bytes_atomic, write_text_atomic
from dataset.reader import RPEAFormatError, RPEASequence, split_files
from dataset.rpea_format import IGNORE, NUM_CLASSES
from dataset.splits import SPLITS

FORMATS = ("cityscapes",)
IMG_DIR, ANN_DIR = "leftImg8bit", "gtFine"
IMG_SUFFIX = "_leftImg8bit.png"
SEG_MAP_SUFFIX = "_gtFine_labelTrainIds.png"


class ExportError(ValueError):
    """Nothing to export, or data that the target format cannot hold (the message says where)."""


@dataclass
class SplitCounts:
    pairs: int = 0  # exported pairs (image + label each)
    written: int = 0  # PNG files written now
    kept: int = 0  # PNG files already there with the right pixels
    unlabelled: int = 0  # pairs left out (no label)


@dataclass
class ExportSummary:
    out: Path
    splits: dict[str, SplitCounts] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def find_splits(root: str | os.PathLike[str], splits: Iterable[str] | None = None
                ) -> dict[str, list[Path]]:
    """{split: sequence files} under `root` (a dataset root, or one split's folder)."""
    root = Path(root)
    wanted = tuple(splits) if splits else SPLITS
    found: dict[str, list[Path]] = {}
    if root.name in SPLITS and not any((root / s).is_dir() for s in SPLITS):
        candidates = {root.name: root.parent} if root.name in wanted else {}
    else:
        candidates = {s: root for s in wanted}
    for split, base in candidates.items():
        try:
            found[split] = split_files(base, split)
        except FileNotFoundError:
            continue
        except RPEAFormatError as err:
            raise ExportError(str(err)) from None
    if not found:
        which = "|".join(wanted)
        raise ExportError(f"{root}: no RPEA data here (expected {root}/{which}/<sequence>.h5, "
                          "what rpea build writes)")
    return found


def _unchanged(path: Path, expected: np.ndarray) -> bool:
    """Whether `path` decodes to exactly `expected` (what makes a re-run skip it)."""
    if not path.is_file():
        return False
    have = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return have is not None and have.shape == expected.shape and bool(np.array_equal(have, expected))


def _publish_png(path: Path, array: np.ndarray) -> bool:
    """Write `array` (BGR or single channel) as PNG atomically unless it is already there;
    True when written."""
    if _unchanged(path, array):
        return False
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    write_bytes_atomic(path, buf.tobytes())
    return True


def _check_label(label: np.ndarray, where: str) -> None:
    bad = (label >= NUM_CLASSES) & (label != IGNORE)
    if bad.any():
        values = sorted(int(v) for v in np.unique(label[bad]))[:5]
        raise ExportError(f"{where}: label values {values} are not train ids (0..{NUM_CLASSES - 1}, "
                          f"{IGNORE} = ignore)")


def _pair_names(seq: RPEASequence, name: str) -> list[str]:
    ids = [int(v) for v in seq.pairs["frame_id"]]
    if len(set(ids)) != len(ids):
        raise ExportError(f"{seq.path}: frame ids repeat, so they cannot name the files")
    return [f"{name}_{fid:06d}" for fid in ids]


def export_cityscapes(root: str | os.PathLike[str], out: str | os.PathLike[str], *,
                      splits: Iterable[str] | None = None, include_unlabelled: bool = False,
                      progress: bool = True) -> ExportSummary:
    """Write the dataset under `root` (every split, or `splits`) to `out` in the Cityscapes
    layout above; returns what was written and kept."""
    from tqdm import tqdm

    out = Path(out)
    found = find_splits(root, splits)
    try:
        seqs = {split: [RPEASequence(f) for f in files] for split, files in found.items()}
    except (RPEAFormatError, OSError) as err:
        raise ExportError(str(err)) from None
    for ss in seqs.values():
        for s in ss:
            s.close()  # reopened one at a time below (a dataset may have hundreds of sequences)
    summary = ExportSummary(out)

    def wanted(seq: RPEASequence) -> list[int]:
        return [i for i in range(seq.num_pairs) if include_unlabelled or seq.pairs["has_label"][i]]

    total = sum(len(wanted(s)) for ss in seqs.values() for s in ss)
    bar = tqdm(total=total, unit="pair", desc="export cityscapes",
               disable=None if progress else True)  # None: no bar off a terminal
    try:
        for split, sequences in seqs.items():
            counts = summary.splits[split] = SplitCounts()
            listing: list[str] = []
            for seq in sequences:
                name = str(seq.attrs.get("sequence") or seq.path.stem)
                names = _pair_names(seq, name)
                img_dir = out / IMG_DIR / split / name
                ann_dir = out / ANN_DIR / split / name
                todo = wanted(seq)
                counts.unlabelled += seq.num_pairs - len(todo)
                for i in todo:
                    label = seq.label(i)
                    _check_label(label, f"{seq.path} pair {i}")
                    bgr = cv2.cvtColor(seq.image(i), cv2.COLOR_RGB2BGR)
                    for path, arr in ((img_dir / f"{names[i]}{IMG_SUFFIX}", bgr),
                                      (ann_dir / f"{names[i]}{SEG_MAP_SUFFIX}", label)):
                        if _publish_png(path, arr):
                            counts.written += 1
                        else:
                            counts.kept += 1
                    listing.append(f"{name}/{names[i]}")
                    counts.pairs += 1
                    bar.update()
                seq.close()
            write_text_atomic(out / f"{split}.txt", "".join(f"{n}\n" for n in listing))
            stale = _stale(out / IMG_DIR / split, set(listing))
            if stale:
                summary.notes.append(f"{split}: {stale} image(s) under {IMG_DIR}/{split} from an "
                                     "earlier export are not in the dataset now (left in place; "
                                     f"mmseg would read them, {split}.txt lists the current ones)")
    finally:
        bar.close()
        for ss in seqs.values():
            for s in ss:
                s.close()
    return summary


def _stale(img_split_dir: Path, current: set[str]) -> int:
    """Images under `leftImg8bit/<split>` that this export did not produce."""
    n = 0
    for p in img_split_dir.glob(f"*/*{IMG_SUFFIX}"):
        if f"{p.parent.name}/{p.name[:-len(IMG_SUFFIX)]}" not in current:
            n += 1
    return n

