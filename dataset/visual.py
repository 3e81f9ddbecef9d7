"""Pictures of RPEA pairs, drawn with OpenCV (the dataset's charts: dataset/figures.py).

- `event_image`: events of a window as a picture (ON blue, OFF orange on white, as event-camera
  viewers show them);
- `overlay`: the RGB image dimmed with the events drawn on top (what the paper's annotators saw
  next to the image and the event frame);
- `panel`: images side by side with captions.
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from common.atomic import atomic_path
from common.palette import OFF_RGB, ON_RGB
from dataset.labels import colorize


def event_counts(x: np.ndarray, y: np.ndarray, p: np.ndarray, shape_hw: tuple[int, int]
                 ) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape_hw
    idx = y.astype(np.int64) * w + x.astype(np.int64)
    on = np.bincount(idx[p > 0], minlength=h * w).reshape(h, w)
    off = np.bincount(idx[p == 0], minlength=h * w).reshape(h, w)
    return on, off


def event_image(x: np.ndarray, y: np.ndarray, p: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """RGB uint8: white background, ON events blue, OFF orange, saturation by count."""
    on, off = event_counts(x, y, p, shape_hw)
    img: np.ndarray = np.full((*shape_hw, 3), 255, np.float32)
    scale = max(float(np.percentile(np.maximum(on, off)[(on + off) > 0], 95)) if (on + off).any()
                else 1.0, 1.0)
    a_on = np.clip(on / scale, 0, 1)[..., None]
    a_off = np.clip(off / scale, 0, 1)[..., None]
    img = img * (1 - a_on) + np.array(ON_RGB, np.float32) * a_on
    img = img * (1 - a_off) + np.array(OFF_RGB, np.float32) * a_off
    return img.astype(np.uint8)


def overlay(rgb: np.ndarray, x: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """The image at 60 % brightness with every event pixel painted in its polarity colour."""
    out = (rgb.astype(np.float32) * 0.6).astype(np.uint8)
    on = p > 0
    out[y[on], x[on]] = ON_RGB
    out[y[~on], x[~on]] = OFF_RGB
    return out


def label_overlay(rgb: np.ndarray, label: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    col = colorize(label).astype(np.float32)
    known = (label != 255)[..., None]
    mixed = rgb.astype(np.float32) * (1 - alpha) + col * alpha
    return np.where(known, mixed, rgb.astype(np.float32) * 0.5).astype(np.uint8)


def caption(img: np.ndarray, text: str) -> np.ndarray:
    """A white strip with `text` above the image."""
    h_txt = 22
    strip = np.full((h_txt, img.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([strip, img])


def panel(images: list[np.ndarray], captions: list[str] | None = None, gap: int = 4) -> np.ndarray:
    """Images (same height) side by side, each under its caption."""
    caps = captions or [""] * len(images)
    tiles = [caption(im, c) if c else im for im, c in zip(images, caps, strict=True)]
    h = max(t.shape[0] for t in tiles)
    out = []
    for i, t in enumerate(tiles):
        if t.shape[0] < h:
            t = np.vstack([t, np.full((h - t.shape[0], t.shape[1], 3), 255, np.uint8)])
        out.append(t)
        if i + 1 < len(tiles):
            out.append(np.full((h, gap, 3), 255, np.uint8))
    return np.hstack(out)


def save_rgb(path: str | os.PathLike[str], rgb: np.ndarray) -> None:
    """Publish an RGB array as PNG, atomically (OpenCV wants BGR, and picks the format by the
    temporary file's extension)."""
    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: could not write the PNG")

