"""The calibration target: a chessboard of inner corners, and its object points."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Board:
    """A chessboard with `cols` x `rows` inner corners spaced `square_m` apart."""

    cols: int
    rows: int
    square_m: float

    def __post_init__(self) -> None:
        if self.cols < 3 or self.rows < 3:
            raise ValueError(f"board pattern {self.cols}x{self.rows}: need at least 3x3 inner "
                             "corners")
        if not self.square_m > 0:
            raise ValueError(f"board square size must be positive, got {self.square_m} m")

    @property
    def pattern_size(self) -> tuple[int, int]:
        """(cols, rows), the `patternSize` OpenCV's detectors take."""
        return (self.cols, self.rows)

    @property
    def n_corners(self) -> int:
        return self.cols * self.rows

    @property
    def colour_asymmetric(self) -> bool:
        """True when a 180-degree turn swaps square colours (cols + rows odd), so the board's
        orientation can be read from the colour of its corner squares."""
        return (self.cols + self.rows) % 2 == 1

    def object_points(self) -> np.ndarray:
        """(N, 3) float32 corner positions on the board plane, row-major, metres."""
        jj, ii = np.mgrid[0:self.rows, 0:self.cols]
        pts = np.zeros((self.n_corners, 3), np.float32)
        pts[:, 0] = ii.ravel() * self.square_m
        pts[:, 1] = jj.ravel() * self.square_m
        return pts


def parse_pattern(text: str) -> tuple[int, int]:
    """'9x6' -> (9, 6): inner corners per row and per column."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX*,]\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"pattern {text!r}: expected inner corners as COLSxROWS, e.g. 9x6")
    return int(m.group(1)), int(m.group(2))
