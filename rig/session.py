"""The session folder: what `rig record` writes and everything downstream reads.

Layout and fields: docs/session-format.md. `SessionManifest` is the one reader and writer of
`session.json` (no other module parses it); writers never leave a half-written manifest (atomic
publish) and flush frames and trigger reports as they go, so an interrupted or crashed
recording keeps what was received.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import h5py
import hdf5plugin
import numpy as np

from common.atomic import write_json_atomic
from rig import __version__
from rig.devices import (
    DeviceInfo,
    EventCameraSettings,
    Frame,
    FrameCameraSettings,
    TriggerSettings,
    Wiring,
)
from rig.geometry import RigGeometry
from rig.ground_truth import GROUND_TRUTH_DIR, GroundTruth

#: 1.1 added `frame_ids` (how the frame camera numbers frames), `purpose` and the optional
#: `time_of_day` and `scene`; 1.2 the status `recovered` and the optional `recorder` (which
#: process records) and `recovery` (what `rig session recover` kept); readers take every 1.x
#: manifest (docs/session-format.md lists the defaults).
SCHEMA_VERSION = "1.2"
MANIFEST = "session.json"
EVENTS_RAW = "events.raw"
FRAMES_H5 = "frames.h5"
TRIGGERS_CSV = "triggers.csv"
GROUND_TRUTH = GROUND_TRUTH_DIR
#: Every file and folder a recording creates (what `--overwrite` replaces).
SESSION_ENTRIES = (MANIFEST, EVENTS_RAW, FRAMES_H5, TRIGGERS_CSV, GROUND_TRUTH)
#: recording: being written, or never closed (the recorder crashed or was killed); complete;
#: interrupted: stopped early (Ctrl-C), everything received kept; failed: a device or the disk
#: gave out (what was received is kept); recovered: a crashed or failed recording that
#: `rig session recover` checked and repaired (docs/session-format.md).
STATUSES = ("recording", "complete", "interrupted", "failed", "recovered")
#: What a session was recorded for: data (`rpea build` builds it) or calibration (a blinking
#: board for `rig calibrate`; the builder skips it).
PURPOSES = ("data", "calibration")
#: Statuses whose data is complete up to where it stops (what `rpea build` accepts).
BUILDABLE_STATUSES = ("complete", "interrupted", "recovered")
#: Statuses `rig session recover` repairs (rig.recover).
RECOVERABLE_STATUSES = ("recording", "failed")

MCU_PULSE_DTYPE = np.dtype([("pulse_index", "<i8"), ("t_mcu_us", "<i8")])


class SessionError(RuntimeError):
    """A session folder is missing, unreadable or inconsistent (the message names the file)."""


# ---- which process records ---------------------------------------------------------------------
def _read_text(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _boot_id() -> str | None:
    """Linux's id of the current boot (None elsewhere): a process of an earlier boot is gone."""
    return _read_text("/proc/sys/kernel/random/boot_id")


def _start_ticks(pid: int) -> int | None:
    """When process `pid` started, in clock ticks since boot (Linux; None when unknown): tells a
    process from a later one that reuses its id."""
    stat = _read_text(f"/proc/{pid}/stat")
    if not stat:
        return None
    try:
        return int(stat.rpartition(")")[2].split()[19])  # field 22, starttime
    except (IndexError, ValueError):
        return None


def recorder_identity() -> dict[str, Any]:
    """This process, as the manifest of a recording it writes names it."""
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "boot_id": _boot_id(),
            "start_ticks": _start_ticks(pid)}


def recorder_alive(identity: dict[str, Any] | None) -> bool | None:
    """Whether the process `identity` names still runs: True, False, or None when this machine
    cannot tell (another host, or no identity: a session recorded before schema 1.2)."""
    if not identity or identity.get("host") != socket.gethostname():
        return None
    try:
        pid = int(identity["pid"])
    except (KeyError, TypeError, ValueError):
        return None
    boot = _boot_id()
    if boot is not None and identity.get("boot_id") not in (None, boot):
        return False  # recorded before a reboot (a power cut)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process with that id
    ticks = identity.get("start_ticks")
    if ticks is not None and _start_ticks(pid) not in (None, ticks):
        return False  # the id now belongs to a later process
    return True


def utc_now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---- the manifest ------------------------------------------------------------------------------
_T = TypeVar("_T")


def _known_fields(cls: type[_T], data: Any, where: str) -> _T:
    """`cls(**data)` with the keys `cls` has (others are derived or written by newer tools)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SessionError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    try:
        return cls(**{k: v for k, v in data.items() if k in names})
    except (TypeError, ValueError) as exc:
        raise SessionError(f"{where}: {exc}") from None


@dataclass
class FrameIdScheme:
    """How the frame camera numbers its frames: what pairing needs to count skipped ids.

    GigE Vision 1.x block ids are 16 bit and run 1..65535 (0 is reserved): modulus 65535, first 1.
    USB3 Vision and GigE Vision 2 extended ids are 64 bit: modulus None (never wraps).
    """

    modulus: int | None = None  # distinct ids before the counter wraps; None: it never does
    first: int = 0  # the id after a wrap
    first_exposure: int | None = None  # the id of the first exposure, when the backend knows it

    #: What manifests before schema 1.1 imply: the builder then assumed 16-bit ids from 0.
    LEGACY_MODULUS = 1 << 16


@dataclass
class SessionSettings:
    """Every setting the devices were given."""

    event_camera: EventCameraSettings = field(default_factory=EventCameraSettings)
    frame_camera: FrameCameraSettings = field(default_factory=FrameCameraSettings)
    trigger: TriggerSettings = field(default_factory=TriggerSettings)
    sim_faults: dict[str, list[int]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"event_camera": asdict(self.event_camera), "frame_camera": asdict(self.frame_camera),
                "trigger": {**asdict(self.trigger), "rate_mhz": self.trigger.rate_mhz},
                "sim_faults": {k: list(v) for k, v in self.sim_faults.items()}}

    @classmethod
    def from_dict(cls, d: Any, where: str) -> SessionSettings:
        d = d if isinstance(d, dict) else {}
        ev = _known_fields(EventCameraSettings, d.get("event_camera"), f"{where} settings.event_camera")
        if isinstance(ev.roi, list):
            x, y, w, h = ev.roi
            ev.roi = (int(x), int(y), int(w), int(h))
        trig = dict(d.get("trigger") or {})
        if not trig.get("rate_hz"):
            trig.pop("rate_hz", None)
            if trig.get("rate_mhz"):
                trig["rate_hz"] = float(trig["rate_mhz"]) / 1000.0
        fr = _known_fields(FrameCameraSettings, d.get("frame_camera"), f"{where} settings.frame_camera")
        return cls(ev, fr, _known_fields(TriggerSettings, trig, f"{where} settings.trigger"),
                   {str(k): [int(i) for i in v] for k, v in (d.get("sim_faults") or {}).items()})


@dataclass
class SessionCounts:
    """What arrived and what was lost (all counts since the recording started)."""

    pulses_sent: int = 0
    pulse_reports: int = 0
    frames_received: int = 0
    frames_written: int = 0
    frames_dropped: int = 0
    frames_dropped_camera: int = 0
    frames_dropped_queue: int = 0
    frames_missing: int = 0
    frames_incomplete: int = 0
    trigger_events: int = 0
    events: int = 0
    bytes_events: int = 0


@dataclass
class SessionManifest:
    """`session.json`: devices, settings, wiring, counters and status of one recording."""

    status: str = "recording"
    status_detail: str = ""
    started_utc: str | None = None
    stopped_utc: str | None = None
    sim: bool = False
    scenario: str | None = None  # simulated rig only
    seed: int | None = None  # simulated rig only
    duration_s: float = 0.0  # asked for; what was recorded is counts.pulses_sent / rate
    devices: dict[str, DeviceInfo] = field(default_factory=dict)  # event_camera, frame_camera, trigger
    settings: SessionSettings = field(default_factory=SessionSettings)
    wiring: Wiring = field(default_factory=Wiring)
    rig_config: dict[str, Any] | None = None  # the rig.yaml the devices came from
    sensor_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # "event"/"frame": (W, H)
    # the camera on the beam splitter's reflected arm ("event", "frame", "none"; rig.yaml's
    # optics.reflected_arm, the simulator's --mirror); None: not stated (older sessions)
    reflected_arm: str | None = None
    counts: SessionCounts = field(default_factory=SessionCounts)
    frame_ids: FrameIdScheme = field(default_factory=FrameIdScheme)
    time_of_day: str | None = None  # "day" | "night" | "dusk" | "tunnel" when someone says so
    scene: str | None = None
    purpose: str = "data"  # PURPOSES
    # schema 1.2: the recording process (`recorder_identity`), so `rig session recover` can tell
    # a crashed recording from one still running; what `rig session recover` kept
    recorder: dict[str, Any] | None = None
    recovery: dict[str, Any] | None = None
    schema_version: str = SCHEMA_VERSION
    tool_version: str = __version__
    extra: dict[str, Any] = field(default_factory=dict)  # keys this version does not know, kept

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise SessionError(f"session status {self.status!r} (one of {', '.join(STATUSES)})")
        if self.purpose not in PURPOSES:
            raise SessionError(f"session purpose {self.purpose!r} (one of {', '.join(PURPOSES)})")

    # -- derived -------------------------------------------------------------------------------
    @property
    def trigger_period_us(self) -> float:
        rate_hz = float(self.settings.trigger.rate_hz)
        if not rate_hz > 0:
            raise SessionError(f"trigger rate {rate_hz} Hz in the manifest")
        return 1e6 / rate_hz

    @property
    def pulses_sent(self) -> int | None:
        """Pulses the MCU says it sent (None when the manifest does not know)."""
        return int(self.counts.pulses_sent) or None

    def sensor_size(self, camera: str) -> tuple[int, int] | None:
        size = self.sensor_sizes.get(camera)
        return (int(size[0]), int(size[1])) if size and all(size) else None

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "schema_version": self.schema_version, "tool_version": self.tool_version,
            "status": self.status, "started_utc": self.started_utc, "stopped_utc": self.stopped_utc,
            "sim": self.sim, "scenario": self.scenario, "seed": self.seed,
            "duration_s": self.duration_s,
            "devices": {k: v.to_dict() for k, v in self.devices.items()},
            "settings": self.settings.to_dict(), "wiring": asdict(self.wiring),
            "rig_config": self.rig_config,
            "geometry": {k: list(v) for k, v in self.sensor_sizes.items()},
            "counts": asdict(self.counts), "status_detail": self.status_detail,
            "frame_ids": asdict(self.frame_ids), "purpose": self.purpose,
        }
        for key in ("time_of_day", "scene", "reflected_arm", "recorder", "recovery"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return {**self.extra, **d}

    @classmethod
    def from_dict(cls, d: Any, where: str = MANIFEST) -> SessionManifest:
        if not isinstance(d, dict):
            raise SessionError(f"{where}: expected a JSON object")
        version = str(d.get("schema_version", ""))
        if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            raise SessionError(f"{where}: schema version {version!r}, this tool reads {SCHEMA_VERSION}")
        devices = {}
        for kind, info in (d.get("devices") or {}).items():
            devices[str(kind)] = _known_fields(DeviceInfo, info, f"{where} devices.{kind}")
        if "frame_ids" in d:
            frame_ids = _known_fields(FrameIdScheme, d["frame_ids"], f"{where} frame_ids")
        else:  # schema 1.0
            extra = (d.get("devices") or {}).get("frame_camera", {}).get("extra") or {}
            first = extra.get("first_frame_id", 0 if d.get("sim") else None)
            frame_ids = FrameIdScheme(FrameIdScheme.LEGACY_MODULUS, 0,
                                      None if first is None else int(first))
        known = {f.name for f in dataclasses.fields(cls)} | {"geometry"}
        try:
            return cls(
                status=str(d.get("status", "recording")), status_detail=str(d.get("status_detail", "")),
                started_utc=d.get("started_utc"), stopped_utc=d.get("stopped_utc"),
                sim=bool(d.get("sim", False)), scenario=d.get("scenario"), seed=d.get("seed"),
                duration_s=float(d.get("duration_s") or 0.0), devices=devices,
                settings=SessionSettings.from_dict(d.get("settings"), where),
                wiring=_known_fields(Wiring, d.get("wiring"), f"{where} wiring"),
                rig_config=d.get("rig_config"),
                sensor_sizes={str(k): (int(v[0]), int(v[1]))
                              for k, v in (d.get("geometry") or {}).items()},
                counts=_known_fields(SessionCounts, d.get("counts"), f"{where} counts"),
                frame_ids=frame_ids, time_of_day=d.get("time_of_day"), scene=d.get("scene"),
                reflected_arm=d.get("reflected_arm"),
                recorder=d.get("recorder") if isinstance(d.get("recorder"), dict) else None,
                recovery=d.get("recovery") if isinstance(d.get("recovery"), dict) else None,
                purpose=str(d.get("purpose") or ("calibration" if d.get("scenario") == "checkerboard"
                                                 else "data")),
                schema_version=version, tool_version=str(d.get("tool_version", "")),
                extra={k: v for k, v in d.items() if k not in known})
        except (TypeError, ValueError, IndexError) as exc:
            raise SessionError(f"{where}: {exc}") from None

    def save(self, session_dir: str | os.PathLike[str]) -> None:
        """Publish `session.json` atomically (readers see the old or the new manifest)."""
        write_json_atomic(Path(session_dir) / MANIFEST, self.to_dict())

    @classmethod
    def load(cls, session_dir: str | os.PathLike[str]) -> SessionManifest:
        path = Path(session_dir) / MANIFEST
        if not path.is_file():
            raise SessionError(f"{path}: no session manifest (is {Path(session_dir)} a session folder?)")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise SessionError(f"{path}: cannot be read ({exc})") from None
        except json.JSONDecodeError as exc:
            raise SessionError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(data, str(path))


@dataclass(frozen=True)
class SessionEntry:
    """One session folder found under a recordings folder (manifest None when unreadable)."""

    path: Path
    manifest: SessionManifest | None
    problem: str = ""  # why the manifest could not be read

    @property
    def buildable(self) -> bool:
        return self.manifest is not None and self.manifest.status in BUILDABLE_STATUSES

    def usable_as(self, purpose: str) -> bool:
        """Complete (or interrupted) and recorded for `purpose` (one of PURPOSES)."""
        return self.buildable and self.manifest is not None and self.manifest.purpose == purpose


def find_sessions(folder: str | os.PathLike[str]) -> list[SessionEntry]:
    """Every session folder directly under `folder` (one with a session.json), oldest first (by
    the manifest's start time, then by name); [] when `folder` does not exist."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(p for p in folder.iterdir() if (p / MANIFEST).is_file()):
        try:
            found.append(SessionEntry(path, SessionManifest.load(path)))
        except SessionError as exc:
            found.append(SessionEntry(path, None, str(exc)))
    return sorted(found, key=lambda e: ((e.manifest.started_utc or "") if e.manifest else "",
                                        e.path.name))


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
        self.manifest = SessionManifest.load(self.path)
        self._frames_h5: h5py.File | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        return self.manifest.status

    @property
    def events_path(self) -> Path:
        return self.path / EVENTS_RAW

    @property
    def frames_path(self) -> Path:
        return self.path / FRAMES_H5

    @property
    def ground_truth(self) -> GroundTruth | None:
        """The simulator's ground truth (None for a real recording)."""
        return GroundTruth.of_session(self.path)

    def ground_truth_geometry(self) -> RigGeometry | None:
        """The simulator's true rig geometry (None for a real recording)."""
        truth = self.ground_truth
        return truth.geometry() if truth is not None else None

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
        """All events and trigger edges of the session's event file (`rig.evt.files`: the format
        its header states)."""
        from rig.evt.files import read_events

        return read_events(self.events_path)

    def close(self) -> None:
        if self._frames_h5 is not None:
            self._frames_h5.close()
            self._frames_h5 = None

    def __enter__(self) -> SessionReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
