"""A full-screen blinking checkerboard for a monitor in front of a real rig (`--show-pattern`).

The image matches the simulated board: (cols + 1) x (rows + 1) squares, a dark corner square
at the top-left, a white margin; lit for half of each period and black for the other half, so
the event camera sees every lit square fire ON then OFF once per period.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from calibration.board import Board


def pattern_image(board: Board, width_px: int, height_px: int, margin_squares: float = 0.75,
                  ) -> np.ndarray:
    """The lit pattern, centred, as large as fits: (H, W) uint8."""
    cols, rows = board.cols + 1, board.rows + 1
    total_w, total_h = cols + 2 * margin_squares, rows + 2 * margin_squares
    sq = int(min(width_px / total_w, height_px / total_h))
    if sq < 4:
        raise ValueError(f"a {width_px}x{height_px} screen is too small for a "
                         f"{board.cols}x{board.rows} pattern")
    img = np.zeros((height_px, width_px), np.uint8)
    bw, bh = int(sq * total_w), int(sq * total_h)
    x0, y0 = (width_px - bw) // 2, (height_px - bh) // 2
    img[y0:y0 + bh, x0:x0 + bw] = 255
    m = int(round(sq * margin_squares))
    for r in range(rows):
        for c in range(cols):
            if (r + c) % 2 == 0:
                ys, xs = y0 + m + r * sq, x0 + m + c * sq
                img[ys:ys + sq, xs:xs + sq] = 0
    return img


def show_pattern(board: Board, blink_hz: float, width_px: int, height_px: int,
                 duty: float = 0.5) -> None:
    """Show the blinking pattern full screen until Esc or q (needs an OpenCV build with GUI)."""
    if not blink_hz > 0:
        raise ValueError(f"blink frequency must be positive, got {blink_hz}")
    lit = pattern_image(board, width_px, height_px)
    dark = np.zeros_like(lit)
    name = "rig calibrate pattern (Esc/q to quit)"
    try:
        cv2.namedWindow(name, cv2.WINDOW_NORMAL)
        cv2.setWindowProperty(name, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
    except cv2.error:
        from common.opencv import gui_hint

        raise RuntimeError(gui_hint()) from None
    period = 1.0 / blink_hz
    t0 = time.monotonic()
    try:
        while True:
            phase = ((time.monotonic() - t0) / period) % 1.0
            cv2.imshow(name, lit if abs(phase - 0.5) < 0.5 * duty else dark)
            key = cv2.waitKey(1) & 0xFF
            if key in (27, ord("q")):
                break
    finally:
        cv2.destroyWindow(name)
