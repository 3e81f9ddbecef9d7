"""Camera and rig geometry of the simulated coaxial rig: the ground truth calibration is measured against.

Conventions (those of OpenCV, so results compare directly with `cv2.calibrateCamera`):
- pixel centres sit at integer coordinates; `K` = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]];
- distortion `dist` = (k1, k2, p1, p2, k3), the plumb-bob model of `cv2.projectPoints`;
- camera frame: x right, y down, z forward (metres);
- the event camera's pose relative to the frame camera is `X_ev = R_ev_fr @ X_fr + T_ev_fr_m`,
  the (R, T) that `cv2.stereoCalibrate(frame_points, event_points)` estimates.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np


def rotation_from_euler_deg(rx_deg: float, ry_deg: float, rz_deg: float) -> np.ndarray:
    """Rotation matrix R = Rz @ Ry @ Rx from angles in degrees."""
    rx, ry, rz = np.deg2rad([rx_deg, ry_deg, rz_deg])
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    r_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    r_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return r_z @ r_y @ r_x


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
        k1, k2, p1, p2, k3 = self.dist
        x, y = xy[:, 0], xy[:, 1]
        r2 = x * x + y * y
        radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
        xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
        yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
        return np.stack([xd, yd], axis=1)

    def project(self, points_cam_m: np.ndarray) -> np.ndarray:
        """Points in this camera's frame (N, 3), metres -> distorted pixel coordinates (N, 2)."""
        pts = np.asarray(points_cam_m, dtype=np.float64).reshape(-1, 3)
        xy = pts[:, :2] / pts[:, 2:3]
        xyd = self.distort_normalized(xy)
        u = self.K[0, 0] * xyd[:, 0] + self.K[0, 1] * xyd[:, 1] + self.K[0, 2]
        v = self.K[1, 1] * xyd[:, 1] + self.K[1, 2]
        return np.stack([u, v], axis=1)

    def undistort_pixels(self, pixels: np.ndarray, iterations: int = 40) -> np.ndarray:
        """Distorted pixels (N, 2) -> ideal normalised coordinates (N, 2) (fixed-point inversion).

        Converges to well below 1e-6 px for the mild distortion of machine-vision lenses; the
        residual is checked by the tests through `project`.
        """
        px = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        fx, fy, cx, cy, skew = self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2], self.K[0, 1]
        yd = (px[:, 1] - cy) / fy
        xd = (px[:, 0] - cx - skew * yd) / fx
        k1, k2, p1, p2, k3 = self.dist
        x, y = xd.copy(), yd.copy()
        for _ in range(iterations):
            r2 = x * x + y * y
            radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
            dx = 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x)
            dy = p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y
            x = (xd - dx) / radial
            y = (yd - dy) / radial
        return np.stack([x, y], axis=1)

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

    def to_dict(self) -> dict:
        return {"name": self.name, "width": self.width, "height": self.height,
                "K": self.K.tolist(), "dist": self.dist.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> CameraModel:
        return cls(d["name"], int(d["width"]), int(d["height"]), np.array(d["K"]), np.array(d["dist"]))


@dataclass
class RigGeometry:
    """Both cameras and their relative pose behind the beam splitter (the simulator's truth)."""

    frame: CameraModel
    event: CameraModel
    R_ev_fr: np.ndarray  # (3, 3): X_ev = R_ev_fr @ X_fr + T_ev_fr_m
    T_ev_fr_m: np.ndarray  # (3,)

    def __post_init__(self) -> None:
        self.R_ev_fr = np.asarray(self.R_ev_fr, dtype=np.float64).reshape(3, 3)
        self.T_ev_fr_m = np.asarray(self.T_ev_fr_m, dtype=np.float64).reshape(3)

    def event_to_frame_pixels(self, event_px: np.ndarray, depth_ev_m: np.ndarray) -> np.ndarray:
        """True frame-camera pixel of each event pixel seeing a point at z-depth `depth_ev_m`."""
        xy = self.event.undistort_pixels(event_px)
        z = np.asarray(depth_ev_m, dtype=np.float64).reshape(-1)
        pts_ev = np.column_stack([xy * z[:, None], z])
        pts_fr = (pts_ev - self.T_ev_fr_m) @ self.R_ev_fr  # R^T (X_ev - T)
        return self.frame.project(pts_fr)

    def frame_to_event_pixels(self, frame_px: np.ndarray, depth_fr_m: np.ndarray) -> np.ndarray:
        """True event-camera pixel of each frame pixel seeing a point at z-depth `depth_fr_m`."""
        xy = self.frame.undistort_pixels(frame_px)
        z = np.asarray(depth_fr_m, dtype=np.float64).reshape(-1)
        pts_fr = np.column_stack([xy * z[:, None], z])
        return self.event.project(pts_fr @ self.R_ev_fr.T + self.T_ev_fr_m)

    def to_dict(self) -> dict:
        return {"frame_camera": self.frame.to_dict(), "event_camera": self.event.to_dict(),
                "R_ev_fr": self.R_ev_fr.tolist(), "T_ev_fr_m": self.T_ev_fr_m.tolist(),
                "convention": "X_ev = R_ev_fr @ X_fr + T_ev_fr_m; OpenCV pixel and distortion model"}

    @classmethod
    def from_dict(cls, d: dict) -> RigGeometry:
        return cls(CameraModel.from_dict(d["frame_camera"]), CameraModel.from_dict(d["event_camera"]),
                   np.array(d["R_ev_fr"]), np.array(d["T_ev_fr_m"]))

    def save_json(self, path: str | os.PathLike[str]) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)

    @classmethod
    def load_json(cls, path: str | os.PathLike[str]) -> RigGeometry:
        with open(path) as f:
            return cls.from_dict(json.load(f))


def default_rig(full_res: bool = False) -> RigGeometry:
    """The simulated coaxial rig: BFS-U3-32S4C (3.45 um pixels) and EVK4 (4.86 um) behind one
    beam splitter, both with an 8 mm lens, the event arm slightly rotated and offset.

    Full resolution is 2048x1536 and 1280x720; the default halves both (1024x768, 640x360),
    which fits a laptop. The lateral offset (0.3 mm, -0.2 mm) is what a careful beam-splitter
    alignment leaves; it makes the homography residual sub-pixel from 1 m to infinity.
    """
    f_mm = 8.0
    f_frame_px = f_mm / 3.45e-3
    f_event_px = f_mm / 4.86e-3
    frame = CameraModel(
        "frame", 2048, 1536,
        np.array([[f_frame_px, 0.0, 1023.5 + 6.2], [0.0, f_frame_px * 1.0004, 767.5 - 4.1],
                  [0.0, 0.0, 1.0]]),
        np.array([-0.115, 0.092, 0.0004, -0.0003, -0.021]),
    )
    event = CameraModel(
        "event", 1280, 720,
        np.array([[f_event_px, 0.0, 639.5 - 3.3], [0.0, f_event_px * 0.9997, 359.5 + 2.7],
                  [0.0, 0.0, 1.0]]),
        np.array([-0.087, 0.061, -0.0005, 0.0002, -0.012]),
    )
    rig = RigGeometry(frame, event, rotation_from_euler_deg(0.35, -0.42, 0.25),
                      np.array([0.3e-3, -0.2e-3, 1.5e-3]))
    if not full_res:
        rig = RigGeometry(frame.scaled(0.5), event.scaled(0.5), rig.R_ev_fr, rig.T_ev_fr_m)
    return rig
