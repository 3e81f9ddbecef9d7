"""One camera's intrinsics and distortion (k1 k2 p1 p2 k3) from board views, outliers dropped.

k3 rule: k3 is estimated only where it earns its keep, i.e. when freeing it lowers the RMS by
more than `K3_MIN_GAIN` (3 %); otherwise it is fixed at 0. On a narrow lens (both simulated
cameras, ~40-50 degrees) a free k3 trades off against k2 and the focal length and extrapolates
wildly beyond the board's coverage (measured: k3 = -5.7 for a true -0.012, several px of error
in the image corners); on a wide lens it is needed and is kept.

Outlier rule (stated in docs/calibration.md): after each calibration, a view is an outlier when
its RMS reprojection error exceeds max(2.5 x median view RMS, median + 0.15 px); the worst
outliers (at most a fifth of the views per round) are dropped and the camera recalibrated, for
at most 3 rounds and never below `min_views` views.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

CRITERIA = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, 200, 1e-12)
K3_MIN_GAIN = 0.03


@dataclass
class MonoResult:
    K: np.ndarray
    dist: np.ndarray  # (5,)
    size: tuple[int, int]  # (W, H)
    rms_px: float
    view_ids: list[int]  # views used, in order
    per_view_rms_px: np.ndarray  # for view_ids
    rvecs: list[np.ndarray]
    tvecs: list[np.ndarray]
    dropped: dict[int, str] = field(default_factory=dict)  # view id -> why
    flags: int = 0  # the cv2.calibrateCamera flags used (CALIB_FIX_K3 when k3 was fixed)
    rms_k3_free_px: float = float("nan")  # RMS with k3 free, for the k3 rule


def outlier_threshold(per_view_rms: np.ndarray) -> float:
    med = float(np.median(per_view_rms))
    return max(2.5 * med, med + 0.15)


def _calibrate(obj: list[np.ndarray], img: list[np.ndarray], size: tuple[int, int], flags: int):
    rms, K, dist, rvecs, tvecs, _, _, per_view = cv2.calibrateCameraExtended(
        obj, img, size, None, None, flags=flags, criteria=CRITERIA)
    return float(rms), K, np.asarray(dist, np.float64).ravel()[:5], rvecs, tvecs, \
        np.asarray(per_view, np.float64).ravel()


def calibrate_mono(object_points: np.ndarray, corners: dict[int, np.ndarray], size: tuple[int, int],
                   *, min_views: int = 6, max_rounds: int = 3, flags: int | None = None,
                   ) -> MonoResult:
    """Calibrate from `corners` (view id -> (N, 2) corners), all views of the same board.
    `flags=None` applies the k3 rule; explicit flags are used as given."""
    ids = sorted(corners)
    if len(ids) < min_views:
        raise ValueError(f"only {len(ids)} usable views; need at least {min_views}")
    obj = np.asarray(object_points, np.float32).reshape(-1, 1, 3)
    dropped: dict[int, str] = {}
    for _round in range(max_rounds + 1):
        img = [np.asarray(corners[i], np.float32).reshape(-1, 1, 2) for i in ids]
        rms, K, dist, rvecs, tvecs, per_view = _calibrate([obj] * len(ids), img, size, flags or 0)
        thr = outlier_threshold(per_view)
        bad = [k for k in np.argsort(-per_view) if per_view[k] > thr]
        room = len(ids) - min_views
        bad = bad[: min(room, max(1, len(ids) // 5))]
        if not bad or _round == max_rounds:
            break
        for k in bad:
            dropped[ids[k]] = f"outlier: view RMS {per_view[k]:.3f} px > {thr:.3f} px"
        ids = [i for j, i in enumerate(ids) if j not in set(bad)]
    rms_free = float("nan")
    if flags is None:
        img = [np.asarray(corners[i], np.float32).reshape(-1, 1, 2) for i in ids]
        fixed = _calibrate([obj] * len(ids), img, size, cv2.CALIB_FIX_K3)
        rms_free = rms
        if fixed[0] <= rms * (1.0 + K3_MIN_GAIN):
            rms, K, dist, rvecs, tvecs, per_view = fixed
            flags = cv2.CALIB_FIX_K3
        else:
            flags = 0
    return MonoResult(K, dist, size, rms, ids, per_view, list(rvecs), list(tvecs), dropped,
                      flags, rms_free)
