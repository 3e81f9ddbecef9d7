"""Dense event representations computed from event arrays (pure numpy + numba).

Inputs everywhere are the four event arrays of one time window: `x`, `y` (pixel column/row on the
output grid, integer arrays), `t_us` (timestamps in microseconds, any integer or float dtype,
ascending is not required), `p` (polarity: 1 / True = ON, 0 / False / -1 = OFF), plus the grid
size `(height, width)` and the window `[t0_us, t1_us)`. Events outside the grid are ignored, so
shifted or cropped coordinates can be passed as they are.

- `event_frame`: the paper's 3-channel frame I_evt (ON count, OFF count, latest timestamp in the
  window normalised to (0, 1], 0 where a pixel saw no event).
- `voxel_grid`: B temporal bins; each event adds its polarity (+1/-1) to the two nearest bins with
  bilinear weights in time (Zhu et al. 2019).
- `normalize_event_frame`, `normalize_voxel_grid`: scale a representation for a network input.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _event_frame_kernel(x, y, t, p, height, width, t0, t1, out):  # pragma: no cover - numba
    span = max(t1 - t0, 1.0)
    for i in range(x.shape[0]):
        xi = x[i]
        yi = y[i]
        if xi < 0 or yi < 0 or xi >= width or yi >= height:
            continue
        if p[i] > 0:
            out[0, yi, xi] += 1.0
        else:
            out[1, yi, xi] += 1.0
        ts = (t[i] - t0) / span
        ts = min(max(ts, 1e-6), 1.0)
        if ts > out[2, yi, xi]:
            out[2, yi, xi] = ts


@numba.njit(cache=True)
def _voxel_kernel(x, y, t, p, height, width, t0, t1, bins, out):  # pragma: no cover - numba
    span = max(t1 - t0, 1.0)
    for i in range(x.shape[0]):
        xi = x[i]
        yi = y[i]
        if xi < 0 or yi < 0 or xi >= width or yi >= height:
            continue
        tn = (t[i] - t0) / span * (bins - 1)
        tn = min(max(tn, 0.0), bins - 1.0)
        b0 = int(np.floor(tn))
        frac = tn - b0
        pol = 1.0 if p[i] > 0 else -1.0
        out[b0, yi, xi] += pol * (1.0 - frac)
        if b0 + 1 < bins:
            out[b0 + 1, yi, xi] += pol * frac


def _prepare(x, y, t_us, p):
    x = np.ascontiguousarray(x, dtype=np.int64)
    y = np.ascontiguousarray(y, dtype=np.int64)
    t = np.ascontiguousarray(t_us, dtype=np.float64)
    p = np.ascontiguousarray(p, dtype=np.int8)
    if not (x.shape == y.shape == t.shape == p.shape) or x.ndim != 1:
        raise ValueError(
            f"event arrays must be 1-D and equally long, got {x.shape} {y.shape} {t.shape} {p.shape}"
        )
    return x, y, t, p


def _window(t: np.ndarray, t0_us: float | None, t1_us: float | None) -> tuple[float, float]:
    if t0_us is None:
        t0_us = float(t.min()) if t.size else 0.0
    if t1_us is None:
        t1_us = float(t.max()) + 1.0 if t.size else t0_us + 1.0
    if t1_us <= t0_us:
        raise ValueError(f"empty time window [{t0_us}, {t1_us})")
    return float(t0_us), float(t1_us)


def event_frame(
    x: np.ndarray,
    y: np.ndarray,
    t_us: np.ndarray,
    p: np.ndarray,
    shape_hw: tuple[int, int],
    t0_us: float | None = None,
    t1_us: float | None = None,
) -> np.ndarray:
    """3-channel event frame, float32 (3, H, W): ON count, OFF count, latest normalised time.

    The time channel is (t_last - t0) / (t1 - t0) clipped to [1e-6, 1] at pixels with events and
    0 elsewhere, so "no event" and "event at the window start" stay distinguishable. The window
    defaults to [min t, max t + 1).
    """
    x, y, t, p = _prepare(x, y, t_us, p)
    t0, t1 = _window(t, t0_us, t1_us)
    height, width = int(shape_hw[0]), int(shape_hw[1])
    out = np.zeros((3, height, width), np.float32)
    _event_frame_kernel(x, y, t, p, height, width, t0, t1, out)
    return out


def voxel_grid(
    x: np.ndarray,
    y: np.ndarray,
    t_us: np.ndarray,
    p: np.ndarray,
    shape_hw: tuple[int, int],
    bins: int = 5,
    t0_us: float | None = None,
    t1_us: float | None = None,
) -> np.ndarray:
    """Voxel grid, float32 (bins, H, W): polarity (+1/-1) split bilinearly between the two bins
    nearest to the event's normalised time (t - t0) / (t1 - t0) * (bins - 1).

    Each event contributes a total weight of exactly +-1, so `grid.sum()` equals ON - OFF.
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    x, y, t, p = _prepare(x, y, t_us, p)
    t0, t1 = _window(t, t0_us, t1_us)
    height, width = int(shape_hw[0]), int(shape_hw[1])
    out = np.zeros((bins, height, width), np.float32)
    if bins == 1:
        pol = np.where(p > 0, 1.0, -1.0)
        ok = (x >= 0) & (y >= 0) & (x < width) & (y < height)
        np.add.at(out[0], (y[ok], x[ok]), pol[ok])
        return out
    _voxel_kernel(x, y, t, p, height, width, t0, t1, bins, out)
    return out


def normalize_event_frame(frame: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Scale the two count channels to [0, 1] by their joint `percentile` over active pixels.

    Counts grow with scene speed and window length; a robust per-sample scale keeps the network
    input range stable between day and night. The time channel is already in [0, 1].
    """
    out = frame.astype(np.float32, copy=True)
    counts = out[:2]
    active = counts[counts > 0]
    scale = max(float(np.percentile(active, percentile)), 1.0) if active.size else 1.0
    np.clip(counts / scale, 0.0, 1.0, out=counts)
    return out


def normalize_voxel_grid(grid: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-std over non-zero voxels (the E-RAFT/DSEC convention); zeros stay zero."""
    out = grid.astype(np.float32, copy=True)
    nz = out != 0
    if nz.sum() > 1:
        vals = out[nz]
        std = float(vals.std())
        out[nz] = (vals - float(vals.mean())) / (std if std > 1e-6 else 1.0)
    return out
