"""Soak runs (a script, not CI): long recordings and conversions must keep memory flat and drop
nothing (issue 16, item 8). Three soaks, each a child process whose resident memory (RSS, its
children included) is sampled every few seconds:

- `fake`: a recording through the real hardware backends (metavision, pyspin) on the fake SDKs of
  tests/fakes, paced in real time as the hardware would be: the trigger MCU's protocol twin runs on
  the host clock behind the real serial client, a "cable" thread carries each pulse to the fake
  FLIR's Line3 and the fake EVK4's trigger-in, the fake EVK4 streams random events live (nothing
  pre-rendered) in 10 ms driver buffers; then, with --build, `rpea build` of the session;
- `sim`: a recording of the simulated rig (default size, `rig record --sim`) and, with --build,
  its `rpea build` with the simulator's true calibration;
- `convert`: a synthetic EVT3 file of that many minutes at a modest event rate through
  `rpea events convert`.

    .venv/bin/python benchmarks/soak.py fake --minutes 60 --build    # the issue's 60-minute soak
    .venv/bin/python benchmarks/soak.py sim --minutes 10 --build     # a 10-minute simulated recording
    .venv/bin/python benchmarks/soak.py convert --minutes 60         # a 1-hour EVT3 file
    .venv/bin/python benchmarks/soak.py all                          # the three, one after the other

Each prints a table (one row a minute: minute, RSS MB, pulses, frames, events, drops) and a
summary per phase: peak RSS, the RSS slope over the second half (MB/min; flat memory: about 0),
drops, wall time. Files go to a temporary folder under --workdir (free space is checked first; a
simulated minute is about 1.7 GB) and are removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GB = 1e9
SIM_BYTES_PER_MIN = 1.7e9  # the simulated rig at default size (day scenario)


# ---- memory of a process tree -------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    return out


def _vmrss(pid: int) -> int:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and all its descendants (psutil if installed, else /proc)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            p = psutil.Process(pid)
            procs = [p, *p.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for q in procs:
            with contextlib.suppress(psutil.Error):
                total += q.memory_info().rss
        return total
    seen, todo, total = set(), [pid], 0
    while todo:
        q = todo.pop()
        if q in seen:
            continue
        seen.add(q)
        total += _vmrss(q)
        todo += _children(q)
    return total


# ---- running and sampling one phase -------------------------------------------------------------


@dataclass
class Phase:
    name: str
    samples: list[tuple[float, float, dict[str, Any]]] = field(default_factory=list)  # (s, MB, progress)
    wall_s: float = 0.0
    rc: int = 0
    final: dict[str, Any] = field(default_factory=dict)

    @property
    def peak_mb(self) -> float:
        return max((mb for _, mb, _ in self.samples), default=0.0)

    def slope_mb_per_min(self) -> float | None:
        """RSS slope over the second half of the run (MB per minute), a straight-line fit."""
        half = [(t, mb) for t, mb, _ in self.samples if t >= self.wall_s / 2]
        if len(half) < 5:
            return None
        t, mb = np.array(half).T
        if np.ptp(t) < 10.0:  # too short to call a trend
            return None
        return float(np.polyfit(t / 60.0, mb, 1)[0])

    def second_half_range(self) -> tuple[float, float] | None:
        half = [mb for t, mb, _ in self.samples if t >= self.wall_s / 2]
        return (min(half), max(half)) if half else None

    def summary(self) -> str:
        slope = self.slope_mb_per_min()
        rng = self.second_half_range()
        drops = self.final.get("drops", "-")
        parts = [f"{self.name}: rc {self.rc}, wall {self.wall_s / 60:.1f} min, "
                 f"peak RSS {self.peak_mb:.0f} MB",
                 "RSS slope (2nd half) " + (f"{slope:+.2f} MB/min" if slope is not None else "n/a"),
                 "RSS range (2nd half) " + (f"{rng[0]:.0f}-{rng[1]:.0f} MB" if rng else "n/a"),
                 f"drops {drops}"]
        for key in ("status", "pulses", "frames", "events", "session_bytes", "bytes", "output_bytes"):
            if key in self.final:
                v = self.final[key]
                parts.append(f"{key} {v / 1e6:.0f} MB" if key.endswith("bytes") else f"{key} {v}")
        return ", ".join(parts)


def _read_progress(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text())
    return {}


def _row(t_s: float, mb: float, p: dict[str, Any]) -> str:
    def v(key: str) -> str:
        return f"{p[key]:>12,}" if isinstance(p.get(key), int) else f"{'-':>12}"

    return f"{t_s / 60:7.1f} {mb:8.0f} {v('pulses')} {v('frames')} {v('events')} {v('drops')}"


def run_phase(name: str, argv: list[str], *, progress: Path | None = None, sample_s: float = 2.0,
              cwd: Path | None = None) -> Phase:
    """Run `argv` as a child, sample its tree's RSS every `sample_s`, print a row a minute."""
    print(f"\n== {name}: {' '.join(argv)}", flush=True)
    print(f"{'minute':>7} {'RSS MB':>8} {'pulses':>12} {'frames':>12} {'events':>12} {'drops':>12}",
          flush=True)
    phase = Phase(name)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out_lines: deque[str] = deque(maxlen=40)
    reader = threading.Thread(target=lambda: out_lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    next_print = 0.0
    try:
        while True:
            t = time.monotonic() - t0
            mb = tree_rss_bytes(proc.pid) / 1e6
            p = _read_progress(progress)
            if mb > 0:
                phase.samples.append((t, mb, p))
            if t >= next_print:
                print(_row(t, mb, p), flush=True)
                next_print += 60.0
            if proc.poll() is not None:
                break
            time.sleep(sample_s)
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(30)
        raise
    phase.wall_s = time.monotonic() - t0
    phase.rc = proc.returncode
    reader.join(5)
    phase.final = _read_progress(progress)
    if phase.samples:
        t, mb, _ = phase.samples[-1]
        print(_row(phase.wall_s, mb, phase.final), flush=True)
    if phase.rc != 0:
        print("".join(out_lines), flush=True)
    else:
        tail = [ln.rstrip() for ln in out_lines if ln.strip()][-3:]
        for ln in tail:
            print(f"   | {ln}", flush=True)
    print(f"-> {phase.summary()}", flush=True)
    return phase


# ---- disk ---------------------------------------------------------------------------------------


def require_space(folder: Path, need_bytes: float, what: str) -> None:
    free = shutil.disk_usage(folder).free
    margin = 2 * GB
    if free < need_bytes + margin:
        sys.exit(f"soak {what}: {free / GB:.1f} GB free in {folder}, about {need_bytes / GB:.1f} GB "
                 f"(+{margin / GB:.0f} GB margin) needed; choose --workdir elsewhere or fewer --minutes")
    print(f"disk: {free / GB:.1f} GB free in {folder}, {what} needs about {need_bytes / GB:.1f} GB",
          flush=True)


# ---- the fake hardware: MCU on the host clock, a cable, a live EVK4 -----------------------------


class LiveEvents:
    """The fake EVK4's sensor: uniform random events at `rate_ev_s` and the trigger edges the
    cable brings, per driver buffer (called by the fake HAL as the wall clock passes)."""

    def __init__(self, width: int, height: int, rate_ev_s: float, channel: int = 0, seed: int = 0) -> None:
        self.width, self.height, self.rate = width, height, float(rate_ev_s)
        self.channel = channel
        self.rng = np.random.default_rng(seed)
        self._edges: deque[tuple[float, int]] = deque()  # (host monotonic s, value)
        self._pending: list[tuple[int, int]] = []
        self.late_edges = 0
        self.before: Any = None  # called first in each buffer: the cable delivers what has fired

    def add_pulse(self, host_rise_s: float, host_fall_s: float) -> None:
        self._edges.append((host_rise_s, 1))
        self._edges.append((host_fall_s, 0))

    def __call__(self, t0_us: int, t1_us: int, t_start: float) -> tuple[np.ndarray, np.ndarray]:
        from rig.evt.common import EVENT_DTYPE, TRIGGER_DTYPE

        if self.before is not None:
            self.before()
        n = int(self.rng.poisson(self.rate * (t1_us - t0_us) / 1e6))
        ev = np.zeros(n, EVENT_DTYPE)
        ev["t"] = np.sort(self.rng.integers(t0_us, t1_us, n))
        ev["x"] = self.rng.integers(0, self.width, n)
        ev["y"] = self.rng.integers(0, self.height, n)
        ev["p"] = self.rng.integers(0, 2, n)
        while self._edges:
            host_s, value = self._edges.popleft()
            self._pending.append((int((host_s - t_start) * 1e6), value))
        self._pending.sort()
        now = [(t, v) for t, v in self._pending if t < t1_us]
        self._pending = [(t, v) for t, v in self._pending if t >= t1_us]
        kept = [(t, v) for t, v in now if t >= t0_us]
        self.late_edges += len(now) - len(kept)  # arrived after their buffer was sent: lost
        tr = np.zeros(len(kept), TRIGGER_DTYPE)
        if kept:
            tr["t"] = [t for t, _ in kept]
            tr["value"] = [v for _, v in kept]
            tr["id"] = self.channel
        return ev, tr


def _fake_rig(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """The fake SDKs in sys.modules, the devices through the real backends, the cable thread."""
    sys.path.insert(0, str(REPO / "tests"))
    from fakes import fake_metavision_hal as fhal
    from fakes import fake_pyspin as fps

    sys.modules["metavision_hal"] = fhal  # type: ignore[assignment]
    sys.modules["PySpin"] = fps  # type: ignore[assignment]
    from rig.recorder import RigDevices
    from rig.registry import create_device
    from rig.sim.mcu import SimMCU, SimSerial
    from rig.trigger import SerialTrigger
    from rig.trigger import protocol as tp

    ew, eh = fake_sizes(args.scale)["event"]
    fw, fh = fake_sizes(args.scale)["frame"]
    source = LiveEvents(ew, eh, args.event_rate)
    fhal.reset(fhal.CameraSpec(width=ew, height=eh, live=source, buffer_period_s=0.01))
    (flir,) = fps.reset(fps.CameraSpec(width=fw, height=fh, keep_delivered=32))

    class WiredMCU(SimMCU):
        """The firmware's protocol twin; each pulse it emits also goes down the cable."""

        def __init__(self) -> None:
            super().__init__()
            self.fired: deque[tuple[int, int, int]] = deque()

        def _emit(self, index: int, rise_us: int) -> None:
            super()._emit(index, rise_us)
            self.fired.append((index, rise_us, rise_us + self._run_plan.width_cyc // tp.CYCLES_PER_US))

    mcu = WiredMCU()
    port = SimSerial(mcu, realtime=True)  # MCU time = host monotonic time
    trigger = SerialTrigger(port, timeout_s=2.0, boot_wait_s=0.0)  # the real client

    class Cable(threading.Thread):
        """MCU pin -> FLIR Line3 and EVK4 trigger-in, as the edges happen (1 ms polling; the
        EVK4's buffer maker also flushes it, so no edge can miss its buffer however late this
        thread gets the CPU)."""

        def __init__(self) -> None:
            super().__init__(name="cable", daemon=True)
            self.stop = threading.Event()
            self.pulses = 0
            self._lock = threading.Lock()

        def flush(self) -> None:
            with self._lock:
                _ = port.in_waiting  # moves MCU time on to now (pulses fire into mcu.fired)
                while mcu.fired:
                    _index, rise_us, fall_us = mcu.fired.popleft()
                    rise_s = port._t0_host + (rise_us - port._t0_mcu_us) / 1e6
                    fall_s = port._t0_host + (fall_us - port._t0_mcu_us) / 1e6
                    flir.pulse("Line3", t_host_ns=int(rise_s * 1e9))
                    source.add_pulse(rise_s, fall_s)
                    self.pulses += 1

        def run(self) -> None:
            while not self.stop.is_set():
                self.flush()
                time.sleep(0.001)

    devices = RigDevices(create_device("event_camera", "metavision"),
                         create_device("frame_camera", "pyspin"), trigger)
    cable = Cable()
    source.before = cable.flush
    return devices, cable, source, flir


def fake_sizes(scale: float) -> dict[str, tuple[int, int]]:
    """The fake cameras' sensors: the real ones (2048x1536 FLIR, 1280x720 EVK4) times `scale`."""
    s = float(scale)
    return {"frame": (int(2048 * s) // 2 * 2, int(1536 * s) // 2 * 2),
            "event": (int(1280 * s), int(720 * s))}


class _Progress:
    """What the recording child reports to the sampler (a small JSON file, replaced atomically)."""

    def __init__(self, path: Path) -> None:
        self.path, self.last, self.pipeline = path, 0.0, None

    def install(self) -> None:
        """See the recorder's frame pipeline (its drop counters) without changing its code."""
        from rig import recorder

        owner = self

        class CountedPipeline(recorder.FramePipeline):
            def __init__(self, *a: Any, **k: Any) -> None:
                super().__init__(*a, **k)
                owner.pipeline = self

        recorder.FramePipeline = CountedPipeline  # type: ignore[misc]

    def write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.path)

    def tick(self, tick: dict[str, Any], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < 1.0:
            return
        self.last = now
        c = self.pipeline.counts if self.pipeline is not None else {}
        self.write({"pulses": int(tick["pulses"]), "frames": int(tick["frames"]),
                    "events": int(tick["events"]),
                    "drops": int(c.get("frame_id_gaps", 0) + c.get("dropped_queue_full", 0))})

    def final(self, summary: Any, **extra: Any) -> None:
        c = summary.counts
        self.write({"status": summary.status, "pulses": c["pulses_sent"], "frames": c["frames_received"],
                    "events": c["events"], "drops": c["frames_dropped"] + c["frames_missing"],
                    "bytes": c["bytes_events"] + 0, **extra})


def worker_record(args: argparse.Namespace) -> int:
    """Child: one recording (fake hardware or simulated rig), progress into args.progress."""
    from rig import recorder
    from rig.recorder import RecordOptions, record_session

    progress = _Progress(Path(args.progress))
    progress.install()
    cable = None
    opts = RecordOptions(out_dir=Path(args.out), duration_s=args.minutes * 60.0, rate_hz=args.rate,
                         sim=args.kind == "sim", scenario="day", seed=1, show_status=False)
    if args.kind == "fake":
        devices, cable, source, flir = _fake_rig(args)
        recorder.open_devices = lambda o: devices  # type: ignore[assignment]
        # the recorder's space check assumes a busy EVK4 (20 MB/s); this one streams event_rate:
        # the soak checked the space for that already
        fw, fh = fake_sizes(args.scale)["frame"]
        recorder.estimate_bytes = lambda o, w, h: int(  # type: ignore[assignment]
            o.duration_s * (args.event_rate * 6.0 + fw * fh * args.rate) + 50e6)
        cable.start()
    try:
        summary = record_session(opts, on_tick=progress.tick)
    finally:
        if cable is not None:
            cable.stop.set()
            cable.join(5)
    extra = {}
    if args.kind == "fake":
        extra = {"late_edges": source.late_edges, "camera_dropped_no_buffer": flir.dropped_no_buffer}
    progress.final(summary, **extra)
    print(summary.format())
    if extra:
        print(f"fake hardware: {extra}")
    return 0 if summary.status == "complete" else 1


def worker_calib(args: argparse.Namespace) -> int:
    """Child: a calib.yaml for the session (the simulator's truth, or the fake rig's nominal one)."""
    from dataset.demo import ground_truth_calibration
    from rig.session import SessionReader

    with SessionReader(args.session) as s:
        geometry = s.ground_truth_geometry()
        if geometry is None:  # the fake hardware: the simulator's rig at the fake sensors' size
            from rig.geometry import RigGeometry
            from rig.sim.optics import default_rig

            g = default_rig(full_res=True)
            geometry = RigGeometry(g.frame.scaled(args.scale), g.event.scaled(args.scale), g.R_ev_fr,
                                   g.T_ev_fr_m)
            want = (s.manifest.sensor_size("frame"), s.manifest.sensor_size("event"))
            assert (geometry.frame.size, geometry.event.size) == want, (geometry.frame.size, want)
    ground_truth_calibration(geometry, Path(args.out))
    return 0


def worker_make_evt3(args: argparse.Namespace) -> int:
    """Child: a synthetic EVT3 file of `minutes` at `event_rate` (random events, 20 Hz triggers)."""
    from rig.evt.common import EVENT_DTYPE, TRIGGER_DTYPE
    from rig.evt3 import EVT3Writer

    rng = np.random.default_rng(0)
    w, h = 1280, 720
    chunk_us = 1_000_000
    with EVT3Writer(args.out, w, h, header_extra={"serial_number": "SOAK-0001"}) as writer:
        for k in range(int(round(args.minutes * 60))):
            t0 = k * chunk_us
            n = int(rng.poisson(args.event_rate))
            ev = np.zeros(n, EVENT_DTYPE)
            ev["t"] = np.sort(rng.integers(t0, t0 + chunk_us, n))
            ev["x"], ev["y"] = rng.integers(0, w, n), rng.integers(0, h, n)
            ev["p"] = rng.integers(0, 2, n)
            rises = t0 + np.arange(0, chunk_us, 50_000)
            tr = np.zeros(2 * rises.size, TRIGGER_DTYPE)
            tr["t"] = np.sort(np.concatenate([rises, rises + 1000]))
            tr["value"] = np.tile([1, 0], rises.size)
            writer.write(ev, tr)
    print(f"wrote {args.out}: {Path(args.out).stat().st_size / 1e6:.0f} MB")
    return 0


# ---- the three soaks ----------------------------------------------------------------------------


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def _rpea(*args: str) -> list[str]:
    return _py("-m", "dataset.cli", *args)


def _build(work: Path, session: Path, args: argparse.Namespace, phases: list[Phase], kind: str) -> None:
    calib = work / "calib.yaml"
    subprocess.run(_py(__file__, "_calib", "--session", str(session), "--out", str(calib),
                       "--scale", str(args.scale)), check=True, cwd=REPO)
    out = work / "data"
    phase = run_phase(f"{kind} build", _rpea("build", "--split", "train", "--sessions", str(session),
                                             "--calib", str(calib), "--out", str(out), "--quiet"),
                      sample_s=args.sample_s, cwd=REPO)
    phase.final = {"output_bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file())}
    print(f"   build output {phase.final['output_bytes'] / 1e6:.0f} MB", flush=True)
    phases.append(phase)


def soak_record(kind: str, args: argparse.Namespace, root: Path, phases: list[Phase]) -> None:
    minutes = args.minutes if args.minutes is not None else (60.0 if kind == "fake" else 10.0)
    if kind == "fake":
        fw, fh = fake_sizes(args.scale)["frame"]
        # measured (3 min, defaults): EVT3 about 4 B/event, frames.h5 about half the raw pixels;
        # the build output is about 0.7x the session. A 1.25x margin over that.
        per_s = args.event_rate * 4.0 + fw * fh * args.rate * 0.5
        need = 1.25 * per_s * minutes * 60 * (1.7 if args.build else 1.0)
    else:
        need = SIM_BYTES_PER_MIN * minutes * (2.0 if args.build else 1.0)
    require_space(root, need, f"{kind} ({minutes:g} min)")
    work = Path(tempfile.mkdtemp(prefix=f"soak-{kind}-", dir=root))
    try:
        session, progress = work / "session", work / "progress.json"
        argv = _py(__file__, "_record", "--kind", kind, "--out", str(session), "--progress", str(progress),
                   "--minutes", str(minutes), "--rate", str(args.rate), "--scale", str(args.scale),
                   "--event-rate", str(args.event_rate))
        label = (f"fake hardware recording, {minutes:g} min real time, {args.rate:g} Hz, "
                 f"frames {'x'.join(map(str, fake_sizes(args.scale)['frame']))}, events "
                 f"{'x'.join(map(str, fake_sizes(args.scale)['event']))} at {args.event_rate / 1e3:g} kev/s"
                 if kind == "fake" else f"simulated recording, {minutes:g} simulated min (default size)")
        phase = run_phase(label, argv, progress=progress, sample_s=args.sample_s, cwd=REPO)
        size = sum(p.stat().st_size for p in session.rglob("*") if p.is_file())
        phase.final["session_bytes"] = size
        print(f"   session {size / 1e6:.0f} MB on disk", flush=True)
        phases.append(phase)
        if args.build and phase.rc == 0:
            _build(work, session, args, phases, kind)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def soak_convert(args: argparse.Namespace, root: Path, phases: list[Phase]) -> None:
    minutes = args.minutes if args.minutes is not None else 60.0
    n = args.convert_rate * minutes * 60
    require_space(root, n * (6.0 + 16.0), f"convert ({minutes:g} min at {args.convert_rate / 1e3:g} kev/s)")
    work = Path(tempfile.mkdtemp(prefix="soak-convert-", dir=root))
    try:
        raw, h5 = work / "soak.raw", work / "soak.h5"
        t0 = time.monotonic()
        subprocess.run(_py(__file__, "_evt3", "--out", str(raw), "--minutes", str(minutes),
                           "--event-rate", str(args.convert_rate)), check=True, cwd=REPO)
        print(f"EVT3 file: {minutes:g} min at {args.convert_rate / 1e3:g} kev/s, "
              f"{raw.stat().st_size / 1e6:.0f} MB, written in {time.monotonic() - t0:.0f} s", flush=True)
        phase = run_phase(f"rpea events convert of a {minutes:g}-minute EVT3 file",
                          _rpea("events", "convert", str(raw), str(h5)), sample_s=args.sample_s, cwd=REPO)
        phase.final = {"bytes": raw.stat().st_size,
                       "output_bytes": h5.stat().st_size if h5.is_file() else 0}
        phases.append(phase)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("soak", choices=["fake", "sim", "convert", "all", "_record", "_calib", "_evt3"])
    ap.add_argument("--minutes", type=float, default=None,
                    help="length [default: fake 60, sim 10 (simulated minutes), convert 60]")
    ap.add_argument("--build", action="store_true", help="(fake, sim) rpea build the session after")
    ap.add_argument("--rate", type=float, default=20.0, help="trigger rate, Hz")
    ap.add_argument("--scale", type=float, default=0.25,
                    help="(fake) sensor size as a fraction of the real cameras' (1: 2048x1536 frames "
                         "and 1280x720 events; mind the disk)")
    ap.add_argument("--event-rate", type=float, default=500_000, help="(fake) events per second")
    ap.add_argument("--convert-rate", type=float, default=200_000,
                    help="(convert) events per second of the synthetic file")
    ap.add_argument("--sample-s", type=float, default=2.0, help="RSS sampling period, seconds")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()),
                    help="where the temporary files go (removed at the end)")
    # the children's own arguments
    ap.add_argument("--kind", choices=["fake", "sim"])
    ap.add_argument("--out")
    ap.add_argument("--progress")
    ap.add_argument("--session")
    args = ap.parse_args(argv)
    if args.soak == "_record":
        return worker_record(args)
    if args.soak == "_calib":
        return worker_calib(args)
    if args.soak == "_evt3":
        return worker_make_evt3(args)
    root = args.workdir
    root.mkdir(parents=True, exist_ok=True)
    phases: list[Phase] = []
    t0 = time.monotonic()
    todo = ["fake", "sim", "convert"] if args.soak == "all" else [args.soak]
    if args.soak == "all":
        args.build = True
    for soak in todo:
        if soak == "convert":
            soak_convert(args, root, phases)
        else:
            soak_record(soak, args, root, phases)
    print(f"\n== summary ({(time.monotonic() - t0) / 60:.1f} min, {os.cpu_count()} cores, "
          f"RSS = the process and its children)")
    for phase in phases:
        print(f"  {phase.summary()}")
    return 0 if all(p.rc == 0 for p in phases) else 1


if __name__ == "__main__":
    sys.exit(main())
