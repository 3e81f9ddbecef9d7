"""Device interfaces of the rig: one small typed protocol per device kind.

Backends (real SDKs and the simulator) implement these; the recorder and the CLI only ever talk
to these protocols, so the same recording code runs on hardware and on the simulated rig.
Units are in the names (`exposure_us`, `timeout_s`, `t_ns`).
"""

from __future__ import annotations

import enum
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Protocol, runtime_checkable

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
class AntiFlickerSettings:
    """The sensor's anti-flicker filter (OpenEB `I_AntiFlickerModule`); None fields keep the sensor's
    defaults. `band_stop` drops events flickering in [low_hz, high_hz], `band_pass` keeps only those."""

    enabled: bool = True
    low_hz: int = 50
    high_hz: int = 520
    mode: str = "band_stop"  # "band_stop" | "band_pass"
    duty_cycle_percent: float | None = None
    start_threshold: int | None = None
    stop_threshold: int | None = None


@dataclass
class EventCameraSettings:
    """Event camera configuration (biases by their Prophesee names, e.g. `bias_diff_on`).

    `biases` override `biases_from_file` (what `biases_file`, a Metavision .bias file, held); both
    are kept so the session manifest says where each value came from.
    """

    biases: dict[str, int] = field(default_factory=dict)
    roi: tuple[int, int, int, int] | None = None  # x, y, width, height
    erc_rate_ev_s: float | None = None  # event-rate controller limit, None = off
    trigger_in_channel: int | None = 0  # EXT_TRIGGER channel to enable, None = off
    serial: str | None = None
    biases_file: str | None = None
    biases_from_file: dict[str, int] = field(default_factory=dict)
    antiflicker: AntiFlickerSettings | None = None  # None = off
    hot_pixels: list[tuple[int, int]] = field(default_factory=list)  # (x, y) masked by the sensor
    hot_pixels_file: str | None = None  # where (some of) hot_pixels came from

    def __post_init__(self) -> None:
        """Accept what a session manifest stores (JSON): the filter as a mapping, pixels as lists."""
        if isinstance(self.antiflicker, dict):
            known = {f.name for f in fields(AntiFlickerSettings)}
            self.antiflicker = AntiFlickerSettings(**{k: v for k, v in self.antiflicker.items()
                                                      if k in known})
        self.hot_pixels = [(int(x), int(y)) for x, y in self.hot_pixels]

    def effective_biases(self) -> dict[str, int]:
        """The biases to set: the file's, then the explicit ones over them."""
        return {**self.biases_from_file, **self.biases}


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
    """A triggered frame camera delivering copied frames with their metadata.

    The frame-id scheme says how `Frame.frame_id` counts, so a gap can be told from a wrap:
    `frame_id_modulus` is the number of distinct ids before the counter wraps (None: 64-bit ids
    that never wrap), `frame_id_first` the id after a wrap (GigE Vision 1.x: ids 1..65535,
    modulus 65535, first 1), `frame_id_first_exposure` the id of the first exposure after
    `start()` where the backend knows it (None: unknown). Known from `open()` on.
    """

    width: int
    height: int
    frame_id_modulus: int | None
    frame_id_first: int
    frame_id_first_exposure: int | None

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


# ---- lifecycle -------------------------------------------------------------------------------


class DeviceState(enum.Enum):
    """Where a device is in its life: closed -> open -> configured -> running."""

    CLOSED = "closed"
    OPEN = "open"
    CONFIGURED = "configured"
    RUNNING = "running"


class DeviceLifecycle:
    """The open / configure / start / stop rules of every device, written once.

    Why: the simulated devices use the same base as the SDK backends, so a call out of order
    fails on the simulated rig exactly as on the hardware, with the same `DeviceError`.
    `start` is allowed from OPEN (every backend runs on its power-on settings), `stop` goes back
    to the state before `start`, `close` to CLOSED from anywhere. A subclass names itself in
    `device_name`, calls the `_require_*` guards before it touches the device and the `_mark_*`
    transitions once the device has really changed state.
    """

    #: what the device does while running, and its start / stop calls, for the messages
    run_word: ClassVar[str] = "running"
    start_call: ClassVar[str] = "start()"
    stop_call: ClassVar[str] = "stop()"
    #: what the guards raise (a backend with its own `DeviceError` subclass names it here)
    error_type: ClassVar[type[DeviceError]] = DeviceError

    _state: DeviceState = DeviceState.CLOSED  # class defaults: no __init__ needed
    _state_before_run: DeviceState = DeviceState.OPEN

    @property
    def device_name(self) -> str:
        """How messages name the device (a backend adds its model and serial)."""
        return type(self).__name__

    @property
    def state(self) -> DeviceState:
        return self._state

    @property
    def is_open(self) -> bool:
        return self._state is not DeviceState.CLOSED

    @property
    def is_running(self) -> bool:
        return self._state is DeviceState.RUNNING

    # -- guards ------------------------------------------------------------------------------
    def _require_open(self) -> None:
        if self._state is DeviceState.CLOSED:
            raise self.error_type(f"{self.device_name} is not open (call open() first)")

    def _require_stopped(self, call: str) -> None:
        """`call` (e.g. "configure()") needs the device open and not running."""
        self._require_open()
        if self._state is DeviceState.RUNNING:
            raise self.error_type(f"{self.device_name}: {call} while {self.run_word}; "
                                  f"{self.stop_call} first")

    def _require_running(self, call: str) -> None:
        """`call` (e.g. "grab()") needs the device open and running."""
        self._require_open()
        if self._state is not DeviceState.RUNNING:
            raise self.error_type(f"{self.device_name}: {call} before {self.start_call}")

    # -- transitions -------------------------------------------------------------------------
    def _mark_open(self, *, fresh: bool = False) -> None:
        """Opened. Opening an open device keeps its configuration and run state, unless `fresh`
        (the device itself started over, e.g. a new handshake with a restarted MCU)."""
        if fresh or self._state is DeviceState.CLOSED:
            self._state = DeviceState.OPEN

    def _mark_configured(self) -> None:
        self._state = DeviceState.CONFIGURED

    def _mark_running(self) -> None:
        if self._state is not DeviceState.RUNNING:
            self._state_before_run = self._state
        self._state = DeviceState.RUNNING

    def _mark_stopped(self) -> None:
        if self._state is DeviceState.RUNNING:
            self._state = self._state_before_run

    def _mark_closed(self) -> None:
        self._state = DeviceState.CLOSED


class EventCameraLifecycle(DeviceLifecycle):
    """`DeviceLifecycle` of an event camera: it runs while recording."""

    run_word: ClassVar[str] = "recording"
    start_call: ClassVar[str] = "start_recording()"
    stop_call: ClassVar[str] = "stop_recording()"


class FrameCameraLifecycle(DeviceLifecycle):
    """`DeviceLifecycle` of a frame camera (it runs while acquiring), with the default frame-id
    scheme of `FrameCamera`: 64-bit ids from 0, first exposure unknown."""

    run_word: ClassVar[str] = "acquiring"
    frame_id_modulus: int | None = None
    frame_id_first: int = 0
    frame_id_first_exposure: int | None = None
