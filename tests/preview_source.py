"""What the live-preview tests record from: a small scripted rig (trigger, Bayer frame camera,
and an event camera that writes a real EVT3 file as the wall clock passes), fast enough for a
unit test, and a moving bright square that both cameras see, so a picture can be checked."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from rig.devices import (
    DeviceInfo,
    EventRates,
    Frame,
    FrameCameraLifecycle,
    GrabTimeout,
    PulseReport,
    TriggerStatus,
)
from rig.evt.common import EVENT_DTYPE, TRIGGER_DTYPE
from rig.evt3 import EVT3Writer

FRAME_SIZE = (160, 120)
EVENT_SIZE = (128, 96)


def square_x(t_s: float, width: int) -> int:
    """Left edge of the square at time t (it sweeps the sensor once a second)."""
    return int((t_s % 1.0) * (width - 24))


def bayer_frame(t_s: float, size: tuple[int, int] = FRAME_SIZE) -> np.ndarray:
    """A grey gradient with a bright square (clipped at 255: saturated) at `square_x`."""
    w, h = size
    img = np.tile(np.linspace(20, 120, w, dtype=np.float32), (h, 1)).astype(np.uint8)
    x = square_x(t_s, w)
    img[h // 3:h // 3 + 24, x:x + 24] = 255
    return img


def square_events(t0_us: int, t1_us: int, size: tuple[int, int] = EVENT_SIZE,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """ON events along the square's leading edge, OFF along its trailing one, plus noise."""
    w, h = size
    rng = rng or np.random.default_rng(0)
    x = square_x(t1_us / 1e6, w)
    ys = np.arange(h // 3, h // 3 + 24)
    n_noise = 40
    xs = np.concatenate([np.full(ys.size, min(x + 24, w - 1)), np.full(ys.size, x),
                         rng.integers(0, w, n_noise)])
    yy = np.concatenate([ys, ys, rng.integers(0, h, n_noise)])
    ev = np.zeros(xs.size, EVENT_DTYPE)
    ev["t"] = np.sort(rng.integers(t0_us, max(t1_us, t0_us + 1), xs.size))
    ev["x"], ev["y"] = xs, yy
    ev["p"] = np.concatenate([np.ones(ys.size), np.zeros(ys.size), rng.integers(0, 2, n_noise)])
    return ev


class ScriptedTrigger:
    """`count` pulses at `rate_hz` of wall time."""

    def __init__(self, rate_hz: float = 20.0) -> None:
        self.period_s, self.count = 1.0 / rate_hz, 0
        self.t0: float | None = None
        self.stopped_at: int | None = None
        self.reported = 0

    def open(self) -> None: ...
    def close(self) -> None: ...
    def info(self) -> DeviceInfo: return DeviceInfo("trigger", "test", "Scripted", "T1")

    def configure(self, s: Any) -> TriggerStatus:
        self.count, self.period_s = s.count, 1.0 / s.rate_hz
        return self.status()

    def start(self) -> None: self.t0 = time.monotonic()
    def stop(self) -> None: self.stopped_at = self.emitted()

    def emitted(self) -> int:
        if self.t0 is None:
            return 0
        if self.stopped_at is not None:
            return self.stopped_at
        return min(self.count, int((time.monotonic() - self.t0) / self.period_s))

    def status(self) -> TriggerStatus:
        n = self.emitted()
        state = "running" if (n < self.count and self.stopped_at is None and self.t0) else "done"
        return TriggerStatus(state, n, n * 1000, 20000, 1000, self.count)

    def read_pulses(self, timeout_s: float = 0.0) -> list[PulseReport]:
        n = self.emitted()
        out = [PulseReport(i, int(i * self.period_s * 1e6)) for i in range(self.reported, n)]
        self.reported = n
        return out


class ScriptedCamera(FrameCameraLifecycle):
    """A BayerRG8 frame of the moving square for each pulse."""

    width, height = FRAME_SIZE

    def __init__(self, trigger: ScriptedTrigger) -> None:
        self.trigger, self.next = trigger, 0

    def open(self) -> None: ...
    def close(self) -> None: ...
    def info(self) -> DeviceInfo: return DeviceInfo("frame_camera", "test", "Scripted", "F1")
    def configure(self, s: Any) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...

    def grab(self, timeout_s: float) -> Frame:
        deadline = time.monotonic() + timeout_s
        while self.next >= self.trigger.emitted():
            if time.monotonic() > deadline:
                raise GrabTimeout("no frame")
            time.sleep(0.001)
        i, self.next = self.next, self.next + 1
        t_s = i * self.trigger.period_s
        return Frame(bayer_frame(t_s), i, int(t_s * 1e9), time.monotonic_ns(), 5000.0, 0.0)


class ScriptedEvents:
    """An event camera that writes the square's events (and one trigger edge pair per pulse)
    into a real EVT3 file every 10 ms of wall time, as a camera's raw log grows."""

    width, height = EVENT_SIZE

    def __init__(self, trigger: ScriptedTrigger) -> None:
        self.trigger = trigger
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.events = 0
        self.edges = 0
        self.writer: EVT3Writer | None = None

    def open(self) -> None: ...
    def close(self) -> None: ...
    def info(self) -> DeviceInfo: return DeviceInfo("event_camera", "test", "Scripted", "E1")
    def configure(self, s: Any) -> None: ...

    def start_recording(self, path: str | os.PathLike[str]) -> None:
        self.writer = EVT3Writer(path, *EVENT_SIZE)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        rng = np.random.default_rng(1)
        t0, t_us, pulses = time.monotonic(), 0, 0
        while not self._stop.wait(0.01):
            now_us = int((time.monotonic() - t0) * 1e6)
            ev = square_events(t_us, now_us, rng=rng)
            n = self.trigger.emitted()
            edges = np.zeros(2 * (n - pulses), TRIGGER_DTYPE)
            if n > pulses:
                edges["t"] = np.repeat(np.linspace(t_us, now_us - 1, n - pulses).astype(np.int64), 2)
                edges["t"][1::2] += 1
                edges["value"][0::2] = 1
            assert self.writer is not None
            self.writer.write(ev, edges)
            self.writer.flush()
            self.events += len(ev)
            self.edges += len(edges)
            t_us, pulses = now_us, n

    def stop_recording(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.writer is not None:
            self.writer.close()

    def rates(self) -> EventRates:
        return EventRates(self.events, 10_000.0, self.edges, 0)


def scripted_devices(rate_hz: float = 20.0) -> Any:
    """The three devices as `rig.recorder.open_devices` returns them."""
    from rig.recorder import RigDevices

    trig = ScriptedTrigger(rate_hz)
    return RigDevices(ScriptedEvents(trig), ScriptedCamera(trig), trig)


def write_square_events(path: Path, seconds: float) -> None:
    """An EVT3 file of the square's events over `seconds` (for a tail that reads a finished file)."""
    rng = np.random.default_rng(2)
    with EVT3Writer(path, *EVENT_SIZE) as w:
        step = 10_000
        for t in range(0, int(seconds * 1e6), step):
            w.write(square_events(t, t + step, rng=rng))


class Feeder:
    """Publishes the square to a preview feed at `rate_hz` until `stop()`: frames, counters, and
    a growing EVT3 file (what a recording gives the preview, without a recorder)."""

    def __init__(self, feed: Any, folder: Path, rate_hz: float = 20.0, mirror: str | None = None) -> None:
        from rig.preview import SessionInfo

        self.feed, self.rate_hz = feed, rate_hz
        self.raw = Path(folder) / "events.raw"
        self._writer = EVT3Writer(self.raw, *EVENT_SIZE)
        feed.start_session(SessionInfo(self.raw, FRAME_SIZE, EVENT_SIZE, "BayerRG8", rate_hz, 5000.0, mirror))
        feed.set_phase("recording", str(folder))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def _run(self) -> None:
        rng = np.random.default_rng(4)
        period_us, k, events = int(1e6 / self.rate_hz), 0, 0
        t0 = time.monotonic()
        while not self._stop.is_set():
            ev = square_events(k * period_us, (k + 1) * period_us, rng=rng)
            self._writer.write(ev)
            self._writer.flush()
            events += len(ev)
            t_s = k / self.rate_hz
            frame = Frame(bayer_frame(t_s), k, int(t_s * 1e9), time.monotonic_ns(), 5000.0, 0.0)
            self.feed.publish_frame(frame)
            self.feed.publish_counts({"pulses": k + 1, "frames_received": k + 1, "frames_written": k + 1,
                                      "drops_camera": 0, "drops_queue": 0, "incomplete": 0,
                                      "events": events, "event_rate_ev_s": len(ev) * self.rate_hz,
                                      "trigger_events": 2 * (k + 1), "elapsed_s": t_s, "duration_s": 60.0})
            k += 1
            self._stop.wait(max(0.0, t0 + k / self.rate_hz - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._writer.close()
