"""The calibration report: `report.json` (every number) and `report.png` (detected corners of a
view in both cameras, per-view reprojection errors, aligned event edges over the aligned frame).
Drawn with OpenCV only, so no plotting library is needed."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np

from calibration.align import ImageAligner, event_image_to_aligned
from calibration.board import Board
from calibration.io import Calibration
from calibration.pipeline import ViewSet
from common.atomic import write_bytes_atomic

PANEL_W, PANEL_H = 640, 420
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_report_json(report: dict, path: str | os.PathLike[str]) -> None:
    write_bytes_atomic(Path(path), json.dumps(_json_safe(report), indent=2).encode())


def _fit(img: np.ndarray, w: int = PANEL_W, h: int = PANEL_H) -> np.ndarray:
    """Letterbox a BGR image into a w x h panel."""
    s = min(w / img.shape[1], h / img.shape[0])
    small = cv2.resize(img, (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))),
                       interpolation=cv2.INTER_AREA)
    out = np.zeros((h, w, 3), np.uint8)
    y0, x0 = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    out[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
    return out


def _title(panel: np.ndarray, text: str) -> np.ndarray:
    cv2.rectangle(panel, (0, 0), (panel.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(panel, text, (6, 16), FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return panel


def _corners_panel(gray: np.ndarray, corners: np.ndarray | None, board: Board, title: str):
    img = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    if corners is not None:
        cv2.drawChessboardCorners(img, board.pattern_size,
                                  corners.reshape(-1, 1, 2).astype(np.float32), True)
    return _title(_fit(img), title)


def _bars_panel(report: dict) -> np.ndarray:
    panel = np.full((PANEL_H, PANEL_W, 3), 255, np.uint8)
    fr = report["frame"]["per_view_rms_px"]
    ev = report["event"]["per_view_rms_px"]
    ids = sorted({int(k) for k in fr} | {int(k) for k in ev})
    x0, y0, x1, y1 = 50, 40, PANEL_W - 10, PANEL_H - 40
    vmax = max([0.5] + [float(v) for v in fr.values()] + [float(v) for v in ev.values()]) * 1.1
    cv2.line(panel, (x0, y1), (x1, y1), (0, 0, 0), 1)
    cv2.line(panel, (x0, y0), (x0, y1), (0, 0, 0), 1)
    for tick in np.arange(0.0, vmax, 0.1 if vmax < 1.0 else 0.5):
        y = int(y1 - (y1 - y0) * tick / vmax)
        cv2.line(panel, (x0 - 4, y), (x0, y), (0, 0, 0), 1)
        cv2.putText(panel, f"{tick:.1f}", (8, y + 4), FONT, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    y_target = int(y1 - (y1 - y0) * 0.3 / vmax)
    cv2.line(panel, (x0, y_target), (x1, y_target), (0, 160, 0), 1)
    n = max(1, len(ids))
    slot = (x1 - x0) / n
    for j, vid in enumerate(ids):
        for k, (vals, colour) in enumerate(((fr, (200, 120, 0)), (ev, (0, 120, 230)))):
            v = vals.get(str(vid))
            if v is None:
                continue
            bx = int(x0 + j * slot + k * slot / 2 + 1)
            by = int(y1 - (y1 - y0) * float(v) / vmax)
            cv2.rectangle(panel, (bx, by), (int(bx + slot / 2 - 2), y1), colour, -1)
        if n <= 40 or j % 5 == 0:
            cv2.putText(panel, str(vid), (int(x0 + j * slot), y1 + 14), FONT, 0.3, (0, 0, 0), 1)
    cv2.putText(panel, "per-view RMS (px): frame (blue), event (orange); green = 0.3 px",
                (x0, PANEL_H - 10), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return _title(panel, "reprojection error per view")


def _overlay_panel(calib: Calibration, frame_gray: np.ndarray, event_img: np.ndarray,
                   second: str = "event"):
    aligner = ImageAligner(calib)
    frame_al = aligner.align_gray(frame_gray)
    ev_al = event_image_to_aligned(calib, event_img)
    edges = cv2.Canny(cv2.GaussianBlur(ev_al, (0, 0), 2.0), 60, 150) > 0
    img = cv2.cvtColor(frame_al, cv2.COLOR_GRAY2BGR)
    img[edges] = (0, 0, 255)
    note = " (stereo: aligned at infinity, nearer boards keep their disparity)" \
        if calib.model == "stereo" else " over the frame"
    return _title(_fit(img), f"aligned grid {calib.output_size[0]}x{calib.output_size[1]}: "
                             f"{second} edges (red){note}")


def write_report_png(calib: Calibration, vs: ViewSet, report: dict, board: Board,
                     path: str | os.PathLike[str]) -> None:
    """Four panels: frame corners, event corners, per-view errors, aligned overlay."""
    blank = np.zeros((PANEL_H, PANEL_W, 3), np.uint8)
    panels = [blank.copy(), blank.copy(), _bars_panel(report), blank.copy()]
    if vs.images:
        vid = sorted(vs.images)[0]
        fg, ei = vs.images[vid]
        flip = {calib.mirror: " (a mirror image)"}
        panels[0] = _corners_panel(fg, vs.frame_corners.get(vid), board,
                                   f"frame, view {vid}{flip.get('frame', '')}")
        second = "event accumulation" if vs.source.startswith("session") else "--event-images"
        panels[1] = _corners_panel(ei, vs.event_corners.get(vid), board,
                                   f"{second}, view {vid}{flip.get('event', '')}")
        panels[3] = _overlay_panel(calib, fg, ei, "event" if vs.source.startswith("session")
                                   else "2nd camera")
    err = calib.alignment_error_px
    lines = [f"model {calib.model}   RMS frame {calib.rms_frame:.3f}  event {calib.rms_event:.3f}"
             f"  stereo {calib.rms_stereo:.3f} px"]
    if "heldout_median" in err:
        lines.append(f"held-out corners: median {err['heldout_median']:.2f} px, "
                     f"p95 {err['heldout_p95']:.2f} px")
    if calib.mirror != "none":
        lines.append(f"mirrored: the {calib.mirror} camera (calib.yaml mirror: {calib.mirror})")
    for key in sorted(k for k in err if k.startswith("truth_") and k.endswith("_median")
                      and "_stored_" not in k):
        depth = key[len("truth_"):-len("_median")]
        lines.append(f"truth at {depth}: median {err[key]:.2f} px, p95 "
                     f"{err[key.replace('_median', '_p95')]:.2f} px")
    footer = np.full((22 * len(lines) + 10, 2 * PANEL_W, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(footer, line, (10, 22 * (i + 1)), FONT, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    grid = np.vstack([np.hstack(panels[:2]), np.hstack(panels[2:]), footer])
    ok, buf = cv2.imencode(".png", grid)
    if not ok:
        raise RuntimeError(f"{path}: PNG encoding failed")
    write_bytes_atomic(Path(path), buf.tobytes())
