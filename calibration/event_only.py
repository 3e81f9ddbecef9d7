"""Event-only calibration: event-camera intrinsics from recordings of a blinking checkerboard.

`rig calibrate --checkerboard --events GLOB`: every recording (any format `open_events` reads)
holds one board pose, seen over many blink periods. Per recording:

1. the blink frequency (`estimate_blink_hz`, then refined on a fine grid of the ON events'
   Fourier sum: a 0.5 s recording gives ~2 Hz bins, the refinement ~0.01 Hz);
2. the blink phase, folded over all periods: each lit window starts where the ON burst (the board
   lighting up) starts, and splits where OFF events start to outnumber ON events (it going dark);
3. the event image: ON events of the ON bursts plus OFF events of the OFF bursts, summed over all
   complete windows (the events of the wrong polarity for their phase, and the events between
   bursts, are noise and are left out), clipped at the 99th percentile of the firing pixels
   (hot pixels); no blur (blurring lowers the corner accuracy on these small images);
4. detection (`find_board`): OpenCV's SB and classic detectors on the image and its negative
   (the lit squares' images lack the white quiet zone round a printed board: in the negative the
   dark background is that zone), at 1x and 2x; then `cornerSubPix` on the event image and
   `check_view` with a looser kink limit (small wide-angle event sensors bend the board's rows
   by several pixels). Where the lit-window image shows no board, the plain ON and OFF count
   images are tried for detection (corners still refined on the lit-window image).

The views (one per recording) go to `calibrate_mono`; `calib.yaml` gets K_event, dist_event,
rms_event, size_event (`calibration.io.EventCalibration`), `report.json` the per-recording
outcome and `report.png` the corners and per-view errors.
"""

from __future__ import annotations

import glob
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from calibration.board import Board
from calibration.detect import check_view, normalise_order
from calibration.event_views import count_images, counts_to_image, estimate_blink_hz
from calibration.io import EventCalibration, save_event_calibration
from calibration.mono import MonoResult, calibrate_mono
from common.atomic import write_bytes_atomic, write_json_atomic

#: Fewest recordings (board poses) a calibration is made from.
MIN_RECORDINGS = 3
#: Phase bins of one blink period (for the burst onset and the ON/OFF split).
PHASE_BINS = 64


@dataclass
class RecordingView:
    """One recording: its event image and board corners, or why it gives none."""

    path: Path
    size: tuple[int, int] = (0, 0)  # (W, H)
    n_events: int = 0
    blink_hz: float = float("nan")
    periods: int = 0
    image: np.ndarray | None = None  # uint8 lit-window image
    corners: np.ndarray | None = None  # (N, 2) float32
    method: str = ""  # which image and detector found the board
    reason: str = ""  # why not used ("" when the board was found)

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class EventOnlyResult:
    calib: EventCalibration
    mono: MonoResult
    views: list[RecordingView]
    report: dict = field(default_factory=dict)


def expand_event_glob(pattern: str) -> list[Path]:
    """Files matching `pattern` (a glob, a file or a folder), sorted; ValueError when none."""
    p = Path(pattern).expanduser()
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file())
    else:
        files = sorted(Path(f) for f in glob.glob(str(p)) if Path(f).is_file())
    if not files:
        raise ValueError(f"--events {pattern!r}: no files match")
    return files


def refine_blink_hz(t_us: np.ndarray, p: np.ndarray, hz0: float, rel: float = 0.08,
                    steps: int = 401) -> float:
    """The blink frequency near `hz0`: maximum of |sum exp(-2 pi i f t)| over the ON events."""
    t = np.asarray(t_us, np.float64)[np.asarray(p) > 0]
    if t.size < 100:
        return hz0
    if t.size > 20_000:  # a subsample is plenty for a peak this broad
        t = t[:: t.size // 20_000 + 1]
    t = (t - t[0]) * 1e-6
    freqs = np.linspace(hz0 * (1 - rel), hz0 * (1 + rel), steps)
    power = [abs(np.exp(-2j * np.pi * f * t).sum()) for f in freqs]
    return float(freqs[int(np.argmax(power))])


def blink_phase(events: np.ndarray, period_us: float) -> tuple[float, float]:
    """(time of one ON-burst onset, offset of the OFF burst within the period) from the ON and
    OFF event rates folded over all periods."""
    t = events["t"].astype(np.float64)
    t0 = float(t[0])
    on_mask = events["p"] > 0
    bins = (((t - t0) % period_us) / period_us * PHASE_BINS).astype(np.int64) % PHASE_BINS
    on = np.bincount(bins[on_mask], minlength=PHASE_BINS)
    off = np.bincount(bins[~on_mask], minlength=PHASE_BINS)
    quiet = on < 0.15 * on.max()
    k = int(np.argmax(on))
    for _ in range(PHASE_BINS):  # back from the ON peak to the start of its burst
        if quiet[(k - 1) % PHASE_BINS]:
            break
        k = (k - 1) % PHASE_BINS
    onset = t0 + (k - 1) / PHASE_BINS * period_us  # one bin of margin before the burst
    order = [(k - 1 + j) % PHASE_BINS for j in range(PHASE_BINS)]
    later = [j for j, b in enumerate(order) if j > 1 and off[b] > on[b]]
    split = (later[0] if later else PHASE_BINS // 2) / PHASE_BINS * period_us
    return onset, split


def lit_window_counts(events: np.ndarray, size: tuple[int, int], period_us: float
                      ) -> tuple[np.ndarray, int]:
    """Sum over complete blink periods of ON events in the ON burst and OFF events in the OFF
    burst: (H, W) float32 counts, and the number of periods."""
    t = events["t"]
    onset, split = blink_phase(events, period_us)
    n0 = math.ceil((float(t[0]) - onset) / period_us)
    n1 = math.floor((float(t[-1]) - onset) / period_us)
    counts = np.zeros((size[1], size[0]), np.float32)
    periods = 0
    for n in range(n0, n1):
        s = onset + n * period_us
        i0, i1, i2 = (int(v) for v in np.searchsorted(t, [s, s + split, s + period_us]))
        lit, dark = events[i0:i1], events[i1:i2]
        lit = lit[lit["p"] > 0]
        dark = dark[dark["p"] == 0]
        on, _ = count_images(lit["x"], lit["y"], lit["p"], size)
        _, off = count_images(dark["x"], dark["y"], dark["p"], size)
        counts += on + off
        periods += 1
    return counts, periods


def _attempts(img: np.ndarray, board: Board) -> list[tuple[str, np.ndarray]]:
    """Board corners (unrefined) proposed by SB and classic detectors on `img` and its negative,
    at 1x and 2x: the cheapest first, stopping at the first success of each kind."""
    found: list[tuple[str, np.ndarray]] = []
    for neg in (True, False):
        base = 255 - img if neg else img
        for scale in (1, 2):
            im = base if scale == 1 else cv2.resize(base, None, fx=scale, fy=scale,
                                                    interpolation=cv2.INTER_CUBIC)
            tag = f"{'negative ' if neg else ''}{scale}x"
            for flags in (0, cv2.CALIB_CB_EXHAUSTIVE | cv2.CALIB_CB_NORMALIZE_IMAGE):
                ok, c = cv2.findChessboardCornersSB(im, board.pattern_size, flags=flags)
                if ok and c is not None and c.size == 2 * board.n_corners:
                    found.append((f"sb {tag}", (np.asarray(c, np.float32).reshape(-1, 2) + 0.5)
                                  / scale - 0.5))
                    break
            ok, c = cv2.findChessboardCorners(
                im, board.pattern_size, flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
            if ok and c is not None and c.size == 2 * board.n_corners:
                found.append((f"classic {tag}", (np.asarray(c, np.float32).reshape(-1, 2) + 0.5)
                              / scale - 0.5))
            if found:
                return found
    return found


def refine_corners(img: np.ndarray, corners: np.ndarray, board: Board,
                   window_frac: float = 0.4) -> np.ndarray:
    """`cornerSubPix` over a window of `window_frac` of the shortest square side (2..15 px)."""
    g = corners.reshape(board.rows, board.cols, 2)
    step = float(min(np.median(np.linalg.norm(np.diff(g, axis=1), axis=2)),
                     np.median(np.linalg.norm(np.diff(g, axis=0), axis=2))))
    win = int(np.clip(window_frac * step, 2, 15))
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_COUNT, 60, 1e-4)
    c = cv2.cornerSubPix(img, corners.reshape(-1, 1, 2).astype(np.float32).copy(), (win, win),
                         (-1, -1), crit)
    return np.asarray(c, np.float32).reshape(-1, 2)


def find_board(detect_images: list[tuple[str, np.ndarray]], refine_image: np.ndarray,
               board: Board) -> tuple[np.ndarray | None, str, str]:
    """(corners, method, reason): the first detection on `detect_images` that, refined on
    `refine_image`, passes `check_view`."""
    size = (refine_image.shape[1], refine_image.shape[0])
    reasons: list[str] = []
    for name, img in detect_images:
        cands = _attempts(img, board)
        if not cands:
            reasons.append(f"{name}: not found")
        for method, c in cands:
            if (c.min() < 0 or c[:, 0].max() > size[0] - 1 or c[:, 1].max() > size[1] - 1
                    or not np.all(np.isfinite(c))):
                reasons.append(f"{name} ({method}): corners outside the image")
                continue
            c = normalise_order(refine_corners(refine_image, c, board), board)
            why = check_view(c, board, size, edge_px=1.0)
            if not why:
                return c, f"{method} on {name}", ""
            reasons.append(f"{name} ({method}): {why}")
    return None, "", "; ".join(dict.fromkeys(reasons))


def recording_view(path: str | Path, board: Board, *, blink_hz: float | None = None) -> RecordingView:
    """Read one recording (`open_events`), build its lit-window image and find the board.
    `EventFileError` propagates (the file is no event file); every other failure is a reason."""
    from rig.evt.files import open_events

    view = RecordingView(Path(path))
    reader = open_events(view.path)
    events, _ = reader.read_all()
    view.size = (int(reader.width), int(reader.height))
    view.n_events = int(len(events))
    if len(events) < 1000:
        view.reason = f"only {len(events)} events"
        return view
    t = events["t"]
    if np.any(np.diff(t) < 0):
        events = events[np.argsort(t, kind="stable")]
    try:
        hz0 = blink_hz if blink_hz else estimate_blink_hz(events["t"], events["p"])
    except ValueError as e:
        view.reason = str(e)
        return view
    view.blink_hz = refine_blink_hz(events["t"], events["p"], hz0)
    period_us = 1e6 / view.blink_hz
    counts, view.periods = lit_window_counts(events, view.size, period_us)
    if view.periods == 0:
        view.reason = f"shorter than one blink period ({period_us / 1000:.1f} ms)"
        return view
    view.image = counts_to_image(counts, blur_sigma_px=0.0)
    on, off = count_images(events["x"], events["y"], events["p"], view.size)
    candidates = [("lit windows", view.image), ("ON counts", counts_to_image(on, 0.0)),
                  ("OFF counts", counts_to_image(off, 0.0))]
    view.corners, view.method, view.reason = find_board(candidates, view.image, board)
    if view.corners is None:
        view.reason = f"board not found ({view.reason})"
    return view


def _report_png(views: list[RecordingView], mono: MonoResult, board: Board,
                path: Path) -> None:
    """A tile per recording: the event image (4x), detected corners (green) and reprojected
    corners (red) of the used ones, the view RMS in the title."""
    rms = dict(zip(mono.view_ids, mono.per_view_rms_px, strict=True))
    obj = board.object_points().astype(np.float64)
    tiles = []
    for i, v in enumerate(views):
        w, h = v.size if v.image is not None else (128, 128)
        img = v.image if v.image is not None else np.zeros((h, w), np.uint8)
        s = max(1, 512 // max(w, h))
        tile = cv2.cvtColor(cv2.resize(img, (w * s, h * s), interpolation=cv2.INTER_NEAREST),
                            cv2.COLOR_GRAY2BGR)
        if v.corners is not None:
            for x, y in (v.corners + 0.5) * s - 0.5:
                cv2.circle(tile, (int(round(x)), int(round(y))), 3, (0, 200, 0), 1, cv2.LINE_AA)
        if i in rms:
            k = mono.view_ids.index(i)
            proj, _ = cv2.projectPoints(obj, mono.rvecs[k], mono.tvecs[k], mono.K, mono.dist)
            for x, y in (proj.reshape(-1, 2) + 0.5) * s - 0.5:
                cv2.drawMarker(tile, (int(round(x)), int(round(y))), (0, 0, 255),
                               cv2.MARKER_CROSS, 6, 1)
        title = f"{v.name}: " + (f"RMS {rms[i]:.2f} px" if i in rms else "not used")
        cv2.rectangle(tile, (0, 0), (tile.shape[1], 20), (0, 0, 0), -1)
        cv2.putText(tile, title, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
        tiles.append(cv2.resize(tile, (384, 384), interpolation=cv2.INTER_AREA))
    cols = 4
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.vstack([np.hstack(tiles[r:r + cols]) for r in range(0, len(tiles), cols)])
    ok, buf = cv2.imencode(".png", grid)
    if ok:
        write_bytes_atomic(path, buf.tobytes())


def _short(text: str, n: int = 90) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def calibrate_event_only(paths: list[Path], board: Board, out_dir: str | Path, *,
                         blink_hz: float | None = None, write_png: bool = True,
                         min_recordings: int = MIN_RECORDINGS) -> EventOnlyResult:
    """Recordings -> views -> mono calibration -> OUT/calib.yaml, report.json (report.png).
    ValueError when fewer than `min_recordings` recordings show the board, or they differ in
    sensor size; `EventFileError` for a file that is not an event file."""
    t_start = time.monotonic()
    views = [recording_view(p, board, blink_hz=blink_hz) for p in paths]
    sizes = {v.size for v in views if v.corners is not None}
    if len(sizes) > 1:
        raise ValueError(f"the recordings come from sensors of different sizes: "
                         f"{sorted(sizes)}; calibrate one camera at a time")
    usable = {i: v.corners for i, v in enumerate(views) if v.corners is not None}
    if len(usable) < min_recordings:
        missed = [f"{v.name}: {_short(v.reason)}" for v in views if v.corners is None]
        more = f"; and {len(missed) - 3} more" if len(missed) > 3 else ""
        raise ValueError(f"the board ({board.cols}x{board.rows} inner corners) was found in "
                         f"{len(usable)} of {len(views)} recordings; need at least "
                         f"{min_recordings}: check --pattern (inner corners, e.g. 8x4 for 9x5 "
                         f"squares). {'; '.join(missed[:3])}{more}")
    size = sizes.pop()
    mono = calibrate_mono(board.object_points(), usable, size, min_views=min_recordings)
    used = [views[i].name for i in mono.view_ids]
    not_used = {v.name: v.reason for v in views if v.corners is None}
    for i, why in mono.dropped.items():
        not_used[views[i].name] = why
    calib = EventCalibration(
        K_event=mono.K, dist_event=mono.dist, size_event=size, rms_event=mono.rms_px,
        info={"pattern": f"{board.cols}x{board.rows}", "square_mm": 1000 * board.square_m,
              "views_event": len(mono.view_ids), "recordings": len(views),
              "source": "event recordings (blinking checkerboard)"})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_event_calibration(calib, out / "calib.yaml")
    per_view = dict(zip(mono.view_ids, mono.per_view_rms_px.tolist(), strict=True))
    report: dict[str, object] = {
        "kind": "event_only",
        "board": {"pattern": f"{board.cols}x{board.rows}", "square_mm": 1000 * board.square_m},
        "event": {
            "views_used": len(mono.view_ids), "views_total": len(views), "used": used,
            "not_used": not_used, "rms_px": mono.rms_px, "K": mono.K.tolist(),
            "dist": mono.dist.tolist(), "size": list(size),
            "k3": "free" if not mono.flags & cv2.CALIB_FIX_K3 else "fixed at 0",
            "recordings": [
                {"file": str(v.path), "name": v.name, "used": i in per_view,
                 "reason": not_used.get(v.name, ""), "events": v.n_events,
                 "blink_hz": v.blink_hz if math.isfinite(v.blink_hz) else None,
                 "periods": v.periods, "detector": v.method,
                 "view_rms_px": per_view.get(i)}
                for i, v in enumerate(views)],
        },
    }
    report["elapsed_s"] = round(time.monotonic() - t_start, 3)
    write_json_atomic(out / "report.json", report)
    if write_png:
        _report_png(views, mono, board, out / "report.png")
    return EventOnlyResult(calib, mono, views, report)


def summary_lines(res: EventOnlyResult, out_dir: Path) -> list[str]:
    """What `rig calibrate --events` prints."""
    ev = res.report["event"]
    K = res.calib.K_event
    lines = [f"recordings    {ev['views_used']} of {ev['views_total']} used",
             f"RMS (px)      event {res.calib.rms_event:.3f}",
             f"K_event       fx {K[0, 0]:.2f}  fy {K[1, 1]:.2f}  cx {K[0, 2]:.2f}  cy {K[1, 2]:.2f}"
             f"  ({res.calib.size_event[0]}x{res.calib.size_event[1]})",
             f"dist_event    {' '.join(f'{v:.4f}' for v in res.calib.dist_event)}"]
    for name, why in ev["not_used"].items():
        lines.append(f"not used      {name}: {why}")
    lines.append(f"wrote         {out_dir / 'calib.yaml'}, report.json"
                 + (", report.png" if (out_dir / "report.png").exists() else ""))
    return lines
