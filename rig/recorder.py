"""Record one synchronised session: trigger MCU, event camera (native raw logging), frame camera.

Frames flow acquisition thread -> bounded queue -> writer thread, so a slow disk never stalls the
camera's driver; a full queue is a counted drop, never a silent one. The same code drives real
backends and the simulated rig; Ctrl-C ends the recording cleanly with status `interrupted` and
everything received kept.
"""

from __future__ import annotations

import contextlib
import copy
import math
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.atomic import removed_on_failure
from common.interrupt import sigint_sets
from rig.devices import (
    EventCamera,
    EventCameraSettings,
    EventRates,
    Frame,
    FrameCamera,
    FrameCameraSettings,
    GrabTimeout,
    TriggerController,
    TriggerSettings,
    Wiring,
)
from rig.frame_ids import FrameIdTracker
from rig.ground_truth import DEFAULT_SIM_BLINK_HZ
from rig.session import (
    EVENTS_RAW,
    FRAMES_H5,
    GROUND_TRUTH,
    MANIFEST,
    SESSION_ENTRIES,
    TRIGGERS_CSV,
    FrameIdScheme,
    FramesWriter,
    SessionCounts,
    SessionManifest,
    SessionSettings,
    TriggersCsvWriter,
    recorder_identity,
    utc_now_iso,
)

if TYPE_CHECKING:
    from rig.preview.feed import PreviewFeed


class RecordError(RuntimeError):
    """The recording could not start or failed (the message says why)."""


@dataclass
class RecordOptions:
    """Everything `rig record` takes; stored in the manifest."""

    out_dir: Path
    duration_s: float = 60.0
    rate_hz: float | None = 20.0  # None: rig.yaml's (or 20 Hz)
    width_us: int | None = 1000  # None: rig.yaml's (or 1000 us)
    exposure_us: float | None = None  # None: rig.yaml's, the scenario's (sim) or 5000 us
    gain_db: float | None = None  # None: rig.yaml's, the scenario's (sim) or 0 dB
    pixel_format: str = "BayerRG8"
    sim: bool = True
    scenario: str = "day"
    seed: int = 0
    full_res: bool = False
    mirror: str | None = None  # (sim) the mirrored camera; None: the simulator's default ("event")
    optics: str | None = None  # (sim) "ideal" | "real" (rig.sim.lens); None: ideal
    realtime: bool = False
    sim_faults: dict[str, Any] = field(default_factory=dict)
    trigger_port: str | None = None  # real MCU (or emulator URL) even on the simulated rig
    event_backend: str | None = None
    frame_backend: str | None = None
    rig_config: Path | None = None
    queue_frames: int = 64
    show_status: bool = True
    overwrite: bool = False
    purpose: str = "data"  # "calibration": a blinking board for `rig calibrate` (rig.session.PURPOSES)


@dataclass
class RecordSummary:
    out_dir: Path
    status: str
    elapsed_wall_s: float
    counts: dict[str, int]
    detail: str = ""

    def format(self) -> str:
        c = self.counts
        lines = [
            f"session   {self.out_dir}  [{self.status}]",
            f"wall      {self.elapsed_wall_s:.1f} s",
            f"pulses    {c.get('pulses_sent', 0)} sent",
            f"frames    {c.get('frames_received', 0)} received, {c.get('frames_dropped', 0)} dropped "
            f"({c.get('frames_dropped_queue', 0)} by the writer queue), "
            f"{c.get('frames_incomplete', 0)} incomplete",
            f"events    {c.get('events', 0):,} events, {c.get('trigger_events', 0)} trigger edges, "
            f"{c.get('bytes_events', 0) / 1e6:.1f} MB",
        ]
        if self.detail:
            lines.append(f"note      {self.detail}")
        return "\n".join(lines)


@dataclass
class RigDevices:
    event_camera: EventCamera
    frame_camera: FrameCamera
    trigger: TriggerController
    sim_rig: Any = None  # the simulated rig (registry kind "rig", backend "sim")
    rig_config: Any = None  # rig.rigconfig.RigConfig when devices came from a rig.yaml

    def close(self) -> None:
        for dev in (self.trigger, self.frame_camera, self.event_camera):
            with contextlib.suppress(Exception):
                dev.close()
        if self.sim_rig is not None:
            self.sim_rig.close()


class FramePipeline:
    """Acquisition thread -> bounded queue -> writer thread."""

    def __init__(self, camera: FrameCamera, writer: FramesWriter, *, queue_frames: int = 64,
                 grab_timeout_s: float = 0.2, preview: PreviewFeed | None = None) -> None:
        self.camera, self.writer = camera, writer
        self.preview = preview  # gets each frame by reference (rig.preview.feed), never waits
        self.grab_timeout_s = grab_timeout_s
        self._queue: queue.Queue[Frame | None] = queue.Queue(maxsize=queue_frames)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.counts = {"received": 0, "written": 0, "dropped_queue_full": 0, "incomplete": 0,
                       "grab_timeouts": 0, "frame_id_gaps": 0}
        self.error: BaseException | None = None
        self.last_frame_monotonic = time.monotonic()
        # GigE Vision ids wrap 65535 -> 1; a camera that wraps says so with these attributes.
        self._ids = FrameIdTracker(camera.frame_id_modulus, first=camera.frame_id_first)
        self._acq = threading.Thread(target=self._acquire, name="frame-acquisition", daemon=True)
        self._wr = threading.Thread(target=self._write, name="frame-writer", daemon=True)

    def start(self) -> None:
        self._acq.start()
        self._wr.start()

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def _acquire(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    frame = self.camera.grab(self.grab_timeout_s)
                except GrabTimeout:
                    self._count("grab_timeouts")
                    continue
                self.last_frame_monotonic = time.monotonic()
                self._count("received")
                if frame.incomplete:
                    self._count("incomplete")
                skipped = self._ids.update(frame.frame_id)
                if skipped:
                    self._count("frame_id_gaps", skipped)
                if self.preview is not None:
                    self.preview.publish_frame(frame)
                try:
                    self._queue.put_nowait(frame)
                except queue.Full:
                    self._count("dropped_queue_full")
        except BaseException as exc:  # a device error ends the recording as failed
            self.error = exc
        finally:
            self._queue.put(None)

    def _write(self) -> None:
        try:
            while (frame := self._queue.get()) is not None:
                self.writer.append(frame)
                self._count("written")
        except BaseException as exc:
            self.error = exc
            while self._queue.get() is not None:  # keep the acquisition side from blocking
                pass

    def stop(self) -> None:
        """Stop grabbing, write everything already queued, and wait for both threads."""
        self._stop.set()
        self._acq.join()
        self._wr.join()
        self.writer.flush()


def failure_detail(exc: BaseException) -> str:
    """Why a recording failed, for the manifest's status_detail (one line): an OSError as the
    project says file errors (`file: problem; what to do`), anything else with its class name."""
    if isinstance(exc, OSError):
        from common.clierrors import describe

        return describe(exc)[0]
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def calibration_duration_s(n_views: int, sim: bool, blink_hz: float = DEFAULT_SIM_BLINK_HZ) -> float:
    """How long a calibration recording runs: one board pose per blink period on the simulated
    rig (plus a margin for the lead-in), a minute of moving the board on hardware."""
    return n_views / blink_hz + 0.2 if sim else 60.0


def check_disk_space(out_dir: Path, need_bytes: int) -> None:
    free = shutil.disk_usage(out_dir).free
    if free < need_bytes:
        raise RecordError(f"not enough disk space in {out_dir}: {free / 1e9:.1f} GB free, "
                          f"about {need_bytes / 1e9:.1f} GB needed for this recording")


def estimate_bytes(opts: RecordOptions, frame_w: int, frame_h: int) -> int:
    """Worst case: raw frames (compression ignored) plus a busy event stream (20 MB/s)."""
    bytes_per_frame = frame_w * frame_h * (3 if opts.pixel_format == "RGB8" else 1)
    frames = opts.duration_s * (opts.rate_hz or 100.0) * bytes_per_frame
    return int(frames + opts.duration_s * 20e6 + 50e6)


def open_devices(opts: RecordOptions) -> RigDevices:
    """The simulated rig, a rig.yaml, or backends named on the command line."""
    if opts.sim:
        from rig.registry import create_device

        faults = {k: frozenset(v) for k, v in opts.sim_faults.items()}
        sim = create_device("rig", "sim", scenario=opts.scenario, seed=opts.seed,
                            full_res=opts.full_res, exposure_us=opts.exposure_us,
                            pixel_format=opts.pixel_format, realtime=opts.realtime,
                            mirror=opts.mirror, optics=opts.optics, **faults)
        trigger = sim.trigger
        if opts.trigger_port:
            trigger = _serial_trigger(opts.trigger_port)
        return RigDevices(sim.event_camera, sim.frame_camera, trigger, sim_rig=sim)
    if opts.rig_config is not None or (opts.event_backend is None and opts.frame_backend is None):
        from rig.rigconfig import load_rig_config

        config = load_rig_config(opts.rig_config or Path("rig.yaml"))
        ev, fr, tr = config.create_devices()
        if opts.trigger_port:
            tr = _serial_trigger(opts.trigger_port)
        return RigDevices(ev, fr, tr, rig_config=config)
    from rig.registry import create_device

    if not (opts.event_backend and opts.frame_backend and opts.trigger_port):
        raise RecordError("hardware recording needs --event-backend, --frame-backend and --trigger "
                          "(or a rig.yaml via --rig-config)")
    ev = create_device("event_camera", opts.event_backend)
    fr = create_device("frame_camera", opts.frame_backend)
    return RigDevices(ev, fr, _serial_trigger(opts.trigger_port))


def _serial_trigger(port: str) -> TriggerController:
    from rig.trigger import SerialTrigger

    return SerialTrigger(port)


class StatusLine:
    """A live one-line status on stderr (rewritten in place on a terminal, every 10 s otherwise)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self._last = 0.0

    def update(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if force or now - self._last >= 0.25:
                sys.stderr.write("\r" + text.ljust(100)[:140])
                sys.stderr.flush()
                self._last = now
        elif force or now - self._last >= 10.0:
            sys.stderr.write(text + "\n")
            self._last = now

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")


def record_session(opts: RecordOptions, *, stop_event: threading.Event | None = None,
                   on_tick: Callable[[dict[str, Any]], None] | None = None,
                   preview: PreviewFeed | None = None) -> RecordSummary:
    """Record one session into `opts.out_dir` and return its summary (also written to the manifest).

    `preview`: a live preview's feed (rig.preview), given each frame, the event file and the
    counters as they come."""
    out = Path(opts.out_dir)
    if not (opts.duration_s > 0 and math.isfinite(opts.duration_s)) or (
            opts.rate_hz is not None and not (opts.rate_hz > 0 and math.isfinite(opts.rate_hz))):
        raise RecordError("--duration and --rate must be positive")
    if out.exists() and not out.is_dir():
        raise RecordError(f"{out}: a file, not a session folder; choose another --out")
    replace = out.exists() and any(out.iterdir())
    if replace and not opts.overwrite:
        raise RecordError(f"{out} exists and is not empty (choose another --out or pass --overwrite)")
    stop = stop_event or threading.Event()
    devices = open_devices(opts)  # before the folder: a rig that cannot start leaves nothing behind
    try:
        if replace:
            for name in SESSION_ENTRIES:
                if (out / name).is_dir():
                    shutil.rmtree(out / name, ignore_errors=True)
                else:
                    (out / name).unlink(missing_ok=True)
        # failed before the session began (devices, disk space): the new folder is taken back
        with removed_on_failure(out, keep=lambda folder: any(folder.rglob(MANIFEST))):
            out.mkdir(parents=True, exist_ok=True)
            return _record(opts, out, devices, stop, on_tick, preview)
    finally:
        devices.close()


def _drain_frames(pipeline: FramePipeline, pulses: int, timeout_s: float) -> None:
    """Wait until every emitted pulse has its frame accounted for (received or a counted gap)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and pipeline.error is None:
        c = pipeline.counts
        if c["received"] + c["frame_id_gaps"] >= pulses:
            return
        time.sleep(0.02)


def _publish_counts(preview: PreviewFeed, c: dict[str, int], pulses: int, rates: EventRates,
                    rate_hz: float, duration_s: float) -> None:
    """The recorder's counters as the preview page shows them (one dict swap, no waiting)."""
    preview.publish_counts({
        "pulses": pulses, "frames_received": c["received"], "frames_written": c["written"],
        "drops_camera": c["frame_id_gaps"], "drops_queue": c["dropped_queue_full"],
        "incomplete": c["incomplete"], "events": rates.events_total,
        "event_rate_ev_s": rates.event_rate_ev_s, "trigger_events": rates.triggers_total,
        "elapsed_s": pulses / rate_hz, "duration_s": duration_s})


def _record(opts: RecordOptions, out: Path, dev: RigDevices, stop: threading.Event,
            on_tick: Callable[[dict[str, Any]], None] | None,
            preview: PreviewFeed | None = None) -> RecordSummary:
    ev, fr, tr = dev.event_camera, dev.frame_camera, dev.trigger
    for d in (ev, fr, tr):
        d.open()
    check_disk_space(out, estimate_bytes(opts, fr.width, fr.height))
    cfg = dev.rig_config
    ev_settings = copy.deepcopy(cfg.event_settings) if cfg else EventCameraSettings(trigger_in_channel=0)
    fr_settings = copy.deepcopy(cfg.frame_settings) if cfg else FrameCameraSettings()
    if opts.rate_hz is None and not cfg:
        opts.rate_hz = 20.0
    fr_settings.pixel_format = opts.pixel_format
    if opts.exposure_us is not None:  # the command line wins over rig.yaml and the scenario
        fr_settings.exposure_us = opts.exposure_us
    elif dev.sim_rig is not None:
        fr_settings.exposure_us = float(dev.sim_rig.default_exposure_us)  # the scenario's choice
    if opts.gain_db is not None:
        fr_settings.gain_db = opts.gain_db
    elif dev.sim_rig is not None:
        # the scenario chose exposure and gain together (night: long and +12 dB); without its
        # gain a night or tunnel scenario recorded darker than it says
        fr_settings.gain_db = float(dev.sim_rig.default_gain_db)
    tr_settings = copy.deepcopy(cfg.trigger_settings) if cfg else TriggerSettings()
    tr_settings.rate_hz = opts.rate_hz or tr_settings.rate_hz
    tr_settings.width_us = opts.width_us or tr_settings.width_us
    n_pulses = max(1, round(opts.duration_s * tr_settings.rate_hz))
    tr_settings.count = n_pulses
    ev.configure(ev_settings)
    fr.configure(fr_settings)
    tr.configure(tr_settings)
    is_sim = dev.sim_rig is not None
    manifest = SessionManifest(
        status="recording", started_utc=utc_now_iso(), sim=is_sim,
        scenario=opts.scenario if is_sim else None, seed=opts.seed if is_sim else None,
        duration_s=opts.duration_s,
        devices={"event_camera": ev.info(), "frame_camera": fr.info(), "trigger": tr.info()},
        settings=SessionSettings(ev_settings, fr_settings, tr_settings,
                                 {k: list(v) for k, v in opts.sim_faults.items()}),
        wiring=copy.deepcopy(cfg.wiring) if cfg else Wiring(),
        rig_config=cfg.to_dict() if cfg else None,
        sensor_sizes={"event": (ev.width, ev.height), "frame": (fr.width, fr.height)},
        reflected_arm=(dev.sim_rig.geometry.mirror if is_sim
                       else cfg.reflected_arm if cfg else None),
        frame_ids=FrameIdScheme(fr.frame_id_modulus, fr.frame_id_first, fr.frame_id_first_exposure),
        # the simulated board is a calibration session however it was asked for
        purpose="calibration" if (opts.purpose == "calibration"
                                  or (is_sim and opts.scenario == "checkerboard")) else "data",
        recorder=recorder_identity())  # `rig session recover` tells a crash from a live recording
    manifest.save(out)
    if dev.sim_rig is not None:
        dev.sim_rig.attach_ground_truth(out / GROUND_TRUTH)

    writer = FramesWriter(out / FRAMES_H5, fr.width, fr.height, opts.pixel_format)
    triggers_csv = TriggersCsvWriter(out / TRIGGERS_CSV)
    pipeline = FramePipeline(fr, writer, queue_frames=opts.queue_frames, preview=preview)
    if preview is not None:
        from rig.preview.feed import SessionInfo

        preview.start_session(SessionInfo(out / EVENTS_RAW, (fr.width, fr.height), (ev.width, ev.height),
                                          opts.pixel_format, tr_settings.rate_hz, fr_settings.exposure_us,
                                          manifest.reflected_arm))
        preview.set_phase("recording", str(out))
    status_line = StatusLine(opts.show_status)
    t0 = time.monotonic()
    status, detail = "complete", ""
    pulses_emitted = 0
    try:
        with sigint_sets(stop):
            ev.start_recording(out / EVENTS_RAW)
            fr.start()
            pipeline.start()
            tr.start()
            done_since: float | None = None
            while True:
                time.sleep(0.05)
                pulses = tr.read_pulses()
                for pulse in pulses:
                    triggers_csv.write(pulse.index, pulse.t_us)
                if pulses:
                    triggers_csv.flush()
                st = tr.status()
                pulses_emitted = st.pulses_emitted
                rates = ev.rates()
                c = pipeline.counts
                tick = {"pulses": pulses_emitted, "frames": c["received"], "events": rates.events_total,
                        "wall_s": time.monotonic() - t0}
                if on_tick is not None:
                    on_tick(tick)
                if preview is not None:
                    _publish_counts(preview, c, pulses_emitted, rates, tr_settings.rate_hz, opts.duration_s)
                status_line.update(
                    f"rec {pulses_emitted / tr_settings.rate_hz:6.1f}/{opts.duration_s:.0f} s | "
                    f"events {rates.event_rate_ev_s / 1e6:5.2f} Mev/s | frames {c['received']} | "
                    f"drops {c['frame_id_gaps'] + c['dropped_queue_full']} | "
                    f"{(rates.bytes_written + writer.bytes_in) / 1e6:7.1f} MB")
                if pipeline.error is not None:
                    raise pipeline.error
                if stop.is_set():
                    status, detail = "interrupted", "stopped by the user (Ctrl-C)"
                    break
                if st.state != "running":
                    done_since = done_since or time.monotonic()
                    accounted = c["received"] + c["frame_id_gaps"]
                    if accounted >= pulses_emitted or time.monotonic() - done_since > 2.0:
                        break
                elif time.monotonic() - pipeline.last_frame_monotonic > 60.0:
                    raise RecordError("no frame for 60 s while the trigger runs: check the wiring")
    except KeyboardInterrupt:
        status, detail = "interrupted", "stopped by the user (Ctrl-C twice)"
    except BaseException as exc:
        status, detail = "failed", failure_detail(exc)
        if not isinstance(exc, Exception):
            raise
    finally:
        with contextlib.suppress(Exception):
            tr.stop()
        if status != "failed":  # the frames of the last pulses are still on their way: wait for them
            with contextlib.suppress(Exception):
                _drain_frames(pipeline, tr.status().pulses_emitted, timeout_s=2.0)
        for action in (pipeline.stop, fr.stop):
            with contextlib.suppress(Exception):
                action()
        try:  # the event stream's own failure (at its very end) is still a failed recording
            ev.stop_recording()
        except Exception as exc:  # noqa: BLE001 - said in the manifest
            if status != "failed":
                status, detail = "failed", failure_detail(exc)
        with contextlib.suppress(Exception):
            for pulse in tr.read_pulses():
                triggers_csv.write(pulse.index, pulse.t_us)
        with contextlib.suppress(Exception):
            pulses_emitted = tr.status().pulses_emitted
        for close in (triggers_csv.close, writer.close):  # a full disk can fail the last flush
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - said in the manifest, the rest goes on
                if status != "failed":
                    status, detail = "failed", failure_detail(exc)
        status_line.close()
        try:
            rates = ev.rates()
        except Exception:  # noqa: BLE001 - a failed camera: its counters are gone
            rates = EventRates(0, 0.0, 0, (out / EVENTS_RAW).stat().st_size
                               if (out / EVENTS_RAW).is_file() else 0)
        c = pipeline.counts
        counts = SessionCounts(
            pulses_sent=pulses_emitted, pulse_reports=triggers_csv.count,
            frames_received=c["received"], frames_written=c["written"],
            frames_dropped=c["frame_id_gaps"] + c["dropped_queue_full"],
            frames_dropped_camera=c["frame_id_gaps"], frames_dropped_queue=c["dropped_queue_full"],
            frames_missing=max(0, pulses_emitted - c["received"] - c["frame_id_gaps"]),
            frames_incomplete=c["incomplete"], trigger_events=rates.triggers_total,
            events=rates.events_total, bytes_events=rates.bytes_written)
        manifest.status, manifest.status_detail = status, detail
        manifest.stopped_utc, manifest.counts = utc_now_iso(), counts
        if preview is not None:
            _publish_counts(preview, c, pulses_emitted, rates, tr_settings.rate_hz, opts.duration_s)
            preview.set_phase(f"recording {status}", detail)
        try:
            manifest.save(out)
        except OSError as exc:
            raise RecordError(
                f"{out / MANIFEST}: cannot be rewritten ({failure_detail(exc)}); the session "
                f"stays marked 'recording' (recording {status}: {detail or 'all received'}): free "
                f"some disk space, then run `rig session recover {out}`") from None
    return RecordSummary(out, status, time.monotonic() - t0, asdict(counts), detail)
