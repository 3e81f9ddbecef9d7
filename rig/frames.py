"""Pixel formats of delivered frames and their conversion to RGB and grey.

The frame camera delivers BayerRG8 (raw Bayer mosaic, the BFS default), RGB8 or Mono8; everyone
who looks at frames (calibration's detector, the builder's debayer, previews) converts through
here, so a new pixel format is added in one place.
"""

from __future__ import annotations

import cv2
import numpy as np

PIXEL_FORMATS = ("BayerRG8", "RGB8", "Mono8")

# OpenCV names Bayer patterns by the second row's first two pixels; these names say RGGB directly
# where the installed OpenCV has them.
_BAYER_RGGB_TO_GRAY = getattr(cv2, "COLOR_BayerRGGB2GRAY", cv2.COLOR_BayerBG2GRAY)
_BAYER_RGGB_TO_RGB = getattr(cv2, "COLOR_BayerRGGB2RGB", cv2.COLOR_BayerBG2RGB)


def to_gray(pixels: np.ndarray, pixel_format: str | None = None) -> np.ndarray:
    """Frame pixels as delivered (BayerRG8 / Mono8 (H, W), RGB8 (H, W, 3)) -> uint8 grey."""
    img = np.asarray(pixels)
    if img.dtype != np.uint8:
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if img.ndim == 3:
        if img.shape[2] == 1:
            return np.ascontiguousarray(img[..., 0])
        return cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2GRAY)
    if pixel_format == "BayerRG8":
        return cv2.cvtColor(img, _BAYER_RGGB_TO_GRAY)
    return img


def to_rgb(pixels: np.ndarray, pixel_format: str) -> np.ndarray:
    """Frame pixels as delivered -> (H, W, 3) uint8 RGB (debayers BayerRG8)."""
    img = np.asarray(pixels)
    if pixel_format == "BayerRG8":
        if img.ndim != 2:
            raise ValueError(f"BayerRG8 pixels must be (H, W), got shape {img.shape}")
        return cv2.cvtColor(img, _BAYER_RGGB_TO_RGB)
    if pixel_format == "Mono8":
        if img.ndim != 2:
            raise ValueError(f"Mono8 pixels must be (H, W), got shape {img.shape}")
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if pixel_format == "RGB8":
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"RGB8 pixels must be (H, W, 3), got shape {img.shape}")
        return img
    raise ValueError(f"unknown pixel format {pixel_format!r} ({', '.join(PIXEL_FORMATS)})")
