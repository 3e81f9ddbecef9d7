"""How well a calibration aligns events to frames, in pixels.

- against ground truth (simulated rig): for a grid of event pixels seeing a plane at depth Z,
  the frame pixel the image aligner samples at the event's aligned position vs the true frame
  pixel of the same world point (`RigGeometry.event_to_frame_pixels`);
- without ground truth: board corners of held-out views, event corners vs frame corners, both
  put on the aligned grid (includes both detectors' noise and the parallax of the board's depth).
"""

from __future__ import annotations

import numpy as np

from calibration.align import aligned_to_frame, event_to_aligned, frame_to_aligned
from calibration.io import Calibration
from calibration.mono import MonoResult
from calibration.relation import homography_relation
from rig.geometry import RigGeometry


def _stats(err: np.ndarray) -> dict[str, float]:
    if err.size == 0:
        return {"median": float("nan"), "p95": float("nan"), "max": float("nan"), "n": 0.0}
    return {"median": float(np.median(err)), "p95": float(np.percentile(err, 95)),
            "max": float(err.max()), "n": float(err.size)}


def depth_key(depth_m: float) -> str:
    return f"{depth_m:g}".replace(".", "p") + "m"


def truth_alignment_error(calib: Calibration, geometry: RigGeometry,
                          depths_m: tuple[float, ...] = (1.0, 10.0), step_px: int = 8,
                          ) -> dict[str, float]:
    """Alignment error against the simulator's truth on fronto-parallel planes (event-camera
    z = depth), for the continuous map ("truth_<Z>_*"), for what the builder stores and the
    reader applies (the float32 `rectify_map` of an RPEA file: "truth_<Z>_stored_*"), and, for
    comparison only, what rounding to the nearest grid pixel would give ("rounded_<Z>_*", up to
    0.7 px more; RPEA 1.0 stored that, nothing applies it since 2.0)."""
    we, he = calib.size_event
    u, v = np.meshgrid(np.arange(step_px // 2, we, step_px, dtype=np.float64),
                       np.arange(step_px // 2, he, step_px, dtype=np.float64))
    ev = np.stack([u.ravel(), v.ravel()], axis=1)
    a = event_to_aligned(calib, ev)
    w, h = calib.output_size
    inside = (a[:, 0] >= 0) & (a[:, 0] <= w - 1) & (a[:, 1] >= 0) & (a[:, 1] <= h - 1)
    ev, a = ev[inside], a[inside]
    est = aligned_to_frame(calib, a)
    est_stored = aligned_to_frame(calib, a.astype(np.float32).astype(np.float64))
    est_lut = aligned_to_frame(calib, np.rint(a))
    out: dict[str, float] = {}
    for z in depths_m:
        true = geometry.event_to_frame_pixels(ev, np.full(len(ev), z))
        d = depth_key(z)
        for key, e in ((f"truth_{d}_", est), (f"truth_{d}_stored_", est_stored),
                       (f"rounded_{d}_", est_lut)):
            stats = _stats(np.linalg.norm(e - true, axis=1))
            for k in ("median", "p95", "max"):
                out[f"{key}{k}"] = stats[k]
    return out


def corner_alignment_error(calib: Calibration, frame_corners: np.ndarray,
                           event_corners: np.ndarray) -> np.ndarray:
    """Per-corner distance (px) between event and frame corners on the aligned grid."""
    return np.linalg.norm(event_to_aligned(calib, event_corners)
                          - frame_to_aligned(calib, frame_corners), axis=1)


def _true_mono(cam) -> MonoResult:
    return MonoResult(cam.K, cam.dist, cam.size, 0.0, [], np.zeros(0), [], [])


def calibration_from_geometry(geometry: RigGeometry, plane_depth_m: float = 1.818,
                              model: str = "homography", grid: str | float = "event",
                              ) -> Calibration:
    """The calibration a perfect calibration of `geometry` would give (for tests, benchmarks and
    the parallax table): true intrinsics and pose, the chosen relation and grid."""
    from calibration.relation import grid_scale, stereo_relation

    fr, ev = _true_mono(geometry.frame), _true_mono(geometry.event)
    scale = grid_scale(grid, geometry.frame.K, geometry.event.K)
    if model == "homography":
        rel = homography_relation(fr, ev, geometry.R_ev_fr, geometry.T_ev_fr_m, plane_depth_m,
                                  scale=scale)
    else:
        rel = stereo_relation(fr, ev, geometry.R_ev_fr, geometry.T_ev_fr_m, scale=scale)
    return Calibration(geometry.frame.K, geometry.frame.dist, geometry.frame.size,
                       geometry.event.K, geometry.event.dist, geometry.event.size,
                       geometry.R_ev_fr, geometry.T_ev_fr_m, rel.model, rel.H, rel.output_size,
                       rel.valid_roi, 0.0, 0.0, 0.0, K_aligned=rel.K_aligned,
                       R_rect_frame=rel.R_rect_frame, plane_depth_m=rel.plane_depth_m,
                       stereo=rel.stereo, mirror=geometry.mirror)


def homography_residual_table(geometry: RigGeometry, depths_m=(0.3, 1.0, 10.0),
                              plane_depths_m=(float("inf"), 2.0), step_px: int = 8,
                              ) -> list[dict[str, float]]:
    """The parallax a homography leaves on the true rig: for each Z0, the error at each depth
    (median and max over the aligned grid), with every other parameter exact."""
    rows = []
    for z0 in plane_depths_m:
        calib = calibration_from_geometry(geometry, z0)
        err = truth_alignment_error(calib, geometry, tuple(depths_m), step_px)
        for z in depths_m:
            rows.append({"plane_depth_m": z0, "depth_m": z,
                         "median_px": err[f"truth_{depth_key(z)}_median"],
                         "max_px": err[f"truth_{depth_key(z)}_max"]})
    return rows
