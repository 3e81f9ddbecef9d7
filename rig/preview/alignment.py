"""How the preview puts events and frames on one grid: plain arrays, made by the calibration.

Why arrays and not a calibration object: `rig` may not import `calibration`
(docs/architecture.md), yet the preview should draw the events where the builder will put them.
So the calibration layer (`calibration.preview.load_alignment`) turns a calib.yaml into these
look-up tables once, and the preview only indexes them: a table per event pixel (its pixel on
the aligned grid, or none) and the `cv2.remap` maps of the frame onto that grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PreviewAlignment:
    """Event pixels and frame pixels on the aligned grid of a calibration.

    `event_x`, `event_y` (int32, length event width x height, row-major) give each event
    pixel's nearest grid pixel, -1 where it falls outside the grid; `frame_map1`, `frame_map2`
    are `cv2.remap` maps (grid -> frame sensor pixels) of the frame's grey image. `source`
    names the calibration for the page (its path).
    """

    grid_size: tuple[int, int]  # (width, height) of the aligned grid
    event_size: tuple[int, int]  # the sensors the calibration is for
    frame_size: tuple[int, int]
    event_x: np.ndarray
    event_y: np.ndarray
    frame_map1: np.ndarray
    frame_map2: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        """The tables must index as `events_on_grid` does: one entry per event pixel, on the grid
        or -1 (a wrong table would paint outside the picture, or crash the drawing thread)."""
        ew, eh = self.event_size
        gw, gh = self.grid_size
        for name, table, top in (("event_x", self.event_x, gw), ("event_y", self.event_y, gh)):
            if table.shape != (ew * eh,) or table.dtype.kind != "i":
                raise ValueError(f"{name}: want {ew * eh} signed integers (one per event pixel), "
                                 f"got {table.dtype} {table.shape}")
            if table.size and (int(table.max()) >= top or int(table.min()) < -1):
                raise ValueError(f"{name}: grid positions must lie in -1..{top - 1}")
        if not np.array_equal(self.event_x < 0, self.event_y < 0):
            raise ValueError("event_x and event_y must mark the same pixels off the grid (-1)")

    def mismatch(self, frame_size: tuple[int, int], event_size: tuple[int, int]) -> str:
        """Why this calibration cannot align these sensors ("" when it can)."""
        if tuple(frame_size) == tuple(self.frame_size) and tuple(event_size) == tuple(self.event_size):
            return ""
        return (f"{self.source or 'the calibration'} is for {self.frame_size[0]}x{self.frame_size[1]} "
                f"frames and {self.event_size[0]}x{self.event_size[1]} events, the rig delivers "
                f"{frame_size[0]}x{frame_size[1]} and {event_size[0]}x{event_size[1]}")

    def events_on_grid(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(grid x, grid y, kept) of events at sensor pixels (x, y); `kept` selects those on
        the grid (and inside the sensor)."""
        w, h = self.event_size
        xi, yi = x.astype(np.int64), y.astype(np.int64)
        inside = (xi < w) & (yi < h)
        idx = np.where(inside, yi * w + xi, 0)
        gx, gy = self.event_x[idx], self.event_y[idx]
        kept = inside & (gx >= 0)
        return gx, gy, kept
