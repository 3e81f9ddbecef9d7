"""The recorder's own logic with scripted devices: counting, drops, manifest, interruption."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rig import recorder as rec
from rig.devices import (
    DeviceInfo,
    EventRates,
    Frame,
    FrameCameraLifecycle,
    GrabTimeout,
    PulseReport,
    TriggerStatus,
)
from rig.session import FramesWriter, SessionReader


class ScriptedTrigger:
    """Emits `count` pulses, one per `period_s` of wall time."""

    def __init__(self, period_s: float = 0.002) -> None:
        self.period_s, self.count, self.t0, self.stopped_at = period_s, 0, None, None
        self.reported = 0

    def open(self): ...
    def close(self): ...
    def info(self): return DeviceInfo("trigger", "test", "Scripted", "T1")

    def configure(self, s):
        self.count = s.count
        return self.status()

    def start(self): self.t0 = time.monotonic()
    def stop(self): self.stopped_at = self.emitted()

    def emitted(self) -> int:
        if self.t0 is None:
            return 0
        if self.stopped_at is not None:
            return self.stopped_at
        return min(self.count, int((time.monotonic() - self.t0) / self.period_s))

    def status(self):
        n = self.emitted()
        state = "running" if (n < self.count and self.stopped_at is None and self.t0) else "done"
        return TriggerStatus(state, n, n * 1000, 20000, 1000, self.count)

    def read_pulses(self, timeout_s=0.0):
        n = self.emitted()
        out = [PulseReport(i, i * 50_000) for i in range(self.reported, n)]
        self.reported = n
        return out


class ScriptedCamera(FrameCameraLifecycle):
    """Delivers a frame for each pulse, skipping ids in `lost` (a transport drop)."""

    width, height = 32, 24

    def __init__(self, trigger: ScriptedTrigger, lost=(), incomplete=(), delay_s=0.0) -> None:
        self.trigger, self.lost, self.incomplete, self.delay_s = trigger, set(lost), set(incomplete), delay_s
        self.next = 0

    def open(self): ...
    def close(self): ...
    def info(self): return DeviceInfo("frame_camera", "test", "Scripted", "F1")
    def configure(self, s): ...
    def start(self): ...
    def stop(self): ...

    def grab(self, timeout_s: float) -> Frame:
        deadline = time.monotonic() + timeout_s
        while self.next >= self.trigger.emitted() or self.next in self.lost:
            if self.next in self.lost and self.next < self.trigger.emitted():
                self.next += 1
                continue
            if time.monotonic() > deadline:
                raise GrabTimeout("no frame")
            time.sleep(0.0005)
        i, self.next = self.next, self.next + 1
        time.sleep(self.delay_s)
        px = np.full((self.height, self.width), i % 256, np.uint8)
        return Frame(px, i, i * 50_000_000, time.monotonic_ns(), 5000.0, 0.0, i in self.incomplete)


class ScriptedEvents:
    width, height = 16, 8

    def __init__(self): self.path = None
    def open(self): ...
    def close(self): ...
    def info(self): return DeviceInfo("event_camera", "test", "Scripted", "E1")
    def configure(self, s): ...
    def start_recording(self, p):
        Path(p).write_bytes(b"% evt 3.0\n% end\n")
        self.path = p

    def stop_recording(self): ...
    def rates(self): return EventRates(0, 0.0, 0, 16)


def _record(tmp_path, monkeypatch, cam_kwargs=None, n=40, stop_event=None, **opts):
    trig = ScriptedTrigger()
    devices = rec.RigDevices(ScriptedEvents(), ScriptedCamera(trig, **(cam_kwargs or {})), trig)
    monkeypatch.setattr(rec, "open_devices", lambda o: devices)
    options = rec.RecordOptions(out_dir=tmp_path / "s", duration_s=n / 20, rate_hz=20, sim=False,
                                show_status=False, **opts)
    return rec.record_session(options, stop_event=stop_event)


def test_counts_agree_and_session_reads_back(tmp_path, monkeypatch) -> None:
    summary = _record(tmp_path, monkeypatch)
    assert summary.status == "complete"
    c = summary.counts
    assert c["pulses_sent"] == c["frames_received"] == c["frames_written"] == c["pulse_reports"] == 40
    assert c["frames_dropped"] == 0 and c["frames_incomplete"] == 0
    with SessionReader(tmp_path / "s") as s:
        assert s.status == "complete" and s.num_frames == 40
        assert list(s.frame_meta["frame_id"]) == list(range(40))
        assert list(s.mcu_pulses["pulse_index"]) == list(range(40))
        assert s.frame(7)[0, 0] == 7


def test_drops_and_incomplete_frames_are_counted(tmp_path, monkeypatch) -> None:
    summary = _record(tmp_path, monkeypatch, cam_kwargs={"lost": {5, 6, 20}, "incomplete": {9}})
    c = summary.counts
    assert c["frames_received"] == 37
    assert c["frames_dropped_camera"] == 3 and c["frames_dropped"] == 3
    assert c["frames_incomplete"] == 1
    meta = json.loads((tmp_path / "s" / "session.json").read_text())
    assert meta["counts"]["frames_dropped"] == 3
    with SessionReader(tmp_path / "s") as s:
        assert s.frame_meta["incomplete"].sum() == 1 and 5 not in s.frame_meta["frame_id"]


def test_full_writer_queue_is_a_counted_drop(tmp_path) -> None:
    trig = ScriptedTrigger(period_s=0.0005)
    trig.configure(type("S", (), {"count": 200})())
    cam = ScriptedCamera(trig)
    writer = FramesWriter(tmp_path / "f.h5", cam.width, cam.height, "Mono8")
    slow_append = writer.append

    def append(frame):
        time.sleep(0.01)
        slow_append(frame)

    writer.append = append  # a disk that cannot keep up
    pipe = rec.FramePipeline(cam, writer, queue_frames=4, grab_timeout_s=0.05)
    trig.start()
    pipe.start()
    while trig.status().state == "running" or cam.next < 200:
        time.sleep(0.01)
    pipe.stop()
    writer.close()
    c = pipe.counts
    assert c["received"] == 200
    assert c["dropped_queue_full"] > 0
    assert c["written"] + c["dropped_queue_full"] == 200


def test_stop_request_marks_session_interrupted(tmp_path, monkeypatch) -> None:
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    summary = _record(tmp_path, monkeypatch, n=2000, stop_event=stop)
    assert summary.status == "interrupted"
    with SessionReader(tmp_path / "s") as s:
        assert s.status == "interrupted"
        assert 0 < s.num_frames < 2000
        assert s.num_frames == summary.counts["frames_written"]
        # the frames of pulses already emitted when the stop came are waited for, not cut off
        assert s.num_frames == summary.counts["pulses_sent"] == len(s.mcu_pulses)


def test_refuses_non_empty_output_folder(tmp_path, monkeypatch) -> None:
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "keep.txt").write_text("x")
    with pytest.raises(rec.RecordError, match="not empty"):
        _record(tmp_path, monkeypatch)
    assert (tmp_path / "s" / "keep.txt").exists()


def test_disk_space_check(tmp_path) -> None:
    with pytest.raises(rec.RecordError, match="not enough disk space"):
        rec.check_disk_space(tmp_path, 1 << 60)
