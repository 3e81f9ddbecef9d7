"""Calibration's part of the live preview (rig.preview): a calib.yaml as the preview's look-up
tables (`load_alignment`, for `rig record --preview`), and the page of `rig calibrate --preview`
(`CalibrationPreview`): while the board session records, the boards found on the newest frame and
how well the poses so far cover the frame camera's image; while the views are detected, each view
of both cameras with its corners and the coverage of both sensors.

Why here: the detector and the calibration file are calibration's, and `rig` may not import
them. The live detection runs on a thread of its own, on the newest frame only, and only while
someone has the page open: the recording never waits for it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from calibration.board import Board
from calibration.detect import detect_corners
from calibration.pipeline import ViewSet
from common.workspace import show_path
from rig.devices import Frame
from rig.frames import to_gray
from rig.preview import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    FeedView,
    OverlayRenderer,
    Picture,
    PreviewAlignment,
    PreviewFeed,
    PreviewServer,
)
from rig.preview.render import caption, frame_stats, put_text, resized, side_by_side, stacked

#: Corners and board outline: Okabe-Ito yellow, apart from the events' blue and red.
CORNER_RGB = (240, 228, 66)
OUTLINE_RGB = (20, 20, 20)
#: The live detector works on the frame shrunk to this longest side (about 4x faster at
#: 1024x768; it only has to show where the board is, the calibration detects at full size).
LIVE_MAX_SIDE_PX = 640
#: A live board counts as a new pose when its corners moved this much (median, frame pixels).
NEW_POSE_PX = 15.0
#: Coverage cells across the image (rows follow the aspect ratio).
COVERAGE_COLS = 8


def load_alignment(path: str | Path) -> PreviewAlignment:
    """calib.yaml (or its folder) -> the preview's look-up tables: each event pixel's nearest
    pixel of the aligned grid (the builder's `EventAligner`) and the frame's remap onto it.
    A broken file raises `CalibrationFileError` (a ValueError: `file: problem; what to do`)."""
    from calibration.align import EventAligner, frame_remap
    from calibration.io import load_calibration

    p = Path(path)
    if p.is_dir():
        p = p / "calib.yaml"
    calib = load_calibration(p)
    aligner = EventAligner(calib)
    ex = np.where(aligner.valid, aligner.lut_x.astype(np.int32), -1).ravel()
    ey = np.where(aligner.valid, aligner.lut_y.astype(np.int32), -1).ravel()
    map1, map2 = frame_remap(calib)
    size = (int(calib.output_size[0]), int(calib.output_size[1]))
    return PreviewAlignment(size, (int(calib.size_event[0]), int(calib.size_event[1])),
                            (int(calib.size_frame[0]), int(calib.size_frame[1])), ex, ey, map1, map2,
                            show_path(p))


class Coverage:
    """Where board corners fell on one sensor: a grid of cells counting corners, and poses."""

    def __init__(self, size: tuple[int, int], cols: int = COVERAGE_COLS) -> None:
        self.size = (int(size[0]), int(size[1]))
        rows = max(1, round(cols * self.size[1] / self.size[0]))
        self.counts = np.zeros((rows, cols), np.int64)
        self.poses = 0
        self._last: np.ndarray | None = None

    def add(self, corners: np.ndarray, min_move_px: float = 0.0) -> bool:
        """Count a board's corners (sensor pixels); a board within `min_move_px` of the last one
        counted is the same pose and is not counted again. True when counted."""
        c = np.asarray(corners, np.float64).reshape(-1, 2)
        last = self._last
        if (min_move_px > 0 and last is not None and last.shape == c.shape
                and float(np.median(np.linalg.norm(c - last, axis=1))) < min_move_px):
            return False
        rows, cols = self.counts.shape
        ix = np.clip((c[:, 0] / self.size[0] * cols).astype(np.int64), 0, cols - 1)
        iy = np.clip((c[:, 1] / self.size[1] * rows).astype(np.int64), 0, rows - 1)
        np.add.at(self.counts, (iy, ix), 1)
        self.poses += 1
        self._last = c
        return True

    @property
    def covered(self) -> int:
        return int((self.counts > 0).sum())

    def summary(self) -> str:
        n = self.counts.size
        return f"{self.covered}/{n} cells ({100.0 * self.covered / n:.0f} %), {self.poses} poses"

    def picture(self, width: int, title: str, flip: bool = False) -> np.ndarray:
        """The grid as a heat map `width` pixels wide (viridis: dark few, yellow many; grey
        none), each cell with its corner count, under a caption with the summary."""
        rows, cols = self.counts.shape
        counts = self.counts[:, ::-1] if flip else self.counts
        height = max(rows, round(width * self.size[1] / self.size[0]))
        cell_w, cell_h = width / cols, height / rows
        top = max(int(counts.max()), 1)
        levels = (np.clip(counts / top, 0, 1) * 255).astype(np.uint8)
        colours = cv2.applyColorMap(levels, cv2.COLORMAP_VIRIDIS)[..., ::-1]  # BGR -> RGB
        img = np.full((height, width, 3), 225, np.uint8)
        for r in range(rows):
            for k in range(cols):
                x0, y0 = round(k * cell_w), round(r * cell_h)
                x1, y1 = round((k + 1) * cell_w) - 1, round((r + 1) * cell_h) - 1
                n = int(counts[r, k])
                if n:
                    colour = tuple(int(v) for v in colours[r, k])
                    cv2.rectangle(img, (x0, y0), (x1, y1), colour, -1)
                    ink = (0, 0, 0) if levels[r, k] > 150 else (255, 255, 255)
                    put_text(img, str(n), (x0 + 4, y0 + min(18, int(cell_h) - 4)), 0.45, ink)
                cv2.rectangle(img, (x0, y0), (x1, y1), (255, 255, 255), 1)
        return caption(img, f"{title}: {self.summary()}")


@dataclass
class LiveBoard:
    """The live detector's newest answer."""

    frame_id: int
    corners: np.ndarray | None  # frame sensor pixels, or None with `reason`
    reason: str
    t: float  # time.monotonic() of the answer


@dataclass
class DetectedView:
    """A view as the calibration's detection saw it (references, drawn by the preview thread)."""

    view_id: int
    label: str
    frame: np.ndarray | None  # grey images as detected
    event: np.ndarray | None
    frame_corners: np.ndarray | None
    event_corners: np.ndarray | None
    frame_reason: str  # why no board ("" when found or not tried)
    event_reason: str
    event_tried: bool  # False: the detection skipped the event image (no frame board to pair)

    @property
    def found(self) -> bool:
        return self.frame_corners is not None or self.event_corners is not None


class CalibrationPreview:
    """The page of `rig calibrate --preview`: binds at once (a busy port is an error before
    anything is recorded), serves from `start()` until `close()`.

    Give `feed` to the recording (`record_calibration(..., preview=feed)`) and `on_view` to the
    detection (`run_calibration(..., on_view=...)`)."""

    def __init__(self, board: Board, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self.board = board
        self.feed = PreviewFeed()
        self.renderer = _CalibrationRenderer(self)
        self.server = PreviewServer(self.feed, self.renderer, host=host, port=port,
                                    title="rig calibrate")
        self.live: LiveBoard | None = None  # the newest answer
        self.live_board: LiveBoard | None = None  # the newest board found
        self.live_tries = 0
        self.live_found = 0
        self.live_coverage: Coverage | None = None
        self.detection: DetectedView | None = None
        self.detection_coverage: dict[str, Coverage] = {}
        self.detection_counts: dict[str, int] = {}
        self.total_views = 0
        self.reflected_arm: str | None = None
        self._stop = threading.Event()
        self._detector = threading.Thread(target=self._detect_loop, name="preview-boards", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> CalibrationPreview:
        self.server.start()
        self._detector.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._detector.is_alive():
            self._detector.join(timeout=10.0)
        self.server.close()

    def __enter__(self) -> CalibrationPreview:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the recording: boards on the newest frame -------------------------------------------------
    def _detect_loop(self) -> None:
        last_seq = 0
        while not self._stop.wait(0.1):
            latest = self.feed.latest_frame()
            session = self.feed.session
            if (latest is None or session is None or latest[0] == last_seq
                    or not self.feed.phase[0] == "recording" or not self.server.watched):
                continue
            last_seq, frame = latest
            try:
                self._detect_live(frame.pixels, frame.pixel_format, frame.frame_id, session.frame_size)
            except Exception as exc:  # noqa: BLE001 - the preview must never end the calibration
                self.live = LiveBoard(frame.frame_id, None, f"detector failed: {exc}", time.monotonic())
            self.feed.poke()

    def _detect_live(self, pixels: np.ndarray, pixel_format: str, frame_id: int,
                     frame_size: tuple[int, int]) -> None:
        gray = to_gray(pixels, pixel_format)
        scale = min(1.0, LIVE_MAX_SIDE_PX / max(gray.shape))
        small = resized(gray, round(gray.shape[1] * scale), round(gray.shape[0] * scale)) if scale < 1 \
            else gray
        det = detect_corners(small, self.board, try_classic=False)
        self.live_tries += 1
        corners = None if det.corners is None else det.corners.astype(np.float64) / scale
        if self.live_coverage is None or self.live_coverage.size != tuple(frame_size):
            self.live_coverage = Coverage(frame_size)
        self.live = LiveBoard(frame_id, corners, det.reason, time.monotonic())
        if corners is not None:
            self.live_found += 1
            self.live_coverage.add(corners, NEW_POSE_PX)
            self.live_board = self.live

    # -- the detection: each view of both cameras --------------------------------------------------
    def start_detection(self, frame_size: tuple[int, int], event_size: tuple[int, int], total: int,
                        reflected_arm: str | None) -> None:
        """The views are about to be detected (sizes and count from the view source)."""
        self.detection_coverage = {"frame": Coverage(frame_size), "event": Coverage(event_size)}
        self.detection_counts = {"seen": 0, "frame": 0, "event": 0, "pairs": 0}
        self.total_views, self.reflected_arm = total, reflected_arm
        self.feed.set_phase("detecting boards", f"0 of {total} views")

    def on_view(self, item: tuple[int, str, np.ndarray | None, np.ndarray | None] | None,
                vs: ViewSet) -> None:
        """`detect_views`' report after each view (None: all views done). Runs on the
        detection's thread: it keeps references and counts, the preview thread draws."""
        if item is None:
            self.feed.set_phase("calibrating", f"{len(vs.pair_ids)} views with the board in both cameras")
            return
        vid, label, fgray, eimg = item
        fc, ec = vs.frame_corners.get(vid), vs.event_corners.get(vid)
        for cam, corners in (("frame", fc), ("event", ec)):
            if corners is not None and cam in self.detection_coverage:
                self.detection_coverage[cam].add(corners)
        self.detection_counts = {"seen": len(vs.labels), "frame": len(vs.frame_corners),
                                 "event": len(vs.event_corners), "pairs": len(vs.pair_ids)}
        view = DetectedView(vid, label, fgray, eimg, fc, ec, vs.rejected["frame"].get(vid, ""),
                            vs.rejected["event"].get(vid, ""),
                            ec is not None or vid in vs.rejected["event"])
        # the page shows the newest view with a board (a blinking board is dark in half the
        # views, and those pass in a blink); the counters show every view
        if view.found or self.detection is None or not self.detection.found:
            self.detection = view
        self.feed.set_phase("detecting boards", f"{len(vs.labels)} of {self.total_views} views")

    def finish(self, phase: str, detail: str = "") -> None:
        self.feed.set_phase(phase, detail)


def draw_board(img: np.ndarray, corners: np.ndarray, board: Board,
               to_display: tuple[float, float, float, float], label: str = "") -> None:
    """The board's corners (yellow dots, dark rims) and its outline on a displayed image, and
    `label` above it; the box maps sensor pixel (u, v) to (x0 + u * sx, y0 + v * sy)."""
    x0, y0, sx, sy = to_display
    pts = np.column_stack([x0 + corners[:, 0] * sx, y0 + corners[:, 1] * sy])
    grid = pts.reshape(board.rows, board.cols, 2)
    outline = np.array([grid[0, 0], grid[0, -1], grid[-1, -1], grid[-1, 0]])
    cv2.polylines(img, [np.round(outline).astype(np.int32)], True, CORNER_RGB, 2, cv2.LINE_AA)
    for x, y in np.round(pts).astype(np.int32):
        cv2.circle(img, (int(x), int(y)), 4, OUTLINE_RGB, -1, cv2.LINE_AA)
        cv2.circle(img, (int(x), int(y)), 3, CORNER_RGB, -1, cv2.LINE_AA)
    if label:
        x, y = int(pts[:, 0].min()), max(14, int(pts[:, 1].min()) - 8)
        cv2.putText(img, label, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, OUTLINE_RGB, 3, cv2.LINE_AA)
        cv2.putText(img, label, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, CORNER_RGB, 1, cv2.LINE_AA)


class _CalibrationRenderer:
    """Draws the calibration's phases: the recording (the overlay renderer's side by side, the
    live board, the frame's coverage) and the detection (each view, both coverages)."""

    def __init__(self, owner: CalibrationPreview) -> None:
        self.owner = owner
        self.base = OverlayRenderer()

    def render(self, view: FeedView) -> Picture:
        o = self.owner
        pic = self._detection(o.detection) if o.detection is not None else self._recording(view)
        pic.stats["calibration"] = self._numbers()
        return pic

    def _recording(self, view: FeedView) -> Picture:
        o = self.owner
        pic = self.base.render(view)
        board, cov = o.live_board, o.live_coverage
        if board is not None and board.corners is not None and pic.frame_box is not None:
            # the newest board found, on whichever frame is shown (a blinking board is dark every
            # other period), with the frame it was found on
            age = time.monotonic() - board.t
            label = "board" if view.frame is not None and board.frame_id == view.frame.frame_id \
                else f"board of frame {board.frame_id} ({age:.1f} s ago)"
            draw_board(pic.image, board.corners, o.board, pic.frame_box, label)
        if cov is None or view.session is None:
            return pic
        width = min(pic.image.shape[1], 480)
        mirrored = view.session.reflected_arm == "frame"
        heat = cov.picture(width, "frame camera coverage (live)", flip=mirrored)
        pic.image = stacked([pic.image, heat])
        return pic

    def _detection(self, d: DetectedView) -> Picture:
        o = self.owner
        tiles, heats = [], []
        height = 360
        skipped = "not looked at: no frame board to pair it with"
        for cam, img, corners, reason in (
                ("frame", d.frame, d.frame_corners, d.frame_reason),
                ("event", d.event, d.event_corners, d.event_reason if d.event_tried else skipped)):
            cov = o.detection_coverage.get(cam)
            flip = o.reflected_arm == cam
            if img is None:
                size = cov.size if cov is not None else (640, 360)
                w = round(size[0] * height / size[1])
                tile = np.full((height, w, 3), 235, np.uint8)
                put_text(tile, "no image for this view", (12, height // 2), 0.6)
                tiles.append(caption(tile, f"{cam} camera: no image"))
            else:
                s = height / img.shape[0]
                rgb = cv2.cvtColor(resized(img, max(1, round(img.shape[1] * s)), height), cv2.COLOR_GRAY2RGB)
                box = (0.0, 0.0, s, s)
                if flip:
                    rgb = np.ascontiguousarray(rgb[:, ::-1])
                    box = (rgb.shape[1] - 1.0, 0.0, -s, s)
                if corners is not None:
                    draw_board(rgb, np.asarray(corners, np.float64), o.board, box)
                said = "board found" if corners is not None else \
                    (reason if reason == skipped else f"no board ({reason or 'not detected'})")
                tiles.append(caption(rgb, f"{cam} camera: {said}" + (", flipped back" if flip else "")))
            if cov is not None:
                heats.append(cov.picture(tiles[-1].shape[1], f"{cam} coverage", flip=flip))
        top = side_by_side(tiles)
        stats: dict[str, Any] = {"mode": "detection", "alignment": "each view as detected"}
        if d.frame is not None:  # the view's grey frame (not the raw Bayer values)
            stats["frame"] = {**frame_stats(Frame(d.frame, d.view_id, 0, 0, 0.0, 0.0, pixel_format="Mono8")),
                              "source": f"the grey image of view {d.view_id}"}
        top = caption(top, f"view {d.view_id} ({d.label}): "
                           + ("the newest with a board; yellow: its corners" if d.found
                              else "no board found yet"))
        return Picture(stacked([top, side_by_side(heats)]) if heats else top, stats=stats)

    def _numbers(self) -> dict[str, Any]:
        o = self.owner
        if o.detection is not None or o.detection_counts:
            c = o.detection_counts
            rows = [["views detected", f"{c.get('seen', 0)} of {o.total_views}"],
                    ["boards: frame / event", f"{c.get('frame', 0)} / {c.get('event', 0)}"],
                    ["views with both (pairs)", str(c.get("pairs", 0))]]
            rows += [[f"{cam} coverage", cov.summary()] for cam, cov in o.detection_coverage.items()]
            if o.detection is not None:
                why = "; ".join(f"{cam}: {r}" for cam, r in (("frame", o.detection.frame_reason),
                                                              ("event", o.detection.event_reason)) if r)
                if why:
                    rows.append(["last view rejected", why])
            note = ("every view of the session, as the calibration detects it; a camera's coverage "
                    "counts its boards' corners per cell")
            return {"rows": rows, "note": note}
        live = o.live
        rows = [["boards found live (frame camera)", f"{o.live_found} of {o.live_tries} frames tried"]]
        if o.live_coverage is not None:
            rows.append(["frame coverage (distinct poses)", o.live_coverage.summary()])
        if live is not None:
            age = time.monotonic() - live.t
            rows.append(["newest answer", f"frame {live.frame_id}, {age:.1f} s ago: "
                         + ("board" if live.corners is not None else live.reason or "no board")])
        if o.live_board is not None:
            rows.append(["newest board", f"frame {o.live_board.frame_id}, "
                                         f"{time.monotonic() - o.live_board.t:.1f} s ago"])
        note = ("boards are looked for on the newest frame while this page is open (a shrunk copy); "
                "after the recording, the calibration detects every view of both cameras")
        return {"rows": rows, "note": note}


__all__ = ["CalibrationPreview", "Coverage", "load_alignment"]
