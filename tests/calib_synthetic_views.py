"""Test helper: synthetic calibration views rendered straight from the checkerboard scene and a
rig geometry, without the event simulator: the frame image is the lit board with shot/read noise, the event
image comes from the expected event counts of one blink (log-intensity change over a per-pixel
threshold) plus background-noise events. Used by tests and as a fast sanity check of the
calibration, with the true corner positions alongside.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from calibration.event_views import counts_to_image
from rig.geometry import RigGeometry
from rig.sim.checkerboard import CheckerboardScene


@dataclass
class SyntheticView:
    frame_gray: np.ndarray  # (Hf, Wf) uint8
    event_image: np.ndarray  # (He, We) uint8
    frame_corners_true: np.ndarray  # (N, 2) true (distorted) pixel positions
    event_corners_true: np.ndarray
    board_depth_m: float  # z of the board centre in the frame camera


def event_pose(geometry: RigGeometry) -> tuple[np.ndarray, np.ndarray]:
    """(R_world_ev, centre_ev) for a frame camera at the world origin."""
    R = geometry.R_ev_fr
    return R.T, -R.T @ geometry.T_ev_fr_m


def synthetic_views(geometry: RigGeometry, scene: CheckerboardScene, n_views: int, seed: int = 0,
                    *, frame_gain: float = 200.0, read_noise_dn: float = 1.5,
                    threshold: float = 0.3, threshold_sigma: float = 0.04,
                    noise_events_per_px: float = 0.2) -> Iterator[SyntheticView]:
    """Render `n_views` board poses (one per scene pose) as frame and event images."""
    rng = np.random.default_rng(seed)
    rays_fr = geometry.frame.pixel_rays()
    rays_ev = geometry.event.pixel_rays()
    R_wev, c_ev = event_pose(geometry)
    thr = np.clip(rng.normal(threshold, threshold_sigma, rays_ev.shape[:2]), 0.05, None)
    hold, p = scene.hold_s, scene.params
    t_on = 0.5 / p.blink_hz  # middle of the lit part of the first period
    t_off = 0.25 * (1 - p.duty) / p.blink_hz  # in the dark part before it
    obj = scene.object_points()
    for k in range(n_views):
        base = p.blink_phase_s + k * hold
        lit = scene.render(rays_fr, np.eye(3), np.zeros(3), base + t_on).radiance[..., 1]
        electrons = rng.poisson(np.clip(lit * frame_gain * 20.0, 0, None)).astype(np.float64)
        dn = electrons / 20.0 + rng.normal(0.0, read_noise_dn, lit.shape)
        frame = np.clip(np.round(dn), 0, 255).astype(np.uint8)
        l_on = scene.render(rays_ev, R_wev, c_ev, base + t_on).radiance[..., 1]
        l_off = scene.render(rays_ev, R_wev, c_ev, base + t_off).radiance[..., 1]
        dlog = np.abs(np.log(l_on + 1e-3) - np.log(l_off + 1e-3))
        per_edge = np.floor(dlog / thr + rng.uniform(0, 1, thr.shape))
        counts = 2.0 * per_edge + rng.poisson(2 * noise_events_per_px, thr.shape)
        R_wb, t_wb = scene.poses[scene.pose_index(base + t_on)]
        pts_fr = obj @ R_wb.T + t_wb
        pts_ev = pts_fr @ geometry.R_ev_fr.T + geometry.T_ev_fr_m
        centre = np.mean(pts_fr, axis=0)
        yield SyntheticView(frame, counts_to_image(counts), geometry.frame.project(pts_fr),
                            geometry.event.project(pts_ev), float(centre[2]))
