"""Put events and images on the aligned grid of a calibration (see calibration.relation).

- `EventAligner`: a per-pixel look-up table, event pixel -> nearest aligned pixel (or "outside
  the grid"), applied by a numba loop (hundreds of Mev/s on one core; benchmarks/calib_align.py).
- `ImageAligner`: `cv2.remap` maps that undistort (and, for the stereo model, rectify) frames
  onto the same grid; Bayer frames are debayered first.
"""

from __future__ import annotations

import cv2
import numba
import numpy as np

from calibration.io import Calibration
from rig.frames import to_rgb
from rig.geometry import apply_homography, project_normalized, undistort_to_normalized


def event_to_aligned(calib: Calibration, event_px: np.ndarray) -> np.ndarray:
    """Continuous aligned-grid position (N, 2) of event sensor pixels (N, 2)."""
    xy = undistort_to_normalized(calib.sensor_to_lens("event", event_px), calib.K_event,
                                 calib.dist_event)
    ideal = np.column_stack([xy, np.ones(len(xy))]) @ calib.K_event.T
    return apply_homography(calib.H, ideal[:, :2] / ideal[:, 2:3])


def frame_to_aligned(calib: Calibration, frame_px: np.ndarray) -> np.ndarray:
    """Continuous aligned-grid position (N, 2) of frame sensor pixels (N, 2)."""
    xy = undistort_to_normalized(calib.sensor_to_lens("frame", frame_px), calib.K_frame,
                                 calib.dist_frame)
    rays = np.column_stack([xy, np.ones(len(xy))]) @ calib.R_rect_frame.T
    p = rays @ calib.K_aligned.T
    return p[:, :2] / p[:, 2:3]


def aligned_to_frame(calib: Calibration, aligned_px: np.ndarray) -> np.ndarray:
    """Frame sensor pixel (N, 2) that the image aligner samples for aligned positions (N, 2)."""
    pts = np.column_stack([np.asarray(aligned_px, np.float64).reshape(-1, 2),
                           np.ones(len(aligned_px))])
    rays = pts @ np.linalg.inv(calib.K_aligned).T @ calib.R_rect_frame  # R_rect^T each ray
    return calib.sensor_to_lens(
        "frame", project_normalized(rays[:, :2] / rays[:, 2:3], calib.K_frame, calib.dist_frame))


def frame_remap(calib: Calibration, map_type: int = cv2.CV_16SC2) -> tuple[np.ndarray, np.ndarray]:
    """`cv2.remap` maps (aligned grid -> frame sensor pixels): undistortion, the stereo model's
    rectification and, for a mirrored frame camera, the reflection back to the lens's view."""
    size = (int(calib.output_size[0]), int(calib.output_size[1]))
    mx, my = cv2.initUndistortRectifyMap(
        np.asarray(calib.K_frame, np.float64), np.asarray(calib.dist_frame, np.float64).ravel(),
        np.asarray(calib.R_rect_frame, np.float64), np.asarray(calib.K_aligned, np.float64),
        size, cv2.CV_32FC1)
    if calib.mirror == "frame":
        mx = (calib.size_frame[0] - 1) - mx
    if map_type == cv2.CV_32FC1:
        return mx, my
    return cv2.convertMaps(mx, my, map_type)


@numba.njit(cache=True, nogil=True)
def _map_events(x, y, lut_x, lut_y, valid, width, height, xa, ya, keep):
    dropped = 0
    for i in range(x.shape[0]):
        xi = np.int64(x[i])
        yi = np.int64(y[i])
        if xi < width and yi < height:
            k = yi * width + xi
            if valid[k]:
                xa[i] = lut_x[k]
                ya[i] = lut_y[k]
                keep[i] = True
                continue
        xa[i] = 0
        ya[i] = 0
        keep[i] = False
        dropped += 1
    return dropped


def grid_coverage(positions_xy: np.ndarray, output_size: tuple[int, int]) -> dict[str, float]:
    """Share of the aligned grid's pixels that events can reach, given every event pixel's
    continuous grid position: `event_coverage` with the reader's bilinear splat (a pixel is
    reached when some position lies less than one pixel from it in x and in y) and
    `event_coverage_nearest` with rounding to the nearest pixel (what a stored integer grid gave).
    """
    w, h = (int(v) for v in output_size)
    pos = np.asarray(positions_xy, np.float64).reshape(-1, 2)
    pos = pos[np.isfinite(pos).all(axis=1)]
    x, y = pos[:, 0], pos[:, 1]
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    splat = np.zeros((h, w), bool)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        wx = (x - x0) if dx else 1.0 - (x - x0)
        wy = (y - y0) if dy else 1.0 - (y - y0)
        xi, yi = x0 + dx, y0 + dy
        ok = (wx > 0) & (wy > 0) & (xi >= 0) & (yi >= 0) & (xi < w) & (yi < h)
        splat[yi[ok], xi[ok]] = True
    xn, yn = np.floor(x + 0.5).astype(np.int64), np.floor(y + 0.5).astype(np.int64)
    ok = (xn >= 0) & (yn >= 0) & (xn < w) & (yn < h)
    nearest = np.zeros((h, w), bool)
    nearest[yn[ok], xn[ok]] = True
    return {"event_coverage": float(splat.mean()), "event_coverage_nearest": float(nearest.mean())}


class EventAligner:
    """Event pixel -> nearest pixel of the aligned grid, by a look-up table built once.

    `map_events(x, y)` returns arrays as long as its input: `xa`, `ya` (uint16, 0 where
    dropped) and `keep` (bool); select with `keep` (`xa[keep]`, `t[keep]`, ...). Events that
    land outside the aligned grid (or whose pixel lies outside the sensor) are dropped and
    counted in `dropped_total` (and `mapped_total` counts all events seen).
    """

    def __init__(self, calib: Calibration) -> None:
        self.calib = calib
        self.width, self.height = (int(v) for v in calib.output_size)
        self.event_width, self.event_height = (int(v) for v in calib.size_event)
        u, v = np.meshgrid(np.arange(self.event_width, dtype=np.float64),
                           np.arange(self.event_height, dtype=np.float64))
        pos = event_to_aligned(calib, np.stack([u.ravel(), v.ravel()], axis=1))
        self.position = pos.reshape(self.event_height, self.event_width, 2)  # continuous
        xr = np.rint(pos[:, 0])
        yr = np.rint(pos[:, 1])
        ok = np.isfinite(xr) & np.isfinite(yr) & (xr >= 0) & (xr < self.width) & (yr >= 0) \
            & (yr < self.height)
        self.lut_x = np.where(ok, xr, 0).astype(np.uint16)
        self.lut_y = np.where(ok, yr, 0).astype(np.uint16)
        self.valid = ok
        self.dropped_total = 0
        self.mapped_total = 0

    @property
    def coverage(self) -> float:
        """Fraction of event pixels that land on the aligned grid."""
        return float(self.valid.mean())

    def map_events(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(x)
        y = np.ascontiguousarray(y)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"x and y must be 1-D arrays of one length, got {x.shape}, {y.shape}")
        n = x.shape[0]
        xa = np.empty(n, np.uint16)
        ya = np.empty(n, np.uint16)
        keep = np.empty(n, np.bool_)
        if n:
            self.dropped_total += int(_map_events(x, y, self.lut_x, self.lut_y, self.valid,
                                                  self.event_width, self.event_height, xa, ya,
                                                  keep))
        self.mapped_total += n
        return xa, ya, keep


class ImageAligner:
    """Frames as delivered -> (H, W, 3) uint8 RGB on the aligned grid (bilinear remap)."""

    def __init__(self, calib: Calibration) -> None:
        self.calib = calib
        self.width, self.height = (int(v) for v in calib.output_size)
        self.map1, self.map2 = frame_remap(calib)

    def align(self, pixels: np.ndarray, pixel_format: str) -> np.ndarray:
        rgb = to_rgb(pixels, pixel_format)
        h, w = rgb.shape[:2]
        if (w, h) != tuple(self.calib.size_frame):
            raise ValueError(f"frame is {w}x{h} but the calibration is for "
                             f"{self.calib.size_frame[0]}x{self.calib.size_frame[1]}")
        return cv2.remap(rgb, self.map1, self.map2, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def align_gray(self, gray: np.ndarray) -> np.ndarray:
        """A single-channel image (e.g. for overlays) on the aligned grid."""
        return cv2.remap(gray, self.map1, self.map2, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def event_image_to_aligned(calib: Calibration, image: np.ndarray) -> np.ndarray:
    """Warp an image in event-sensor pixels (e.g. an event count image) onto the aligned grid
    (bilinear; for pictures and checks; events themselves go through EventAligner)."""
    w, h = (int(v) for v in calib.output_size)
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pts = np.stack([u.ravel(), v.ravel()], axis=1)
    ideal = apply_homography(np.linalg.inv(calib.H), pts)
    norm = (np.column_stack([ideal, np.ones(len(ideal))]) @ np.linalg.inv(calib.K_event).T)[:, :2]
    src = calib.sensor_to_lens("event", project_normalized(norm, calib.K_event, calib.dist_event))
    src = src.astype(np.float32)
    map_x = src[:, 0].reshape(h, w)
    map_y = src[:, 1].reshape(h, w)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                     borderValue=0)
