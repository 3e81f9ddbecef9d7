"""Condition tags of a pair: over/under-exposed pixel fractions and day/night.

Exposure follows the paper (section 4, after Tan et al. 2021): HSV V = max(R, G, B) / 255; V below
`alpha` is under-exposed, above `beta` over-exposed. The defaults match the model's loss config
(`model/config.py`: alpha 0.1, beta 0.9) so the tags describe the regions the JBCD loss uses.
"""

from __future__ import annotations

import numpy as np

from dataset.rpea_format import TIMES_OF_DAY
from rig.session import SessionManifest

ALPHA = 0.1  # HSV V below: under-exposed
BETA = 0.9  # HSV V above: over-exposed
NIGHT_MEAN_V = 0.2  # a frame this dark on average is night when the manifest does not say


def value8(rgb: np.ndarray) -> np.ndarray:
    """HSV V = max(R, G, B) of an (H, W, 3) uint8 image, uint8 (H, W).

    Two elementwise maxima over channel views: `rgb.max(axis=-1)` reduces over a length-3
    axis and is ~10x slower on full frames.
    """
    return np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])


def hsv_value(rgb: np.ndarray) -> np.ndarray:
    """HSV V channel in [0, 1] of an (H, W, 3) uint8 image."""
    return value8(rgb).astype(np.float32) / 255.0


def exposure_fractions(rgb: np.ndarray, alpha: float = ALPHA, beta: float = BETA,
                       v8: np.ndarray | None = None) -> tuple[float, float]:
    """(over-exposed fraction V > beta, under-exposed fraction V < alpha)."""
    if not 0.0 <= alpha < beta <= 1.0:
        raise ValueError(f"need 0 <= alpha < beta <= 1, got alpha={alpha}, beta={beta}")
    v8 = value8(rgb) if v8 is None else v8
    n = max(v8.size, 1)
    over = float(np.count_nonzero(v8 > beta * 255.0)) / n
    under = float(np.count_nonzero(v8 < alpha * 255.0)) / n
    return over, under


def time_of_day_from_manifest(manifest: SessionManifest) -> str | None:
    """"day" | "night" | "dusk" | "tunnel" when the manifest says so (field or scenario name)."""
    for value in (manifest.time_of_day, manifest.scenario):
        if isinstance(value, str):
            low = value.lower()
            for tod in TIMES_OF_DAY:
                if low == tod or low.startswith(tod + "_") or low.endswith("_" + tod):
                    return tod
    return None


def time_of_day_from_images(mean_v: float) -> str:
    """Fallback when the manifest is silent: a dark average frame means night."""
    return "night" if mean_v < NIGHT_MEAN_V else "day"


def is_night_tag(time_of_day: str) -> int:
    return int(time_of_day in ("night", "tunnel"))
