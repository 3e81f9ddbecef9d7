"""Pinhole + plumb-bob (k1, k2, p1, p2, k3) point mapping, vectorised, for the alignment maps.

OpenCV's `undistortPoints` stops after a few iterations by default; the maps here need the
inverse exact to well below 0.01 px, so the fixed-point inversion runs to convergence.
"""

from __future__ import annotations

import numpy as np


def _coeffs(dist: np.ndarray) -> tuple[float, float, float, float, float]:
    d = np.zeros(5)
    flat = np.asarray(dist, np.float64).ravel()
    if flat.size not in (4, 5) and np.any(flat[5:] != 0):
        raise ValueError(f"distortion with {flat.size} coefficients: only k1 k2 p1 p2 [k3] "
                         "supported")
    d[: min(5, flat.size)] = flat[:5]
    return tuple(float(v) for v in d)  # type: ignore[return-value]


def distort_normalized(xy: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Ideal normalised coordinates (N, 2) -> distorted normalised coordinates (N, 2)."""
    k1, k2, p1, p2, k3 = _coeffs(dist)
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
    """Distorted pixels (N, 2) -> ideal normalised coordinates (N, 2)."""
    px = np.asarray(pixels, np.float64).reshape(-1, 2)
    k1, k2, p1, p2, k3 = _coeffs(dist)
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


def apply_homography(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(N, 2) points through a 3x3 homography."""
    p = np.asarray(pts, np.float64).reshape(-1, 2)
    q = p @ H[:, :2].T + H[:, 2]
    return q[:, :2] / q[:, 2:3]


def to_homogeneous(xy: np.ndarray) -> np.ndarray:
    return np.column_stack([xy, np.ones(len(xy))])
