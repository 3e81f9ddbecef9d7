"""`calib.yaml`: the calibration as an OpenCV FileStorage YAML file (DESIGN "Calibration file").

Any OpenCV (C++ or Python) reads it with `cv2.FileStorage`; `load_calibration` gives the
`Calibration` the aligners and the dataset builder use. Conventions: pixel centres at integer
coordinates, distortion (k1, k2, p1, p2, k3), X_ev = R X_fr + T (metres), sizes as (W, H).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from common.atomic import write_text_atomic
from rig.geometry import MIRROR_CHOICES, mirror_x

CALIB_VERSION = "1.0"
#: A matrix that `Calibration.__post_init__` derives from the others (files that omit it).
_UNSET = np.empty((0, 0))
MODELS = ("homography", "stereo")
#: `model` of a calib.yaml that holds the event camera's intrinsics only (`rig calibrate --events`).
EVENT_ONLY_MODEL = "event_only"


class CalibrationFileError(ValueError):
    """calib.yaml is missing, unreadable or incomplete (the message names the file)."""


@dataclass
class Calibration:
    K_frame: np.ndarray
    dist_frame: np.ndarray  # (5,)
    size_frame: tuple[int, int]  # (W, H)
    K_event: np.ndarray
    dist_event: np.ndarray
    size_event: tuple[int, int]
    R: np.ndarray  # X_ev = R @ X_fr + T
    T: np.ndarray  # (3,) metres
    model: str  # "homography" | "stereo"
    H: np.ndarray  # ideal (undistorted, K_event) event pixels -> aligned grid pixels
    output_size: tuple[int, int]  # aligned grid (W, H)
    valid_roi: tuple[int, int, int, int]  # the crop (x, y, w, h) within the full aligned view
    rms_frame: float
    rms_event: float
    rms_stereo: float
    alignment_error_px: dict[str, float] = field(default_factory=dict)
    yaml_text: str = ""  # the file verbatim (set by save/load)
    K_aligned: np.ndarray = field(default_factory=lambda: _UNSET)  # pinhole matrix of the aligned grid
    R_rect_frame: np.ndarray = field(default_factory=lambda: _UNSET)  # frame rays -> aligned camera
    plane_depth_m: float = float("inf")
    stereo: dict[str, np.ndarray] | None = None  # R1 R2 P1 P2 Q (stereo model)
    info: dict[str, str | float | int] = field(default_factory=dict)  # pattern, views, reason...
    # the camera whose sensor sees a mirror image (the beam splitter's reflected arm): "none",
    # "event" or "frame"; its K and dist describe the unmirrored lens, sensor x = W-1 - lens x
    mirror: str = "none"

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"calibration model must be one of {MODELS}, got {self.model!r}")
        if self.mirror not in MIRROR_CHOICES:
            raise ValueError(f"calibration mirror must be one of {MIRROR_CHOICES}, "
                             f"got {self.mirror!r}")
        if self.K_aligned is None or self.K_aligned.size == 0:  # the frame camera's K, cropped
            self.K_aligned = np.asarray(self.K_frame, np.float64).copy()
            self.K_aligned[0, 2] -= self.valid_roi[0]
            self.K_aligned[1, 2] -= self.valid_roi[1]
        if self.R_rect_frame is None or self.R_rect_frame.size == 0:  # homography: identity
            self.R_rect_frame = np.eye(3)

    def sensor_to_lens(self, camera: str, pixels: np.ndarray) -> np.ndarray:
        """Sensor pixels of `camera` ("frame"/"event") -> the pixels its K and dist describe
        (and back): reflected left-right when that camera is the mirrored one."""
        px = np.asarray(pixels, np.float64).reshape(-1, 2)
        if camera != self.mirror:
            return px
        width = self.size_event[0] if camera == "event" else self.size_frame[0]
        return mirror_x(px, int(width))


def _or_unset(m: np.ndarray | None) -> np.ndarray:
    return _UNSET if m is None else m


def _write_mat(fs: cv2.FileStorage, name: str, m: np.ndarray) -> None:
    fs.write(name, np.asarray(m, np.float64))


def to_yaml_text(calib: Calibration) -> str:
    """The calib.yaml text of `calib`."""
    fs = cv2.FileStorage("", cv2.FILE_STORAGE_WRITE | cv2.FILE_STORAGE_MEMORY
                         | cv2.FILE_STORAGE_FORMAT_YAML)
    fs.write("calib_version", CALIB_VERSION)
    fs.write("model", calib.model)
    fs.write("convention", "X_ev = R * X_fr + T (metres); pixel centres at integers; "
                           "dist = k1 k2 p1 p2 k3; sizes are [W, H]; H maps undistorted event "
                           "pixels (K_event) to the aligned grid; mirror names the camera whose "
                           "sensor sees a mirror image: its K and dist are the unmirrored "
                           "lens's, sensor x = W-1 - lens x")
    _write_mat(fs, "K_frame", calib.K_frame)
    _write_mat(fs, "dist_frame", np.asarray(calib.dist_frame).reshape(1, -1))
    fs.write("size_frame", np.asarray(calib.size_frame, np.int32).reshape(1, 2))
    _write_mat(fs, "K_event", calib.K_event)
    _write_mat(fs, "dist_event", np.asarray(calib.dist_event).reshape(1, -1))
    fs.write("size_event", np.asarray(calib.size_event, np.int32).reshape(1, 2))
    fs.write("mirror", calib.mirror)
    _write_mat(fs, "R", calib.R)
    _write_mat(fs, "T", np.asarray(calib.T).reshape(3, 1))
    _write_mat(fs, "H", calib.H)
    _write_mat(fs, "K_aligned", calib.K_aligned)
    _write_mat(fs, "R_rect_frame", calib.R_rect_frame)
    fs.write("plane_depth_m", float(calib.plane_depth_m) if math.isfinite(calib.plane_depth_m)
             else -1.0)
    fs.write("output_size", np.asarray(calib.output_size, np.int32).reshape(1, 2))
    fs.write("valid_roi", np.asarray(calib.valid_roi, np.int32).reshape(1, 4))
    if calib.stereo:
        for key in ("R1", "R2", "P1", "P2", "Q"):
            _write_mat(fs, key, calib.stereo[key])
    fs.write("rms_frame", float(calib.rms_frame))
    fs.write("rms_event", float(calib.rms_event))
    fs.write("rms_stereo", float(calib.rms_stereo))
    fs.startWriteStruct("alignment_error_px", cv2.FileNode_MAP)
    for key, val in calib.alignment_error_px.items():
        fs.write(key, float(val))
    fs.endWriteStruct()
    _write_info(fs, calib.info)
    return fs.releaseAndGetString()


def _write_info(fs: cv2.FileStorage, info: dict) -> None:
    """The free-form `info` map (strings, or numbers written as floats)."""
    fs.startWriteStruct("info", cv2.FileNode_MAP)
    for key, item in info.items():
        fs.write(key, item if isinstance(item, str) else float(item))
    fs.endWriteStruct()


def _open_storage(path: str | os.PathLike[str]) -> tuple[Path, str, cv2.FileStorage]:
    """(path, text, FileStorage) of a calib.yaml (or the folder holding one), or one clear error."""
    path = Path(path)
    if path.is_dir():
        path = path / "calib.yaml"
    what = "give the calib.yaml that rig calibrate --checkerboard wrote"
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise CalibrationFileError(f"{path}: not a calibration file (binary, not YAML text); "
                                   f"{what}") from None
    except OSError as e:
        raise CalibrationFileError(f"{path}: cannot read calibration file ({e.strerror})") from None
    if not text.strip():
        raise CalibrationFileError(f"{path}: empty file, not a calibration; {what}")
    try:
        fs = cv2.FileStorage(text, cv2.FILE_STORAGE_READ | cv2.FILE_STORAGE_MEMORY)
    except (cv2.error, SystemError) as e:  # OpenCV 5 wraps its parse error in a SystemError
        cause = e if isinstance(e, cv2.error) else e.__cause__ or e
        raise CalibrationFileError(f"{path}: not an OpenCV FileStorage file "
                                   f"({_opencv_detail(cause)}); {what}") from None
    return path, text, fs


def _opencv_detail(exc: BaseException) -> str:
    """What an OpenCV parse error says, without its source file: "Parsing error: (2): ..."."""
    kind = re.search(r"\(-?\d+:([^)]*)\)", str(getattr(exc, "msg", "")))
    where = str(getattr(exc, "func", "") or "").strip()
    if kind and where:
        return f"{kind.group(1)}: {where}"
    return " ".join(str(exc).split())


def save_calibration(calib: Calibration, path: str | os.PathLike[str]) -> None:
    """Write calib.yaml atomically (temp file in the same folder, then rename)."""
    text = to_yaml_text(calib)
    write_text_atomic(path, text)
    calib.yaml_text = text


def load_calibration(path: str | os.PathLike[str]) -> Calibration:
    """Read calib.yaml; a missing field or a broken file raises CalibrationFileError."""
    path, text, fs = _open_storage(path)

    def node(name: str, required: bool = True):
        n = fs.getNode(name)
        if n.empty():
            if required:
                raise CalibrationFileError(f"{path}: missing field {name!r}")
            return None
        return n

    def mat(name: str, shape: tuple[int, ...] | None = None, required: bool = True):
        n = node(name, required)
        if n is None:
            return None
        m = n.mat()
        if m is None:
            raise CalibrationFileError(f"{path}: field {name!r} is not a matrix")
        m = np.asarray(m, np.float64)
        if shape is not None:
            if m.size != int(np.prod(shape)):
                raise CalibrationFileError(f"{path}: field {name!r} has {m.size} values, "
                                           f"expected {int(np.prod(shape))}")
            m = m.reshape(shape)
        return m

    def size(name: str) -> tuple[int, int]:
        w, h = (int(round(v)) for v in mat(name, (2,)))
        return w, h

    def roi(name: str) -> tuple[int, int, int, int]:
        x, y, w, h = (int(round(v)) for v in mat(name, (4,)))
        return x, y, w, h

    def real(name: str) -> float:
        return float(node(name).real())

    def mapping(name: str) -> dict:
        n = node(name, required=False)
        if n is None or not n.isMap():
            return {}
        out = {}
        for key in n.keys():
            child = n.getNode(key)
            out[key] = child.string() if child.isString() else float(child.real())
        return out

    model = node("model").string()
    if model == EVENT_ONLY_MODEL:
        raise CalibrationFileError(
            f"{path}: an event-only calibration (K_event, dist_event; no frame camera, no "
            "alignment): this needs a full rig calibration (rig calibrate --checkerboard with "
            "frames and events); read event intrinsics with calibration.io.load_event_calibration")
    if model not in MODELS:
        raise CalibrationFileError(f"{path}: unknown model {model!r} (expected {MODELS})")
    stereo = None
    if model == "stereo":
        stereo = {k: mat(k) for k in ("R1", "R2", "P1", "P2", "Q")}
    plane = real("plane_depth_m") if node("plane_depth_m", False) is not None else -1.0
    mirror_node = node("mirror", required=False)  # absent in files before mirroring: none
    mirror = mirror_node.string() if mirror_node is not None else "none"
    if mirror not in MIRROR_CHOICES:
        raise CalibrationFileError(f"{path}: mirror {mirror!r} is not one of {MIRROR_CHOICES}")
    calib = Calibration(
        K_frame=mat("K_frame", (3, 3)), dist_frame=mat("dist_frame").ravel(),
        size_frame=size("size_frame"), K_event=mat("K_event", (3, 3)),
        dist_event=mat("dist_event").ravel(), size_event=size("size_event"),
        R=mat("R", (3, 3)), T=mat("T", (3,)), model=model, H=mat("H", (3, 3)),
        output_size=size("output_size"), valid_roi=roi("valid_roi"),
        rms_frame=real("rms_frame"), rms_event=real("rms_event"), rms_stereo=real("rms_stereo"),
        alignment_error_px=mapping("alignment_error_px"), yaml_text=text,
        K_aligned=_or_unset(mat("K_aligned", (3, 3), required=False)),
        R_rect_frame=_or_unset(mat("R_rect_frame", (3, 3), required=False)),
        plane_depth_m=plane if plane > 0 else float("inf"), stereo=stereo, info=mapping("info"),
        mirror=mirror)
    fs.release()
    return calib


# ---- event-only calibration (`rig calibrate --checkerboard --events GLOB`) ----------------------
@dataclass
class EventCalibration:
    """The event camera's intrinsics alone: what an event-only calib.yaml holds."""

    K_event: np.ndarray
    dist_event: np.ndarray  # (5,)
    size_event: tuple[int, int]  # (W, H)
    rms_event: float
    info: dict[str, str | float | int] = field(default_factory=dict)
    yaml_text: str = ""


def event_yaml_text(calib: EventCalibration) -> str:
    """The calib.yaml text of an event-only calibration (model `event_only`)."""
    fs = cv2.FileStorage("", cv2.FILE_STORAGE_WRITE | cv2.FILE_STORAGE_MEMORY
                         | cv2.FILE_STORAGE_FORMAT_YAML)
    fs.write("calib_version", CALIB_VERSION)
    fs.write("model", EVENT_ONLY_MODEL)
    fs.write("convention", "event camera only; pixel centres at integers; dist = k1 k2 p1 p2 k3; "
                           "size is [W, H]")
    _write_mat(fs, "K_event", calib.K_event)
    _write_mat(fs, "dist_event", np.asarray(calib.dist_event).reshape(1, -1))
    fs.write("size_event", np.asarray(calib.size_event, np.int32).reshape(1, 2))
    fs.write("rms_event", float(calib.rms_event))
    _write_info(fs, calib.info)
    return fs.releaseAndGetString()


def save_event_calibration(calib: EventCalibration, path: str | os.PathLike[str]) -> None:
    """Write an event-only calib.yaml atomically."""
    text = event_yaml_text(calib)
    write_text_atomic(path, text)
    calib.yaml_text = text


def load_event_calibration(path: str | os.PathLike[str]) -> EventCalibration:
    """The event camera's intrinsics from an event-only calib.yaml or from a full one."""
    path, text, fs = _open_storage(path)
    out: dict[str, np.ndarray] = {}
    for name, n_vals in (("K_event", 9), ("dist_event", None), ("size_event", 2)):
        node = fs.getNode(name)
        m = None if node.empty() else node.mat()
        if m is None:
            raise CalibrationFileError(f"{path}: missing field {name!r}")
        m = np.asarray(m, np.float64).ravel()
        if n_vals is not None and m.size != n_vals:
            raise CalibrationFileError(f"{path}: field {name!r} has {m.size} values, expected "
                                       f"{n_vals}")
        out[name] = m
    rms_node = fs.getNode("rms_event")
    rms = float(rms_node.real()) if not rms_node.empty() else float("nan")
    info: dict[str, str | float | int] = {}
    inode = fs.getNode("info")
    if not inode.empty() and inode.isMap():
        for key in inode.keys():
            child = inode.getNode(key)
            info[key] = child.string() if child.isString() else float(child.real())
    fs.release()
    w, h = (int(round(v)) for v in out["size_event"])
    return EventCalibration(out["K_event"].reshape(3, 3), out["dist_event"], (w, h),
                            rms, info, text)
