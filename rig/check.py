"""`rig check`: a preflight of the rig (real or simulated) before a recording that matters.

A short burst is recorded with the recorder's own code (`rig record`) into a temporary session
folder and read back the way the builder reads it (`SessionReader`, `rig.sync.pair_session`):

- **trigger counts**: pulses the MCU sent == frames the frame camera delivered == rising
  EXT_TRIGGER edges on the configured channel (and the MCU's PULSE reports, when it sends them);
- **trigger-in**: the event camera's trigger input was enabled on the channel the wiring names
  (an EVK4 ignores its trigger input until it is enabled);
- **pairing**: every pulse pairs with one frame and one edge;
- **clock drift** of the frame camera's and the MCU's clocks against the event camera's, in ppm,
  from a straight-line fit of their timestamps of the paired pulses (and the fit's residual,
  i.e. the timing jitter);
- **disk speed**: the write speed (with fsync) of the file system that holds the recordings,
  against the peak data rate of the event camera plus the frame stream.

Every check is a `CheckItem` (name, pass/fail/not applicable, measured value, hint); `run_check`
returns them in a `CheckResult`. The pure functions (`clock_drift`, `peak_data_rate`,
`disk_check`, `analyse_session`, `exposure_offset`) work on arrays and recorded sessions, so they
are tested without hardware. docs/hardware.md, "Preflight: rig check", says how to read the table.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rig.recorder import RecordOptions, RecordSummary, RigDevices, record_session
from rig.session import MCU_PULSE_DTYPE, SessionError, SessionReader
from rig.sync import SyncError, pair_session, rising_edges

#: Pulses in the burst when --pulses is not given: a few seconds on the hardware (enough for a
#: drift measurement to a fraction of a ppm), a second and a half on the (scaled-down) simulated rig.
DEFAULT_PULSES = {"sim": 30, "hardware": 200}
DEFAULT_RATE_HZ = 20.0
#: The simulated rig of the preflight: both sensors scaled down (the check is about timing and
#: counts, not pixels), so `rig check --sim` takes seconds.
SIM_SCALE = 0.25
#: Bytes written by the disk test (with --quick: QUICK_DISK_BYTES).
DISK_TEST_BYTES = 256 << 20
QUICK_DISK_BYTES = 64 << 20
DISK_BLOCK_BYTES = 4 << 20

#: The event camera's peak data rate when no event-rate-controller limit is configured: what its
#: USB 3 link carries. Prophesee gives 1.6 Gbit/s as the maximum bandwidth of the USB 3 interface
#: of its EVK3 (docs.prophesee.ai, hw/evk/evk3.html, "Full sensor bandwidth"); the EVK4 holds the
#: same IMX636 behind a USB 3 link, so 200 MB/s is taken as its worst case too.
EVK4_LINK_PEAK_BYTES_S = 1.6e9 / 8
#: EVT3 bytes per CD event in the worst case: an isolated event costs an EVT_ADDR_Y and an
#: EVT_ADDR_X word (2 bytes each); vectors make dense rows cheaper, time words add little at high
#: rates. Applied to the event-rate controller's limit (`erc_rate_ev_s`) when one is set.
EVT3_WORST_BYTES_PER_EVENT = 4.0
#: The simulated event camera has no USB link: its peak is taken as this multiple of the data
#: rate it produced during the burst.
SIM_PEAK_FACTOR = 2.0
#: Clock drift beyond which a clock is suspect. Camera clocks are crystals (tens of ppm); the
#: trigger MCU may run on a ceramic resonator (an Arduino Uno's: +-0.5 %), hence its wider limit.
#: A drift far beyond these is a wrong timestamp unit or a wrong pairing, not a clock.
CAMERA_DRIFT_LIMIT_PPM = 200.0
MCU_DRIFT_LIMIT_PPM = 10_000.0
#: ExposureActive pulse width vs the configured exposure: allowed difference (us, or fraction).
EXPOSURE_WIDTH_TOL_US = 100.0
EXPOSURE_WIDTH_TOL_FRAC = 0.1


@dataclass
class CheckItem:
    """One check: `passed` is True, False, or None when it does not apply (e.g. no MCU reports)."""

    name: str
    passed: bool | None
    value: str
    hint: str = ""

    @property
    def word(self) -> str:
        return {True: "PASS", False: "FAIL", None: "n/a"}[self.passed]


@dataclass
class CheckResult:
    items: list[CheckItem]
    rig: str  # "simulated" | "hardware"
    folder: Path  # the folder whose disk was tested (the burst was recorded inside it)
    kept_session: Path | None = None
    burst: dict[str, Any] = field(default_factory=dict)  # pulses, rate_hz, wall_s

    @property
    def passed(self) -> bool:
        return all(item.passed is not False for item in self.items)

    def item(self, name: str) -> CheckItem:
        return next(i for i in self.items if i.name == name)

    def format(self) -> str:
        from common.workspace import show_path

        width = max(len(i.name) for i in self.items)
        lines = [f"rig check ({self.rig} rig): {self.burst.get('pulses', '?')} pulses at "
                 f"{self.burst.get('rate_hz', 0):g} Hz, disk of {show_path(self.folder)}"]
        for i in self.items:
            lines.append(f"  {i.name:<{width}}  {i.word:<4}  {i.value}")
            if i.hint and i.passed is not True:
                lines.append(f"  {'':<{width}}        -> {i.hint}")
        failed = [i.name for i in self.items if i.passed is False]
        lines.append("all checks passed" if not failed else f"FAILED: {', '.join(failed)}")
        if self.kept_session is not None:
            lines.append(f"burst session kept in {show_path(self.kept_session)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "rig": self.rig, "folder": str(self.folder),
                "kept_session": str(self.kept_session) if self.kept_session else None,
                "burst": dict(self.burst), "items": [asdict(i) for i in self.items]}


# ---- pure measurements --------------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    """A device clock against a reference clock, from timestamps of the same pulses."""

    ppm: float  # (slope - 1) * 1e6: positive = the device clock runs fast
    rms_us: float  # residual of the straight-line fit (timing jitter of the two stamps together)
    max_us: float
    n: int
    span_s: float  # reference time covered by the fit


def clock_drift(t_ref_us: np.ndarray, t_dev_us: np.ndarray) -> Drift:
    """Fit t_dev = a * t_ref + b (both in microseconds, same pulses) and return the drift
    (a - 1) in ppm with the fit's residuals. Needs three pulses spread over some time."""
    x = np.asarray(t_ref_us, np.float64)
    y = np.asarray(t_dev_us, np.float64)
    if x.shape != y.shape or x.size < 3:
        raise ValueError(f"a drift needs at least 3 paired timestamps (got {x.size})")
    x0, y0 = x - x[0], y - y[0]  # the offsets are arbitrary; keep the fit well conditioned
    span = float(x0.max() - x0.min())
    if not span > 0:
        raise ValueError("the paired timestamps span no time")
    a, b = np.polyfit(x0, y0, 1)
    res = y0 - (a * x0 + b)
    return Drift((float(a) - 1.0) * 1e6, float(np.sqrt(np.mean(res ** 2))), float(np.abs(res).max()),
                 int(x.size), span / 1e6)


def drift_item(name: str, drift: Drift | None, limit_ppm: float, what: str, missing: str) -> CheckItem:
    if drift is None:
        return CheckItem(name, None, missing)
    value = (f"{drift.ppm:+.1f} ppm vs the event clock over {drift.span_s:.1f} s, {drift.n} pulses "
             f"(fit residual rms {drift.rms_us:.1f} us, max {drift.max_us:.1f} us)")
    ok = math.isfinite(drift.ppm) and abs(drift.ppm) <= limit_ppm
    return CheckItem(name, ok, value,
                     "" if ok else f"{what} drifts by more than {limit_ppm:g} ppm: a wrong timestamp unit "
                                   "or clock setting, or frames paired with the wrong pulses")


@dataclass(frozen=True)
class DataRate:
    """What the recording disk must take at the worst moment, in bytes per second."""

    event_bytes_s: float
    frame_bytes_s: float
    event_source: str  # where the event figure comes from

    @property
    def total_bytes_s(self) -> float:
        return self.event_bytes_s + self.frame_bytes_s


def peak_data_rate(*, erc_rate_ev_s: float | None, frame_width: int, frame_height: int,
                   frame_bytes_per_px: int, rate_hz: float,
                   sim_event_bytes_s: float | None = None) -> DataRate:
    """The event camera's peak data rate plus the raw frame stream (the writer's LZ4 ignored).

    The event figure, in order: the event-rate controller's limit x EVT3's worst bytes per event;
    on the simulated rig, SIM_PEAK_FACTOR x what it produced; else the EVK4's USB 3 link
    (EVK4_LINK_PEAK_BYTES_S)."""
    if erc_rate_ev_s:
        ev = float(erc_rate_ev_s) * EVT3_WORST_BYTES_PER_EVENT
        source = (f"event-rate controller limit {erc_rate_ev_s / 1e6:g} Mev/s x "
                  f"{EVT3_WORST_BYTES_PER_EVENT:g} B (EVT3 worst case)")
    elif sim_event_bytes_s is not None:
        ev = SIM_PEAK_FACTOR * float(sim_event_bytes_s)
        source = f"simulated event camera: {SIM_PEAK_FACTOR:g} x its {sim_event_bytes_s / 1e6:.1f} MB/s"
    else:
        ev = EVK4_LINK_PEAK_BYTES_S
        source = "EVK4 USB 3 link, 1.6 Gbit/s (no event-rate controller limit set)"
    frames = float(frame_width) * float(frame_height) * frame_bytes_per_px * float(rate_hz)
    return DataRate(ev, frames, source)


def disk_check(measured_bytes_s: float, need: DataRate, folder: Path | str = "") -> CheckItem:
    """Pass when the disk writes at least as fast as the event camera's peak plus the frames."""
    ok = measured_bytes_s >= need.total_bytes_s
    value = (f"{measured_bytes_s / 1e6:.0f} MB/s written (fsync) "
             f"{'>=' if ok else '<'} {need.total_bytes_s / 1e6:.0f} MB/s needed at peak "
             f"(events {need.event_bytes_s / 1e6:.0f} MB/s: {need.event_source}; "
             f"frames {need.frame_bytes_s / 1e6:.0f} MB/s raw)")
    hint = "" if ok else (
        f"record to a faster disk (an SSD) than {folder or 'this one'}, or set "
        "event_camera.settings.erc_rate_ev_s in rig.yaml so the event camera's peak fits")
    return CheckItem("disk speed", ok, value, hint)


def measure_write_speed(folder: Path | str, total_bytes: int = DISK_TEST_BYTES,
                        block_bytes: int = DISK_BLOCK_BYTES) -> float:
    """Bytes per second written into a temporary file in `folder`, fsync included (the file is
    removed). Random bytes, so a compressing file system cannot cheat."""
    block = os.urandom(block_bytes)
    n_blocks = max(1, -(-int(total_bytes) // block_bytes))
    fd, name = tempfile.mkstemp(prefix=".rig-check-disk-", dir=folder)
    try:
        t0 = time.perf_counter()
        with os.fdopen(fd, "wb", buffering=0) as f:
            for _ in range(n_blocks):
                f.write(block)
            os.fsync(f.fileno())
        elapsed = time.perf_counter() - t0
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)
    return n_blocks * block_bytes / max(elapsed, 1e-9)


# ---- a recorded session -------------------------------------------------------------------------


def _triggers(path: Path) -> np.ndarray:
    """Every EXT_TRIGGER edge of an event file (the events themselves are decoded and dropped)."""
    from rig.evt.common import TRIGGER_DTYPE
    from rig.evt.files import open_events

    parts = [tr for _, tr in open_events(path) if tr.size]
    return np.concatenate(parts) if parts else np.zeros(0, TRIGGER_DTYPE)


def _rising_by_channel(triggers: np.ndarray) -> dict[int, int]:
    if triggers.size == 0:
        return {}
    ids, counts = np.unique(triggers["id"][triggers["value"] == 1], return_counts=True)
    return {int(i): int(n) for i, n in zip(ids, counts, strict=True)}


def analyse_session(session: Path | str) -> list[CheckItem]:
    """The preflight's checks on one recorded session (all but the disk speed)."""
    items: list[CheckItem] = []
    with SessionReader(session) as reader:
        m = reader.manifest
        c = m.counts
        rate_hz = float(m.settings.trigger.rate_hz)
        ok = m.status == "complete"
        items.append(CheckItem(
            "recording", ok, f"{m.status}, {c.pulses_sent} pulses at {rate_hz:g} Hz"
            + (f" ({m.status_detail})" if m.status_detail else ""),
            "" if ok else "the burst did not record to its end; `rig devices` lists what is "
                          "attached, `rig trigger status` whether the MCU answers"))
        triggers = _triggers(reader.events_path) if reader.events_path.is_file() else np.zeros(0)
        channel = m.wiring.event_trigger_channel
        rise, fall = rising_edges(triggers, channel) if triggers.size else (np.zeros(0), np.zeros(0))
        items.append(_counts_item(c.pulses_sent, c.pulse_reports, c.frames_received,
                                  c.frames_dropped, rise.size, channel, _rising_by_channel(triggers)))
        items.append(_trigger_in_item(m))
        sync = None
        try:
            sync = pair_session(reader, triggers)
            paired = sync.num_pairs == c.pulses_sent > 0
            items.append(CheckItem("pairing", paired, sync.summary(),
                                   "" if paired else "pulses without a frame or an edge: see the "
                                                     "counts above (docs/dataset.md, build report)"))
        except SyncError as exc:
            items.append(CheckItem("pairing", False, str(exc), "the records cannot be paired at all"))
        meta = reader.frame_meta if reader.frames_path.is_file() else None
        items.append(drift_item("frame clock drift", _frame_drift(sync, meta), CAMERA_DRIFT_LIMIT_PPM,
                                "the frame camera's clock", "no paired frames to measure it on"))
        try:
            mcu = reader.mcu_pulses
        except SessionError:
            mcu = np.zeros(0, MCU_PULSE_DTYPE)
        items.append(drift_item("MCU clock drift", _mcu_drift(sync, mcu), MCU_DRIFT_LIMIT_PPM,
                                "the trigger MCU's clock",
                                "the MCU reported no pulse times (PULSE lines, report=1)"))
        if m.wiring.exposure_active_to_event:
            items.append(_exposure_width_item(rise, fall, float(m.settings.frame_camera.exposure_us)))
    return items


def _counts_item(pulses: int, reports: int, frames: int, dropped: int, edges: int,
                 channel: int | None, by_channel: dict[int, int]) -> CheckItem:
    value = (f"{pulses} pulses sent, {frames} frames received, {edges} rising edges on channel "
             f"{channel}" + (f", {reports} MCU reports" if reports else ""))
    ok = pulses > 0 and pulses == frames == edges and reports in (0, pulses)
    if ok:
        return CheckItem("trigger counts", True, value)
    why = []
    if frames != pulses:
        why.append(f"{pulses - frames} frame(s) missing" if frames < pulses else
                   f"{frames - pulses} frames more than pulses")
        if dropped:
            why.append(f"{dropped} dropped (frame-id gaps or the writer queue)")
    if edges != pulses:
        others = {ch: n for ch, n in by_channel.items() if ch != channel}
        why.append(f"{pulses - edges} edge(s) missing on channel {channel}" if edges < pulses else
                   f"{edges - pulses} edges more than pulses (duplicates: a bouncing or noisy line)")
        if others:
            why.append("rising edges on other channels: "
                       + ", ".join(f"{n} on {ch}" for ch, n in sorted(others.items()))
                       + " (set wiring.event_trigger_channel)")
    if reports not in (0, pulses):
        why.append(f"{reports} MCU reports for {pulses} pulses (PULSE lines lost: lower --rate)")
    if pulses == 0:
        why.append("the MCU sent no pulse")
    hint = "; ".join(why) + ". Frames: check trigger_source and the cable to the frame camera; " \
        "edges: the cable to the event camera's trigger-in and wiring.event_trigger_channel"
    return CheckItem("trigger counts", False, value, hint)


def _trigger_in_item(m: Any) -> CheckItem:
    channel = m.settings.event_camera.trigger_in_channel
    wired = m.wiring.event_trigger_channel
    applied = (m.devices.get("event_camera").extra.get("applied", {})
               if m.devices.get("event_camera") is not None else {})
    said = applied.get("trigger_in_channel", channel) if isinstance(applied, dict) else channel
    ok = channel is not None and channel == wired and said == channel
    if channel is None:
        value = "disabled"
    else:
        value = f"channel {channel} enabled" + (
            "" if said == channel else f" (the camera reports {said})") + f"; wiring says {wired}"
    hint = "" if ok else ("the event camera ignores its trigger input until it is enabled: set "
                          "wiring.event_trigger_channel in rig.yaml (the EVK4's main trigger-in is 0) "
                          "and list event:TRIG_IN (or exposure_active_to_event) in wiring")
    return CheckItem("trigger-in", ok, value, hint)


def _frame_drift(sync: Any, meta: dict[str, np.ndarray] | None) -> Drift | None:
    if sync is None or meta is None or sync.num_pairs < 3:
        return None
    t_frame_us = meta["t_device_ns"][sync.frame_index].astype(np.float64) / 1000.0
    try:
        return clock_drift(sync.edge_t_us, t_frame_us)
    except ValueError:
        return None


def _mcu_drift(sync: Any, mcu: np.ndarray) -> Drift | None:
    if sync is None or mcu.size < 3 or sync.num_pairs < 3:
        return None
    t_of = dict(zip(mcu["pulse_index"].tolist(), mcu["t_mcu_us"].tolist(), strict=True))
    keep = np.array([int(k) in t_of for k in sync.pulse_index], bool)
    if keep.sum() < 3:
        return None
    t_mcu = np.array([t_of[int(k)] for k in sync.pulse_index[keep]], np.float64)
    try:
        return clock_drift(sync.edge_t_us[keep], t_mcu)
    except ValueError:
        return None


def _edge_widths(rise: np.ndarray, fall: np.ndarray) -> np.ndarray:
    """High time of each pulse: a rising edge to the first falling edge after it (and before the
    next rising edge)."""
    if rise.size == 0 or fall.size == 0:
        return np.zeros(0)
    j = np.searchsorted(fall, rise, side="right")
    ok = j < fall.size
    nxt = np.append(rise[1:], np.iinfo(np.int64).max)
    ok &= fall[np.minimum(j, fall.size - 1)] < nxt
    return (fall[j[ok]] - rise[ok]).astype(np.float64)


def _exposure_width_item(rise: np.ndarray, fall: np.ndarray, exposure_us: float) -> CheckItem:
    widths = _edge_widths(rise, fall)
    if widths.size == 0:
        return CheckItem("exposure-active width", False, "no complete ExposureActive pulse",
                         "check the strobe_line cable and its pull-up")
    med = float(np.median(widths))
    tol = max(EXPOSURE_WIDTH_TOL_US, EXPOSURE_WIDTH_TOL_FRAC * exposure_us)
    ok = abs(med - exposure_us) <= tol
    return CheckItem("exposure-active width", ok,
                     f"median {med:.0f} us high for exposure_us {exposure_us:g} ({widths.size} pulses)",
                     "" if ok else "ExposureActive does not look like the exposure at the trigger-in: "
                                   "an inverted line (high between exposures) or the wrong output")


# ---- the trigger-to-exposure offset (docs/hardware.md) -----------------------------------------


@dataclass(frozen=True)
class ExposureOffset:
    """Trigger edge -> ExposureActive rising edge, on the event clock (docs/hardware.md)."""

    median_us: float
    p5_us: float
    p95_us: float
    n: int
    ea_width_us: float  # ExposureActive high time, from the ExposureActive-only session
    direct_median_us: float | None  # where the two rising edges were seen apart
    direct_n: int

    def format(self) -> str:
        lines = [f"trigger -> exposure start: median {self.median_us:.1f} us "
                 f"(5-95 %: {self.p5_us:.1f} .. {self.p95_us:.1f} us, {self.n} pulses)",
                 f"ExposureActive high time {self.ea_width_us:.1f} us (ExposureActive-only session)"]
        if self.direct_median_us is not None:
            lines.append(f"cross-check, both rising edges seen apart: median {self.direct_median_us:.1f} us "
                         f"({self.direct_n} pulses)")
        return "\n".join(lines)


def offsets_from_edges(or_rise: np.ndarray, or_fall: np.ndarray, period_us: float,
                       ea_width_us: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-pulse offsets from the edges of one trigger-in channel fed with OR(MCU pulse,
    ExposureActive). Each period starts with the MCU's rising edge and ends with ExposureActive's
    falling edge (the exposure outlasts the pulse), so offset = (last fall - first rise) - the
    ExposureActive high time. Returns (offsets, direct), `direct` being second rise - first rise
    for periods where ExposureActive rose after the pulse had fallen."""
    rise = np.sort(np.asarray(or_rise, np.int64))
    fall = np.sort(np.asarray(or_fall, np.int64))
    if rise.size == 0:
        return np.zeros(0), np.zeros(0)
    starts = [0]  # index in `rise` of each period's first edge
    for i in range(1, rise.size):
        if rise[i] - rise[starts[-1]] > 0.5 * period_us:
            starts.append(i)
    offsets, direct = [], []
    for k, s in enumerate(starts):
        end = rise[starts[k + 1]] if k + 1 < len(starts) else np.iinfo(np.int64).max
        f = fall[(fall > rise[s]) & (fall < end)]
        if f.size == 0 or (k + 1 == len(starts) and f[-1] - rise[s] > 0.5 * period_us):
            continue
        offsets.append(float(f[-1] - rise[s]) - ea_width_us)
        n_rises = (starts[k + 1] if k + 1 < len(starts) else rise.size) - s
        if n_rises >= 2:
            direct.append(float(rise[s + 1] - rise[s]))
    return np.array(offsets), np.array(direct)


def exposure_offset(or_session: Path | str, ea_session: Path | str) -> ExposureOffset:
    """The trigger-to-exposure offset from two sessions (docs/hardware.md): `ea_session` with
    ExposureActive alone on the trigger-in (its high time), `or_session` with the MCU pulse and
    ExposureActive through an OR gate on the same input."""
    with SessionReader(ea_session) as ea:
        r, f = rising_edges(_triggers(ea.events_path), ea.manifest.wiring.event_trigger_channel)
        widths = _edge_widths(r, f)
    if widths.size == 0:
        raise ValueError(f"{ea_session}: no complete ExposureActive pulse on the trigger-in channel")
    ea_width = float(np.median(widths))
    with SessionReader(or_session) as s:
        r, f = rising_edges(_triggers(s.events_path), s.manifest.wiring.event_trigger_channel)
        offsets, direct = offsets_from_edges(r, f, s.manifest.trigger_period_us, ea_width)
    if offsets.size == 0:
        raise ValueError(f"{or_session}: no trigger period with a rising and a falling edge")
    return ExposureOffset(float(np.median(offsets)), float(np.percentile(offsets, 5)),
                          float(np.percentile(offsets, 95)), int(offsets.size), ea_width,
                          float(np.median(direct)) if direct.size else None, int(direct.size))


# ---- the preflight ------------------------------------------------------------------------------


@dataclass
class CheckOptions:
    """What `rig check` takes."""

    out_dir: Path  # a folder on the disk that will hold the recordings (created if missing)
    sim: bool = True
    rig_config: Path | None = None
    pulses: int | None = None  # None: DEFAULT_PULSES
    rate_hz: float | None = None  # None: rig.yaml's, else 20 Hz
    trigger_port: str | None = None  # a real MCU (or the firmware emulator) even on the simulated rig
    sim_faults: dict[str, list[int]] = field(default_factory=dict)
    sim_scale: float = SIM_SCALE
    seed: int = 0
    disk_bytes: int = DISK_TEST_BYTES
    keep: bool = False  # keep the burst session (as out_dir/check_<time>)
    show_status: bool = False


def _burst_rate(opts: CheckOptions) -> float:
    if opts.rate_hz:
        return float(opts.rate_hz)
    if not opts.sim:
        from rig.rigconfig import load_rig_config

        return float(load_rig_config(opts.rig_config or Path("rig.yaml")).trigger_settings.rate_hz)
    return DEFAULT_RATE_HZ


def _small_sim_rig(ropts: RecordOptions, scale: float) -> RigDevices:
    """The simulated rig with both sensors scaled down, reached through the device registry."""
    from rig.registry import create_device

    faults = {k: frozenset(v) for k, v in ropts.sim_faults.items()}
    sim = create_device("rig", "sim", scenario=ropts.scenario, seed=ropts.seed, scale=scale,
                        pixel_format=ropts.pixel_format, **faults)
    trigger = sim.trigger
    if ropts.trigger_port:
        from rig.trigger import SerialTrigger

        trigger = SerialTrigger(ropts.trigger_port)
    return RigDevices(sim.event_camera, sim.frame_camera, trigger, sim_rig=sim)


def record_burst(opts: CheckOptions, out: Path, *, stop_event: threading.Event | None = None
                 ) -> RecordSummary:
    """The burst, recorded by the recorder's own code into the new session folder `out`."""
    rate = _burst_rate(opts)
    pulses = opts.pulses or DEFAULT_PULSES["sim" if opts.sim else "hardware"]
    ropts = RecordOptions(out_dir=out, duration_s=pulses / rate, rate_hz=rate, sim=opts.sim,
                          scenario="day", seed=opts.seed, sim_faults=dict(opts.sim_faults),
                          trigger_port=opts.trigger_port, rig_config=opts.rig_config,
                          show_status=opts.show_status)
    if not opts.sim:
        return record_session(ropts, stop_event=stop_event)
    # The simulated rig of the preflight is a scaled-down one; the recording itself is the
    # recorder's (`record_session` opens the full-size rig, hence its inner function here).
    from rig.recorder import _record

    devices = _small_sim_rig(ropts, opts.sim_scale)
    try:
        out.mkdir(parents=True)
        return _record(ropts, out, devices, stop_event or threading.Event(), None)
    finally:
        devices.close()


def _session_data_rate(session: Path) -> DataRate:
    with SessionReader(session) as reader:
        m = reader.manifest
        fr = m.settings.frame_camera
        w, h = m.sensor_size("frame") or (0, 0)
        rate = float(m.settings.trigger.rate_hz)
        sim_rate = None
        if m.sim:
            sim_s = max(m.counts.pulses_sent / rate, 1e-3)  # simulated seconds recorded
            sim_rate = m.counts.bytes_events / sim_s
        return peak_data_rate(erc_rate_ev_s=m.settings.event_camera.erc_rate_ev_s, frame_width=w,
                              frame_height=h, frame_bytes_per_px=3 if fr.pixel_format == "RGB8" else 1,
                              rate_hz=rate, sim_event_bytes_s=sim_rate)


def run_check(opts: CheckOptions, *, stop_event: threading.Event | None = None) -> CheckResult:
    """Record the burst into a temporary folder inside `opts.out_dir`, check it, test the disk."""
    folder = Path(opts.out_dir)
    created = [p for p in (folder, *folder.parents) if not p.exists()]  # taken back afterwards
    folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".rig-check-", dir=folder))
    session = work / "burst"
    result = CheckResult([], "simulated" if opts.sim else "hardware", folder)
    try:
        t0 = time.monotonic()
        summary = record_burst(opts, session, stop_event=stop_event)
        result.burst = {"pulses": summary.counts.get("pulses_sent", 0),
                        "rate_hz": _burst_rate(opts), "wall_s": round(time.monotonic() - t0, 2),
                        "status": summary.status}
        result.items.extend(analyse_session(session))
        measured = measure_write_speed(folder, opts.disk_bytes)
        result.items.append(disk_check(measured, _session_data_rate(session), folder))
        if opts.keep:
            from common.workspace import new_folder_name

            kept = new_folder_name(folder, "check")
            shutil.move(str(session), str(kept))
            result.kept_session = kept
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for path in created:  # innermost first; a folder that now holds something stays
            with contextlib.suppress(OSError):
                path.rmdir()
    return result
