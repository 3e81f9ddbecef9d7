"""Pictures of RPEA pairs and simple charts, drawn with OpenCV only (no plotting library).

- `event_image`: events of a window as a picture (ON blue, OFF red on white, as event-camera
  viewers show them);
- `overlay`: the RGB image dimmed with the events drawn on top (what the paper's annotators saw
  next to the image and the event frame);
- `panel`: images side by side with captions;
- `bar_chart`: a labelled bar chart, optionally on a log scale (Fig. 3b / 3c style).
"""

from __future__ import annotations

import math
import os

import cv2
import numpy as np

from common.atomic import atomic_path
from dataset.labels import colorize

ON_RGB = (0, 90, 255)
OFF_RGB = (230, 30, 30)


def event_counts(x: np.ndarray, y: np.ndarray, p: np.ndarray, shape_hw: tuple[int, int]
                 ) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape_hw
    idx = y.astype(np.int64) * w + x.astype(np.int64)
    on = np.bincount(idx[p > 0], minlength=h * w).reshape(h, w)
    off = np.bincount(idx[p == 0], minlength=h * w).reshape(h, w)
    return on, off


def event_image(x: np.ndarray, y: np.ndarray, p: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """RGB uint8: white background, ON events blue, OFF red, saturation by count."""
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


def bar_chart(values: np.ndarray, labels: list[str], title: str, *, log: bool = False,
              colors: np.ndarray | None = None, ylabel: str = "", size: tuple[int, int] = (900, 420),
              series: list[str] | None = None) -> np.ndarray:
    """RGB image of a bar chart. `values` (K,) or (K, S) for S grouped series."""
    vals = np.asarray(values, np.float64)
    if vals.ndim == 1:
        vals = vals[:, None]
    k, s = vals.shape
    w, h = size
    left, right, top, bottom = 70, 20, 36, 110
    img = np.full((h, w, 3), 255, np.uint8)
    cv2.putText(img, title, (left, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    ph, pw = h - top - bottom, w - left - right
    positive = vals[vals > 0]
    if log:
        lo = math.floor(math.log10(positive.min())) if positive.size else 0
        hi = math.ceil(math.log10(positive.max())) if positive.size else 1
        hi = max(hi, lo + 1)

        def ypos(v: float) -> int:
            if v <= 0:
                return top + ph
            return int(top + ph - (math.log10(v) - lo) / (hi - lo) * ph)

        ticks = [(10.0 ** e, f"1e{e}") for e in range(lo, hi + 1)]
    else:
        vmax = float(vals.max()) if vals.size and vals.max() > 0 else 1.0

        def ypos(v: float) -> int:
            return int(top + ph - v / vmax * ph)

        ticks = [(vmax * f, f"{vmax * f:.3g}") for f in (0, 0.25, 0.5, 0.75, 1.0)]
    for v, t in ticks:
        yy = ypos(v)
        cv2.line(img, (left, yy), (left + pw, yy), (225, 225, 225), 1)
        cv2.putText(img, t, (4, yy + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
    cv2.line(img, (left, top), (left, top + ph), (0, 0, 0), 1)
    cv2.line(img, (left, top + ph), (left + pw, top + ph), (0, 0, 0), 1)
    slot = pw / max(k, 1)
    bw = max(1, int(slot * 0.8 / s))
    default = np.array([(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)], np.uint8)
    for i in range(k):
        for j in range(s):
            if colors is not None and s == 1:
                c = tuple(int(v) for v in colors[i])
            else:
                c = tuple(int(v) for v in default[j % len(default)])
            x0 = int(left + i * slot + slot * 0.1 + j * bw)
            cv2.rectangle(img, (x0, ypos(vals[i, j])), (x0 + bw - 1, top + ph), c, -1)
        lab = labels[i][:14]
        # rotated label: draw on a strip, rotate, paste
        strip = np.full((14, 100, 3), 255, np.uint8)
        tw = cv2.getTextSize(lab, cv2.FONT_HERSHEY_SIMPLEX, 0.38, 1)[0][0]
        # right-aligned: after the counter-clockwise turn the label ends at the axis
        cv2.putText(strip, lab, (max(2, 98 - tw), 11), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1,
                    cv2.LINE_AA)
        rot = cv2.rotate(strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
        xc = int(left + (i + 0.5) * slot) - 7
        y0 = top + ph + 4
        hh = min(rot.shape[0], h - y0)
        if 0 <= xc and xc + 14 <= w:
            img[y0:y0 + hh, xc:xc + 14] = np.minimum(img[y0:y0 + hh, xc:xc + 14], rot[:hh])
    if series:  # legend in the title band, right-aligned, so it never covers a bar
        for j, name in enumerate(series):
            c = tuple(int(v) for v in default[j % len(default)])
            xx = w - right - 90 * (len(series) - j)
            cv2.rectangle(img, (xx, 12), (xx + 10, 22), c, -1)
            cv2.putText(img, name, (xx + 14, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                        cv2.LINE_AA)
    if ylabel:
        cv2.putText(img, ylabel, (left + 4, top + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (90, 90, 90),
                    1, cv2.LINE_AA)
    return img
