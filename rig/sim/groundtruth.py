"""Writes the simulator's ground truth folder (`ground_truth/` of a session, see
docs/session-format.md; `rig.ground_truth` reads it back, with the file names defined there).

rig.json and scenario.json are written at once (atomically); triggers.csv and labels.h5 grow
while the simulation runs and are flushed as they go, so an interrupted recording keeps them.
"""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path
from typing import Any, TextIO

import h5py
import numpy as np

from common.atomic import write_json_atomic
from rig.geometry import RigGeometry
from rig.ground_truth import (
    LABELS_H5,
    RIG_JSON,
    SCENARIO_JSON,
    TRIGGERS_CSV,
    TRIGGERS_HEADER,
    TRUTH_PULSE_COLUMNS,
)


class GroundTruthWriter:
    """Writes `ground_truth/` for one recording."""

    def __init__(self, gt_dir: str | os.PathLike[str], geometry: RigGeometry,
                 scenario: dict[str, Any]) -> None:
        self.dir = Path(gt_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        write_json_atomic(self.dir / RIG_JSON, geometry.to_dict(), default=str)
        write_json_atomic(self.dir / SCENARIO_JSON, scenario, default=str)
        self._csv: TextIO | None = open(self.dir / TRIGGERS_CSV, "w")  # noqa: SIM115 (closed in close())
        self._csv.write(TRIGGERS_HEADER)
        self._csv.flush()
        self._rows: dict[int, str] = {}
        self._next_row = 0
        fw, fh = geometry.frame.size
        ew, eh = geometry.event.size
        self._h5 = h5py.File(self.dir / LABELS_H5, "w")
        h5 = self._h5
        h5.create_dataset("labels", (0, fh, fw), np.uint8, maxshape=(None, fh, fw),
                          chunks=(1, fh, fw), compression="lzf")
        h5.create_dataset("instances", (0, fh, fw), np.uint16, maxshape=(None, fh, fw),
                          chunks=(1, fh, fw), compression="lzf")
        h5.create_dataset("depth_event_m", (0, eh, ew), np.float16, maxshape=(None, eh, ew),
                          chunks=(1, eh, ew), compression="lzf")
        h5.create_dataset("pulse_index", (0,), np.int64, maxshape=(None,), chunks=(1024,))
        h5.create_dataset("t_mid_true_us", (0,), np.float64, maxshape=(None,), chunks=(1024,))
        h5.attrs["label_set"] = "cityscapes-19 train ids, 255 = ignore"
        h5.attrs["view"] = "frame camera (distorted), at mid-exposure"
        self.frames = 0
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def restart_pulses(self) -> None:
        """The MCU counts pulses from 0 again (a new START)."""
        with self._lock:
            self._flush_rows(force=True)
            self._next_row = 0

    def pulse(self, index: int, t_true_us: int, t_event_us: int, t_frame_ns: int,
              delivered: bool, incomplete: bool, **more: int) -> None:
        """Record the fate of one pulse (rows are written in pulse order); `more`: the later
        columns of `TRUTH_PULSE_COLUMNS` (-1 when not given)."""
        bad = set(more) - set(TRUTH_PULSE_COLUMNS[6:])
        if bad:
            raise ValueError(f"unknown triggers.csv column(s) {sorted(bad)}")
        values = [index, t_true_us, t_event_us, t_frame_ns, int(delivered), int(incomplete)]
        values += [int(more.get(name, -1)) for name in TRUTH_PULSE_COLUMNS[6:]]
        with self._lock:
            if self._csv is None:
                return
            self._rows[index] = ",".join(str(int(v)) for v in values) + "\n"
            self._flush_rows()

    def _flush_rows(self, force: bool = False) -> None:
        csv = self._csv
        if csv is None:  # closed
            return
        wrote = False
        while self._next_row in self._rows:
            csv.write(self._rows.pop(self._next_row))
            self._next_row += 1
            wrote = True
        if force and self._rows:
            for k in sorted(self._rows):
                csv.write(self._rows[k])
            self._rows.clear()
            wrote = True
        if wrote:
            csv.flush()

    def frame(self, pulse_index: int, t_mid_us: float, labels: np.ndarray, instances: np.ndarray,
              depth_event_m: np.ndarray) -> None:
        """Queue one frame's labels (written in order by a background thread, so the
        compression does not hold up the simulation)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._frame_loop, name="sim-gt-writer",
                                            daemon=True)
            self._thread.start()
        self._queue.put((pulse_index, t_mid_us, labels, instances, depth_event_m))

    def _frame_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._write_frame(*item)
            except Exception as exc:  # reported by close()
                self._error = exc

    def _write_frame(self, pulse_index: int, t_mid_us: float, labels: np.ndarray,
                     instances: np.ndarray, depth_event_m: np.ndarray) -> None:
        with self._lock:
            if self._h5 is None:
                return
            n = self.frames
            h5 = self._h5
            for name, value in (("labels", labels), ("instances", instances),
                                ("depth_event_m", depth_event_m.astype(np.float16)),
                                ("pulse_index", pulse_index), ("t_mid_true_us", t_mid_us)):
                ds = h5[name]
                ds.resize(n + 1, axis=0)
                ds[n] = value
            self.frames = n + 1
            h5.flush()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        with self._lock:
            if self._csv is not None:
                self._flush_rows(force=True)
                self._csv.close()
                self._csv = None
            if self._h5 is not None:
                self._h5.close()
                self._h5 = None
        if self._error is not None:
            raise RuntimeError(f"writing {self.dir / LABELS_H5} failed: {self._error}")
