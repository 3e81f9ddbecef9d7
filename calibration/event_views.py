"""Turn events around a trigger into an image a chessboard detector can use.

The board blinks (the pattern lit, then dark), so over one blink period every lit square fires
once ON and once OFF, the dark squares stay silent, and the count of events of both polarities
draws the board. The window is one blink period centred on the trigger (plus half the exposure),
so it holds exactly one ON and one OFF edge whatever the phase. A window that also holds a board
move is caught by comparing the ON and OFF images: for a pure blink they coincide.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class EventViewImage:
    image: np.ndarray  # (H, W) uint8, bright where the lit pattern fired
    n_events: int
    on_off_correlation: float  # 1 = ON and OFF images identical (a clean blink)
    reason: str = ""  # why the window is unusable ("" when usable)


def window_slice(t_us: np.ndarray, t0_us: float, t1_us: float) -> slice:
    """Index range of events with t0 <= t < t1 (events sorted by time)."""
    i0 = int(np.searchsorted(t_us, t0_us, side="left"))
    i1 = int(np.searchsorted(t_us, t1_us, side="left"))
    return slice(i0, i1)


def count_images(x: np.ndarray, y: np.ndarray, p: np.ndarray,
                 size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel ON and OFF counts, (H, W) float32 each."""
    w, h = size
    xi = np.asarray(x, np.int64)
    yi = np.asarray(y, np.int64)
    inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
    idx = (yi * w + xi)[inside]
    pol = np.asarray(p)[inside] > 0
    on = np.bincount(idx[pol], minlength=w * h).astype(np.float32).reshape(h, w)
    off = np.bincount(idx[~pol], minlength=w * h).astype(np.float32).reshape(h, w)
    return on, off


def counts_to_image(counts: np.ndarray, blur_sigma_px: float = 0.7,
                    clip_percentile: float = 99.0) -> np.ndarray:
    """Event counts -> uint8 image: clipped at a percentile of the firing pixels (hot pixels),
    smoothed a little (fills single-pixel holes, which helps both detectors)."""
    c = np.asarray(counts, np.float32)
    firing = c[c > 0]
    if firing.size == 0:
        return np.zeros(c.shape, np.uint8)
    top = max(float(np.percentile(firing, clip_percentile)), 1.0)
    img = np.clip(c / top, 0.0, 1.0) * 255.0
    if blur_sigma_px > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur_sigma_px)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a = cv2.GaussianBlur(a, (0, 0), 1.5).ravel()
    b = cv2.GaussianBlur(b, (0, 0), 1.5).ravel()
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def event_view(events: np.ndarray, t_centre_us: float, period_us: float, size: tuple[int, int],
               *, min_events: int = 2000, min_on_off_corr: float = 0.6) -> EventViewImage:
    """Accumulate events (structured, fields t x y p, sorted by t) over one blink period
    centred on `t_centre_us` into a detector-ready image."""
    sl = window_slice(events["t"], t_centre_us - period_us / 2, t_centre_us + period_us / 2)
    ev = events[sl]
    on, off = count_images(ev["x"], ev["y"], ev["p"], size)
    img = counts_to_image(on + off)
    n = len(ev)
    if n < min_events:
        return EventViewImage(img, n, 0.0, f"only {n} events in the window")
    corr = _correlation(on, off)
    if corr < min_on_off_corr:
        return EventViewImage(img, n, corr, f"ON/OFF images differ (corr {corr:.2f}): "
                                            "the board moved in the window")
    return EventViewImage(img, n, corr)


def estimate_blink_hz(t_us: np.ndarray, p: np.ndarray | None = None, min_hz: float = 0.5,
                      max_hz: float = 200.0) -> float:
    """The blink frequency: the lowest strong line (>= half the strongest) of the spectrum of
    the ON-event rate (1 ms bins).

    Only ON events are used: the board lighting up fires them once per period, whereas ON and
    OFF bursts together come twice per period and, at a 50 % duty cycle, look exactly like a
    blink at twice the rate.
    """
    t = np.asarray(t_us, np.float64)
    if p is not None:
        t = t[np.asarray(p) > 0]
    if t.size < 1000:
        raise ValueError("too few events to estimate the blink frequency; pass --blink-hz")
    bin_us = 1000.0
    counts = np.bincount(((t - t.min()) / bin_us).astype(np.int64)).astype(np.float64)
    if counts.size < 64:
        raise ValueError("recording too short to estimate the blink frequency; pass --blink-hz")
    counts -= counts.mean()
    spec = np.abs(np.fft.rfft(counts))
    freqs = np.fft.rfftfreq(counts.size, d=bin_us * 1e-6)
    idx = np.flatnonzero((freqs >= min_hz) & (freqs <= max_hz))
    if idx.size == 0:
        raise ValueError("recording too short to estimate the blink frequency; pass --blink-hz")
    band = spec[idx]
    # short bursts make a comb of near-equal harmonics: the blink is the lowest strong line
    peak = (band >= 0.5 * band.max()) & (band >= np.roll(band, 1)) & (band >= np.roll(band, -1))
    return float(freqs[idx[np.flatnonzero(peak)[0]]])
