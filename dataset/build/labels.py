"""The labels and instance masks of each pair: annotation PNGs first, else the simulator's
ground truth, warped to the aligned grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dataset.build.options import BuildOptions
from dataset.labels import (
    find_label_files,
    load_mapping,
    lookup_table,
    read_label_png,
    validate_train_ids,
)
from rig.ground_truth import GroundTruthLabels
from rig.sync import SyncResult


class LabelSource:
    """Labels and instance masks of each pair: annotation PNGs first, else simulator truth."""
    def __init__(self, reader: Any, sequence: str, opts: BuildOptions, align: Any,
                 sync: SyncResult) -> None:
        self.align = align
        self.sync = sync
        self.kind = "none"
        self.missing = 0
        self.shape = (align.height, align.width)
        self._files: dict[int, Path] = {}
        if opts.labels_dir is not None:
            mapping = None
            if opts.label_mapping is not None:
                mapping = load_mapping(opts.label_mapping)
            self._lut = lookup_table(opts.label_ids, mapping)
            self._files = find_label_files(Path(opts.labels_dir) / sequence)
            if self._files:
                self.kind = "annotations"
        truth = reader.ground_truth
        self._gt: GroundTruthLabels | None = truth.open_labels() if truth is not None else None
        if self._gt is not None and self.kind == "none":
            self.kind = "simulator"

    def close(self) -> None:
        if self._gt is not None:
            self._gt.close()
            self._gt = None

    def label(self, i: int) -> np.ndarray | None:
        fid = int(self.sync.frame_id[i])
        if fid in self._files:
            return read_label_png(self._files[fid], self.shape, self._lut)
        if self._gt is not None:
            row = self._gt.row(int(self.sync.pulse_index[i]))
            if row is not None:
                raw = validate_train_ids(self._gt.labels(row), f"{self._gt.path} row {row}")
                return self.align.label(raw, 255)
        self.missing += 1
        return None

    def mask(self, i: int) -> np.ndarray | None:
        if self._gt is None:
            return None
        row = self._gt.row(int(self.sync.pulse_index[i]))
        if row is None:
            return None
        return self.align.label(self._gt.instances(row), 0)
