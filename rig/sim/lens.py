"""What real optics do to the light before it reaches a sensor, and the ideal renderer leaves out:
the beam splitter's share of the light per arm, vignetting, and lens blur.

- **Beam splitter**: a 50/50 cube or plate sends half the light to each arm
  (`splitter_transmission` 0.5), so both cameras see half the irradiance of a bare lens: the
  frame camera collects half the photons (more shot noise relative to signal), the event
  camera works at half the illuminance (log-intensity contrast is unchanged, low-light noise
  is not).
- **Vignetting**: natural illumination falloff cos^n of the field angle (n = 4 for a thin lens;
  `vignetting_exponent`), from each pixel's true ray, so it follows the lens's distortion.
- **Blur**: a Gaussian point-spread function of `psf_sigma_um` on the sensor plane (defocus plus
  diffraction; an f/2.8 lens's Airy core alone is ~1.9 um), in each sensor's own pixels.

`OPTICS_PRESETS["ideal"]` is what the simulator rendered before (nothing applied), `"real"` a
machine-vision lens behind a 50/50 splitter. `benchmarks/calib_truth.py --optics real` measures
how calibration changes (docs/calibration.md, "Real optics").
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np

from rig.geometry import CameraModel


@dataclass(frozen=True)
class OpticsParams:
    splitter_transmission: float = 1.0  # share of the scene's light reaching each arm
    vignetting_exponent: float = 0.0  # cos^n falloff of the field angle; 0 = none
    psf_sigma_um: float = 0.0  # Gaussian PSF on the sensor plane, micrometres; 0 = sharp

    @classmethod
    def from_any(cls, value: str | dict | OpticsParams | None) -> OpticsParams:
        """A preset name ("ideal", "real"), a dict of fields (unknown names raise), or params."""
        if value is None:
            return cls()
        if isinstance(value, OpticsParams):
            return value
        if isinstance(value, str):
            if value not in OPTICS_PRESETS:
                raise ValueError(f"optics {value!r}: use one of {', '.join(OPTICS_PRESETS)}")
            return OPTICS_PRESETS[value]
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"optics: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})")
        return cls(**{k: float(v) for k, v in value.items()})

    @property
    def ideal(self) -> bool:
        return self == OpticsParams()

    def to_dict(self) -> dict[str, float]:
        return {f.name: float(getattr(self, f.name)) for f in fields(self)}


OPTICS_PRESETS: dict[str, OpticsParams] = {
    "ideal": OpticsParams(),
    "real": OpticsParams(splitter_transmission=0.5, vignetting_exponent=4.0, psf_sigma_um=3.5),
}


def pixel_pitch_um(cam: CameraModel, focal_length_mm: float) -> float:
    """Sensor pixel pitch implied by the focal length in pixels and the lens's focal length."""
    return focal_length_mm * 1000.0 / float(cam.K[0, 0])


class SensorOptics:
    """The optics in front of one sensor: a per-pixel gain (splitter x vignetting) and a blur,
    applied to the rendered irradiance (H, W) or (H, W, C) float32 in the sensor's pixel order."""

    def __init__(self, params: OpticsParams, rays: np.ndarray, pitch_um: float) -> None:
        self.params = params
        r2 = rays[..., 0].astype(np.float64) ** 2 + rays[..., 1].astype(np.float64) ** 2
        cos_theta = 1.0 / np.sqrt(1.0 + r2)
        gain = params.splitter_transmission * cos_theta ** params.vignetting_exponent
        self.gain = gain.astype(np.float32)
        self.sigma_px = params.psf_sigma_um / pitch_um if pitch_um > 0 else 0.0
        self.active = not params.ideal

    def apply(self, irradiance: np.ndarray) -> np.ndarray:
        """A new array: the irradiance the sensor receives."""
        if not self.active:
            return irradiance
        img = np.asarray(irradiance, np.float32)
        out = img * (self.gain if img.ndim == 2 else self.gain[..., None])
        if self.sigma_px > 0.05:
            out = cv2.GaussianBlur(out, (0, 0), self.sigma_px, borderType=cv2.BORDER_REPLICATE)
        return out
