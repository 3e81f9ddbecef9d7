"""The builder's view of the calibration: events, images and labels onto one aligned grid.

The calibration's aligned grid (`output_size`) is already cropped to the region both cameras see
(`valid_roi` says where that crop sits in the full aligned view; `K_aligned` and `H` include the
crop), so `calibration.align` maps event pixels and frame images straight onto it; events that
land outside are dropped. Labels drawn in the frame camera's own view (the simulator's ground
truth) go through the same image warp with nearest-neighbour sampling, so class ids are never
blended.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np


class Alignment:
    """Event pixels, images and label maps -> the cropped aligned grid (`height` x `width`)."""

    def __init__(self, calib: Any) -> None:
        self.calib = calib
        self._event_aligner: Any = None
        self._image_aligner: Any = None
        self.width, self.height = (int(v) for v in calib.output_size)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"calibration output size {calib.output_size} is empty")
        self.yaml_text = str(getattr(calib, "yaml_text", ""))
        self._label_maps: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def event_aligner(self) -> Any:
        """Built on first use: the look-up table costs ~0.5 s, and image workers never need it."""
        if self._event_aligner is None:
            from calibration.align import EventAligner

            self._event_aligner = EventAligner(self.calib)
        return self._event_aligner

    @property
    def image_aligner(self) -> Any:
        if self._image_aligner is None:
            from calibration.align import ImageAligner

            self._image_aligner = ImageAligner(self.calib)
        return self._image_aligner

    @classmethod
    def from_file(cls, path: str | Path) -> Alignment:
        from calibration.io import load_calibration

        return cls(load_calibration(path))

    def events_on_grid(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Mask of the event pixels whose aligned position lands on the grid (the ones a sequence
        file keeps; it stores them as sensor pixels with `rectify_map`)."""
        return self.event_aligner.map_events(x, y)[2]

    def rectify_map(self) -> np.ndarray:
        """(event H, W, 2) float32: each event pixel's continuous position on the aligned grid
        (DSEC's `rectify_map`; NaN where the calibration maps a pixel nowhere)."""
        return np.asarray(self.event_aligner.position, np.float32)

    def _check(self, img: np.ndarray) -> np.ndarray:
        if img.shape[0] != self.height or img.shape[1] != self.width:
            raise ValueError(f"aligned image {img.shape[1]}x{img.shape[0]} is not the calibration's "
                             f"output grid {self.width}x{self.height}")
        return img

    def image(self, pixels: np.ndarray, pixel_format: str) -> np.ndarray:
        """Frame pixels as delivered (Bayer/RGB/mono) -> RGB uint8 on the cropped grid."""
        return self._check(self.image_aligner.align(pixels, pixel_format))

    def label_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """`cv2.remap` maps (aligned grid -> frame camera pixels), float32.

        The same geometry as the image warp: an aligned pixel's ray (K_aligned, rotated back by
        R_rect_frame) projected through the frame camera's K and distortion (and reflected when
        the frame camera is the mirrored one).
        """
        if self._label_maps is None:
            from calibration.align import frame_remap

            self._label_maps = frame_remap(self.calib, cv2.CV_32FC1)
        return self._label_maps

    def label(self, label: np.ndarray, fill: int = 255) -> np.ndarray:
        """A per-pixel id map in the frame camera's view -> the cropped grid, nearest neighbour."""
        mx, my = self.label_maps()
        return cv2.remap(label, mx, my, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=fill)
