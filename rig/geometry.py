"""Camera and rig geometry: the one model of lenses and camera poses that the simulator renders
with, the session stores and calibration estimates.

Conventions (those of OpenCV, so results compare directly with `cv2.calibrateCamera`):
- pixel centres sit at integer coordinates; `K` = [[fx, s, cx], [0, fy, cy], [0, 0, 1]];
- distortion `dist` = (k1, k2, p1, p2, k3), the plumb-bob model of `cv2.projectPoints`;
- camera frame: x right, y down, z forward (metres);
- the event camera's pose relative to the frame camera is `X_ev = R_ev_fr @ X_fr + T_ev_fr_m`,
  the (R, T) that `cv2.stereoCalibrate(frame_points, event_points)` estimates;
- `RigGeometry.mirror` names the camera on the beam splitter's reflected arm whose image is a
  mirror image ("event", "frame") or "none"; K and dist describe that camera's unmirrored lens
  ("lens pixels"), and its sensor reads the image out left-right reversed: sensor x = W-1 - lens x
  (`mirror_x`; a reflection about any other axis is this one followed by a rotation, which the
  pose absorbs). `event_to_frame_pixels` and `frame_to_event_pixels` take and give sensor pixels.

The point mappings run the fixed-point inversion of the distortion to convergence (OpenCV's
`undistortPoints` stops after a few iterations by default; alignment maps need the inverse exact
to well below 0.01 px).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Which arm of the beam splitter sees a mirror image.
MIRROR_CHOICES = ("none", "event", "frame")


def rotation_from_euler_deg(rx_deg: float, ry_deg: float, rz_deg: float) -> np.ndarray:
    """Rotation matrix R = Rz @ Ry @ Rx from angles in degrees."""
    rx, ry, rz = np.deg2rad([rx_deg, ry_deg, rz_deg])
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    r_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    r_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return r_z @ r_y @ r_x


# ---- plumb-bob point mapping -------------------------------------------------------------------
def distortion_coeffs(dist: np.ndarray) -> tuple[float, float, float, float, float]:
    """(k1, k2, p1, p2, k3) of a 4- or 5-coefficient vector (longer ones only if the rest is 0)."""
    d = np.zeros(5)
    flat = np.asarray(dist, np.float64).ravel()
    if flat.size not in (4, 5) and np.any(flat[5:] != 0):
        raise ValueError(f"distortion with {flat.size} coefficients: only k1 k2 p1 p2 [k3] "
                         "supported")
    d[: min(5, flat.size)] = flat[:5]
    k1, k2, p1, p2, k3 = (float(v) for v in d)
    return k1, k2, p1, p2, k3


def distort_normalized(xy: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Ideal normalised coordinates (N, 2) -> distorted normalised coordinates (N, 2)."""
    k1, k2, p1, p2, k3 = distortion_coeffs(dist)
    x, y = xy[:, 0], xy[:, 1]
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
    return np.stack([xd, yd], axis=1)


def project_normalized(xy: np.ndarray, K: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Ideal normalised coordinates (N, 2) -> distorted pixels (N, 2)."""
    xyd = distort_normalized(np.asarray(xy, np.float64).reshape(-1, 2), dist)
    u = K[0, 0] * xyd[:, 0] + K[0, 1] * xyd[:, 1] + K[0, 2]
    v = K[1, 1] * xyd[:, 1] + K[1, 2]
    return np.stack([u, v], axis=1)


def undistort_to_normalized(pixels: np.ndarray, K: np.ndarray, dist: np.ndarray,
                            iterations: int = 60) -> np.ndarray:
    """Distorted pixels (N, 2) -> ideal normalised coordinates (N, 2) (fixed-point inversion)."""
    px = np.asarray(pixels, np.float64).reshape(-1, 2)
    k1, k2, p1, p2, k3 = distortion_coeffs(dist)
    yd = (px[:, 1] - K[1, 2]) / K[1, 1]
    xd = (px[:, 0] - K[0, 2] - K[0, 1] * yd) / K[0, 0]
    x, y = xd.copy(), yd.copy()
    for _ in range(iterations):
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
        dx = 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
        dy = p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
        x = (xd - dx) / radial
        y = (yd - dy) / radial
    return np.stack([x, y], axis=1)


def mirror_x(pixels: np.ndarray, width: int) -> np.ndarray:
    """(N, 2) pixels reflected left-right on a sensor `width` pixels wide (x -> width-1 - x): a
    mirrored camera's sensor pixels <-> its lens pixels (the reflection is its own inverse)."""
    out = np.array(pixels, dtype=np.float64, copy=True).reshape(-1, 2)
    out[:, 0] = (width - 1) - out[:, 0]
    return out


def apply_homography(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(N, 2) points through a 3x3 homography."""
    p = np.asarray(pts, np.float64).reshape(-1, 2)
    q = p @ H[:, :2].T + H[:, 2]
    return q[:, :2] / q[:, 2:3]


def to_homogeneous(xy: np.ndarray) -> np.ndarray:
    return np.column_stack([xy, np.ones(len(xy))])


# ---- cameras and the rig -----------------------------------------------------------------------
@dataclass
class CameraModel:
    """A pinhole camera with OpenCV plumb-bob distortion."""

    name: str
    width: int
    height: int
    K: np.ndarray  # (3, 3) float64
    dist: np.ndarray  # (5,) float64: k1, k2, p1, p2, k3

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        self.dist = np.asarray(self.dist, dtype=np.float64).reshape(5)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), the order OpenCV takes."""
        return (self.width, self.height)

    def distort_normalized(self, xy: np.ndarray) -> np.ndarray:
        """Ideal normalised coordinates (N, 2) -> distorted normalised coordinates (N, 2)."""
        return distort_normalized(xy, self.dist)

    def project(self, points_cam_m: np.ndarray) -> np.ndarray:
        """Points in this camera's frame (N, 3), metres -> distorted pixel coordinates (N, 2)."""
        pts = np.asarray(points_cam_m, dtype=np.float64).reshape(-1, 3)
        xyd = self.distort_normalized(pts[:, :2] / pts[:, 2:3])
        u = self.K[0, 0] * xyd[:, 0] + self.K[0, 1] * xyd[:, 1] + self.K[0, 2]
        v = self.K[1, 1] * xyd[:, 1] + self.K[1, 2]
        return np.stack([u, v], axis=1)

    def undistort_pixels(self, pixels: np.ndarray, iterations: int = 40) -> np.ndarray:
        """Distorted pixels (N, 2) -> ideal normalised coordinates (N, 2).

        Converges to well below 1e-6 px for the mild distortion of machine-vision lenses; the
        residual is checked by the tests through `project`.
        """
        return undistort_to_normalized(pixels, self.K, self.dist, iterations)

    def pixel_rays(self) -> np.ndarray:
        """(H, W, 3) float32 rays (x/z, y/z, 1) through every pixel centre, distortion removed."""
        u, v = np.meshgrid(np.arange(self.width, dtype=np.float64),
                           np.arange(self.height, dtype=np.float64))
        xy = self.undistort_pixels(np.stack([u.ravel(), v.ravel()], axis=1))
        rays = np.ones((self.height * self.width, 3), dtype=np.float64)
        rays[:, :2] = xy
        return rays.reshape(self.height, self.width, 3).astype(np.float32)

    def scaled(self, factor: float) -> CameraModel:
        """The same lens on a sensor binned/scaled by `factor` (pixel centres kept consistent)."""
        K = self.K.copy()
        K[0, 0] *= factor
        K[1, 1] *= factor
        K[0, 2] = (K[0, 2] + 0.5) * factor - 0.5
        K[1, 2] = (K[1, 2] + 0.5) * factor - 0.5
        return CameraModel(self.name, round(self.width * factor), round(self.height * factor),
                           K, self.dist.copy())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "width": self.width, "height": self.height,
                "K": self.K.tolist(), "dist": self.dist.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CameraModel:
        return cls(d["name"], int(d["width"]), int(d["height"]), np.array(d["K"]), np.array(d["dist"]))


@dataclass
class RigGeometry:
    """Both cameras and their relative pose behind the beam splitter."""

    frame: CameraModel
    event: CameraModel
    R_ev_fr: np.ndarray  # (3, 3): X_ev = R_ev_fr @ X_fr + T_ev_fr_m
    T_ev_fr_m: np.ndarray  # (3,)
    mirror: str = "none"  # the camera whose image is mirrored by the beam splitter (MIRROR_CHOICES)

    def __post_init__(self) -> None:
        self.R_ev_fr = np.asarray(self.R_ev_fr, dtype=np.float64).reshape(3, 3)
        self.T_ev_fr_m = np.asarray(self.T_ev_fr_m, dtype=np.float64).reshape(3)
        if self.mirror not in MIRROR_CHOICES:
            raise ValueError(f"mirror {self.mirror!r}: use one of {', '.join(MIRROR_CHOICES)}")

    def camera(self, name: str) -> CameraModel:
        if name not in ("frame", "event"):
            raise ValueError(f"camera {name!r}: use 'frame' or 'event'")
        return self.frame if name == "frame" else self.event

    def sensor_to_lens(self, name: str, pixels: np.ndarray) -> np.ndarray:
        """Sensor pixels of camera `name` -> its lens pixels (and back: a mirror is an
        involution); unchanged unless that camera is the mirrored one."""
        px = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        return mirror_x(px, self.camera(name).width) if self.mirror == name else px

    def sensor_rays(self, name: str) -> np.ndarray:
        """(H, W, 3) float32 rays through the pixel centres of camera `name` as its sensor reads
        them out (a mirrored camera's rays reversed left-right): what the simulator renders."""
        rays = self.camera(name).pixel_rays()
        return np.ascontiguousarray(rays[:, ::-1]) if self.mirror == name else rays

    def event_to_frame_pixels(self, event_px: np.ndarray, depth_ev_m: np.ndarray) -> np.ndarray:
        """True frame-camera sensor pixel of each event sensor pixel seeing a point at z-depth
        `depth_ev_m`."""
        xy = self.event.undistort_pixels(self.sensor_to_lens("event", event_px))
        z = np.asarray(depth_ev_m, dtype=np.float64).reshape(-1)
        pts_ev = np.column_stack([xy * z[:, None], z])
        pts_fr = (pts_ev - self.T_ev_fr_m) @ self.R_ev_fr  # R^T (X_ev - T)
        return self.sensor_to_lens("frame", self.frame.project(pts_fr))

    def frame_to_event_pixels(self, frame_px: np.ndarray, depth_fr_m: np.ndarray) -> np.ndarray:
        """True event-camera sensor pixel of each frame sensor pixel seeing a point at z-depth
        `depth_fr_m`."""
        xy = self.frame.undistort_pixels(self.sensor_to_lens("frame", frame_px))
        z = np.asarray(depth_fr_m, dtype=np.float64).reshape(-1)
        pts_fr = np.column_stack([xy * z[:, None], z])
        return self.sensor_to_lens("event",
                                   self.event.project(pts_fr @ self.R_ev_fr.T + self.T_ev_fr_m))

    def with_mirror(self, mirror: str) -> RigGeometry:
        """The same optics with `mirror` ("none", "event", "frame") on the reflected arm."""
        return RigGeometry(self.frame, self.event, self.R_ev_fr, self.T_ev_fr_m, mirror)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "frame_camera": self.frame.to_dict(), "event_camera": self.event.to_dict(),
            "R_ev_fr": self.R_ev_fr.tolist(), "T_ev_fr_m": self.T_ev_fr_m.tolist(),
            "convention": "X_ev = R_ev_fr @ X_fr + T_ev_fr_m; OpenCV pixel and distortion model"}
        if self.mirror != "none":  # absent means "none" (files written before the field existed)
            d["mirror"] = self.mirror
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RigGeometry:
        return cls(CameraModel.from_dict(d["frame_camera"]), CameraModel.from_dict(d["event_camera"]),
                   np.array(d["R_ev_fr"]), np.array(d["T_ev_fr_m"]), str(d.get("mirror", "none")))

    def save_json(self, path: str | os.PathLike[str]) -> None:
        from common.atomic import write_json_atomic

        write_json_atomic(path, self.to_dict(), default=None)

    @classmethod
    def load_json(cls, path: str | os.PathLike[str]) -> RigGeometry:
        with open(path) as f:
            return cls.from_dict(json.load(f))
