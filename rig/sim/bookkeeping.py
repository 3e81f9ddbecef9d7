"""Numba helpers for the simulation loop's own bookkeeping (not physics): handing events to the
event camera in device-time order, and raising per-tile image speeds by moving objects.

Both ran as numpy expressions on the simulation thread, which is serial: ~0.2 s each per
simulated second, while the rendering kernels around them use every core.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

#: Widest device-time span (us) sorted by counting; wider hand-offs use a merge sort.
COUNTING_SPAN_US = 4_000_000


@nb.njit(cache=True)
def split_sort_events(t_true_us: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray,
                      watermark_us: float, offset_us: float, scale: float):
    """Events older than the watermark, in device time (floor(offset + t * scale), as
    `DeviceClock.us`) and stably sorted by it; plus the newer ones, left in their order.

    Returns (t_dev, x, y, p) of the sorted events and (t, x, y, p) of the kept ones.
    """
    n = t_true_us.shape[0]
    nsel = 0
    for i in range(n):
        if t_true_us[i] < watermark_us:
            nsel += 1
    td = np.empty(nsel, np.int64)
    src = np.empty(nsel, np.int64)
    kt = np.empty(n - nsel, t_true_us.dtype)
    kx = np.empty(n - nsel, x.dtype)
    ky = np.empty(n - nsel, y.dtype)
    kp = np.empty(n - nsel, p.dtype)
    a = 0
    b = 0
    for i in range(n):
        if t_true_us[i] < watermark_us:
            td[a] = np.int64(math.floor(offset_us + t_true_us[i] * scale))
            src[a] = i
            a += 1
        else:
            kt[b] = t_true_us[i]
            kx[b] = x[i]
            ky[b] = y[i]
            kp[b] = p[i]
            b += 1
    order = np.empty(nsel, np.int64)
    if nsel > 0:
        lo = td.min()
        span = td.max() - lo + 1
        if span <= COUNTING_SPAN_US:
            start = np.zeros(span + 1, np.int64)
            for i in range(nsel):
                start[td[i] - lo + 1] += 1
            for k in range(span):
                start[k + 1] += start[k]
            for i in range(nsel):  # in input order: stable
                k = td[i] - lo
                order[start[k]] = i
                start[k] += 1
        else:
            order = np.argsort(td, kind="mergesort")
    ot = np.empty(nsel, np.int64)
    ox = np.empty(nsel, x.dtype)
    oy = np.empty(nsel, y.dtype)
    op = np.empty(nsel, p.dtype)
    for j in range(nsel):
        i = order[j]
        ot[j] = td[i]
        ox[j] = x[src[i]]
        oy[j] = y[src[i]]
        op[j] = p[src[i]]
    return ot, ox, oy, op, kt, kx, ky, kp


@nb.njit(cache=True)
def raise_by_boxes(speed_px_s: np.ndarray, boxes: np.ndarray, box_speed_px_s: np.ndarray,
                   tile_bounds: np.ndarray) -> None:
    """speed[i] = max(speed[i], box_speed[k]) for every box k (x0, x1, y0, y1 in normalised
    image coordinates) that overlaps tile i's bounds (x0, x1, y0, y1); in place."""
    for k in range(boxes.shape[0]):
        s = box_speed_px_s[k]
        bx0 = boxes[k, 0]
        bx1 = boxes[k, 1]
        by0 = boxes[k, 2]
        by1 = boxes[k, 3]
        for i in range(tile_bounds.shape[0]):
            if (s > speed_px_s[i] and bx1 >= tile_bounds[i, 0] and bx0 <= tile_bounds[i, 1]
                    and by1 >= tile_bounds[i, 2] and by0 <= tile_bounds[i, 3]):
                speed_px_s[i] = s
