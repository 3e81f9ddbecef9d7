"""Faults, each a test (issue 16, item 6): what a crash, a lost device, a full disk or a killed
build or training run leaves behind, and that the tools take it from there.

(a) `rig record` killed hard mid-recording -> `rig session recover` -> `rpea build`;
(b) a camera unplugged mid-recording (the fake SDKs raising their own errors);
(c) the trigger's serial link lost, or the MCU reset, mid-recording;
(d) the disk full while recording and while building;
(e) `rpea build` killed, then run again: the same files as an uninterrupted build;
(f) `cacd train` interrupted (Ctrl-C) and killed, then resumed: the same losses.

The simulated rig is scaled down (as in test_build_sim.py) and the SIGKILL cases run in their own
processes.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("rig.sim.world", reason="simulated rig not available")

from dataset.cli import main as rpea_main  # noqa: E402
from dataset.demo import ground_truth_calibration  # noqa: E402
from rig import recorder  # noqa: E402
from rig.cli import main as rig_main  # noqa: E402
from rig.devices import DeviceInfo, PulseReport, TriggerStatus  # noqa: E402
from rig.evt3 import EVENT_DTYPE, TRIGGER_DTYPE, decode_file  # noqa: E402
from rig.recover import RecoverError, recover_session  # noqa: E402
from rig.session import (  # noqa: E402
    FramesWriter,
    SessionManifest,
    SessionReader,
    recorder_identity,
)
from rig.sim.world import SimConfig, SimRig  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCALE = 0.25  # 256x192 frames, 160x90 events
ENV = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}

#: `rig record` in its own process, on the scaled-down simulated rig (the CLI's own code; only
#: the rig it opens is smaller).
SMALL_RIG_RECORD = f"""
import sys
from rig import recorder
from rig.sim.world import SimConfig, SimRig

def open_small(opts):
    sim = SimRig(SimConfig(scenario=opts.scenario, seed=opts.seed, scale={SCALE}))
    return recorder.RigDevices(sim.event_camera, sim.frame_camera, sim.trigger, sim_rig=sim)

recorder.open_devices = open_small
from rig.cli import main
main(args=sys.argv[1:], prog_name="rig")
"""


def small_rig(holder: dict | None = None) -> Callable[[recorder.RecordOptions], recorder.RigDevices]:
    """`recorder.open_devices` for the scaled-down simulated rig (`holder["sim"]`: the rig)."""
    def open_small(opts: recorder.RecordOptions) -> recorder.RigDevices:
        sim = SimRig(SimConfig(scenario=opts.scenario, seed=opts.seed, scale=SCALE,
                               **{k: frozenset(v) for k, v in opts.sim_faults.items()}))
        if holder is not None:
            holder["sim"] = sim
        return recorder.RigDevices(sim.event_camera, sim.frame_camera, sim.trigger, sim_rig=sim)

    return open_small


def record_small(monkeypatch, out: Path, duration_s: float = 1.0, seed: int = 3,
                 on_tick: Callable[[dict], None] | None = None,
                 holder: dict | None = None) -> recorder.RecordSummary:
    monkeypatch.setattr(recorder, "open_devices", small_rig(holder))
    return recorder.record_session(recorder.RecordOptions(
        out_dir=out, duration_s=duration_s, rate_hz=20, seed=seed, show_status=False),
        on_tick=on_tick)


def csv_rows(path: Path) -> list[tuple[int, int]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "pulse_index,t_mcu_us"
    return [(int(a), int(b)) for a, b in (line.split(",") for line in lines[1:] if line)]


def assert_readable(session: Path) -> dict:
    """Everything a session folder holds reads back, and agrees with its manifest's counts."""
    with SessionReader(session) as s:
        c = s.manifest.counts
        assert s.num_frames == c.frames_written
        meta = s.frame_meta
        assert all(len(v) == s.num_frames for v in meta.values())
        for i in range(s.num_frames):
            s.frame(i)  # every written frame decompresses
        pulses = s.mcu_pulses
        assert len(pulses) == c.pulse_reports
        assert list(pulses["pulse_index"]) == list(range(len(pulses)))
        events, triggers = s.decode_events()
        return {"frames": s.num_frames, "pulses": len(pulses), "events": len(events),
                "rising": int((triggers["value"] == 1).sum()), "manifest": s.manifest}


@pytest.fixture(scope="module")
def small_session(tmp_path_factory) -> dict:
    """One complete scaled-down recording and its ground-truth calibration."""
    tmp = tmp_path_factory.mktemp("faults")
    with pytest.MonkeyPatch.context() as mp:
        summary = record_small(mp, tmp / "rec" / "day_small", duration_s=1.0, seed=5)
    assert summary.status == "complete", summary.detail
    session = tmp / "rec" / "day_small"
    calib = ground_truth_calibration(SessionReader(session).ground_truth_geometry(),
                                     tmp / "calib.yaml")
    return {"session": session, "calib": calib, "tmp": tmp}


def build_args(sessions: list[Path], calib: Path, out: Path, *more: str) -> list[str]:
    return ["build", "--split", "all", *[a for s in sessions for a in ("--sessions", str(s))],
            "--calib", str(calib), "--out", str(out), "--quiet", "--seed", "0", *more]


# ---- (a) a recording killed hard --------------------------------------------------------------
def test_sigkill_mid_recording_is_recovered_and_built(tmp_path: Path) -> None:
    session = tmp_path / "rec" / "crashed"
    proc = subprocess.Popen([sys.executable, "-c", SMALL_RIG_RECORD, "record", "--sim", "--duration",
                             "60", "--out", str(session), "--quiet"], env=ENV, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first_rows = None
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            rows = session / "triggers.csv"
            n = len(rows.read_text().splitlines()) - 1 if rows.is_file() else 0
            if n >= 4 and first_rows is None:
                first_rows = time.monotonic()
            # frames.h5 is flushed once a second: wait for a flush with frames in it
            if n >= 16 and first_rows is not None and time.monotonic() - first_rows > 1.5:
                break
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.05)
        else:
            pytest.fail("the recording never got going")
        proc.send_signal(signal.SIGKILL)  # a crash or a power cut: nothing gets to clean up
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    manifest = SessionManifest.load(session)
    assert manifest.status == "recording" and manifest.recorder["pid"] == proc.pid

    # what was on disk at the kill (read directly, before anything repairs it)
    with h5py.File(session / "frames.h5", "r") as f:
        on_disk_frames = f["frames"][:]
        on_disk_ids = f["frame_id"][:]
    assert len(on_disk_frames) > 0
    on_disk_events, on_disk_triggers = decode_file(session / "events.raw")
    text = (session / "triggers.csv").read_text()
    on_disk_pulses = [(int(a), int(b)) for a, b in
                      (line.split(",") for line in text.split("\n")[1:-1])]  # complete lines
    assert len(on_disk_events) > 0 and len(on_disk_pulses) >= 16
    # what a power cut adds on top: blocks never written (zeros), a CSV line cut mid-write
    with open(session / "events.raw", "ab") as f:
        f.write(b"\0" * 4096 + b"\x01")
    with open(session / "triggers.csv", "a") as f:
        f.write(f"{len(on_disk_pulses)},12")

    calib = ground_truth_calibration(SessionReader(session).ground_truth_geometry(),
                                     tmp_path / "calib.yaml")
    runner = CliRunner()
    res = runner.invoke(rpea_main, build_args([session], calib, tmp_path / "data"))
    assert res.exit_code == 1, res.output
    assert "never closed" in res.output and f"rig session recover {session}" in res.output

    # a recording whose process still runs is not touched
    live = SessionManifest.load(session)
    live.recorder = recorder_identity()
    live.save(session)
    with pytest.raises(RecoverError, match="still being recorded"):
        recover_session(session)
    manifest.save(session)

    res = runner.invoke(rig_main, ["session", "recover", str(session), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert SessionManifest.load(session).status == "recording"  # a dry run changes nothing
    res = runner.invoke(rig_main, ["session", "recover", str(session)])
    assert res.exit_code == 0, res.output
    got = assert_readable(session)
    m = got["manifest"]
    kept = got["frames"]  # the rows the last flush completed: all, or all but the last
    assert len(on_disk_frames) - 1 <= kept <= len(on_disk_frames) and kept > 0
    assert f"kept {kept} of {len(on_disk_frames)} rows" in res.output
    on_disk_frames, on_disk_ids = on_disk_frames[:kept], on_disk_ids[:kept]
    assert m.status == "recovered" and "never closed" in m.status_detail
    assert f"kept {kept} frames, {len(on_disk_events):,} events" in m.status_detail
    assert m.recovery["events"]["bytes_cut"] == 4097
    assert m.recovery["triggers"] == {"kept": len(on_disk_pulses), "dropped": 1}
    with SessionReader(session) as s:  # exactly what was on disk: nothing lost, nothing invented
        np.testing.assert_array_equal(s._h5()["frames"][:], on_disk_frames)
        np.testing.assert_array_equal(s.frame_meta["frame_id"], on_disk_ids)
        events, triggers = s.decode_events()
        np.testing.assert_array_equal(events, on_disk_events)
        np.testing.assert_array_equal(triggers, on_disk_triggers)
        assert [tuple(r) for r in s.mcu_pulses.tolist()] == on_disk_pulses

    res = runner.invoke(rpea_main, build_args([session], calib, tmp_path / "data"))
    assert res.exit_code == 0, res.output
    [built] = list((tmp_path / "data").glob("*/crashed.h5"))
    with h5py.File(built, "r") as f:
        n = int(f.attrs["num_pairs"])
        assert 0.8 * len(on_disk_frames) <= n <= len(on_disk_frames), res.output
        assert set(f["pairs/frame_id"][:]) <= set(on_disk_ids.tolist())
        report = json.loads(f["build/report"][()])
    assert report["sync_vs_truth"]["mispaired"] == 0  # anchored at the start: never shifted
    assert report["events_decoded"] == len(on_disk_events)


# ---- (b) a camera unplugged mid-recording -----------------------------------------------------
class CableTrigger:
    """A trigger MCU wired to the fake cameras: each pulse exposes the fake FLIR camera (Line3)
    and puts a rising and a falling edge on the fake EVK4's trigger input."""

    def __init__(self, flir, period_s: float = 0.01) -> None:
        self.flir, self.period_s = flir, period_s
        self.count = self.emitted = self.reported = 0
        self.edges_host_s: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def open(self) -> None: ...
    def close(self) -> None: self.stop()
    def info(self) -> DeviceInfo: return DeviceInfo("trigger", "test", "Cable", "T1")

    def configure(self, s) -> TriggerStatus:
        self.count = s.count
        return self.status()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0 = time.monotonic() + 0.05
        for i in range(self.count):
            if self._stop.wait(max(0.0, t0 + i * self.period_s - time.monotonic())):
                return
            self.edges_host_s.append(time.monotonic())
            self.flir.pulse("Line3")
            self.emitted += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def status(self) -> TriggerStatus:
        running = self._thread is not None and self._thread.is_alive()
        return TriggerStatus("running" if running else "done", self.emitted, 0, 100_000, 1000,
                             self.count)

    def read_pulses(self, timeout_s: float = 0.0) -> list[PulseReport]:
        n = self.emitted
        out = [PulseReport(i, i * 10_000) for i in range(self.reported, n)]
        self.reported = n
        return out


@pytest.fixture
def fake_rig(monkeypatch) -> Iterator[dict]:
    """The real PySpin and Metavision backends over the fake SDKs, and a cable trigger."""
    from fakes import fake_metavision_hal as fhal
    from fakes import fake_pyspin as fps

    from rig.registry import create_device

    monkeypatch.setitem(sys.modules, "PySpin", fps)
    monkeypatch.setitem(sys.modules, "metavision_hal", fhal)
    [flir] = fps.reset(fps.CameraSpec(width=64, height=48))
    cable = CableTrigger(flir)
    rng = np.random.default_rng(0)

    def live(t0_us: int, t1_us: int, t_start: float):
        ev = np.zeros(40, EVENT_DTYPE)
        ev["t"] = np.sort(rng.integers(t0_us, t1_us, ev.size))
        ev["x"], ev["y"] = rng.integers(0, 64, ev.size), rng.integers(0, 48, ev.size)
        ev["p"] = rng.integers(0, 2, ev.size)
        rise = np.array([int((t - t_start) * 1e6) for t in list(cable.edges_host_s)], np.int64)
        tr = np.zeros(2 * rise.size, TRIGGER_DTYPE)
        tr["t"] = np.concatenate([rise, rise + 1000])  # 1 ms pulses
        tr["value"] = np.repeat([1, 0], rise.size)
        tr = tr[(tr["t"] >= t0_us) & (tr["t"] < t1_us)]
        return ev, tr[np.argsort(tr["t"], kind="stable")]

    fhal.reset(fhal.CameraSpec(width=64, height=48, live=live, buffer_period_s=0.005,
                               live_latency_s=0.01))
    devices = recorder.RigDevices(create_device("event_camera", "metavision"),
                                  create_device("frame_camera", "pyspin"), cable)
    monkeypatch.setattr(recorder, "open_devices", lambda opts: devices)
    yield {"fps": fps, "fhal": fhal, "flir": flir, "cable": cable}
    fhal.reset()
    fps.reset()


@pytest.mark.parametrize("camera", ["frame", "event"])
def test_camera_unplugged_mid_recording(fake_rig, monkeypatch, tmp_path: Path, camera: str) -> None:
    fps, fhal = fake_rig["fps"], fake_rig["fhal"]
    if camera == "frame":
        real_next = fps.FakeCamera.GetNextImage

        def get_next_image(self, *args, **kwargs):  # the USB cable pulled after 15 frames
            if self.delivered_total >= 15:
                raise fps.SpinnakerException("Camera has been removed", fps.SPINNAKER_ERR_IO)
            return real_next(self, *args, **kwargs)

        monkeypatch.setattr(fps.FakeCamera, "GetNextImage", get_next_image)
    else:
        real_raw = fhal.I_EventsStream.get_latest_raw_data

        def get_latest_raw_data(self):  # the EVK4 pulled after 20 driver buffers
            if self._next >= 20:
                raise fhal.hal_error(0x100012, "Device disconnected")
            return real_raw(self)

        monkeypatch.setattr(fhal.I_EventsStream, "get_latest_raw_data", get_latest_raw_data)
    out = tmp_path / "s"
    summary = recorder.record_session(recorder.RecordOptions(
        out_dir=out, duration_s=2.0, rate_hz=100, sim=False, show_status=False))
    assert summary.status == "failed"
    assert summary.counts["pulses_sent"] < 150  # stopped at the fault, not after a silent run
    if camera == "frame":
        assert "GetNextImage failed" in summary.detail and "Camera has been removed" in summary.detail
    else:
        assert "event stream failed" in summary.detail and "Device disconnected" in summary.detail
    assert "\n" not in summary.detail
    got = assert_readable(out)
    m = got["manifest"]
    assert m.status == "failed" and m.status_detail == summary.detail
    assert got["pulses"] == m.counts.pulses_sent > 0 and got["events"] > 0
    if camera == "frame":
        assert got["frames"] == 15 and got["pulses"] > 15
    else:
        assert got["rising"] > 0 and got["frames"] > 0
    report = recover_session(out)  # what was recorded before the fault becomes buildable
    assert report.status == "recovered" and report.frames_kept == got["frames"]
    assert SessionManifest.load(out).status == "recovered"


# ---- (c) the trigger's serial link lost, the MCU reset ----------------------------------------
@pytest.mark.parametrize("fault", ["link_lost", "mcu_reset"])
def test_trigger_lost_mid_recording_keeps_the_pulses(monkeypatch, tmp_path: Path, fault: str) -> None:
    holder: dict = {}
    injected: dict = {}

    def on_tick(tick: dict) -> None:
        if injected or tick["pulses"] < 8:
            return
        sim = holder["sim"]
        port, mcu = sim.trigger._ser, sim.mcu
        if fault == "link_lost":  # the USB cable pulled: the port raises from now on
            injected["emitted"] = mcu.pulses_emitted
            port.close()
        else:  # the MCU resets (brown-out): what it already sent arrives, then its boot banner
            deadline = time.monotonic() + 5  # with reports the host has not read yet
            while mcu.pulses_emitted < tick["pulses"] + 2 and time.monotonic() < deadline:
                time.sleep(0.005)
            with port._lock, mcu._lock:
                port._tick()  # the PULSE lines already on the wire
                injected["emitted"] = mcu.pulses_emitted
                mcu.reboot()

    summary = record_small(monkeypatch, tmp_path / "s", duration_s=3.0, on_tick=on_tick,
                           holder=holder)
    assert injected, "the fault was never injected"
    assert summary.status == "failed"
    if fault == "link_lost":
        assert summary.detail.startswith("TriggerDisconnected: trigger on sim disconnected")
    else:
        assert summary.detail.startswith("TriggerReset: trigger MCU on sim restarted")
    got = assert_readable(tmp_path / "s")
    pulses = got["pulses"]
    assert 8 <= pulses <= injected["emitted"]
    if fault == "mcu_reset":  # every report sent before the reset is kept, also the unread ones
        assert pulses == injected["emitted"] >= 10
    assert got["frames"] > 0 and got["rising"] >= pulses - 2


def test_record_cli_says_a_lost_trigger_in_one_line(monkeypatch, tmp_path: Path) -> None:
    holder: dict = {}

    def open_and_cut(opts):
        devices = small_rig(holder)(opts)
        real = devices.trigger.read_pulses

        def read_pulses(timeout_s=0.0):  # the link goes after the first reports
            if holder["sim"].mcu.pulses_emitted >= 4:
                devices.trigger._ser.close()
            return real(timeout_s)

        devices.trigger.read_pulses = read_pulses
        return devices

    monkeypatch.setattr(recorder, "open_devices", open_and_cut)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(rig_main, ["record", "--sim", "--duration", "3", "--out", "s", "--quiet"])
    assert res.exit_code == 1, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "recording failed: TriggerDisconnected" in errors[0]
    assert "rig session recover s" in errors[0]
    assert SessionManifest.load(tmp_path / "s").status == "failed"


# ---- (d) the disk full ------------------------------------------------------------------------
def _disk_full(path: object) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@pytest.mark.parametrize("writer", ["frames", "events"])
def test_disk_full_while_recording(monkeypatch, tmp_path: Path, writer: str) -> None:
    if writer == "frames":
        real_append = FramesWriter.append

        def append(self, frame):  # the 10th frame does not fit
            if self.count >= 9:
                raise _disk_full(self.path)
            real_append(self, frame)

        monkeypatch.setattr(FramesWriter, "append", append)
    else:
        from rig.evt.evt3 import EVT3Writer

        real_write = EVT3Writer.write

        def write(self, events, triggers=None):  # full once 200 kB of events are written
            if self.bytes_written > 200_000:
                raise _disk_full(self.path)
            return real_write(self, events, triggers)

        monkeypatch.setattr(EVT3Writer, "write", write)
    monkeypatch.setattr(recorder, "open_devices", small_rig())
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(rig_main, ["record", "--sim", "--duration", "4", "--out", "s", "--quiet"])
    assert res.exit_code == 1, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, res.output
    assert "No space left on device" in errors[0]
    got = assert_readable(tmp_path / "s")  # everything written before the disk filled
    m = got["manifest"]
    assert m.status == "failed" and "No space left on device" in m.status_detail
    assert m.counts.pulses_sent < 80  # stopped at the fault, not at the end
    if writer == "frames":
        assert got["frames"] == 9 and "free some disk space" in m.status_detail
    else:
        assert 0 < (tmp_path / "s" / "events.raw").stat().st_size <= 220_000 and got["events"] > 0


def test_disk_full_when_closing_the_session_points_to_recover(monkeypatch, tmp_path: Path) -> None:
    """The last write of a recording, its manifest, does not fit: the session stays 'recording'
    (readable as it is), the error says how to go on, and recovery does."""
    real_save = SessionManifest.save
    saves = {"n": 0}

    def save(self, folder):
        saves["n"] += 1
        if saves["n"] > 1:  # the first save (status "recording") fits, the final one does not
            raise _disk_full(Path(folder) / "session.json")
        real_save(self, folder)

    monkeypatch.setattr(SessionManifest, "save", save)
    monkeypatch.setattr(recorder, "open_devices", small_rig())
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(rig_main, ["record", "--sim", "--duration", "0.5", "--out", "s", "--quiet"])
    assert res.exit_code == 1, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, res.output
    assert "No space left on device" in errors[0] and "stays marked 'recording'" in errors[0]
    assert "rig session recover s" in errors[0]
    assert SessionManifest.load(tmp_path / "s").status == "recording"
    monkeypatch.setattr(SessionManifest, "save", real_save)  # space freed
    with pytest.raises(RecoverError, match="still being recorded"):  # by this very process
        recover_session(tmp_path / "s")
    report = recover_session(tmp_path / "s", force=True)
    assert report.status == "recovered" and report.frames_kept == 10
    assert assert_readable(tmp_path / "s")["pulses"] == 10


def test_disk_full_while_building_leaves_no_half_written_file(small_session, monkeypatch,
                                                              tmp_path: Path) -> None:
    from dataset.rpea_format import SequenceWriter

    real_append = SequenceWriter.append_events
    calls = {"n": 0}

    def append_events(self, *args, **kwargs):  # the first events go in, then the disk is full
        calls["n"] += 1
        real_append(self, *args, **kwargs)
        self.h5.flush()
        assert self._file.tmp_path.stat().st_size > 100_000
        raise _disk_full(self._file.tmp_path)

    monkeypatch.setattr(SequenceWriter, "append_events", append_events)
    out = tmp_path / "data"
    out.mkdir()
    res = CliRunner().invoke(rpea_main, build_args([small_session["session"]],
                                                   small_session["calib"], out,
                                                   "--serial"), catch_exceptions=False)
    assert res.exit_code == 1, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, res.output
    assert "disk full while building day_small" in errors[0]
    assert "No space left on device; free some disk space" in errors[0]
    assert calls["n"] == 1
    left = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert left == ["splits.yaml"], left  # no sequence file, no temporary file, no index


# ---- (e) `rpea build` killed, then run again ---------------------------------------------------
def _h5_contents(path: Path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        out["/"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in f.attrs.items()}

        def visit(name: str, obj) -> None:
            attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                out[name] = (obj[()], attrs)
            else:
                out[name] = attrs

        f.visititems(visit)
    return out


def test_sigkill_during_build_then_rerun_gives_the_same_files(small_session, tmp_path: Path) -> None:
    session, calib = small_session["session"], small_session["calib"]
    out = tmp_path / "data"
    res = CliRunner().invoke(rpea_main, build_args([session], calib, out))
    assert res.exit_code == 0, res.output
    reference = tmp_path / "reference"
    out.rename(reference)  # the same output path for both builds (the file records its options)

    proc = subprocess.Popen([sys.executable, "-m", "dataset.cli", *build_args([session], calib, out)],
                            env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(out.glob("*/.*.tmp")):
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the build never started writing"
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)  # the build and its image workers, mid-write
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert list(out.glob("*/.*.tmp")), "the kill left no temporary file (too late?)"
    assert not list(out.glob("*/day_small.h5"))  # never half a file under the real name

    res = CliRunner().invoke(rpea_main, build_args([session], calib, out))  # the same command
    assert res.exit_code == 0, res.output
    assert not list(out.rglob("*.tmp"))  # what the killed build left is cleaned up
    [ref_file] = list(reference.glob("*/day_small.h5"))
    new_file = out / ref_file.parent.name / ref_file.name
    a, b = _h5_contents(ref_file), _h5_contents(new_file)
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], tuple):
            np.testing.assert_array_equal(a[key][0], b[key][0], err_msg=key)
            assert a[key][1] == b[key][1], key
        else:
            assert a[key] == b[key], key
    index = json.loads((out / ref_file.parent.name / "index.json").read_text())
    ref_index = json.loads((reference / ref_file.parent.name / "index.json").read_text())
    assert [s["num_pairs"] for s in index["sequences"]] == [s["num_pairs"] for s in ref_index["sequences"]]
    import hashlib

    assert index["sequences"][0]["sha256"] == hashlib.sha256(new_file.read_bytes()).hexdigest()
    assert index["sequences"][0]["sha256"] == ref_index["sequences"][0]["sha256"]  # byte for byte


# ---- (f) `cacd train` interrupted and killed, then resumed ------------------------------------
TRAIN = ["model.proj_dim=16", "data.crop=[32,48]", "train.batch_size=2", "train.epochs=5",
         "train.val_every=2", "train.max_minutes=null", "train.log_every=1", "train.threads=1",
         "train.save_every_steps=2"]


def _wait_for_step(run: Path, proc: subprocess.Popen, step: int) -> int:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            seen = json.loads((run / "state.json").read_text())["global_step"]
        except (OSError, ValueError, KeyError):
            seen = -1
        if seen >= step:
            return seen
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.02)
    pytest.fail(f"training never reached step {step}")


def test_training_interrupted_and_killed_resumes_exactly(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from dataset.synthetic import SynthConfig, write_dataset
    from model.config import resolve
    from model.train import train

    data = tmp_path / "data"
    write_dataset(data, {"train": 1, "val": 1},
                  SynthConfig(height=48, width=64, pairs_per_sequence=4, substeps=3), seed=1)
    ref = train(resolve(None, TRAIN), data, tmp_path / "ref", progress=False)
    assert ref["global_step"] == 10
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "model.cli", "train", "--data", str(data), "--out", str(run),
           "--quiet", *[a for s in TRAIN for a in ("--set", s)]]

    # Ctrl-C: the step ends, its checkpoint is saved, exit 130 with how to go on
    proc = subprocess.Popen(cmd, env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_step(run, proc, 2)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output
    stopped = json.loads((run / "state.json").read_text())["global_step"]
    assert f"interrupted at step {stopped}" in output and "--resume" in output
    assert 2 <= stopped < 10

    # resumed, then killed (no checkpoint of its own: it goes on from the last periodic one)
    proc = subprocess.Popen([*cmd, "--resume"], env=ENV, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_step(run, proc, stopped + 1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert json.loads((run / "state.json").read_text())["global_step"] < 10

    done = subprocess.run([*cmd, "--resume"], env=ENV, cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    a = json.loads((tmp_path / "ref" / "state.json").read_text())
    b = json.loads((run / "state.json").read_text())
    assert [e["step"] for e in b["loss_log"]] == list(range(1, 11))
    assert b["loss_log"] == a["loss_log"]  # the same loss at every step
    assert b["history"] == a["history"]  # and the same validations
    wa = load_file(str(tmp_path / "ref" / "last.safetensors"))
    wb = load_file(str(run / "last.safetensors"))
    assert all(np.array_equal(wa[k].numpy(), wb[k].numpy()) for k in wa)


def test_a_checkpoint_torn_by_a_kill_is_refused(tmp_path: Path) -> None:
    """Weights of one step with the optimizer state of another (a kill between two renames):
    resuming would not be exact, so it is refused in one line."""
    import torch

    from model.cacd import CACDNet, NetConfig
    from model.checkpoint import CheckpointError, load_training_state, save_checkpoint, save_model

    net = CACDNet(NetConfig(proj_dim=16))
    optim = torch.optim.Adam(net.parameters())
    save_checkpoint(tmp_path, net, optim, {"global_step": 4, "epoch": 2, "step_in_epoch": 0})
    assert load_training_state(tmp_path, optim)["global_step"] == 4
    save_model(net, tmp_path / "last.safetensors", {"global_step": "6"})
    with pytest.raises(CheckpointError, match="last.safetensors at step 6") as err:
        load_training_state(tmp_path, optim)
    assert "\n" not in str(err.value)
