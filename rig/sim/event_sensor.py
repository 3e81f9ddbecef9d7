"""The event camera's pixel model: DVS events from log-intensity changes.

Per pixel, between two rendered luminance samples at t0 and t1:
1. photoreceptor low-pass on log intensity, a first-order filter whose cut-off rises with the
   light (`f_c = f_max * L / (L + L_half) + f_min`): by day it follows the scene, at night it
   lags and smears, which is why night events come late and fewer;
2. the filtered log intensity is taken as linear between the samples, so each threshold crossing
   gets a sub-sample time;
3. a crossing of the pixel's own ON or OFF threshold (nominal value + per-pixel mismatch) fires an
   event and moves the pixel's reference by one threshold; a pixel in its refractory period after
   its previous event fires when the period ends (if the change is still there), so a pixel
   fires at most once per refractory period and a big step comes out as a train of events;
4. background activity: shot-noise events at a rate that grows in the dark, plus leak events
   (ON), a Poisson process per pixel at the current light level; a noise event resets the pixel;
5. readout latency with jitter, then microsecond timestamps.
Randomness is counter-based (rig.sim.rng), so the output is independent of the thread count.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numba as nb
import numpy as np

from rig.sim import rng as R
from rig.sim.parallel import row_stride

TILE = 16  # pixels per tile side (the renderer's tiling): tiles are sampled at their own pace


@dataclass
class EventSensorParams:
    """Pixel-model settings, with defaults in the ranges of published simulators (v2e, ESIM,
    IEBCS) for an IMX636-class sensor."""

    threshold_on: float = 0.3  # log-intensity contrast threshold, ON
    threshold_off: float = 0.3  # OFF
    threshold_sigma: float = 0.04  # per-pixel mismatch (std) of both thresholds
    refractory_us: float = 100.0
    cutoff_max_hz: float = 500.0  # photoreceptor bandwidth in bright light
    cutoff_min_hz: float = 5.0  # ... and its floor in the dark
    cutoff_half_lum: float = 0.05  # luminance at which the bandwidth is half of cutoff_max_hz
    shot_noise_bright_hz: float = 0.5  # background events per pixel per second, bright
    shot_noise_dark_hz: float = 15.0  # ... in the dark
    shot_noise_half_lum: float = 0.002  # luminance where the noise is halfway between the two
    leak_hz: float = 0.1  # leak (ON) events per pixel per second
    latency_us: float = 200.0
    jitter_us: float = 50.0
    log_eps: float = 1.0e-4  # dark-current floor before the log (radiance units, ~0.5 lux)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EventSensorParams:
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"unknown event sensor parameter(s) {bad}; known: {sorted(known)}")
        return cls(**d)

    @property
    def min_latency_us(self) -> float:
        """No event leaves the pixel earlier than this after its crossing."""
        return max(0.0, self.latency_us - 4.0 * self.jitter_us)


@nb.njit(cache=True, fastmath=True, error_model="numpy", parallel=True, nogil=True)
def _step_kernel(lum: np.ndarray, tile_t0: np.ndarray, tile_mask: np.ndarray, ntx: int,
                 t1_us: float, lp: np.ndarray, ref: np.ndarray,
                 last_t: np.ndarray, c_on: np.ndarray, c_off: np.ndarray, hazard: np.ndarray,
                 target: np.ndarray, counter: np.ndarray, prm: np.ndarray, seed: np.uint64,
                 out_t: np.ndarray, out_x: np.ndarray, out_p: np.ndarray, out_n: np.ndarray,
                 overflow: np.ndarray) -> None:
    H, W = lum.shape
    refr = prm[0]
    fmax = prm[1]
    fmin = prm[2]
    lhalf = prm[3]
    shot_b = prm[4]
    shot_d = prm[5]
    shot_half = prm[6]
    leak = prm[7]
    lat = prm[8]
    jit = prm[9]
    lat_min = prm[10]
    eps = prm[11]
    cap = out_t.shape[1]
    two_pi = 6.283185307179586
    stride = row_stride(H)  # balanced rows per thread
    for j in nb.prange(H):
        y = (j * stride) % H
        n = 0
        trow = (y // TILE) * ntx
        for x in range(W):
            ti = trow + x // TILE
            if tile_mask[ti] == 0:
                continue  # this tile keeps its state until its next sample
            t0_us = tile_t0[ti]
            dt_us = t1_us - t0_us
            dt_s = dt_us * 1e-6
            L = lum[y, x]
            if L < 0.0:
                L = 0.0
            logl = math.log(L + eps)
            fc = fmax * L / (L + lhalf) + fmin
            xa = two_pi * fc * dt_s
            a = 1.0 if xa > 9.0 else 1.0 - math.exp(-xa)
            old = lp[y, x]
            new = old + a * (logl - old)
            lp[y, x] = new
            r = ref[y, x]
            d = new - old
            lt = last_t[y, x]
            cnt = counter[y, x]
            pix = y * W + x
            if new - r >= c_on[y, x]:
                th = c_on[y, x]
                k = 0
                while new - r >= th and k < 256:
                    frac = (r + th - old) / d if d > 0.0 else 0.0
                    if frac < 0.0:
                        frac = 0.0
                    tc = t0_us + frac * dt_us
                    if tc < lt + refr:
                        tc = lt + refr  # still refractory: the pixel fires when it can
                    if tc > t1_us:
                        break  # ... which is after this sample: compare again next step
                    r += th
                    k += 1
                    lt = tc
                    jt = lat + jit * R.normal(R.key3(seed, pix, 0), cnt)
                    cnt += 1
                    if jt < lat_min:
                        jt = lat_min
                    if n < cap:
                        out_t[y, n] = tc + jt
                        out_x[y, n] = x
                        out_p[y, n] = 1
                        n += 1
                    else:
                        overflow[y] += 1
                if k == 256:
                    r = new
            elif r - new >= c_off[y, x]:
                th = c_off[y, x]
                k = 0
                while r - new >= th and k < 256:
                    frac = (r - th - old) / d if d < 0.0 else 0.0
                    if frac < 0.0:
                        frac = 0.0
                    tc = t0_us + frac * dt_us
                    if tc < lt + refr:
                        tc = lt + refr  # still refractory: the pixel fires when it can
                    if tc > t1_us:
                        break  # ... which is after this sample: compare again next step
                    r -= th
                    k += 1
                    lt = tc
                    jt = lat + jit * R.normal(R.key3(seed, pix, 0), cnt)
                    cnt += 1
                    if jt < lat_min:
                        jt = lat_min
                    if n < cap:
                        out_t[y, n] = tc + jt
                        out_x[y, n] = x
                        out_p[y, n] = 0
                        n += 1
                    else:
                        overflow[y] += 1
                if k == 256:
                    r = new
            # background activity: one Poisson process (shot noise + leak) per pixel
            shot = shot_b + (shot_d - shot_b) * shot_half / (L + shot_half)
            rate = shot + leak
            hz = hazard[y, x] + rate * dt_s
            tg = target[y, x]
            while hz >= tg:
                hz -= tg
                frac = 1.0 - hz / (rate * dt_s) if rate > 0.0 else 1.0
                tn = t0_us + min(1.0, max(0.0, frac)) * dt_us
                keyn = R.key3(seed, pix, 1)
                u = R.uniform(keyn, 2 * cnt)
                tg = R.exponential(keyn, 2 * cnt + 1)
                cnt += 1
                if tn - lt >= refr:
                    lt = tn
                    pol = 1 if u * rate < leak + 0.5 * shot else 0
                    r = new  # the pixel resets to the present level
                    if n < cap:
                        out_t[y, n] = tn + lat
                        out_x[y, n] = x
                        out_p[y, n] = pol
                        n += 1
                    else:
                        overflow[y] += 1
            hazard[y, x] = hz
            target[y, x] = tg
            ref[y, x] = r
            last_t[y, x] = lt
            counter[y, x] = cnt
        out_n[y] = n


@nb.njit(cache=True)
def _gather(out_t: np.ndarray, out_x: np.ndarray, out_p: np.ndarray, out_n: np.ndarray,
            t_out: np.ndarray, x_out: np.ndarray, y_out: np.ndarray, p_out: np.ndarray) -> None:
    k = 0
    for y in range(out_n.shape[0]):
        for i in range(out_n[y]):
            t_out[k] = out_t[y, i]
            x_out[k] = out_x[y, i]
            y_out[k] = y
            p_out[k] = out_p[y, i]
            k += 1


@nb.njit(cache=True, fastmath=True, parallel=True)
def _big_change_fraction(lum: np.ndarray, lp: np.ndarray, eps: float, limit: float,
                         tile_mask: np.ndarray, ntx: int) -> float:
    """Fraction of the sampled pixels whose log intensity moved by more than `limit`."""
    H, W = lum.shape
    cnt = np.zeros(H, np.int64)
    tot = np.zeros(H, np.int64)
    for y in nb.prange(H):
        if y % 4 != 1:
            continue  # every 4th row and column is plenty to see a global change
        c = 0
        m = 0
        trow = (y // TILE) * ntx
        for x in range(1, W, 4):
            if tile_mask[trow + x // TILE] == 0:
                continue
            m += 1
            if abs(math.log(max(lum[y, x], 0.0) + eps) - lp[y, x]) > limit:
                c += 1
        cnt[y] = c
        tot[y] = m
    return cnt.sum() / max(1, tot.sum())


class EventSensor:
    """State of every pixel of the event camera, stepped from one luminance sample to the next."""

    def __init__(self, width: int, height: int, params: EventSensorParams, seed: int) -> None:
        self.width, self.height = int(width), int(height)
        self.params = params
        rng = np.random.default_rng([int(seed), 0xE7E7])
        shape = (self.height, self.width)
        self.c_on = np.clip(params.threshold_on + params.threshold_sigma * rng.standard_normal(shape),
                            0.05, None).astype(np.float32)
        self.c_off = np.clip(params.threshold_off + params.threshold_sigma * rng.standard_normal(shape),
                             0.05, None).astype(np.float32)
        self.lp = np.zeros(shape, np.float32)
        self.ref = np.zeros(shape, np.float32)
        self.last_t = np.full(shape, -1e12)
        self.hazard = np.zeros(shape, np.float32)
        self.target = rng.exponential(1.0, shape).astype(np.float32)
        self.counter = np.zeros(shape, np.int64)
        self.seed = R.seed_u64(int(seed), 0xD75)
        self.t_us: float | None = None  # latest sample time of any tile
        self.ntx = -(-self.width // TILE)
        self.nty = -(-self.height // TILE)
        self.tile_t = np.zeros(self.ntx * self.nty)  # each tile's last sample time (us)
        self._all = np.ones(self.ntx * self.nty, np.uint8)
        self.overflow = 0
        self._cap = max(64, 4 * self.width)
        self._out_t = np.empty((self.height, self._cap))
        self._out_x = np.empty((self.height, self._cap), np.uint16)
        self._out_p = np.empty((self.height, self._cap), np.uint8)
        self._out_n = np.zeros(self.height, np.int64)
        self._overflow = np.zeros(self.height, np.int64)
        p = params
        self._prm = np.array([p.refractory_us, p.cutoff_max_hz, p.cutoff_min_hz, p.cutoff_half_lum,
                              p.shot_noise_bright_hz, p.shot_noise_dark_hz, p.shot_noise_half_lum,
                              p.leak_hz, p.latency_us, p.jitter_us, p.min_latency_us, p.log_eps])

    def reset(self, lum: np.ndarray, t_us: float) -> None:
        """Adapt every pixel to `lum` (the state after a long steady view)."""
        logl = np.log(np.maximum(lum, 0.0) + self.params.log_eps).astype(np.float32)
        self.lp[:] = logl
        self.ref[:] = logl
        self.t_us = float(t_us)
        self.tile_t[:] = float(t_us)

    @property
    def oldest_t_us(self) -> float:
        """No event still to come can have crossed before this time (the slowest tile's last
        sample): the watermark for handing events on."""
        return float(self.tile_t.min())

    def big_change_fraction(self, lum: np.ndarray, limit: float,
                            tile_mask: np.ndarray | None = None) -> float:
        mask = self._all if tile_mask is None else tile_mask
        return float(_big_change_fraction(lum, self.lp, self.params.log_eps, limit, mask, self.ntx))

    def step(self, lum: np.ndarray, t_us: float, tile_mask: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Advance the tiles in `tile_mask` (all if None) from their last sample to the sample
        `lum` at time `t_us` (true time, float us); returns the events (t_us float64 incl.
        latency, x, y, p) in row order, not sorted."""
        if self.t_us is None:
            self.reset(lum, t_us)
            e = np.empty(0)
            return e, np.empty(0, np.uint16), np.empty(0, np.uint16), np.empty(0, np.uint8)
        mask = self._all if tile_mask is None else np.ascontiguousarray(tile_mask, np.uint8)
        due = mask.astype(bool)
        if due.any() and t_us <= self.tile_t[due].max():
            raise ValueError(f"event sensor time must increase ({t_us} <= {self.tile_t[due].max()})")
        self._overflow[:] = 0
        _step_kernel(lum, self.tile_t, mask, self.ntx, float(t_us), self.lp, self.ref, self.last_t,
                     self.c_on, self.c_off, self.hazard, self.target, self.counter, self._prm,
                     self.seed, self._out_t, self._out_x, self._out_p, self._out_n, self._overflow)
        self.overflow += int(self._overflow.sum())
        self.tile_t[due] = float(t_us)
        self.t_us = max(self.t_us, float(t_us))
        n = int(self._out_n.sum())
        t = np.empty(n)
        x = np.empty(n, np.uint16)
        y = np.empty(n, np.uint16)
        p = np.empty(n, np.uint8)
        _gather(self._out_t, self._out_x, self._out_p, self._out_n, t, x, y, p)
        return t, x, y, p
