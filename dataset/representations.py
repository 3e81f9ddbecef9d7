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
- Sub-pixel input (float `x`, `y`: the continuous grid positions an RPEA file's `rectify_map`
  gives): `event_frame`/`voxel_grid` then splat each event bilinearly onto its four neighbouring
  pixels (the time channel takes the latest event within one pixel), and a `density` map (from
  `splat_density`: how much weight a uniform flood puts on each pixel) divides the counts, so a
  uniform flood gives a flat frame and no pixel of the view is a hole where nearest-pixel rounding
  would leave one (issue 15: the aligned grid is finer than the event sensor's sampling).
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


@numba.njit(cache=True)
def _splat_frame_kernel(x, y, t, p, height, width, t0, t1, out):  # pragma: no cover - numba
    span = max(t1 - t0, 1.0)
    for i in range(x.shape[0]):
        xf = x[i]
        yf = y[i]
        if not (xf > -1.0 and yf > -1.0 and xf < width and yf < height):  # NaN fails too
            continue
        xi = int(np.floor(xf))
        yi = int(np.floor(yf))
        fx = xf - xi
        fy = yf - yi
        c = 0 if p[i] > 0 else 1
        ts = (t[i] - t0) / span
        ts = min(max(ts, 1e-6), 1.0)
        for dy in range(2):
            yy = yi + dy
            wy = fy if dy else 1.0 - fy
            if yy < 0 or yy >= height or wy <= 0.0:
                continue
            for dx in range(2):
                xx = xi + dx
                w = (fx if dx else 1.0 - fx) * wy
                if xx < 0 or xx >= width or w <= 0.0:
                    continue
                out[c, yy, xx] += w
                if ts > out[2, yy, xx]:
                    out[2, yy, xx] = ts


@numba.njit(cache=True)
def _splat_voxel_kernel(x, y, t, p, height, width, t0, t1, bins, out):  # pragma: no cover - numba
    span = max(t1 - t0, 1.0)
    for i in range(x.shape[0]):
        xf = x[i]
        yf = y[i]
        if not (xf > -1.0 and yf > -1.0 and xf < width and yf < height):
            continue
        xi = int(np.floor(xf))
        yi = int(np.floor(yf))
        fx = xf - xi
        fy = yf - yi
        tn = (t[i] - t0) / span * (bins - 1)
        tn = min(max(tn, 0.0), bins - 1.0)
        b0 = int(np.floor(tn))
        ft = tn - b0
        pol = 1.0 if p[i] > 0 else -1.0
        for dy in range(2):
            yy = yi + dy
            wy = fy if dy else 1.0 - fy
            if yy < 0 or yy >= height or wy <= 0.0:
                continue
            for dx in range(2):
                xx = xi + dx
                w = (fx if dx else 1.0 - fx) * wy * pol
                if xx < 0 or xx >= width or w == 0.0:
                    continue
                out[b0, yy, xx] += w * (1.0 - ft)
                if b0 + 1 < bins:
                    out[b0 + 1, yy, xx] += w * ft


@numba.njit(cache=True)
def _splat_ones_kernel(x, y, height, width, out):  # pragma: no cover - numba
    for i in range(x.shape[0]):
        xf = x[i]
        yf = y[i]
        if not (xf > -1.0 and yf > -1.0 and xf < width and yf < height):
            continue
        xi = int(np.floor(xf))
        yi = int(np.floor(yf))
        fx = xf - xi
        fy = yf - yi
        for dy in range(2):
            yy = yi + dy
            wy = fy if dy else 1.0 - fy
            if yy < 0 or yy >= height or wy <= 0.0:
                continue
            for dx in range(2):
                xx = xi + dx
                w = (fx if dx else 1.0 - fx) * wy
                if xx >= 0 and xx < width and w > 0.0:
                    out[yy, xx] += w


#: A pixel reached by less than this share of the typical splat weight is not amplified further
#: (the view's border, where only part of a sensor pixel's footprint lands).
MIN_DENSITY_FRACTION = 0.5


def splat_density(positions_xy: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 divisor of sub-pixel counts: the weight a uniform flood (one event at each
    of `positions_xy`, the grid positions of every sensor pixel) puts on each pixel, relative to
    its median over reached pixels, floored at MIN_DENSITY_FRACTION; 1 where nothing lands.

    Dividing by it makes a uniform flood flat (the sensor's sampling pattern on the grid, which
    beats with the pixel grid, cancels) while counts keep the scale of events per grid pixel.
    """
    pos = np.asarray(positions_xy, np.float64).reshape(-1, 2)
    h, w = int(shape_hw[0]), int(shape_hw[1])
    flood = np.zeros((h, w), np.float64)
    _splat_ones_kernel(np.ascontiguousarray(pos[:, 0]), np.ascontiguousarray(pos[:, 1]), h, w, flood)
    reached = flood > 0
    if not reached.any():
        return np.ones((h, w), np.float32)
    rel = flood / float(np.median(flood[reached]))
    return np.where(reached, np.maximum(rel, MIN_DENSITY_FRACTION), 1.0).astype(np.float32)


def coverage(density_or_flood: np.ndarray, in_view: np.ndarray | None = None) -> float:
    """Share of the (in-view) pixels that events can reach with the bilinear splat."""
    reached = np.asarray(density_or_flood) > 0
    if in_view is not None:
        reached = reached[np.asarray(in_view, bool)]
    return float(reached.mean()) if reached.size else 0.0


def _is_subpixel(x: np.ndarray, y: np.ndarray) -> bool:
    return np.asarray(x).dtype.kind == "f" or np.asarray(y).dtype.kind == "f"


def _prepare_float(x, y, t_us, p):
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    t = np.ascontiguousarray(t_us, dtype=np.float64)
    p = np.ascontiguousarray(p, dtype=np.int8)
    if not (x.shape == y.shape == t.shape == p.shape) or x.ndim != 1:
        raise ValueError(
            f"event arrays must be 1-D and equally long, got {x.shape} {y.shape} {t.shape} {p.shape}"
        )
    return x, y, t, p


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
    density: np.ndarray | None = None,
) -> np.ndarray:
    """3-channel event frame, float32 (3, H, W): ON count, OFF count, latest normalised time.

    The time channel is (t_last - t0) / (t1 - t0) clipped to [1e-6, 1] at pixels with events and
    0 elsewhere, so "no event" and "event at the window start" stay distinguishable. The window
    defaults to [min t, max t + 1). Float `x`, `y` are splatted bilinearly (module doc) and the
    counts divided by `density` when given.
    """
    height, width = int(shape_hw[0]), int(shape_hw[1])
    out = np.zeros((3, height, width), np.float32)
    if _is_subpixel(x, y):
        xf, yf, t, pi = _prepare_float(x, y, t_us, p)
        t0, t1 = _window(t, t0_us, t1_us)
        _splat_frame_kernel(xf, yf, t, pi, height, width, t0, t1, out)
        if density is not None:
            out[:2] /= density
        return out
    xi, yi, t, pi = _prepare(x, y, t_us, p)
    t0, t1 = _window(t, t0_us, t1_us)
    _event_frame_kernel(xi, yi, t, pi, height, width, t0, t1, out)
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
    density: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """`event_frame(...)` and its `event_frame_scale(frame, percentile)`, for a loader that
    scales only a crop; integer positions give integer counts <= the event count, so their
    histogram is one unchecked pass (sub-pixel counts take the general path)."""
    out = event_frame(x, y, t_us, p, shape_hw, t0_us, t1_us, density)
    if _is_subpixel(x, y):  # the values event_frame_scale's general path takes, in one pass
        active = _nonzero_values(out[:2].reshape(-1))
        return out, (max(float(np.percentile(active, percentile)), 1.0) if active.size else 1.0)
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
    density: np.ndarray | None = None,
) -> np.ndarray:
    """Voxel grid, float32 (bins, H, W): polarity (+1/-1) split bilinearly between the two bins
    nearest to the event's normalised time (t - t0) / (t1 - t0) * (bins - 1).

    Each event contributes a total weight of exactly +-1, so `grid.sum()` equals ON - OFF (for
    float `x`, `y` also split bilinearly over four pixels; divided by `density` when given).
    """
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    height, width = int(shape_hw[0]), int(shape_hw[1])
    out = np.zeros((bins, height, width), np.float32)
    if _is_subpixel(x, y):
        xf, yf, tf, pf = _prepare_float(x, y, t_us, p)
        t0, t1 = _window(tf, t0_us, t1_us)
        _splat_voxel_kernel(xf, yf, tf, pf, height, width, t0, t1, max(bins, 1), out)
        if density is not None:
            out /= density
        return out
    x, y, t, p = _prepare(x, y, t_us, p)
    t0, t1 = _window(t, t0_us, t1_us)
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
