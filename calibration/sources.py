"""Where calibration views come from: a recorded session (frames + EVT3 events + triggers), two
image folders (any two cameras), or a live rig recorded on the spot (`record_calibration`)."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from calibration.event_views import estimate_blink_hz, event_view, window_slice
from rig.frames import to_gray
from rig.geometry import RigGeometry
from rig.ground_truth import DEFAULT_SIM_BLINK_HZ
from rig.session import BUILDABLE_STATUSES, SessionReader
from rig.sync import SyncError, pair_session

if TYPE_CHECKING:
    from rig.preview.feed import PreviewFeed


@dataclass
class ViewSource:
    """A stream of (view id, label, frame grey, event image) plus what is known about it."""

    views: Iterator[tuple[int, str, np.ndarray | None, np.ndarray | None]]
    frame_size: tuple[int, int]
    event_size: tuple[int, int]
    total: int
    source: str
    truth: RigGeometry | None = None
    dedupe_px: float | None = None
    notes: tuple[str, ...] = ()
    recorded_utc: str | None = None  # when the views were recorded (a session's start)
    reflected_arm: str | None = None  # the camera the rig puts on the reflected arm, if known
    reflected_arm_source: str = ""  # where that came from


# ---- image folders -------------------------------------------------------------------------------
def _expand(pattern: str, what: str) -> list[str]:
    p = Path(pattern)
    files = sorted(str(f) for f in p.iterdir() if f.is_file()) if p.is_dir() \
        else sorted(glob.glob(pattern))
    if not files:
        raise ValueError(f"{what} {pattern!r}: no files match")
    return files


def _read_gray(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{path}: not an image OpenCV can read")
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2GRAY)
    if img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return img


def folder_views(frame_glob: str, event_glob: str) -> ViewSource:
    """Views from two sorted lists of images (paired by order): frames from camera 1, and
    event accumulation images (or any second camera's images) from camera 2."""
    frames = _expand(frame_glob, "--frame-images")
    events = _expand(event_glob, "--event-images")
    if len(frames) != len(events):
        raise ValueError(f"--frame-images matches {len(frames)} files but --event-images "
                         f"{len(events)}; they are paired by sorted order, so the counts must "
                         "agree")
    f0, e0 = _read_gray(frames[0]), _read_gray(events[0])

    def gen():
        for i, (fp, ep) in enumerate(zip(frames, events, strict=True)):
            fg, eg = _read_gray(fp), _read_gray(ep)
            for path, img, ref in ((fp, fg, f0), (ep, eg, e0)):
                if img.shape != ref.shape:
                    raise ValueError(f"{path}: {img.shape[1]}x{img.shape[0]} differs from the "
                                     f"first image of its camera ({ref.shape[1]}x{ref.shape[0]})")
            yield i, f"{Path(fp).name} | {Path(ep).name}", fg, eg

    return ViewSource(gen(), (f0.shape[1], f0.shape[0]), (e0.shape[1], e0.shape[0]), len(frames),
                      f"images: {frame_glob} + {event_glob}")


# ---- recorded sessions ---------------------------------------------------------------------------
def lit_window_start_us(events: np.ndarray, t_ref_us: float, period_us: float) -> float | None:
    """Start of the ON burst (the board lighting up) last before `t_ref_us`, within a period:
    a window of one period from there holds that lit phase's ON and OFF edges only."""
    sl = window_slice(events["t"], t_ref_us - period_us, t_ref_us)
    ev = events[sl]
    on_t = ev["t"][ev["p"] > 0]
    if on_t.size < 100:
        return None
    bin_us = 500.0
    counts = np.bincount(((on_t - (t_ref_us - period_us)) / bin_us).astype(np.int64))
    hot = np.flatnonzero(counts > 0.3 * counts.max())
    if hot.size == 0:
        return None
    last = hot[-1]
    first = last
    while first - 1 >= 0 and counts[first - 1] > 0.05 * counts.max():
        first -= 1
    return t_ref_us - period_us + first * bin_us - 1000.0


def session_views(session_dir: str | Path, *, blink_hz: float | None = None,
                  progress: bool = True) -> ViewSource:
    """Views from a recorded calibration session: each frame, and the events of one blink period
    around its trigger (window fitted to the blink phase when the ON bursts show it)."""
    session_dir = Path(session_dir)
    reader = SessionReader(session_dir)
    notes: list[str] = []
    if reader.status not in BUILDABLE_STATUSES:
        hint = (f": never closed (a crash?); `rig session recover {session_dir}` keeps what is "
                "readable and marks it" if reader.status == "recording" else "")
        notes.append(f"session status is {reader.status!r}{hint}")
    fmt = reader.pixel_format
    n = reader.num_frames
    if n == 0:
        raise ValueError(f"{session_dir}: the session holds no frames")
    meta = reader.frame_meta
    events, triggers = reader.decode_events()
    if len(events) == 0:
        raise ValueError(f"{session_dir}: the session holds no events")
    order = np.argsort(events["t"], kind="stable")
    if np.any(order != np.arange(len(order))):
        events = events[order]
    channel = reader.manifest.wiring.event_trigger_channel
    if not np.any((triggers["value"] == 1) & (triggers["id"] == channel)):
        raise ValueError(f"{session_dir}: no rising trigger edges on channel {channel} in "
                         "events.raw; calibration pairs frames with events by trigger")
    try:
        sync = pair_session(reader, triggers)
    except SyncError as exc:
        raise ValueError(f"{session_dir}: frames and trigger edges cannot be paired: {exc}") from None
    if sync.dropped:
        notes.append(f"pairing frames with trigger edges: {sync.summary()}")
    trig_t = np.full(n, -1, np.int64)
    trig_t[sync.frame_index] = sync.edge_t_us
    truth = reader.ground_truth
    if blink_hz is None:
        blink_hz = truth.blink_hz() if truth is not None else None
        if blink_hz is None:
            blink_hz = estimate_blink_hz(events["t"], events["p"])
            notes.append(f"blink frequency estimated from the event rate: {blink_hz:.2f} Hz")
    period_us = 1e6 / blink_hz
    ev_size = reader.manifest.sensor_size("event")
    first = reader.frame(0)
    fr_size = (first.shape[1], first.shape[0])
    if ev_size is None:
        ev_size = (int(events["x"].max()) + 1, int(events["y"].max()) + 1)
    exposure = meta.get("exposure_us", np.zeros(n))
    incomplete = meta.get("incomplete", np.zeros(n))

    def gen():
        for k in range(n):
            if trig_t[k] < 0 or incomplete[k]:
                continue
            t_mid = float(trig_t[k]) + 0.5 * float(exposure[k])
            start = lit_window_start_us(events, t_mid, period_us)
            centre = t_mid if start is None else start + period_us / 2
            eview = event_view(events, centre, period_us, ev_size)
            gray = to_gray(reader.frame(k), fmt)
            yield k, f"frame {k} t={t_mid / 1e6:.3f}s", gray, (eview.image if not eview.reason
                                                              else None)

    arm = reader.manifest.reflected_arm
    return ViewSource(gen(), fr_size, ev_size, n, f"session {session_dir}",
                      truth.geometry() if truth is not None else None,
                      dedupe_px=1.5, notes=tuple(notes), recorded_utc=reader.manifest.started_utc,
                      reflected_arm=arm,
                      reflected_arm_source=f"the session's reflected_arm ({arm})" if arm else "")


# ---- a live rig ---------------------------------------------------------------------------------
def record_calibration(out_dir: Path, *, sim: bool, n_views: int = 40, seed: int = 0,
                       rate_hz: float = 20.0, blink_hz: float = DEFAULT_SIM_BLINK_HZ,
                       duration_s: float | None = None, full_res: bool = False,
                       rig_config: Path | None = None, show_status: bool = False,
                       overwrite: bool = True, mirror: str | None = None,
                       optics: str | None = None, preview: PreviewFeed | None = None) -> Path:
    """Record a checkerboard session into `out_dir`: the simulated blinking board (one pose per
    blink period, so `n_views` poses take n_views / blink_hz seconds), or a real rig looking at a
    monitor that shows `rig calibrate --show-pattern` while the board or rig is moved."""
    from rig.recorder import RecordOptions, calibration_duration_s, record_session

    if duration_s is None:
        duration_s = calibration_duration_s(n_views, sim, blink_hz)
    opts = RecordOptions(out_dir=Path(out_dir), duration_s=duration_s, rate_hz=rate_hz,
                         scenario="checkerboard", seed=seed, sim=sim, full_res=full_res,
                         mirror=mirror, optics=optics,
                         exposure_us=None, rig_config=rig_config, show_status=show_status,
                         overwrite=overwrite, purpose="calibration")
    summary = record_session(opts, preview=preview)
    if summary.status not in ("complete", "interrupted"):
        raise RuntimeError(f"recording the calibration session failed: {summary.status}")
    return Path(out_dir)
