"""The relation between the two cameras, and the aligned grid both are mapped onto.

- `stereo_extrinsics`: R, T (X_ev = R X_fr + T) by `stereoCalibrate` with each camera's
  intrinsics fixed (calibrated first: reproducible across OpenCV versions).
- `homography_relation` (coaxial rig): events go through the plane-induced homography of a plane
  at depth Z0; a point at depth Z is off by |1/Z - 1/Z0| * |f T_xy - r T_z| pixels (r: its offset
  from the principal point), so Z0 = 2 x the nearest depth of interest halves the worst case.
  `cv2.stereoRectify` is not used there: at a near-zero baseline its rectifying rotations are
  ill-conditioned (tens of degrees, changing between resamples).
- `stereo_relation` (side-by-side rig): both cameras rotated by `stereoRectify`'s R1/R2 onto a
  common pinhole grid, aligned at infinity, with row-aligned disparity left for nearer points.
- `choose_model`: homography when its worst parallax over the depths of interest stays within a
  limit, else stereo, with the reason.

The aligned grid is the frame camera's undistorted (or rectified) view at its own focal length,
cropped to the largest rectangle that both cameras see; `valid_roi` is that crop in the full
undistorted view, `K_aligned` the pinhole matrix of the crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numba
import numpy as np

from calibration.mono import CRITERIA, MonoResult, outlier_threshold
from rig.geometry import distort_normalized


@dataclass
class Extrinsics:
    R: np.ndarray  # X_ev = R @ X_fr + T
    T: np.ndarray  # (3,) metres (board units)
    rms_px: float
    view_ids: list[int]
    per_view_rms_px: np.ndarray  # (n, 2): frame, event
    dropped: dict[int, str]
    K_frame: np.ndarray
    dist_frame: np.ndarray
    K_event: np.ndarray
    dist_event: np.ndarray
    rms_fixed_intrinsics_px: float  # stage 1 (CALIB_FIX_INTRINSIC)
    refined: bool  # whether the joint refinement was kept
    note: str = ""

    @property
    def rms_frame_px(self) -> float:
        return float(np.sqrt(np.mean(self.per_view_rms_px[:, 0] ** 2)))

    @property
    def rms_event_px(self) -> float:
        return float(np.sqrt(np.mean(self.per_view_rms_px[:, 1] ** 2)))


@dataclass
class Relation:
    model: str  # "homography" | "stereo"
    H: np.ndarray  # ideal (undistorted, K_event) event pixels -> aligned grid pixels
    R_rect_frame: np.ndarray  # rotation applied to frame-camera rays (identity for homography)
    K_aligned: np.ndarray  # pinhole matrix of the aligned grid
    output_size: tuple[int, int]  # (W, H)
    valid_roi: tuple[int, int, int, int]  # (x, y, w, h) of the crop in the full aligned view
    plane_depth_m: float = float("inf")  # Z0 of the homography
    reason: str = ""
    stereo: dict[str, np.ndarray] | None = None  # R1 R2 P1 P2 Q for the stereo model


def _stereo(obj, ids, frame_corners, event_corners, K1, d1, K2, d2, size, flags):
    img1 = [np.asarray(frame_corners[i], np.float32).reshape(-1, 1, 2) for i in ids]
    img2 = [np.asarray(event_corners[i], np.float32).reshape(-1, 1, 2) for i in ids]
    out = cv2.stereoCalibrateExtended(
        [obj] * len(ids), img1, img2, K1.copy(), d1.copy(), K2.copy(), d2.copy(), size, None,
        None, flags=flags, criteria=CRITERIA)
    return (float(out[0]), out[1], np.asarray(out[2]).ravel()[:5], out[3],
            np.asarray(out[4]).ravel()[:5], out[5], np.asarray(out[6], np.float64).ravel(),
            np.asarray(out[11]).reshape(-1, 2))


def stereo_extrinsics(object_points: np.ndarray, frame_corners: dict[int, np.ndarray],
                      event_corners: dict[int, np.ndarray], mono_frame: MonoResult,
                      mono_event: MonoResult, *, min_views: int = 4,
                      refine: bool = True) -> Extrinsics:
    """R, T in two stages. Stage 1: `stereoCalibrate` with CALIB_FIX_INTRINSIC (each camera
    calibrated alone first: reproducible across OpenCV versions), one round of outlier removal
    with the mono rule on each view's worse camera. Stage 2 (`refine`): all parameters refined
    together from there (CALIB_USE_INTRINSIC_GUESS): the board poses the precise frame camera
    sees then constrain the noisier event camera; measured on the simulated rig it cuts the
    alignment error of the calibration itself about threefold. Stage 2 is kept only when it
    lowers the RMS and moves no focal length or principal point by more than 2 %."""
    ids = sorted(set(mono_frame.view_ids) & set(mono_event.view_ids)
                 & set(frame_corners) & set(event_corners))
    if len(ids) < min_views:
        raise ValueError(f"only {len(ids)} views with the board found by both cameras; "
                         f"need at least {min_views}")
    obj = np.asarray(object_points, np.float32).reshape(-1, 1, 3)
    dropped: dict[int, str] = {}
    K1, d1, K2, d2 = mono_frame.K, mono_frame.dist, mono_event.K, mono_event.dist
    for _round in range(2):
        rms, _, _, _, _, R, T, per_view = _stereo(obj, ids, frame_corners, event_corners, K1, d1,
                                                  K2, d2, mono_frame.size,
                                                  cv2.CALIB_FIX_INTRINSIC)
        worst = per_view.max(axis=1)
        thr = outlier_threshold(worst)
        bad = [k for k in np.argsort(-worst) if worst[k] > thr][: max(1, len(ids) // 5)]
        if _round == 1 or not bad or len(ids) - len(bad) < min_views:
            break
        for k in bad:
            dropped[ids[k]] = f"stereo outlier: view RMS {worst[k]:.3f} px > {thr:.3f} px"
        ids = [i for j, i in enumerate(ids) if j not in set(bad)]
    ext = Extrinsics(np.asarray(R, np.float64), T, rms, ids, per_view, dropped, K1, d1, K2, d2,
                     rms, False)
    if not refine:
        return ext
    flags = cv2.CALIB_USE_INTRINSIC_GUESS
    if mono_frame.flags & cv2.CALIB_FIX_K3 and mono_event.flags & cv2.CALIB_FIX_K3:
        flags |= cv2.CALIB_FIX_K3
    try:
        rms2, K1b, d1b, K2b, d2b, R2, T2, pv2 = _stereo(obj, ids, frame_corners, event_corners,
                                                      K1, d1, K2, d2, mono_frame.size, flags)
    except cv2.error as e:
        ext.note = f"joint refinement failed ({e.msg.strip()}); stage 1 kept"
        return ext

    def moved(Ka: np.ndarray, Kb: np.ndarray, size: tuple[int, int]) -> float:
        return max(abs(Kb[0, 0] / Ka[0, 0] - 1), abs(Kb[1, 1] / Ka[1, 1] - 1),
                   abs(Kb[0, 2] - Ka[0, 2]) / size[0], abs(Kb[1, 2] - Ka[1, 2]) / size[1])

    shift = max(moved(K1, K1b, mono_frame.size), moved(K2, K2b, mono_event.size))
    if rms2 <= rms and shift <= 0.02:
        return Extrinsics(np.asarray(R2, np.float64), T2, rms2, ids, pv2, dropped, K1b, d1b, K2b,
                          d2b, rms, True, "joint refinement kept")
    ext.note = (f"joint refinement rejected (RMS {rms2:.3f} vs {rms:.3f} px, intrinsics moved "
                f"{100 * shift:.1f} %); stage 1 kept")
    return ext


# ---- the aligned grid ---------------------------------------------------------------------------
def _monotone_radius(dist: np.ndarray) -> float:
    """Largest normalised radius up to which the radial distortion still grows with r (beyond
    it the polynomial folds back and would map far rays into the image)."""
    k1, k2, k3 = float(dist[0]), float(dist[1]), float(dist[4]) if len(dist) > 4 else 0.0
    r = np.linspace(0, 3.0, 3001)
    r2 = r * r
    deriv = 1 + 3 * k1 * r2 + 5 * k2 * r2 ** 2 + 7 * k3 * r2 ** 3
    bad = np.flatnonzero(deriv <= 0.05)
    return float(r[bad[0]]) if bad.size else 3.0


def _inside(px: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return (px[:, 0] >= 0) & (px[:, 0] <= size[0] - 1) & (px[:, 1] >= 0) & (px[:, 1] <= size[1] - 1)


def _sees(rays: np.ndarray, K: np.ndarray, dist: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Which rays (N, 3) in a camera's frame land on its sensor."""
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = rays[:, :2] / rays[:, 2:3]
    ok = (rays[:, 2] > 1e-6) & np.all(np.isfinite(xy), axis=1)
    xy = np.where(ok[:, None], xy, 0.0)
    ok &= np.hypot(xy[:, 0], xy[:, 1]) < _monotone_radius(np.asarray(dist).ravel())
    xyd = distort_normalized(xy, dist)
    px = np.stack([K[0, 0] * xyd[:, 0] + K[0, 1] * xyd[:, 1] + K[0, 2],
                   K[1, 1] * xyd[:, 1] + K[1, 2]], axis=1)
    return ok & _inside(px, size)


def _apply3(M: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """M @ (u, v, 1) for flat pixel arrays, as an (N, 3) array (component-wise: fast)."""
    out = np.empty((u.size, 3))
    for i in range(3):
        out[:, i] = M[i, 0] * u + M[i, 1] * v + M[i, 2]
    return out


@numba.njit(cache=True)
def _largest_rectangle(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Largest axis-aligned all-True rectangle (x, y, w, h), by the histogram-stack method."""
    h, w = mask.shape
    heights = np.zeros(w + 1, np.int64)
    stack = np.zeros(w + 2, np.int64)
    best = (0, 0, 0, 0)
    best_area = 0
    for row in range(h):
        for col in range(w):
            heights[col] = heights[col] + 1 if mask[row, col] else 0
        top = 0
        for col in range(w + 1):
            cur = heights[col] if col < w else 0
            while top > 0 and heights[stack[top - 1]] >= cur:
                hh = heights[stack[top - 1]]
                top -= 1
                left = stack[top - 1] + 1 if top > 0 else 0
                area = hh * (col - left)
                if area > best_area:
                    best_area = area
                    best = (left, row - hh + 1, col - left, hh)
            stack[top] = col
            top += 1
    return best


def aligned_grid(K_full: np.ndarray, R_rect_frame: np.ndarray, H_full: np.ndarray,
                 K_frame: np.ndarray, dist_frame: np.ndarray, size_frame: tuple[int, int],
                 K_event: np.ndarray, dist_event: np.ndarray, size_event: tuple[int, int],
                 grid_scale: float = 1.0) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """Crop of the full aligned view that both cameras see: (valid_roi, valid mask of the
    canvas). The canvas is 1.5x the (scaled) frame size around K_full's principal point."""
    w, h = (int(round(v * grid_scale)) for v in size_frame)
    pad_x, pad_y = w // 4, h // 4
    cw, ch = w + 2 * pad_x, h + 2 * pad_y
    u_grid, v_grid = np.meshgrid(np.arange(cw, dtype=np.float64) - pad_x,
                                 np.arange(ch, dtype=np.float64) - pad_y)
    u, v = u_grid.ravel(), v_grid.ravel()
    frame_ok = _sees(_apply3(R_rect_frame.T @ np.linalg.inv(K_full), u, v), K_frame, dist_frame,
                     size_frame)
    rays_ev = _apply3(np.linalg.inv(K_event) @ np.linalg.inv(H_full), u, v)
    rays_ev *= np.sign(rays_ev[:, 2:3] + 1e-300)
    event_ok = _sees(rays_ev, K_event, dist_event, size_event)
    mask = (frame_ok & event_ok).reshape(ch, cw)
    x, y, rw, rh = _largest_rectangle(mask)
    if rw == 0 or rh == 0:
        raise ValueError("the two cameras share no field of view under this calibration")
    return (int(x - pad_x), int(y - pad_y), int(rw), int(rh)), mask


def _crop(K_full: np.ndarray, H_full: np.ndarray, roi: tuple[int, int, int, int]):
    shift = np.array([[1.0, 0, -roi[0]], [0, 1.0, -roi[1]], [0, 0, 1.0]])
    return shift @ K_full, shift @ H_full


def plane_homography(K_out: np.ndarray, K_event: np.ndarray, R: np.ndarray, T: np.ndarray,
                     plane_depth_m: float, R_rect: np.ndarray | None = None) -> np.ndarray:
    """Ideal event pixels -> pixels of a camera at the frame camera's centre (rotated by R_rect)
    with matrix K_out, for points on the plane z_ev = plane_depth_m."""
    Rt = R.T
    M = Rt.copy() if not np.isfinite(plane_depth_m) else \
        Rt - np.outer(Rt @ T, [0.0, 0.0, 1.0]) / plane_depth_m
    if R_rect is not None:
        M = R_rect @ M
    H = K_out @ M @ np.linalg.inv(K_event)
    return H / H[2, 2]


def _pinhole(K: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """K without skew, resampled by `scale` (pixel centres kept at integers: c' = (c + 0.5) s -
    0.5, as when binning)."""
    out = np.asarray(K, np.float64).copy()
    out[0, 1] = 0.0
    out[0, 0] *= scale
    out[1, 1] *= scale
    out[0, 2] = (out[0, 2] + 0.5) * scale - 0.5
    out[1, 2] = (out[1, 2] + 0.5) * scale - 0.5
    return out


#: `--grid` choices: the aligned grid samples the scene at the event camera's focal length
#: (the default: the paper's 1034x617 grid is coarser than its frame camera) or the frame
#: camera's; a number is a scale of the frame camera's focal length.
GRID_CHOICES = ("event", "frame")


def grid_scale(grid: str | float, K_frame: np.ndarray, K_event: np.ndarray) -> float:
    """Focal length of the aligned grid relative to the frame camera's."""
    if grid == "frame":
        return 1.0
    if grid == "event":
        return float((K_event[0, 0] + K_event[1, 1]) / (K_frame[0, 0] + K_frame[1, 1]))
    scale = float(grid)
    if not 0.05 <= scale <= 4.0:
        raise ValueError(f"grid scale {scale:g}: use event, frame or a number in 0.05..4")
    return scale


def homography_relation(mono_frame: MonoResult, mono_event: MonoResult, R: np.ndarray,
                        T: np.ndarray, plane_depth_m: float, reason: str = "",
                        scale: float = 1.0) -> Relation:
    """The homography model on an aligned grid at `scale` x the frame camera's focal length."""
    K_full = _pinhole(mono_frame.K, scale)
    H_full = plane_homography(K_full, mono_event.K, R, T, plane_depth_m)
    roi, _ = aligned_grid(K_full, np.eye(3), H_full, mono_frame.K, mono_frame.dist,
                          mono_frame.size, mono_event.K, mono_event.dist, mono_event.size, scale)
    K_al, H = _crop(K_full, H_full, roi)
    return Relation("homography", H / H[2, 2], np.eye(3), K_al, (roi[2], roi[3]), roi,
                    plane_depth_m, reason)


def stereo_relation(mono_frame: MonoResult, mono_event: MonoResult, R: np.ndarray,
                    T: np.ndarray, reason: str = "", scale: float = 1.0) -> Relation:
    R1, R2, _, _, _, _, _ = cv2.stereoRectify(
        mono_frame.K, mono_frame.dist, mono_event.K, mono_event.dist, mono_frame.size,
        np.asarray(R, np.float64), np.asarray(T, np.float64).reshape(3, 1),
        flags=cv2.CALIB_ZERO_DISPARITY, alpha=0)
    turn_deg = float(np.degrees(np.linalg.norm(cv2.Rodrigues(R1)[0])))
    if turn_deg > 20.0:
        raise ValueError(
            f"stereo rectification is ill-conditioned here: it would turn the frame camera by "
            f"{turn_deg:.0f} degrees (baseline {1000 * float(np.linalg.norm(T)):.2f} mm, direction "
            "set by noise); for a coaxial rig use --model homography (or auto)")
    f = float(0.5 * (mono_frame.K[0, 0] + mono_frame.K[1, 1]))
    K_full = _pinhole(np.array([[f, 0, mono_frame.K[0, 2]], [0, f, mono_frame.K[1, 2]],
                                [0, 0, 1.0]]), scale)
    f = float(K_full[0, 0])
    H_full = K_full @ R2 @ np.linalg.inv(mono_event.K)
    roi, _ = aligned_grid(K_full, R1, H_full, mono_frame.K, mono_frame.dist, mono_frame.size,
                          mono_event.K, mono_event.dist, mono_event.size, scale)
    K_al, H = _crop(K_full, H_full, roi)
    t_rect = R2 @ np.asarray(T, np.float64).ravel()  # X_ev_rect = X_fr_rect + t_rect
    P1 = np.hstack([K_al, np.zeros((3, 1))])
    P2 = np.hstack([K_al, (K_al @ t_rect).reshape(3, 1)])
    tx = t_rect[0] if abs(t_rect[0]) >= abs(t_rect[1]) else t_rect[1]
    Q = np.array([[1, 0, 0, -K_al[0, 2]], [0, 1, 0, -K_al[1, 2]], [0, 0, 0, f],
                  [0, 0, -1.0 / tx, 0]]) if abs(tx) > 0 else np.zeros((4, 4))
    return Relation("stereo", H / H[2, 2], R1, K_al, (roi[2], roi[3]), roi, float("inf"), reason,
                    {"R1": R1, "R2": R2, "P1": P1, "P2": P2, "Q": Q})


def worst_parallax_px(K_frame: np.ndarray, r_max_px: float, T: np.ndarray, min_depth_m: float,
                      max_depth_m: float, plane_depth_m: float) -> float:
    """Upper bound of the homography's residual for depths in [min_depth_m, max_depth_m]:
    max |1/Z - 1/Z0| * (f |T_xy| + r_max |T_z|), r_max the farthest aligned pixel from the
    principal point."""
    f = float(0.5 * (K_frame[0, 0] + K_frame[1, 1]))
    t = np.asarray(T, np.float64).ravel()
    inv0 = 0.0 if not np.isfinite(plane_depth_m) else 1.0 / plane_depth_m
    worst_inv = max(abs(1.0 / min_depth_m - inv0), abs(1.0 / max_depth_m - inv0))
    return worst_inv * (f * float(np.hypot(t[0], t[1])) + r_max_px * abs(t[2]))


def choose_model(mono_frame: MonoResult, mono_event: MonoResult, T: np.ndarray,
                 min_depth_m: float, max_depth_m: float, plane_depth_m: float,
                 max_parallax_px: float = 1.0) -> tuple[str, str]:
    """"homography" when the worst parallax of the plane homography over the depths of
    interest is at most `max_parallax_px`, else "stereo"; with the reason."""
    f_ratio = mono_frame.K[0, 0] / mono_event.K[0, 0]
    r_max = 0.5 * float(np.hypot(*mono_event.size)) * f_ratio
    worst = worst_parallax_px(mono_frame.K, r_max, T, min_depth_m, max_depth_m, plane_depth_m)
    base_mm = 1000.0 * float(np.linalg.norm(T))
    span = f"depths {min_depth_m:g}-{max_depth_m:g} m"
    if worst <= max_parallax_px:
        return "homography", (
            f"baseline {base_mm:.2f} mm: a homography at Z0 = {plane_depth_m:.2f} m leaves at most "
            f"{worst:.2f} px of parallax for {span} (limit {max_parallax_px:g} px), and stereo "
            "rectification is ill-conditioned at such a baseline")
    return "stereo", (
        f"baseline {base_mm:.1f} mm: a homography would leave up to {worst:.1f} px of parallax "
        f"for {span} (limit {max_parallax_px:g} px), so the pair is stereo-rectified (aligned "
        "at infinity, disparity left along rows)")
