"""The simulator's ground truth of a session (`ground_truth/`, docs/session-format.md), read
without importing the simulator: the builder and calibration measure against it through here.

What the folder holds (written by `rig.sim.groundtruth.GroundTruthWriter`):
- `rig.json`: the true `RigGeometry` (both cameras, their relative pose, the mirrored arm);
- `scenario.json`: scenario, seed, scene parameters, sensor parameters, clocks, injected faults;
- `triggers.csv`: the fate of each pulse: its true times (the edge on the wire, the exposure
  start), the same instants on the device clocks, what each device recorded (the event
  camera's EXT_TRIGGER stamp, the MCU's report, the frame id), whether the frame arrived;
- `labels.h5`: per delivered frame, Cityscapes train ids, instance ids (frame camera view,
  distorted, at mid-exposure) and the event camera's depth, keyed by pulse index.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from rig.geometry import RigGeometry

GROUND_TRUTH_DIR = "ground_truth"
RIG_JSON = "rig.json"
SCENARIO_JSON = "scenario.json"
TRIGGERS_CSV = "triggers.csv"
LABELS_H5 = "labels.h5"
#: triggers.csv columns. t_true_us/_ns: the rising edge on the wire, true time (the simulator's
#: world clock); t_event_clock_us/_ns: that instant on the event camera's clock (floored to the
#: us / to the ns); t_frame_clock_ns: exposure start on the frame camera's clock (the frame's
#: device timestamp); t_edge_stamped_us: the event camera's EXT_TRIGGER stamp of the edge (-1:
#: missed); t_exposure_true_ns / t_exposure_event_clock_ns: exposure start, true time and on the
#: event clock (-1: not exposed); t_mcu_us: the MCU's PULSE report (its own clock); frame_id:
#: the exposure's frame id (-1: not exposed). The last seven columns came later: older files
#: lack them and read as -1.
TRUTH_PULSE_COLUMNS = ("pulse_index", "t_true_us", "t_event_clock_us", "t_frame_clock_ns",
                       "frame_delivered", "incomplete", "t_true_ns", "t_event_clock_ns",
                       "t_edge_stamped_us", "t_exposure_true_ns", "t_exposure_event_clock_ns",
                       "t_mcu_us", "frame_id")
TRIGGERS_HEADER = ",".join(TRUTH_PULSE_COLUMNS) + "\n"
TRUTH_PULSE_DTYPE = np.dtype([(name, "u1" if name in ("frame_delivered", "incomplete") else "<i8")
                              for name in TRUTH_PULSE_COLUMNS])
#: Blink frequency of the simulated checkerboard when scenario.json does not say.
DEFAULT_SIM_BLINK_HZ = 5.0


class GroundTruthError(RuntimeError):
    """A ground-truth file exists but cannot be read (the message names it)."""


class GroundTruth:
    """Read-only view of one `ground_truth/` folder (each file opened only when asked for)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.dir = Path(folder)
        self._scenario: dict[str, Any] | None = None

    @classmethod
    def of_session(cls, session_dir: str | os.PathLike[str]) -> GroundTruth | None:
        """The session's ground truth, or None for a real recording (no such folder)."""
        folder = Path(session_dir) / GROUND_TRUTH_DIR
        return cls(folder) if folder.is_dir() else None

    # -- rig.json -----------------------------------------------------------------------------
    def geometry(self) -> RigGeometry | None:
        path = self.dir / RIG_JSON
        if not path.is_file():
            return None
        try:
            return RigGeometry.load_json(path)
        except (OSError, ValueError, KeyError) as exc:
            raise GroundTruthError(f"{path}: not a rig geometry ({exc})") from None

    # -- scenario.json -------------------------------------------------------------------------
    def scenario(self) -> dict[str, Any]:
        """scenario.json as a dict ({} when absent or unreadable: it only adds hints)."""
        if self._scenario is None:
            data: Any = {}
            path = self.dir / SCENARIO_JSON
            if path.is_file():
                try:
                    data = json.loads(path.read_text())
                except (OSError, ValueError):
                    data = {}
            self._scenario = data if isinstance(data, dict) else {}
        return self._scenario

    def find(self, key: str, depth: int = 3) -> str | None:
        """A string value of `key` at the top of scenario.json or in its nested dicts."""
        return _find_key(self.scenario(), key, depth)

    def blink_hz(self) -> float | None:
        """The blink frequency of a simulated checkerboard session (None for other scenes)."""
        d = self.scenario()
        if d.get("scene") == "checkerboard" or d.get("scenario") == "checkerboard":
            params = d.get("scene_params", {})
            return float(params.get("blink_hz", DEFAULT_SIM_BLINK_HZ) if isinstance(params, dict)
                         else DEFAULT_SIM_BLINK_HZ)
        return None

    # -- labels.h5 -----------------------------------------------------------------------------
    @property
    def labels_path(self) -> Path | None:
        path = self.dir / LABELS_H5
        return path if path.is_file() else None

    def has_instances(self) -> bool:
        path = self.labels_path
        if path is None:
            return False
        with h5py.File(path, "r") as f:
            return "instances" in f

    def open_labels(self) -> GroundTruthLabels | None:
        path = self.labels_path
        return GroundTruthLabels(path) if path is not None else None

    # -- triggers.csv --------------------------------------------------------------------------
    def pulses(self) -> np.ndarray:
        """The true fate of every pulse (TRUTH_PULSE_DTYPE), in pulse order."""
        path = self.dir / TRIGGERS_CSV
        if not path.is_file():
            return np.zeros(0, TRUTH_PULSE_DTYPE)
        try:
            with open(path) as f:
                header = f.readline().strip().split(",")
            rows = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
        except (OSError, ValueError) as exc:
            raise GroundTruthError(f"{path}: bad row ({exc})") from None
        if rows.size and rows.shape[1] != len(header):
            raise GroundTruthError(f"{path}: {rows.shape[1]} values per row, {len(header)} in the "
                                   "header")
        out = np.zeros(len(rows), TRUTH_PULSE_DTYPE)
        for name in TRUTH_PULSE_COLUMNS:
            if name in header:
                out[name] = rows[:, header.index(name)] if rows.size else []
            elif name not in ("frame_delivered", "incomplete"):
                out[name] = -1
        return out


class GroundTruthLabels:
    """labels.h5 of one session: the true labels and instances of each frame, by pulse index."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._h5 = h5py.File(path, "r")
        self._row = {int(k): i for i, k in enumerate(self._h5["pulse_index"][()])}

    def row(self, pulse_index: int) -> int | None:
        return self._row.get(int(pulse_index))

    def labels(self, row: int) -> np.ndarray:
        return self._h5["labels"][row]

    def instances(self, row: int) -> np.ndarray:
        return self._h5["instances"][row]

    def close(self) -> None:
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self) -> GroundTruthLabels:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _find_key(d: Any, key: str, depth: int) -> str | None:
    if not isinstance(d, dict) or depth < 0:
        return None
    if isinstance(d.get(key), str):
        return str(d[key])
    for v in d.values():
        found = _find_key(v, key, depth - 1)
        if found:
            return found
    return None
