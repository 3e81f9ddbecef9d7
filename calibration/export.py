"""calib.yaml for other tools: a Kalibr camera chain and ROS camera_info files.

Why: the rig is calibrated once here, but visual-inertial and ROS pipelines read their own
formats; exporting keeps one calibration as the source of truth instead of a second one made by
hand. Facts of the formats (checked against the tools' sources, see docs/calibration.md):

- **Kalibr** camchain (`kalibr_common/ConfigReader.py`, `CameraUtils.py` of ethz-asl/kalibr):
  `cam0`, `cam1`, each with `camera_model: pinhole`, `intrinsics: [fu, fv, pu, pv]`,
  `distortion_model: radtan`, `distortion_coeffs: [k1, k2, r1, r2]` (exactly 4; the same
  radial-tangential formula as OpenCV's k1 k2 p1 p2), `resolution: [w, h]` (ints), `rostopic`,
  `cam_overlaps`; `cam1.T_cn_cnm1` is the 4x4 transform taking points from cam0 to cam1
  coordinates (Kalibr chains target -> cam0 -> `T_cn_cnm1` -> camN). With cam0 = the frame camera
  and cam1 = the event camera that is our [R | T] (X_ev = R X_fr + T, metres). radtan has no k3:
  a nonzero k3 is dropped, and the note says how many pixels that moves the image border.
- **ROS** camera_info YAML (`camera_calibration_parsers/src/parse_yml.cpp` of
  ros-perception/image_common): `image_width`, `image_height`, `camera_name`, `camera_matrix`,
  `distortion_model: plumb_bob`, `distortion_coefficients` (1 x 5: k1 k2 p1 p2 k3),
  `rectification_matrix`, `projection_matrix`, each matrix as `{rows, cols, data}` row-major.
  One file per camera, named after the camera (camera_info_manager's `<name>.yaml`). Written as
  a monocular calibration (R = I, P = [K | 0]): camera_info has no place for a coaxial rig's
  relation; that is in the Kalibr file (or calib.yaml itself).

No half-pixel shift is applied: both tools are taken to follow OpenCV's convention of pixel
centres at integer coordinates, as calib.yaml does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from calibration.io import Calibration
from common.atomic import write_text_atomic
from rig.geometry import project_normalized, undistort_to_normalized

FORMATS = ("kalibr", "ros")
FRAME_NAME, EVENT_NAME = "frame_camera", "event_camera"
KALIBR_FILE = "camchain.yaml"
#: A k3 that moves no border pixel by more than this is dropped without a note.
K3_NOTE_PX = 0.01


@dataclass
class ExportResult:
    """The files written and what the user should know about them (dropped terms...)."""

    paths: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def default_topic(name: str) -> str:
    return f"/{name}/image_raw"


def k3_drop_px(K: np.ndarray, dist: np.ndarray, size: tuple[int, int], per_side: int = 64) -> float:
    """Largest shift (px) over the image border when k3 is set to 0: each border pixel is
    undistorted with the full model and distorted again without k3."""
    w, h = size
    xs, ys = np.linspace(0, w - 1, per_side), np.linspace(0, h - 1, per_side)
    border = np.concatenate([np.column_stack([xs, np.zeros_like(xs)]),
                             np.column_stack([xs, np.full_like(xs, h - 1)]),
                             np.column_stack([np.zeros_like(ys), ys]),
                             np.column_stack([np.full_like(ys, w - 1), ys])])
    full = np.zeros(5)
    flat = np.asarray(dist, np.float64).ravel()
    full[:min(5, flat.size)] = flat[:5]
    no_k3 = full.copy()
    no_k3[4] = 0.0
    xy = undistort_to_normalized(border, K, full)
    moved = project_normalized(xy, K, no_k3)
    return float(np.max(np.linalg.norm(moved - border, axis=1)))


def _floats(a: np.ndarray) -> list[float]:
    return [float(v) for v in np.asarray(a, np.float64).ravel()]


def _dist5(dist: np.ndarray, which: str) -> np.ndarray:
    d = np.asarray(dist, np.float64).ravel()
    if d.size == 4:
        d = np.append(d, 0.0)
    if d.size != 5:
        raise ValueError(f"{which} camera: {d.size} distortion coefficients; the exports take the "
                         "5-coefficient plumb-bob model (k1 k2 p1 p2 k3)")
    return d


def _cameras(calib: Calibration) -> list[tuple[str, np.ndarray, np.ndarray, tuple[int, int]]]:
    return [("frame", np.asarray(calib.K_frame, np.float64), _dist5(calib.dist_frame, "frame"),
             calib.size_frame),
            ("event", np.asarray(calib.K_event, np.float64), _dist5(calib.dist_event, "event"),
             calib.size_event)]


def T_event_frame(calib: Calibration) -> np.ndarray:
    """4x4 [R | T; 0 0 0 1]: frame-camera coordinates -> event-camera coordinates (metres)."""
    T = np.eye(4)
    T[:3, :3] = np.asarray(calib.R, np.float64)
    T[:3, 3] = np.asarray(calib.T, np.float64).ravel()
    return T


def kalibr_camchain(calib: Calibration, frame_topic: str, event_topic: str
                    ) -> tuple[dict[str, Any], list[str]]:
    """The camchain dict (cam0 = frame camera, cam1 = event camera) and notes on what was lost."""
    chain: dict[str, Any] = {}
    notes = []
    for i, ((which, K, d, size), topic) in enumerate(zip(_cameras(calib), (frame_topic, event_topic),
                                                         strict=True)):
        if d[4] != 0.0:
            shift = k3_drop_px(K, d, size)
            if shift > K3_NOTE_PX:
                notes.append(f"cam{i} ({which}): k3 = {d[4]:.6g} dropped (Kalibr's radtan model has "
                             f"k1 k2 r1 r2 only); that moves the image border by up to {shift:.2f} px")
        if abs(K[0, 1]) > 1e-9:
            notes.append(f"cam{i} ({which}): skew {K[0, 1]:.3g} dropped (Kalibr's pinhole has none)")
        cam: dict[str, Any] = {
            "camera_model": "pinhole",
            "intrinsics": [float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])],
            "distortion_model": "radtan",
            "distortion_coeffs": _floats(d[:4]),
            "resolution": [int(size[0]), int(size[1])],
            "rostopic": topic,
            "cam_overlaps": [1 - i],
        }
        if i == 1:
            cam["T_cn_cnm1"] = [_floats(row) for row in T_event_frame(calib)]
        chain[f"cam{i}"] = cam
    return chain, notes


def camera_info(calib: Calibration, which: str, name: str) -> dict[str, Any]:
    """The ROS camera_info YAML dict of one camera ("frame" or "event"), monocular form."""
    cams = {c[0]: c for c in _cameras(calib)}
    if which not in cams:
        raise ValueError(f"camera must be 'frame' or 'event', got {which!r}")
    _, K, d, (w, h) = cams[which]
    P = np.hstack([K, np.zeros((3, 1))])
    return {
        "image_width": int(w),
        "image_height": int(h),
        "camera_name": name,
        "camera_matrix": {"rows": 3, "cols": 3, "data": _floats(K)},
        "distortion_model": "plumb_bob",
        "distortion_coefficients": {"rows": 1, "cols": 5, "data": _floats(d)},
        "rectification_matrix": {"rows": 3, "cols": 3, "data": _floats(np.eye(3))},
        "projection_matrix": {"rows": 3, "cols": 4, "data": _floats(P)},
    }


def _header(calib: Calibration, what: str, source: str | None) -> str:
    src = f" from {source}" if source else ""
    return (f"# {what} exported by `rig calibrate export`{src}\n"
            f"# model {calib.model}; reprojection RMS frame {calib.rms_frame:.3f} px, event "
            f"{calib.rms_event:.3f} px, pair {calib.rms_stereo:.3f} px\n")


def _dump(data: dict[str, Any]) -> str:
    # flow style for the leaf lists (Kalibr's own look); floats as repr: they read back exactly
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=1000)


def kalibr_text(calib: Calibration, frame_topic: str | None = None, event_topic: str | None = None,
                source: str | None = None) -> tuple[str, list[str]]:
    """The camchain file's text (topics default to `/<camera name>/image_raw`) and its notes."""
    chain, notes = kalibr_camchain(calib, frame_topic or default_topic(FRAME_NAME),
                                   event_topic or default_topic(EVENT_NAME))
    head = _header(calib, "Kalibr camera chain (cam0: frame camera, cam1: event camera)", source)
    head += "# cam1.T_cn_cnm1 takes cam0 (frame) coordinates to cam1 (event) ones: [R | T], metres\n"
    return head + _dump(chain), notes


def camera_info_text(calib: Calibration, which: str, name: str, source: str | None = None) -> str:
    head = _header(calib, f"ROS camera_info of the {which} camera", source)
    head += "# monocular form: rectification = identity, projection = [K | 0]\n"
    return head + _dump(camera_info(calib, which, name))


def export_kalibr(calib: Calibration, out: str | os.PathLike[str], *, frame_topic: str | None = None,
                  event_topic: str | None = None, source: str | None = None) -> ExportResult:
    """Write the camchain YAML to `out` (a file; a folder gets `camchain.yaml`), atomically."""
    path = Path(out)
    if path.is_dir():
        path = path / KALIBR_FILE
    text, notes = kalibr_text(calib, frame_topic, event_topic, source)
    write_text_atomic(path, text)
    return ExportResult([path], notes)


def export_ros(calib: Calibration, out_dir: str | os.PathLike[str], *, frame_name: str = FRAME_NAME,
               event_name: str = EVENT_NAME, source: str | None = None) -> ExportResult:
    """Write `<out_dir>/<frame_name>.yaml` and `<out_dir>/<event_name>.yaml`, each atomically."""
    if frame_name == event_name:
        raise ValueError(f"both cameras are named {frame_name!r}: their files would collide")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    res = ExportResult()
    for which, name in (("frame", frame_name), ("event", event_name)):
        path = folder / f"{name}.yaml"
        write_text_atomic(path, camera_info_text(calib, which, name, source))
        res.paths.append(path)
    return res
