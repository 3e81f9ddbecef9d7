"""The session folder: what `rig record` writes and everything downstream reads.

Layout and fields: docs/session-format.md. Writers never leave a half-written manifest (temp +
rename) and flush frames and trigger reports as they go, so an interrupted or crashed recording
keeps what was received.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin
import numpy as np

from rig import __version__
from rig.devices import Frame

SCHEMA_VERSION = "1.0"
MANIFEST = "session.json"
EVENTS_RAW = "events.raw"
FRAMES_H5 = "frames.h5"
TRIGGERS_CSV = "triggers.csv"
GROUND_TRUTH = "ground_truth"

MCU_PULSE_DTYPE = np.dtype([("pulse_index", "<i8"), ("t_mcu_us", "<i8")])


class SessionError(RuntimeError):
    """A session folder is missing, unreadable or inconsistent (the message names the file)."""


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON next to `path` and rename over it: readers see the old or the new file, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, default=_json_default)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class FramesWriter:
    """Appends delivered frames and their metadata to `frames.h5`, one chunk per frame.

    LZ4 inside Blosc keeps up with a full-resolution camera on one core; the datasets grow one row
    per frame and are flushed every `flush_every_s`, so a crash loses at most that much.
    """

    META_FIELDS = (("frame_id", np.int64), ("t_device_ns", np.int64), ("t_host_ns", np.int64),
                   ("exposure_us", np.float32), ("gain_db", np.float32), ("incomplete", np.uint8))

    def __init__(self, path: str | os.PathLike[str], width: int, height: int, pixel_format: str,
                 *, flush_every_s: float = 1.0) -> None:
        self.path = Path(path)
        self.width, self.height, self.pixel_format = width, height, pixel_format
        self.frame_shape: tuple[int, ...] = (height, width, 3) if pixel_format == "RGB8" else (height, width)
        self._h5 = h5py.File(self.path, "w")
        self._h5.attrs.update({"pixel_format": pixel_format, "width": width, "height": height,
                               "schema_version": SCHEMA_VERSION, "tool_version": __version__})
        self._frames = self._h5.create_dataset(
            "frames", shape=(0, *self.frame_shape), maxshape=(None, *self.frame_shape), dtype=np.uint8,
            chunks=(1, *self.frame_shape),
            **hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.NOSHUFFLE))
        self._meta = {name: self._h5.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype,
                                                    chunks=(1024,))
                      for name, dtype in self.META_FIELDS}
        self.count = 0
        self.bytes_in = 0
        self._last_flush = time.monotonic()
        self._flush_every_s = flush_every_s

    def append(self, frame: Frame) -> None:
        if frame.pixels.shape != self.frame_shape:
            raise ValueError(f"{self.path}: frame {frame.frame_id} has shape {frame.pixels.shape}, "
                             f"expected {self.frame_shape}")
        n = self.count
        self._frames.resize(n + 1, axis=0)
        self._frames[n] = frame.pixels
        values = {"frame_id": frame.frame_id, "t_device_ns": frame.t_device_ns,
                  "t_host_ns": frame.t_host_ns, "exposure_us": frame.exposure_us,
                  "gain_db": frame.gain_db, "incomplete": int(frame.incomplete)}
        for name, ds in self._meta.items():
            ds.resize(n + 1, axis=0)
            ds[n] = values[name]
        self.count = n + 1
        self.bytes_in += frame.pixels.nbytes
        if time.monotonic() - self._last_flush > self._flush_every_s:
            self.flush()

    def flush(self) -> None:
        self._h5.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self) -> FramesWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TriggersCsvWriter:
    """`triggers.csv`: every `PULSE` report of the MCU, flushed as it comes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._f = open(path, "w", newline="")  # noqa: SIM115 - kept open for the recording
        self._w = csv.writer(self._f)
        self._w.writerow(["pulse_index", "t_mcu_us"])
        self.count = 0

    def write(self, pulse_index: int, t_mcu_us: int) -> None:
        self._w.writerow([pulse_index, t_mcu_us])
        self.count += 1

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()


class SessionReader:
    """Read-only view of a recorded session folder."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        manifest = self.path / MANIFEST
        if not manifest.is_file():
            raise SessionError(f"{manifest}: no session manifest (is {self.path} a session folder?)")
        try:
            self.manifest: dict[str, Any] = json.loads(manifest.read_text())
        except json.JSONDecodeError as exc:
            raise SessionError(f"{manifest}: not valid JSON ({exc})") from None
        version = str(self.manifest.get("schema_version", ""))
        if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise SessionError(f"{manifest}: schema version {version!r}, this tool reads {SCHEMA_VERSION}")
        self._frames_h5: h5py.File | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        return str(self.manifest.get("status", "unknown"))

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS_RAW

    @property
    def frames_path(self) -> Path:
        return self.path / FRAMES_H5

    @property
    def ground_truth_dir(self) -> Path | None:
        gt = self.path / GROUND_TRUTH
        return gt if gt.is_dir() else None

    def _h5(self) -> h5py.File:
        if self._frames_h5 is None:
            if not self.frames_path.is_file():
                raise SessionError(f"{self.frames_path}: missing")
            try:
                self._frames_h5 = h5py.File(self.frames_path, "r")
            except OSError as exc:
                raise SessionError(f"{self.frames_path}: cannot be read ({exc})") from None
        return self._frames_h5

    @property
    def num_frames(self) -> int:
        return int(self._h5()["frames"].shape[0])

    @property
    def pixel_format(self) -> str:
        return str(self._h5().attrs["pixel_format"])

    def frame(self, i: int) -> np.ndarray:
        return self._h5()["frames"][i]

    @property
    def frame_meta(self) -> dict[str, np.ndarray]:
        h5 = self._h5()
        return {name: h5[name][:] for name, _ in FramesWriter.META_FIELDS}

    @property
    def mcu_pulses(self) -> np.ndarray:
        path = self.path / TRIGGERS_CSV
        if not path.is_file():
            raise SessionError(f"{path}: missing")
        rows = []
        with open(path, newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header != ["pulse_index", "t_mcu_us"]:
                raise SessionError(f"{path}: unexpected header {header}")
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                try:
                    rows.append((int(row[0]), int(row[1])))
                except (ValueError, IndexError):
                    raise SessionError(f"{path}:{lineno}: bad row {row}") from None
        return np.array(rows, dtype=MCU_PULSE_DTYPE)

    def decode_events(self) -> tuple[np.ndarray, np.ndarray]:
        """All events and trigger edges of `events.raw` (see rig.evt3.decode_file)."""
        from rig.evt3 import decode_file

        return decode_file(self.events_path)

    def ground_truth_geometry(self):  # -> RigGeometry | None
        gt = self.ground_truth_dir
        if gt is None or not (gt / "rig.json").is_file():
            return None
        from rig.sim.optics import RigGeometry

        return RigGeometry.load_json(gt / "rig.json")

    def close(self) -> None:
        if self._frames_h5 is not None:
            self._frames_h5.close()
            self._frames_h5 = None

    def __enter__(self) -> SessionReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
