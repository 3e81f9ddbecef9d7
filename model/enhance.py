"""Training-time image helpers: enhancement, gradient intensity map, exposure regions.

The paper enhances each image with EvLight (events + frame) before computing the gradient
intensity map M_GIM (JBCD, eq. 6) and before SAM (HFCA masks). The offline default here is
classical: CLAHE on the HSV V channel. A user model plugs in as `"package.module:function"` with
signature `fn(image_rgb_u8 (H, W, 3), events (C, H, W) float32) -> image_rgb_u8 (H, W, 3)`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import cv2
import numpy as np

Enhancer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def clahe_v(image: np.ndarray, events: np.ndarray | None = None, clip_limit: float = 3.0,
            tiles: int = 8) -> np.ndarray:
    """Equalise the HSV V channel locally (CLAHE); hue and saturation stay."""
    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
    clahe = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tiles, tiles))
    hsv[..., 2] = clahe.apply(np.ascontiguousarray(hsv[..., 2]))
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def identity(image: np.ndarray, events: np.ndarray | None = None) -> np.ndarray:
    return image


def get_enhancer(name: str | None) -> Enhancer:
    """`clahe` (default), `none`, or `package.module:function` (a user model, e.g. EvLight)."""
    if name in (None, "", "clahe"):
        return clahe_v
    if name == "none":
        return identity
    if ":" not in name:
        raise ValueError(f"enhancer {name!r}: use 'clahe', 'none' or 'package.module:function'")
    mod, fn = name.split(":", 1)
    try:
        return getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"enhancer {name!r} cannot be imported: {err}") from err


def _unit(x: np.ndarray, percentile: float = 99.0) -> np.ndarray:
    nz = x[x > 0]
    scale = float(np.percentile(nz, percentile)) if nz.size else 1.0
    return np.clip(x / max(scale, 1e-6), 0.0, 1.0).astype(np.float32)


def event_activity(events: np.ndarray, representation: str = "frame") -> np.ndarray:
    """Per-pixel event amount (H, W) >= 0 of a representation (counts or |voxels|)."""
    if representation == "frame":
        return events[0] + events[1]
    return np.abs(events).sum(0)


def gradient_intensity_map(enhanced: np.ndarray, events: np.ndarray | None = None,
                           representation: str = "frame") -> np.ndarray:
    """M_GIM (H, W) float32 in [0, 1]: Sobel magnitude of the enhanced image's grey level,
    robust-normalised, max-combined with blurred event activity (edges the frame lost to blur
    or clipping still show up as events)."""
    gray = cv2.cvtColor(np.ascontiguousarray(enhanced), cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    gim = _unit(np.sqrt(gx * gx + gy * gy))
    if events is not None:
        act = cv2.GaussianBlur(event_activity(events, representation).astype(np.float32), (3, 3), 0)
        gim = np.maximum(gim, _unit(act))
    return gim


def exposure_map(image: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """uint8 (H, W): 1 = under-exposed (HSV V < alpha), 2 = over-exposed (V > beta), 0 = else.
    V = max(R, G, B) / 255, thresholds in [0, 1]."""
    v = image.max(-1).astype(np.float32) / 255.0
    out = np.zeros(v.shape, np.uint8)
    out[v < alpha] = 1
    out[v > beta] = 2
    return out
