"""The simulated rig's devices: the `rig.devices` protocols over one `SimRig`'s world.

The cameras do not simulate anything themselves: the rig's sim thread renders, runs the sensor
models and hands them results (`_emit_events`, `_deliver`). They hold the state a real device
holds (settings, acquisition on/off, the frame buffer, the raw file being logged) and follow the
backends' lifecycle (`rig.devices.DeviceLifecycle`), so they refuse what the hardware refuses.

Created alone (e.g. by `rig.registry.create_device("event_camera", "sim")`), a device attaches
to one process-wide default rig, so three devices created by name still share one world.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import queue
import threading
import time
from typing import TYPE_CHECKING

import numpy as np

from rig.devices import (
    DeviceError,
    DeviceInfo,
    EventCameraLifecycle,
    EventCameraSettings,
    EventRates,
    Frame,
    FrameCameraLifecycle,
    FrameCameraSettings,
    GrabTimeout,
    TriggerSettings,
    TriggerStatus,
)
from rig.frames import PIXEL_FORMATS
from rig.rigconfig import PIXEL_MASK_SLOTS
from rig.sim.mcu import SimMCU
from rig.sim.mcu import SimTrigger as _McuTrigger

if TYPE_CHECKING:
    from rig.evt3 import EVT3Writer
    from rig.sim.world import SimRig

__all__ = ["SimEventCamera", "SimFrameCamera", "SimTrigger", "default_rig_instance"]

#: The IMX636 event-rate controller's counting window (OpenEB Gen41Erc reference_period, in us).
ERC_PERIOD_US = 200

_DEFAULT_RIG: SimRig | None = None
_DEFAULT_LOCK = threading.Lock()


def default_rig_instance() -> SimRig:
    """The process-wide rig that devices created without one attach to."""
    global _DEFAULT_RIG
    with _DEFAULT_LOCK:
        if _DEFAULT_RIG is None:
            from rig.sim.world import SimConfig, SimRig

            _DEFAULT_RIG = SimRig(SimConfig())
        return _DEFAULT_RIG


class SimTrigger(_McuTrigger):
    """The simulated trigger MCU (protocol lines into `SimMCU`), bound to a rig's world clock:
    `start()` sets the first pulse a short lead-in after the current world time and wakes the
    sim thread, so events exist before the first trigger."""

    def __init__(self, rig: SimRig | None = None, mcu: SimMCU | None = None) -> None:
        self.rig = rig if rig is not None else (default_rig_instance() if mcu is None else None)
        super().__init__(self.rig.mcu if self.rig is not None else mcu)

    def info(self) -> DeviceInfo:
        return dataclasses.replace(super().info(), extra={"sim": True})

    def configure(self, settings: TriggerSettings) -> TriggerStatus:
        return super().configure(settings)

    def start(self) -> None:
        self._require_open()  # refused before the world clock moves
        if self.rig is None or self.rig.mcu.running:
            super().start()  # a running train: the MCU answers ERR busy, the world stays as it is
            return
        self.rig._before_trigger_start()
        super().start()
        self.rig._after_trigger_start()


class SimEventCamera(EventCameraLifecycle):
    """An EVK4-like event camera whose raw stream the simulator encodes as EVT3.

    Of the sensor's filters it applies the two that are cheap and exact: the hot-pixel mask (those
    pixels never emit) and the event-rate controller (at most rate x 200 us events per 200 us
    window, the IMX636's ERC period, spread evenly over the window). Biases, ROI and the
    anti-flicker filter are accepted and recorded (in `settings`, hence the manifest), not simulated.
    """

    device_name = "simulated event camera"

    def __init__(self, rig: SimRig | None = None) -> None:
        self.rig = rig if rig is not None else default_rig_instance()
        self.width, self.height = self.rig.geometry.event.size
        self.settings = EventCameraSettings()
        self._masked = np.zeros(0, np.int64)  # y * width + x of the hot pixels
        self._erc_count: int | None = None  # events allowed per ERC window, None = off
        self._erc_window = -1  # the last ERC window seen, and the events kept in it
        self._erc_kept = 0
        self.events_filtered = {"hot_pixels": 0, "erc": 0}
        self._lock = threading.RLock()
        self._writer: EVT3Writer | None = None
        self._queue: queue.Queue[tuple[np.ndarray, np.ndarray] | None] = queue.Queue(maxsize=32)
        self._write_error: Exception | None = None
        self._write_thread: threading.Thread | None = None
        self._path: str | None = None
        self._events_total = 0
        self._triggers_total = 0
        self._bytes_closed = 0
        self._rate_window: collections.deque[tuple[float, int]] = collections.deque()
        self.kept: list[tuple[np.ndarray, np.ndarray]] = []  # debug hook: SimConfig.keep_events

    def open(self) -> None:
        self._mark_open()

    def close(self) -> None:
        if self._writer is not None:
            self.stop_recording()
        self._mark_closed()

    def info(self) -> DeviceInfo:
        return DeviceInfo("event_camera", "sim", "SimEVK4 (IMX636 model)", "SIM-EVK4-0001", "sim",
                          {"width": self.width, "height": self.height,
                           "sensor": self.rig.event_params.to_dict(),
                           "filtered": dict(self.events_filtered),
                           "simulated": ["hot_pixels", "erc_rate_ev_s"],
                           "recorded_only": ["biases", "roi", "antiflicker"]})

    def configure(self, settings: EventCameraSettings) -> None:
        self._require_stopped("configure()")
        if settings.trigger_in_channel is not None and not 0 <= settings.trigger_in_channel <= 15:
            raise DeviceError(f"simulated event camera: trigger channel {settings.trigger_in_channel} "
                              "out of range 0..15")
        if len(settings.hot_pixels) > PIXEL_MASK_SLOTS:
            raise DeviceError(f"simulated event camera: {len(settings.hot_pixels)} hot pixels but the "
                              f"digital event mask has {PIXEL_MASK_SLOTS} slots")
        for x, y in settings.hot_pixels:
            if not (0 <= x < self.width and 0 <= y < self.height):
                raise DeviceError(f"simulated event camera: hot pixel ({x}, {y}) outside the "
                                  f"{self.width}x{self.height} sensor")
        if settings.erc_rate_ev_s is not None and settings.erc_rate_ev_s <= 0:
            raise DeviceError(f"simulated event camera: event-rate controller limit {settings.erc_rate_ev_s} "
                              "must be above 0")
        with self._lock:
            self.settings = settings
            self._masked = np.array(sorted({y * self.width + x for x, y in settings.hot_pixels}), np.int64)
            rate = settings.erc_rate_ev_s
            self._erc_count = None if rate is None else int(rate) * ERC_PERIOD_US // 1_000_000
            self._erc_window, self._erc_kept = -1, 0
        self._mark_configured()

    @property
    def trigger_channel(self) -> int | None:
        return self.settings.trigger_in_channel

    def start_recording(self, raw_path: str | os.PathLike[str]) -> None:
        from rig.evt3 import EVT3Writer

        with self._lock:
            self._require_stopped("start_recording()")
            self._path = os.fspath(raw_path)
            self._writer = EVT3Writer(self._path, self.width, self.height,
                                      header_extra=self.rig.raw_header_extra())
            # encoding runs on its own thread, overlapping the simulation (order is kept)
            self._queue = queue.Queue(maxsize=32)
            self._write_error = None
            self._write_thread = threading.Thread(target=self._write_loop, args=(self._writer,),
                                                  name="sim-evt3-writer", daemon=True)
            self._write_thread.start()
            self._events_total = 0
            self._triggers_total = 0
            self.events_filtered = {"hot_pixels": 0, "erc": 0}
            self._rate_window.clear()
            self._mark_running()

    def stop_recording(self) -> None:
        """Let the simulation finish its tail (if the trigger is done), write every event still
        in the pixel pipeline, close the file."""
        if self._writer is None:
            return
        self.rig.wait_idle(timeout_s=120.0)
        self.rig._flush_events(final=True)
        with self._lock:
            if self._writer is not None:
                self._queue.put(None)
                if self._write_thread is not None:
                    self._write_thread.join()
                self._writer.flush()
                self._bytes_closed = self._writer.bytes_written
                self._writer.close()
                self._writer = None
                self._mark_stopped()
                if self._write_error is not None:
                    raise DeviceError(f"simulated event camera: writing {self._path} failed: "
                                      f"{self._write_error}")

    def _write_loop(self, writer: EVT3Writer) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                if self._write_error is None:
                    writer.write(*item)
            except Exception as exc:  # reported by stop_recording
                self._write_error = exc

    @property
    def recording(self) -> bool:
        return self._writer is not None

    def rates(self) -> EventRates:
        """Live counters; raises DeviceError once writing the raw file failed (a full disk), so
        the recorder stops at its next look."""
        with self._lock:
            if self._write_error is not None and self._writer is not None:
                raise DeviceError(f"simulated event camera: writing {self._path} failed: "
                                  f"{self._write_error}")
            win = self._rate_window
            rate = 0.0
            if len(win) >= 2 and win[-1][0] > win[0][0]:
                rate = sum(n for _, n in list(win)[1:]) / (win[-1][0] - win[0][0])
            written = self._writer.bytes_written if self._writer is not None else self._bytes_closed
            return EventRates(self._events_total, rate, self._triggers_total, written)

    def _emit_events(self, events: np.ndarray, triggers: np.ndarray, t_sim_s: float) -> None:
        """Called by the sim thread with time-sorted events and trigger edges (device clock)."""
        with self._lock:
            events = self._filter(events)
            if self.rig.config.keep_events:
                self.kept.append((events.copy(), triggers.copy()))
            if self._writer is None:
                return
            if len(events) or len(triggers):
                self._queue.put((events, triggers))
            self._events_total += len(events)
            self._triggers_total += len(triggers)
            self._rate_window.append((t_sim_s, len(events)))
            while len(self._rate_window) > 2 and t_sim_s - self._rate_window[0][0] > 1.0:
                self._rate_window.popleft()

    def _filter(self, events: np.ndarray) -> np.ndarray:
        """The hot-pixel mask, then the event-rate controller (time-sorted events, t in us)."""
        if len(self._masked) and len(events):
            hot = np.isin(events["y"].astype(np.int64) * self.width + events["x"], self._masked)
            self.events_filtered["hot_pixels"] += int(hot.sum())
            events = events[~hot]
        if self._erc_count is None or not len(events):
            return events
        win = events["t"] // ERC_PERIOD_US
        starts = np.flatnonzero(np.r_[True, win[1:] != win[:-1]])
        counts = np.diff(np.r_[starts, len(win)])
        budget = np.full(len(starts), self._erc_count, np.int64)
        if win[0] == self._erc_window:  # the window the previous batch ended in
            budget[0] = max(0, self._erc_count - self._erc_kept)
        rank = np.arange(len(win)) - np.repeat(starts, counts)
        n, b = np.repeat(counts, counts), np.repeat(budget, counts)
        keep = (rank + 1) * b // n > rank * b // n  # min(n, b) events, evenly over the window
        kept_last = int(keep[starts[-1]:].sum())
        self._erc_kept = kept_last + (self._erc_kept if win[-1] == self._erc_window else 0)
        self._erc_window = int(win[-1])
        self.events_filtered["erc"] += int(len(keep) - keep.sum())
        return events[keep]

    def kept_events(self) -> tuple[np.ndarray, np.ndarray]:
        """Debug hook: all events and triggers emitted so far (needs SimConfig.keep_events)."""
        from rig.evt3 import EVENT_DTYPE, TRIGGER_DTYPE

        with self._lock:
            ev = [e for e, _ in self.kept]
            tr = [t for _, t in self.kept]
        return (np.concatenate(ev) if ev else np.zeros(0, EVENT_DTYPE),
                np.concatenate(tr) if tr else np.zeros(0, TRIGGER_DTYPE))


class SimFrameCamera(FrameCameraLifecycle):
    """A BFS-U3-32S4C-like triggered frame camera with a bounded frame buffer."""

    device_name = "simulated frame camera"
    # frame ids count exposures from 0 at each start() and never wrap (USB3 Vision's 64-bit ids)
    frame_id_modulus: int | None = None
    frame_id_first = 0
    frame_id_first_exposure: int | None = 0

    def __init__(self, rig: SimRig | None = None) -> None:
        self.rig = rig if rig is not None else default_rig_instance()
        self.width, self.height = self.rig.geometry.frame.size
        self.settings = FrameCameraSettings(exposure_us=self.rig.default_exposure_us,
                                            gain_db=self.rig.default_gain_db,
                                            pixel_format=self.rig.config.pixel_format)
        self._cond = threading.Condition()
        self._queue: collections.deque[Frame] = collections.deque()
        self.frames_dropped_buffer = 0
        self._next_frame_id = 0

    @property
    def acquiring(self) -> bool:
        """Whether triggers expose frames (between start() and stop())."""
        return self.is_running

    def open(self) -> None:
        self._mark_open()

    def close(self) -> None:
        self.stop()
        self._mark_closed()

    def info(self) -> DeviceInfo:
        return DeviceInfo("frame_camera", "sim", "SimBFS (BFS-U3-32S4C model)", "SIM-BFS-0001", "sim",
                          {"width": self.width, "height": self.height,
                           "sensor": self.rig.frame_params.to_dict()})

    def configure(self, settings: FrameCameraSettings) -> None:
        self._require_stopped("configure()")
        if settings.pixel_format not in PIXEL_FORMATS:
            raise DeviceError(f"simulated frame camera: pixel format {settings.pixel_format!r} not "
                              f"one of {PIXEL_FORMATS}")
        if settings.trigger_source is None:
            raise DeviceError("simulated frame camera: free-running mode is not simulated; "
                              "use a trigger source (e.g. 'Line3')")
        if not 1.0 <= settings.exposure_us <= 1e6:
            raise DeviceError(f"simulated frame camera: exposure {settings.exposure_us} us out of "
                              "range 1..1e6")
        if settings.buffer_count < 1:
            raise DeviceError("simulated frame camera: buffer_count must be >= 1")
        self.settings = dataclasses.replace(settings)
        self._mark_configured()

    def start(self) -> None:
        """Start acquiring (a no-op while acquiring, as the SDK backends)."""
        self._require_open()
        with self._cond:
            if self.is_running:
                return
            self._mark_running()
            self._next_frame_id = 0

    def stop(self) -> None:
        with self._cond:
            self._mark_stopped()
            self._queue.clear()
            self._cond.notify_all()

    def grab(self, timeout_s: float) -> Frame:
        self._require_running("grab()")
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while not self._queue:
                left = deadline - time.monotonic()
                if left <= 0 or self.rig.closed:
                    raise GrabTimeout(f"simulated frame camera: no frame within {timeout_s} s")
                self._cond.wait(left)
            frame = self._queue.popleft()
            self._cond.notify_all()
            return frame

    # ----- called by the sim thread -----
    def _take_frame_id(self) -> int:
        fid = self._next_frame_id
        self._next_frame_id += 1
        return fid

    def _deliver(self, frame: Frame, block: bool) -> bool:
        """Put a frame in the buffer; False if it was lost (buffer full in real time, stopped)."""
        with self._cond:
            while block and len(self._queue) >= self.settings.buffer_count:
                if not self.acquiring or self.rig.closed:
                    return False
                self._cond.wait(0.1)
            if not self.acquiring or len(self._queue) >= self.settings.buffer_count:
                self.frames_dropped_buffer += 1
                return False
            frame.t_host_ns = time.monotonic_ns()
            self._queue.append(frame)
            self._cond.notify_all()
            return True
