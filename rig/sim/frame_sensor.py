"""The frame camera's sensor model: a global-shutter CMOS read out to 8 bit.

Radiance integrated over the exposure (the caller averages sub-samples spread over the exposure,
which is what makes motion blur) becomes electrons (`sensitivity_e_per_s` per unit radiance),
plus dark current; shot noise is Poisson; the well clips at `full_well_e`; read noise is added;
the analog gain scales electrons to a 12-bit ADC whose full scale is the full well at 0 dB; the
camera's gamma maps 12 bit to the delivered 8 bit, optionally as a BayerRG8 mosaic (R at (0, 0)).
Randomness is counter-based, keyed by (seed, frame, pixel), so frames are reproducible.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numba as nb
import numpy as np

from rig.frames import PIXEL_FORMATS
from rig.sim import rng as R


@dataclass
class FrameSensorParams:
    """Sensor settings (defaults: a Sony IMX-class machine-vision CMOS, like the BFS-U3-32S4C)."""

    full_well_e: float = 10500.0
    read_noise_e: float = 2.5
    dark_current_e_s: float = 5.0
    sensitivity_e_per_s: float = 1.0e6  # electrons per second per unit scene radiance
    adc_bits: int = 12
    gamma: float = 1.0 / 2.2  # the camera's gamma before 8-bit output (1.0 = linear)
    readout_us: float = 8000.0  # exposure end -> frame delivered to the host
    trigger_delay_us: float = 10.0  # trigger edge -> exposure start
    max_px_per_subsample: float = 1.5  # motion between integration sub-samples
    max_subsamples: int = 63

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> FrameSensorParams:
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"unknown frame sensor parameter(s) {bad}; known: {sorted(known)}")
        return cls(**d)


@nb.njit(cache=True, fastmath=True, error_model="numpy")
def _electrons(key: np.uint64, lam: float, full_well: float, read_noise: float) -> float:
    """Collected electrons (Poisson shot noise, clipped at full well) plus read noise: exact
    Poisson below 12 e-, a Gaussian above (indistinguishable there, and 3x cheaper)."""
    if lam < 12.0:
        e = min(R.poisson(key, lam), full_well)
        return e + read_noise * R.normal_fast(key, 7)
    e = lam + math.sqrt(lam) * R.normal_fast(key, 3)
    if e >= full_well:
        return full_well + read_noise * R.normal_fast(key, 7)
    return e + read_noise * R.normal_fast(key, 7)


@nb.njit(cache=True, fastmath=True, error_model="numpy", parallel=True, nogil=True)
def _expose_kernel(acc: np.ndarray, scale_e: float, dark_e: float, full_well: float,
                   read_noise: float, dn_per_e: float, adc_max: int, lut: np.ndarray,
                   mode: int, seed: np.uint64, out: np.ndarray) -> None:
    """acc: (H, W, 3) summed radiance; scale_e: electrons per unit of acc. mode 0 = Bayer RG,
    1 = RGB, 2 = mono (luminance)."""
    H = acc.shape[0]
    W = acc.shape[1]
    for y in nb.prange(H):
        for x in range(W):
            pix = y * W + x
            if mode == 1:
                for c in range(3):
                    lam = acc[y, x, c] * scale_e + dark_e
                    v = _electrons(R.key3(seed, pix, c), lam, full_well, read_noise) * dn_per_e
                    dn = int(v + 0.5)
                    dn = min(max(dn, 0), adc_max)
                    out[y, x, c] = lut[dn]
            else:
                if mode == 0:
                    c = (y & 1) + (x & 1)  # R at even/even, G on the diagonal, B at odd/odd
                    lam = acc[y, x, c] * scale_e + dark_e
                else:
                    lam = (0.2126 * acc[y, x, 0] + 0.7152 * acc[y, x, 1]
                           + 0.0722 * acc[y, x, 2]) * scale_e + dark_e
                v = _electrons(R.key3(seed, pix, 0), lam, full_well, read_noise) * dn_per_e
                dn = int(v + 0.5)
                dn = min(max(dn, 0), adc_max)
                out[y, x, 0] = lut[dn]


class FrameSensor:
    """Turns integrated radiance into the 8-bit image the camera delivers."""

    def __init__(self, params: FrameSensorParams, seed: int) -> None:
        self.params = params
        self.seed = int(seed)
        self._lut_gamma: float | None = None
        self._lut = np.zeros(1, np.uint8)

    def _lookup(self) -> np.ndarray:
        p = self.params
        if self._lut_gamma != p.gamma or len(self._lut) != (1 << p.adc_bits):
            adc_max = (1 << p.adc_bits) - 1
            x = np.arange(adc_max + 1) / adc_max
            self._lut = np.clip(np.round(255.0 * x ** p.gamma), 0, 255).astype(np.uint8)
            self._lut_gamma = p.gamma
        return self._lut

    def electrons_per_radiance(self, exposure_us: float) -> float:
        return self.params.sensitivity_e_per_s * exposure_us * 1e-6

    def expose(self, radiance_sum: np.ndarray, n_samples: int, exposure_us: float, gain_db: float,
               pixel_format: str, frame_index: int) -> np.ndarray:
        """8-bit image from `radiance_sum` ((H, W, 3) sum of `n_samples` radiance renders)."""
        if pixel_format not in PIXEL_FORMATS:
            raise ValueError(f"pixel format {pixel_format!r} not one of {PIXEL_FORMATS}")
        p = self.params
        h, w = radiance_sum.shape[:2]
        scale_e = self.electrons_per_radiance(exposure_us) / max(1, n_samples)
        dark_e = p.dark_current_e_s * exposure_us * 1e-6
        adc_max = (1 << p.adc_bits) - 1
        dn_per_e = adc_max / p.full_well_e * 10.0 ** (gain_db / 20.0)
        mode = {"BayerRG8": 0, "RGB8": 1, "Mono8": 2}[pixel_format]
        out = np.empty((h, w, 3 if mode == 1 else 1), np.uint8)
        seed = R.seed_u64(self.seed, 0xF4A3E, frame_index)
        _expose_kernel(np.ascontiguousarray(radiance_sum, dtype=np.float32), scale_e, dark_e,
                       p.full_well_e, p.read_noise_e, dn_per_e, adc_max, self._lookup(), mode,
                       seed, out)
        return out if mode == 1 else out[:, :, 0]

    def subsamples(self, px_per_s: float, exposure_us: float) -> int:
        """Odd number of integration sub-samples so content moves at most
        `max_px_per_subsample` between two of them (odd: one sample sits at mid-exposure)."""
        p = self.params
        blur_px = px_per_s * exposure_us * 1e-6
        n = max(1, math.ceil(blur_px / max(p.max_px_per_subsample, 1e-3)))
        n = min(n, p.max_subsamples)
        return n if n % 2 == 1 else n + 1
