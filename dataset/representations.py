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
  Each is split into "statistics of the whole grid" (`event_frame_scale`, `voxel_grid_stats`) and
  "apply them" (`apply_event_frame_scale`, `apply_voxel_grid_stats`), so a training loader can
  take the statistics on the full frame and scale only its crop, with the same values.
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


def event_frame_with_scale(
    x: np.ndarray,
    y: np.ndarray,
    t_us: np.ndarray,
    p: np.ndarray,
    shape_hw: tuple[int, int],
    t0_us: float | None = None,
    t1_us: float | None = None,
    percentile: float = 99.0,
) -> tuple[np.ndarray, float]:
    """`event_frame(...)` and its `event_frame_scale(frame, percentile)`, for a loader that
    scales only a crop; the counts are known to be integers <= the event count, so their
    histogram is one unchecked pass."""
    out = event_frame(x, y, t_us, p, shape_hw, t0_us, t1_us)
    hist = np.zeros(len(x) + 1, np.int64)
    _count_histogram(out[:2].reshape(-1), hist)
    return out, _scale_from_histogram(hist, percentile)


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


@numba.njit(cache=True)
def _integer_histogram(values):  # pragma: no cover - numba
    """Histogram of non-negative integer values; empty when any value is not one (fallback)."""
    vmax = 0.0
    for v in values:
        if not (v >= 0.0 and v <= 16777216.0 and v == np.floor(v)):  # NaN fails too
            return np.zeros(0, np.int64)
        if v > vmax:
            vmax = v
    hist = np.zeros(int(vmax) + 1, np.int64)
    for v in values:
        hist[int(v)] += 1
    return hist


@numba.njit(cache=True)
def _count_histogram(counts, hist):  # pragma: no cover - numba
    """hist[c] += 1 for every non-zero count c (hist[0] stays 0; counts known to be integers)."""
    for v in counts:
        if v != 0.0:
            hist[int(v)] += 1


@numba.njit(cache=True)
def _nonzero_values(flat):  # pragma: no cover - numba
    """The non-zero entries of a 1-D float32 array in order (what `a[a != 0]` returns)."""
    n = 0
    for v in flat:
        if v != 0:
            n += 1
    out = np.empty(n, np.float32)
    k = 0
    for v in flat:
        if v != 0:
            out[k] = v
            k += 1
    return out


def _scale_from_histogram(hist: np.ndarray, percentile: float) -> float:
    """The joint percentile of the positive counts described by `hist` (hist[c] = how many
    count-channel pixels hold c), at least 1, exactly as `np.percentile` gives it on the values.

    Expanding the histogram gives the sorted positive values, so `np.percentile` itself does the
    interpolation (no re-implementation of its rounding), on an already sorted array.
    """
    active = np.repeat(np.arange(1, hist.size, dtype=np.float32), hist[1:])
    return max(float(np.percentile(active, percentile)), 1.0) if active.size else 1.0


def event_frame_scale(frame: np.ndarray, percentile: float = 99.0) -> float:
    """The count scale `normalize_event_frame` divides by: the joint `percentile` of the two
    count channels over pixels with events, at least 1.

    Counts are integers, so the percentile is taken from their histogram (one pass, no sort);
    expanding the histogram back to the sorted positive values lets `np.percentile` give the
    exact value it gives on the frame. Non-integer input falls back to `np.percentile` directly.
    """
    counts = np.ascontiguousarray(frame[:2], dtype=np.float32).reshape(-1)
    hist = _integer_histogram(counts)
    if hist.size == 0:
        active = counts[counts > 0]
        return max(float(np.percentile(active, percentile)), 1.0) if active.size else 1.0
    return _scale_from_histogram(hist, percentile)


def apply_event_frame_scale(frame: np.ndarray, scale: float) -> np.ndarray:
    """Divide the count channels by `scale` and clip to [0, 1], in place; returns `frame`."""
    counts = frame[:2]
    np.clip(counts / scale, 0.0, 1.0, out=counts)
    return frame


def normalize_event_frame(frame: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    """Scale the two count channels to [0, 1] by their joint `percentile` over active pixels.

    Counts grow with scene speed and window length; a robust per-sample scale keeps the network
    input range stable between day and night. The time channel is already in [0, 1].
    """
    out = frame.astype(np.float32, copy=True)
    return apply_event_frame_scale(out, event_frame_scale(out, percentile))


def voxel_grid_stats(grid: np.ndarray) -> tuple[float, float] | None:
    """(mean, std) over the non-zero voxels that `normalize_voxel_grid` uses, std replaced by 1
    when it is ~0; None when there are fewer than two non-zero voxels (no normalisation)."""
    vals = _nonzero_values(np.ascontiguousarray(grid, dtype=np.float32).reshape(-1))
    if vals.size <= 1:
        return None
    std = float(vals.std())
    return float(vals.mean()), (std if std > 1e-6 else 1.0)


def apply_voxel_grid_stats(grid: np.ndarray, stats: tuple[float, float] | None) -> np.ndarray:
    """(v - mean) / std on the non-zero voxels of `grid`, in place; zeros stay zero."""
    if stats is not None:
        nz = grid != 0
        grid[nz] = (grid[nz] - stats[0]) / stats[1]
    return grid


def normalize_voxel_grid(grid: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-std over non-zero voxels (the E-RAFT/DSEC convention); zeros stay zero."""
    out = grid.astype(np.float32, copy=True)
    return apply_voxel_grid_stats(out, voxel_grid_stats(out))
