"""Device interfaces of the rig: one small typed protocol per device kind.

Backends (real SDKs and the simulator) implement these; the recorder and the CLI only ever talk
to these protocols, so the same recording code runs on hardware and on the simulated rig.
Units are in the names (`exposure_us`, `timeout_s`, `t_ns`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


class DeviceError(RuntimeError):
    """A device misbehaved or refused a command (the message names the device)."""


class GrabTimeout(DeviceError):
    """No frame arrived within the timeout (a normal condition when the trigger stops)."""


@dataclass(frozen=True)
class DeviceInfo:
    """What a device says about itself; stored verbatim in `session.json`."""

    kind: str  # "event_camera" | "frame_camera" | "trigger"
    backend: str  # "sim", "metavision", "pyspin", "aravis", "serial", ...
    model: str
    serial: str
    firmware: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Frame:
    """One delivered frame, pixels copied out of the driver's buffer (safe to keep)."""

    pixels: np.ndarray  # (H, W) uint8 for BayerRG8 / Mono8, (H, W, 3) uint8 for RGB8
    frame_id: int  # the camera's counter (may wrap, e.g. 65535 -> 1 on GigE Vision)
    t_device_ns: int  # camera clock timestamp of the exposure start
    t_host_ns: int  # host monotonic clock when the frame was handed to us
    exposure_us: float
    gain_db: float
    incomplete: bool = False
    pixel_format: str = "BayerRG8"


@dataclass
class EventCameraSettings:
    """Event camera configuration (biases by their Prophesee names, e.g. `bias_diff_on`)."""

    biases: dict[str, int] = field(default_factory=dict)
    roi: tuple[int, int, int, int] | None = None  # x, y, width, height
    erc_rate_ev_s: float | None = None  # event-rate controller limit, None = off
    trigger_in_channel: int | None = 0  # EXT_TRIGGER channel to enable, None = off
    serial: str | None = None


@dataclass
class FrameCameraSettings:
    """Frame camera configuration in GenICam (SFNC) terms."""

    exposure_us: float = 5000.0
    gain_db: float = 0.0
    pixel_format: str = "BayerRG8"  # "BayerRG8" | "RGB8" | "Mono8"
    trigger_source: str | None = "Line3"  # None = free running
    trigger_activation: str = "RisingEdge"
    trigger_overlap: str = "ReadOut"
    strobe_line: str | None = None  # e.g. "Line1": drive ExposureActive on that output
    buffer_count: int = 16
    serial: str | None = None


@dataclass
class TriggerSettings:
    """Pulse train of the trigger MCU."""

    rate_hz: float = 20.0
    width_us: int = 1000
    count: int | None = None  # None = run until STOP
    polarity: str = "high"  # "high": active-high pulses

    @property
    def rate_mhz(self) -> int:
        return int(round(self.rate_hz * 1000.0))


@dataclass
class Wiring:
    """Which cable carries what (rig.yaml's `wiring`, stored in every session manifest)."""

    trigger_to: list[str] = field(default_factory=lambda: ["frame:Line3", "event:TRIG_IN"])
    event_trigger_channel: int | None = 0  # EXT_TRIGGER channel the pulses arrive on; None: none
    exposure_active_to_event: bool = False  # FLIR ExposureActive drives the EVK4 trigger-in


@dataclass(frozen=True)
class EventRates:
    """Live counters of the event camera since recording started."""

    events_total: int
    event_rate_ev_s: float
    triggers_total: int
    bytes_written: int


@dataclass(frozen=True)
class TriggerStatus:
    """What `STATUS` reports."""

    state: str  # "idle" | "running" | "done"
    pulses_emitted: int
    mcu_time_us: int
    rate_mhz: int
    width_us: int
    count: int  # 0 = unlimited
    error_flags: int = 0


@dataclass(frozen=True)
class PulseReport:
    """One asynchronous `PULSE <index> <t_us>` line from the MCU."""

    index: int
    t_us: int


@runtime_checkable
class EventCamera(Protocol):
    """An event camera whose raw stream is logged natively to a file (no events through Python)."""

    width: int
    height: int

    def open(self) -> None: ...
    def close(self) -> None: ...
    def info(self) -> DeviceInfo: ...
    def configure(self, settings: EventCameraSettings) -> None: ...
    def start_recording(self, raw_path: str | os.PathLike[str]) -> None: ...
    def stop_recording(self) -> None: ...
    def rates(self) -> EventRates: ...


@runtime_checkable
class FrameCamera(Protocol):
    """A triggered frame camera delivering copied frames with their metadata."""

    width: int
    height: int

    def open(self) -> None: ...
    def close(self) -> None: ...
    def info(self) -> DeviceInfo: ...
    def configure(self, settings: FrameCameraSettings) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def grab(self, timeout_s: float) -> Frame:
        """Next frame; raises `GrabTimeout` when none arrives in time."""
        ...


@runtime_checkable
class TriggerController(Protocol):
    """The trigger MCU (real firmware over serial, or the simulated MCU)."""

    def open(self) -> None: ...
    def close(self) -> None: ...
    def info(self) -> DeviceInfo: ...
    def configure(self, settings: TriggerSettings) -> TriggerStatus: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    def status(self) -> TriggerStatus: ...
    def read_pulses(self, timeout_s: float = 0.0) -> list[PulseReport]: ...
